"""``earshot train base`` and ``earshot eval base``: make the base model and show its evidence."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from agent.cli import wake as wake_commands
from agent.cli.data import add_recipe_options
from agent.paths import DEFAULT_FSDD
from kernels.errors import ConfigError, ModelError
from models.paths import SHIPPED_BASE_MODEL
from models.speech.cache import cache_dir


def add_parsers(commands: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Register ``train`` and ``eval``; returns the ``eval`` sub-command parser."""
    train = commands.add_parser(
        "train",
        help="train wake-word detectors (or the base model) on the device",
        description="`earshot train` trains every configured wake word whose detector is "
        "missing or stale (phrase, base model or front end changed); `earshot train NAME...` "
        "those wake words. `earshot train base` trains the base speech model instead: it "
        "builds the corpus (see `earshot data build`), trains the DS-CNN base on the word task "
        "and the 12-class commands head on its embedding, and writes the model file; a "
        "checkpoint is saved after every epoch, and running the same command again resumes.",
    )
    train.add_argument(
        "names", nargs="*", metavar="NAME", help="wake words to train, or `base` for the base model"
    )
    wake_commands.add_train_options(train)
    base = train.add_argument_group("base model (earshot train base)")
    base.add_argument("--out", type=Path, default=SHIPPED_BASE_MODEL, help="model file to write")
    add_recipe_options(base)
    base.add_argument(
        "--epochs", type=int, default=25, help="most epochs (early stopping may end sooner)"
    )
    base.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    base.add_argument(
        "--engine", choices=["auto", "numpy", "wgpu"], default="auto",
        help="where training steps run: wgpu on a real GPU under auto, else numpy (default auto)",
    )  # fmt: skip

    evaluate = commands.add_parser("eval", help="measure models")
    eval_what = evaluate.add_subparsers(dest="eval_command", metavar="WHAT", required=True)
    base_eval = eval_what.add_parser(
        "base", help="accuracy on unseen synthetic voices and real speech (FSDD)"
    )
    base_eval.add_argument("--model", type=Path, default=SHIPPED_BASE_MODEL, help="base model file")
    base_eval.add_argument("--fsdd", type=Path, default=DEFAULT_FSDD, help="FSDD recordings folder")
    base_eval.add_argument(
        "--confusion", type=Path, default=Path("confusion.png"), help="PNG to write"
    )
    base_eval.add_argument("--json", action="store_true", help="print one JSON document")
    return eval_what


def _checkpoint_path(recipe_key: str, seed: int, epochs: int) -> Path:
    return cache_dir("training") / f"base-{recipe_key}-s{seed}-e{epochs}.npz"


def run_train(args: argparse.Namespace) -> int:
    """``earshot train``: the base model when asked for ``base``, else wake words."""
    if "base" in args.names:
        if args.names != ["base"]:
            raise ConfigError(
                f"train: got {args.names}; `base` (the base model) is trained on its own"
            )
        return _train_base(args)
    return wake_commands.run_train_wake(args)


def run_eval(args: argparse.Namespace) -> int:
    """``earshot eval base`` or ``earshot eval wake``."""
    if args.eval_command == "wake":
        return wake_commands.run_eval_wake(args)
    if args.eval_command == "enroll":
        from agent.cli import enroll_eval

        return enroll_eval.run_eval_enroll(args)
    return _eval_base(args)


def _train_base(args: argparse.Namespace) -> int:
    """Train the base model and write it (with a readable manifest beside it)."""
    from agent.cli.data import recipe_from_args
    from agent.cli.progress import StageProgress
    from models.base.training import train_base_model
    from models.nn.trainer import EpochRecord, TrainConfig
    from models.speech.corpus import load_or_build

    if args.epochs < 1:
        raise ConfigError(f"--epochs: got {args.epochs}, expected at least 1")
    recipe = recipe_from_args(args)
    checkpoint = _checkpoint_path(recipe.key(), args.seed, args.epochs)
    if args.fresh:
        checkpoint.unlink(missing_ok=True)
    with StageProgress() as progress:
        corpora = {
            split: load_or_build(recipe, split, progress=progress)
            for split in ("train", "validation", "test")
        }

    def report(r: EpochRecord) -> None:
        print(
            f"epoch {r.epoch:3d}  loss {r.train_loss:.3f}  acc {r.train_accuracy:6.1%}  "
            f"val_loss {r.val_loss:.3f}  val_acc {r.val_accuracy:6.1%}  "
            f"lr {r.lr:.2e}  {r.seconds:.0f} s",
            file=sys.stderr, flush=True,
        )  # fmt: skip

    print(f"training; checkpoint {checkpoint} (rerun to resume)", file=sys.stderr)
    with StageProgress(unit="batch") as progress:
        model, metrics = train_base_model(
            recipe, corpora, train_config=TrainConfig(epochs=args.epochs, seed=args.seed),
            checkpoint=checkpoint, progress=progress, on_epoch=report, engine=args.engine,
        )  # fmt: skip
    summary = {k: v for k, v in metrics.items() if k != "history"}
    manifest = model.save(args.out, recipe=recipe.as_dict(), metrics=summary)
    args.out.with_suffix(".json").write_text(manifest.to_json() + "\n", encoding="utf-8")
    print(json.dumps({"model": str(args.out), "sha256": manifest.sha256, **summary}, indent=2))
    return 0


