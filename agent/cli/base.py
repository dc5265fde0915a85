"""``earshot train base`` and ``earshot eval base``: make the base model and show its evidence."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from agent.cli import wake as wake_commands
from agent.cli.data import add_recipe_options
from agent.paths import DEFAULT_FSDD
from kernels.errors import ConfigError, ModelError
from models.paths import SHIPPED_BASE_MODEL, SHIPPED_EMBEDDING
from models.speech.cache import cache_dir

ZERO_SHOT_CLIPS = 200
"""Default synthetic clips per digit of the comparison's zero-shot heads."""
DETECT_DIGIT_CLIPS = 100
"""Default synthetic clips per digit of the comparison's detection heads."""
DETECT_OTHER_WORDS = 260
"""Default clips of other words among the detection heads' negatives."""


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
        "checkpoint is saved after every epoch, and running the same command again resumes. "
        "`earshot train commands` trains the speech-commands head (built-in command words) on "
        "the configured base from synthetic speech and writes it (default: the shipped head).",
    )
    train.add_argument(
        "names", nargs="*", metavar="NAME",
        help="wake words to train, `base` for the base model, `commands` for the commands head",
    )  # fmt: skip
    wake_commands.add_train_options(train)
    base = train.add_argument_group("base model (earshot train base)")
    base.add_argument(
        "--out", type=Path, default=None,
        help="model file to write (default: the shipped base, or the shipped commands head)",
    )  # fmt: skip
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
        "base",
        help="accuracy on unseen synthetic voices and real speech (FSDD)",
        description="The DS-CNN base's figures (12 commands on unseen synthetic voices; FSDD "
        "zero-shot and 5-shot digits), then both bases, the DS-CNN and the imported speech "
        "embedding, side by side on FSDD with heads trained on synthetic speech only: "
        "zero-shot digits, 5-shot per speaker (nearest prototype), and per-digit detection "
        "(one-vs-rest logistic heads on 2 s contexts; AUC and miss rates at 1% and at 0 false "
        "accepts). Embeddings are cached, so a rerun only trains the heads.",
    )
    base_eval.add_argument("--model", type=Path, default=SHIPPED_BASE_MODEL, help="base model file")
    base_eval.add_argument(
        "--embedding", type=Path, default=SHIPPED_EMBEDDING,
        help="imported speech-embedding model file (skipped with a note when absent)",
    )  # fmt: skip
    base_eval.add_argument("--fsdd", type=Path, default=DEFAULT_FSDD, help="FSDD recordings folder")
    base_eval.add_argument(
        "--confusion", type=Path, default=Path("confusion.png"), help="PNG to write"
    )
    base_eval.add_argument("--json", action="store_true", help="print one JSON document")
    sizes = base_eval.add_argument_group("comparison of the bases (synthetic training clips)")
    sizes.add_argument(
        "--zero-shot-clips", type=int, default=ZERO_SHOT_CLIPS, metavar="N",
        help=f"synthetic clips per digit for the zero-shot heads (default {ZERO_SHOT_CLIPS})",
    )  # fmt: skip
    sizes.add_argument(
        "--detect-digit-clips", type=int, default=DETECT_DIGIT_CLIPS, metavar="N",
        help="synthetic clips per digit for the detection heads "
        f"(default {DETECT_DIGIT_CLIPS})",
    )  # fmt: skip
    sizes.add_argument(
        "--detect-other-words", type=int, default=DETECT_OTHER_WORDS, metavar="N",
        help="clips of other words, the detection heads' negatives "
        f"(default {DETECT_OTHER_WORDS})",
    )  # fmt: skip
    sizes.add_argument(
        "--synth-seed", type=int, default=0, metavar="N",
        help="seed of the synthetic clips' words, voices and noise (default 0)",
    )  # fmt: skip
    return eval_what


def _checkpoint_path(recipe_key: str, seed: int, epochs: int) -> Path:
    return cache_dir("training") / f"base-{recipe_key}-s{seed}-e{epochs}.npz"


def run_train(args: argparse.Namespace) -> int:
    """``earshot train``: the base model when asked for ``base``, else wake words."""
    for special in ("base", "commands"):
        if special in args.names and args.names != [special]:
            raise ConfigError(f"train: got {args.names}; `{special}` is trained on its own")
    if args.names == ["base"]:
        return _train_base(args, args.out or SHIPPED_BASE_MODEL)
    if args.names == ["commands"]:
        return _train_commands(args)
    return wake_commands.run_train_wake(args)


