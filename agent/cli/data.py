"""``earshot data build``: synthesize, augment and featurize a training corpus, cached on disk."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kernels.errors import ConfigError

if TYPE_CHECKING:
    from models.speech.corpus import CorpusRecipe

DEFAULT_RENDITIONS = "24,3,4"


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``data`` and its actions on the CLI's sub-command parser."""
    data = commands.add_parser("data", help="build the synthetic speech corpora models learn from")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build",
        help="synthesize, augment and compute features for a corpus (cached; reruns are instant)",
        description="Render every vocabulary word with local synthesizers (espeak-ng, flite, "
        "festival), augment it (noise, reverb, speed, pitch, band-limits, microphone colour), and "
        "store 1 s log-mel windows with labels. Each split speaks with its own voices.",
    )
    add_recipe_options(build)
    build.add_argument("--workers", type=int, help="parallel workers (default: every core)")
    build.add_argument(
        "--split", choices=["train", "validation", "test"], action="append", help="build only these"
    )
    build.add_argument("--json", action="store_true", help="print the summary as JSON")


def add_recipe_options(parser: argparse.ArgumentParser) -> None:
    """Options that define a corpus recipe (shared by ``data build`` and ``train base``)."""
    parser.add_argument("--words", type=int, help="use only the first N vocabulary words")
    parser.add_argument("--vocabulary", type=Path, help="word list file (default: the shipped one)")
    parser.add_argument(
        "--renditions", default=DEFAULT_RENDITIONS,
        help=f"renditions per word for train,validation,test (default {DEFAULT_RENDITIONS})",
    )  # fmt: skip
    parser.add_argument(
        "--copies", type=int, default=2, help="augmented copies per training rendition"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seeds voices, renditions, augmentation, training"
    )


def recipe_from_args(args: argparse.Namespace) -> CorpusRecipe:
    """The corpus recipe the recipe options describe; ConfigError for invalid values."""
    from models.speech.corpus import CorpusRecipe
    from models.speech.dataset import VOCABULARY_FILE, load_vocabulary

    vocabulary_file = args.vocabulary or VOCABULARY_FILE
    if not vocabulary_file.is_file():
        raise ConfigError(f"--vocabulary: {vocabulary_file}: no such file")
    words = load_vocabulary(vocabulary_file)
    if args.words is not None:
        if args.words < 2:
            raise ConfigError(f"--words: got {args.words}, expected at least 2")
        words = words[: args.words]
    if args.copies < 1:
        raise ConfigError(f"--copies: got {args.copies}, expected at least 1")
    renditions = _renditions(args.renditions)
    return CorpusRecipe(
        words=words, renditions_per_word=renditions, augmented_copies=args.copies, seed=args.seed
    )


def _renditions(text: str) -> dict[str, int]:
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(
            f"--renditions: got {text!r}, expected three positive integers like 16,3,4"
        )
    return dict(zip(("train", "validation", "test"), (int(p) for p in parts), strict=True))


def run(args: argparse.Namespace) -> int:
    """Build (or load from the cache) every requested split and print a summary."""
    from agent.cli.progress import StageProgress
    from models.speech.corpus import default_corpus_dir, load_or_build

    recipe = recipe_from_args(args)
    summary: dict[str, object] = {
        "recipe": recipe.key(),
        "directory": str(default_corpus_dir() / recipe.key()),
    }
    for split in args.split or ["train", "validation", "test"]:
        start = time.monotonic()
        with StageProgress() as progress:
            corpus = load_or_build(recipe, split, workers=args.workers, progress=progress)
        counts = np.bincount(corpus.labels, minlength=len(corpus.label_names))
        summary[split] = {
            "clips": int(corpus.labels.size),
            "classes": len(corpus.label_names),
            "hours_of_audio": round(corpus.labels.size / 3600, 3),
            "min_clips_per_class": int(counts.min()),
            "seconds": round(time.monotonic() - start, 1),
        }
    print(json.dumps(summary, indent=2) if args.json else _table(summary))
    return 0


def _table(summary: dict[str, object]) -> str:
    lines = [f"corpus {summary['recipe']} in {summary['directory']}"]
    for split, figures in summary.items():
        if isinstance(figures, dict):
            lines.append(f"  {split:>10}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    return "\n".join(lines)