def _eval_base(args: argparse.Namespace) -> int:
    """Print the base model's figures and write the confusion-matrix PNG."""
    from agent.cli.progress import StageProgress
    from models.base.evaluation import (
        balanced_accuracy,
        commands_accuracy,
        commands_recipe,
        digit_recipe,
        features_of,
        few_shot_digits,
        few_shot_digits_head,
        fsdd_recordings,
        zero_shot_digits,
    )
    from models.base.model import BaseModel
    from models.base.training import command_labels
    from models.speech.corpus import Corpus, CorpusRecipe, load_or_build
    from models.speech.dataset import SPEECH_COMMANDS_LABELS

    model = BaseModel.load(args.model)
    assert model.manifest is not None
    recipe = CorpusRecipe.from_dict(model.manifest.recipe)
    with StageProgress() as progress:
        words = load_or_build(commands_recipe(recipe), "test", progress=progress)
        digits = {
            s: load_or_build(digit_recipe(recipe), s, progress=progress)
            for s in ("train", "validation")
        }
    test = Corpus(words.features, command_labels(words), SPEECH_COMMANDS_LABELS)
    accuracy, commands_confusion = commands_accuracy(model, test)
    result: dict[str, Any] = {
        "model": str(args.model),
        "commands_test_accuracy": accuracy,
        "commands_test_balanced_accuracy": balanced_accuracy(commands_confusion),
        "commands_test_windows": int(test.labels.size),
    }
    digits_confusion = None
    if args.fsdd.is_dir():
        recordings = fsdd_recordings(args.fsdd)
        real = model.embed(features_of(recordings))
        zero_shot, digits_confusion = zero_shot_digits(
            model, digits["train"], digits["validation"], real, recordings
        )
        few_shot = few_shot_digits(real, recordings)
        uncentered = few_shot_digits(real, recordings, center=False)
        head = few_shot_digits_head(model, recordings)
        tuned = few_shot_digits_head(model, recordings, fine_tune=True)
        result |= {
            "fsdd_zero_shot_accuracy": zero_shot,
            "fsdd_5_shot_accuracy_per_speaker": few_shot,
            "fsdd_5_shot_accuracy_mean": sum(few_shot.values()) / len(few_shot),
            "fsdd_5_shot_accuracy_mean_uncentered": sum(uncentered.values()) / len(uncentered),
            "fsdd_5_shot_head_accuracy_per_speaker": head,
            "fsdd_5_shot_head_accuracy_mean": sum(head.values()) / len(head),
            "fsdd_5_shot_finetuned_accuracy_per_speaker": tuned,
            "fsdd_5_shot_finetuned_accuracy_mean": sum(tuned.values()) / len(tuned),
        }
    else:
        result["fsdd"] = f"not found at {args.fsdd}: real-speech figures skipped"
    _plot_confusion(args.confusion, commands_confusion, digits_confusion)
    result["confusion_png"] = str(args.confusion)
    print(json.dumps(result, indent=2) if args.json else _table(result))
    return 0


def _table(result: dict[str, Any]) -> str:
    lines = [f"base model {result['model']}"]
    accuracy, balanced = result["commands_test_accuracy"], result["commands_test_balanced_accuracy"]
    lines.append(
        f"  12-class accuracy, unseen synthetic voices: {accuracy:.1%} "
        f"(balanced {balanced:.1%}, {result['commands_test_windows']} windows)"
    )
    if "fsdd_zero_shot_accuracy" in result:
        lines.append(
            f"  FSDD zero-shot digits (real voices): {result['fsdd_zero_shot_accuracy']:.1%}"
        )
        lines.append("  FSDD 5-shot per speaker (real voices), mean and per speaker:")
        methods = (
            ("", "nearest prototype, centred"),
            ("head_", "trained head (enrollment)"),
            ("finetuned_", "head + last block"),
        )
        for key, label in methods:
            per_speaker = result[f"fsdd_5_shot_{key}accuracy_per_speaker"]
            figures = ", ".join(f"{s} {a:.1%}" for s, a in per_speaker.items())
            mean = result[f"fsdd_5_shot_{key}accuracy_mean"]
            lines.append(f"    {label:<28} {mean:6.1%}  ({figures})")
        plain = result["fsdd_5_shot_accuracy_mean_uncentered"]
        lines.append(f"    {'nearest prototype, plain':<28} {plain:6.1%}")
    else:
        lines.append(f"  {result['fsdd']}")
    lines.append(f"  confusion matrices: {result['confusion_png']}")
    return "\n".join(lines)


def _plot_confusion(path: Path, commands: Any, digits: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from models.speech.dataset import DIGIT_WORDS, SPEECH_COMMANDS_LABELS

    panels: list[tuple[str, Any, tuple[str, ...]]] = [
        ("12 classes, unseen synthetic voices", commands, SPEECH_COMMANDS_LABELS)
    ]
    if digits is not None:
        panels.append(("FSDD digits, zero-shot (real voices)", digits, DIGIT_WORDS))
    figure, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 6), squeeze=False)
    for axis, (title, matrix, labels) in zip(axes[0], panels, strict=True):
        rates = matrix / matrix.sum(axis=1, keepdims=True).clip(min=1)
        axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        axis.set(
            title=title,
            xlabel="predicted",
            ylabel="true",
            xticks=range(len(labels)),
            yticks=range(len(labels)),
        )
        axis.set_xticklabels(labels, rotation=60, ha="right")
        axis.set_yticklabels(labels)
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                axis.text(
                    j,
                    i,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if rates[i, j] < 0.6 else "white",
                )
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=110)
    except OSError as err:
        raise ModelError(f"{path}: cannot write the confusion-matrix PNG: {err}") from err
    plt.close(figure)