def _train_commands(args: argparse.Namespace) -> int:
    """Train the speech-commands head on the configured base and write it."""
    from threadpoolctl import threadpool_limits

    from agent.cli.progress import StageProgress
    from agent.daemon.detectors import load_base
    from agent.settings import load_settings
    from models.base.commands import SHIPPED_COMMANDS, train_commands_head

    base = load_base(load_settings(args.config))
    out = args.out or SHIPPED_COMMANDS
    with StageProgress(unit="clip") as progress, threadpool_limits(os.cpu_count() or 1):
        head, report = train_commands_head(base, seed=args.seed, progress=progress)
    head.save(out)
    print(json.dumps({"model": str(out), "base": base.name, **report["test"]}, indent=2))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """``earshot eval base``, ``wake``, ``enroll``, ``takes`` or ``fleet``."""
    if args.eval_command == "wake":
        from agent.cli import wake_eval

        return wake_eval.run_eval_wake(args)
    if args.eval_command == "enroll":
        from agent.cli import enroll_eval

        return enroll_eval.run_eval_enroll(args)
    if args.eval_command == "takes":
        from agent.cli import enroll_eval

        return enroll_eval.run_eval_takes(args)
    if args.eval_command == "fleet":
        from agent.cli import fleet_eval

        return fleet_eval.run_eval_fleet(args)
    return _eval_base(args)


def _train_base(args: argparse.Namespace, out: Path) -> int:
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
    manifest = model.save(out, recipe=recipe.as_dict(), metrics=summary)
    out.with_suffix(".json").write_text(manifest.to_json() + "\n", encoding="utf-8")
    print(json.dumps({"model": str(out), "sha256": manifest.sha256, **summary}, indent=2))
    return 0


def _eval_base(args: argparse.Namespace) -> int:
    """Print the base model's figures and write the confusion-matrix PNG."""
    from agent.cli.progress import StageProgress
    from models.base.evaluation import (
        balanced_accuracy,
        commands_accuracy,
        commands_recipe,
        digit_recipe,
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
        figures, digits_confusion = _dscnn_fsdd_figures(args.fsdd, model, digits, recipe)
        result |= figures
        result["comparison"] = _compare_bases(args, model)
    else:
        result["fsdd"] = f"not found at {args.fsdd}: real-speech figures skipped"
    _plot_confusion(args.confusion, commands_confusion, digits_confusion)
    result["confusion_png"] = str(args.confusion)
    print(json.dumps(result, indent=2) if args.json else _table(result))
    return 0


def _dscnn_fsdd_figures(
    fsdd: Path, model: Any, digits: dict[str, Any], recipe: Any
) -> tuple[dict[str, Any], np.ndarray]:
    """The DS-CNN's own FSDD figures and zero-shot confusion (cached: its heads train slowly).

    The cache is keyed by the model's weights, the digit corpus's recipe and the recordings.
    """
    import hashlib

    from models.base.evaluation import (
        digit_recipe,
        features_of,
        few_shot_digits,
        few_shot_digits_head,
        fsdd_recordings,
        zero_shot_digits,
    )

    recordings = fsdd_recordings(fsdd)
    listing = [(r.path.name, r.path.stat().st_size) for r in recordings]
    identity = [model.manifest.sha256, digit_recipe(recipe).key(), listing]
    digest = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]
    path = cache_dir("evaluation") / f"dscnn-fsdd-{digest}.json"
    if path.is_file():
        cached = json.loads(path.read_text(encoding="utf-8"))
        return cached["figures"], np.array(cached["confusion"])
    real = model.embed(features_of(recordings))
    zero_shot, confusion = zero_shot_digits(
        model, digits["train"], digits["validation"], real, recordings
    )
    few_shot = few_shot_digits(real, recordings)
    uncentered = few_shot_digits(real, recordings, center=False)
    head = few_shot_digits_head(model, recordings)
    tuned = few_shot_digits_head(model, recordings, fine_tune=True)
    figures = {
        "fsdd_zero_shot_accuracy": zero_shot,
        "fsdd_5_shot_accuracy_per_speaker": few_shot,
        "fsdd_5_shot_accuracy_mean": sum(few_shot.values()) / len(few_shot),
        "fsdd_5_shot_accuracy_mean_uncentered": sum(uncentered.values()) / len(uncentered),
        "fsdd_5_shot_head_accuracy_per_speaker": head,
        "fsdd_5_shot_head_accuracy_mean": sum(head.values()) / len(head),
        "fsdd_5_shot_finetuned_accuracy_per_speaker": tuned,
        "fsdd_5_shot_finetuned_accuracy_mean": sum(tuned.values()) / len(tuned),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps({"figures": figures, "confusion": confusion.tolist()}))
    partial.replace(path)
    return figures, confusion


def _compare_bases(args: argparse.Namespace, model: Any) -> dict[str, Any]:
    """Both bases through the three protocols of `models.base.embedding_eval`."""
    from dataclasses import replace

    from agent.cli.progress import StageProgress
    from models.base import embedding_eval
    from models.base.speech_embedding import SpeechEmbedding

    for option in ("zero_shot_clips", "detect_digit_clips"):
        if getattr(args, option) < 1:
            raise ConfigError(f"--{option.replace('_', '-')}: got {getattr(args, option)}, "
                              "expected at least 1")  # fmt: skip
    if args.detect_other_words < 0:
        raise ConfigError(f"--detect-other-words: got {args.detect_other_words}, expected >= 0")
    protocols = embedding_eval.Protocols(
        zero_shot=replace(embedding_eval.ZERO_SHOT_RECIPE, digit_clips=args.zero_shot_clips,
                          seed=args.synth_seed),
        detection=replace(embedding_eval.DETECTION_RECIPE, digit_clips=args.detect_digit_clips,
                          other_words=args.detect_other_words, seed=args.synth_seed),
    )  # fmt: skip
    bases = [embedding_eval.dscnn_base(model)]
    comparison: dict[str, Any] = {
        "protocols": {
            "zero_shot": asdict(protocols.zero_shot),
            "detection": asdict(protocols.detection),
            "shots": protocols.shots,
        }
    }
    if args.embedding.is_file():
        bases.append(embedding_eval.imported_base(SpeechEmbedding.load(args.embedding)))
    else:
        comparison["speech_embedding"] = f"not found at {args.embedding}: base skipped"
    with StageProgress() as progress:
        comparison |= embedding_eval.compare_bases(
            bases, args.fsdd, protocols=protocols, progress=progress
        )
    return comparison


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
    if "comparison" in result:
        lines += _comparison_table(result["comparison"])
    return "\n".join(lines)


def _comparison_table(comparison: dict[str, Any]) -> list[str]:
    names = [n for n, v in comparison.items() if n != "protocols" and isinstance(v, dict)]
    zero, detect = comparison["protocols"]["zero_shot"], comparison["protocols"]["detection"]
    shots = comparison["protocols"]["shots"]
    rows: list[tuple[str, str, Any]] = [
        (f"zero-shot digits, accuracy ({zero['digit_clips']} synthetic clips per digit)",
         "%", lambda r: r["zero_shot"]["accuracy"]),
        (f"{shots}-shot per speaker, nearest prototype, mean", "%",
         lambda r: r["few_shot"]["mean"]),
        ("detection, mean over digits: AUC", "f", lambda r: r["detection"]["mean"]["auc"]),
        ("  miss rate at 1% false accepts", "%",
         lambda r: r["detection"]["mean"]["miss_at_1pct_fa"]),
        ("  miss rate at 0 false accepts", "%", lambda r: r["detection"]["mean"]["miss_at_0_fa"]),
    ]  # fmt: skip
    lines = ["", "bases compared on FSDD (heads trained on synthetic speech only)",
             f"  {'':<58}" + "".join(f"{n:>18}" for n in names)]  # fmt: skip
    for label, kind, value in rows:
        cells = [value(comparison[n]) for n in names]
        text = [f"{c:.1%}" if kind == "%" else f"{c:.3f}" for c in cells]
        lines.append(f"  {label:<58}" + "".join(f"{t:>18}" for t in text))
    lines.append(
        f"  detection heads: {detect['digit_clips']} clips per digit and "
        f"{detect['other_words']} other words ({', '.join(detect['engines'])}, noise "
        f"{detect['snr_db'][0]:g}-{detect['snr_db'][1]:g} dB SNR)"
    )
    lines.append("  per digit (AUC / miss at 1% FA / miss at 0 FA):")
    for digit in comparison[names[0]]["detection"]["per_digit"]:
        cells = []
        for n in names:
            d = comparison[n]["detection"]["per_digit"][digit]
            cells.append(f"{d['auc']:.2f}/{d['miss_at_1pct_fa']:4.0%}/{d['miss_at_0_fa']:4.0%}")
        lines.append(f"    {digit:<56}" + "".join(f"{c:>18}" for c in cells))
    lines += [f"  {comparison[n]}" for n in comparison if isinstance(comparison[n], str)]
    return lines


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
