"""``earshot eval wake``: a wake word's miss rate at a false-alarm rate, on files or on FSDD.

On recordings (``--positives`` and ``--negatives``) it scores the configured wake word; with
``--fsdd`` it runs the Free Spoken Digit Dataset protocol (`models.wake.evaluation`): every digit
as a wake word trained from text only (`fsdd_text_models`, cached per base and recipe), on one or
both shipped bases (``--plot``).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.cli.wake import write_csv
from agent.daemon.detectors import load_base, load_wake_words
from kernels.errors import ConfigError

if TYPE_CHECKING:
    from agent.settings import Settings
    from models.base.geometry import Embedder
    from models.wake.model import WakeWordModel

def _summary(curve: Any) -> dict[str, Any]:
    miss_1, threshold_1 = curve.miss_rate_at(1.0)
    miss_10, threshold_10 = curve.miss_rate_at(0.1)
    return {
        "positives": curve.positives,
        "negative_hours": round(curve.hours, 3),
        "miss_rate_at_1_per_hour": round(miss_1, 4),
        "threshold_at_1_per_hour": round(threshold_1, 5),
        "miss_rate_at_1_per_10_hours": round(miss_10, 4),
        "threshold_at_1_per_10_hours": round(threshold_10, 5),
        "per_10_hours_measured": curve.hours >= 10.0,
    }


def _write_det(prefix: Path, curves: dict[str, Any]) -> None:
    from agent.cli.plots import plot_det

    rows: list[list[object]] = [
        [name, round(t, 6), round(f, 4), round(m, 4)]
        for name, curve in curves.items()
        for t, f, m in curve.rows()
    ]
    write_csv(
        prefix.with_suffix(".csv"),
        ["wake_word", "threshold", "false_alarms_per_hour", "miss_rate"],
        rows,
    )
    plot_det(prefix.with_suffix(".png"), curves)


def _print_table(results: dict[str, dict[str, Any]]) -> None:
    print(f"{'wake word':<12}{'positives':>10}{'neg. hours':>11}{'miss@1/h':>10}{'miss@0.1/h':>12}")
    for name, r in results.items():
        print(
            f"{name:<12}{r['positives']:>10}{r['negative_hours']:>11.2f}"
            f"{r['miss_rate_at_1_per_hour']:>10.1%}{r['miss_rate_at_1_per_10_hours']:>12.1%}"
        )


def run_eval_wake(args: argparse.Namespace) -> int:
    """``earshot eval wake``: DET curve of one wake word, or the FSDD protocol."""
    from threadpoolctl import threadpool_limits

    from agent.settings import load_settings

    settings = load_settings(args.config)
    if args.plot and args.fsdd is None:
        raise ConfigError("eval wake: --plot compares the bases on FSDD; give --fsdd too")
    with threadpool_limits(os.cpu_count() or 1):
        if args.fsdd is not None and args.plot:
            return _fsdd_both_bases(args, settings)
        if args.fsdd is not None:
            results, curves = _fsdd(args, settings, load_base(settings))
        else:
            results, curves = _eval_files(args, settings)
    _write_det(args.out, curves)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print_table(results)
        hours = min(r["negative_hours"] for r in results.values())
        if hours < 10:
            print(
                f"(at most {hours:.2f} h of negatives: 'miss@0.1/h' is the miss rate with no "
                "false alarm at all on them)"
            )
        print(f"DET curve: {args.out.with_suffix('.csv')}, {args.out.with_suffix('.png')}")
    return 0


def _fsdd_both_bases(args: argparse.Namespace, settings: Settings) -> int:
    """The FSDD protocol on both shipped bases, their DET curves side by side."""
    from agent.cli.plots import plot_det_panels
    from models.base.loading import BASES
    from models.base.loading import load_base as load_named_base

    results, panels = {}, {}
    for name in BASES:
        results[name], panels[name] = _fsdd(args, settings, load_named_base(name))
        _write_det(args.out.with_name(f"{args.out.name}-{name}"), panels[name])
    plot_det_panels(args.out.with_suffix(".png"), panels)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name, table in results.items():
            print(f"base {name}:")
            _print_table(table)
        print(f"DET curves: {args.out.with_suffix('.png')} (side by side), "
              f"{args.out.name}-BASE.csv per base")  # fmt: skip
    return 0


def _eval_files(
    args: argparse.Namespace, settings: Settings
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    from models.wake.evaluation import audio_files, negative_scores, positive_peaks
    from models.wake.metrics import det_curve
    from models.wake.model import refractory_hops

    if not args.wake_word or not args.positives or not args.negatives:
        raise ConfigError("eval wake: give --wake-word, --positives and --negatives (or --fsdd)")
    base = load_base(settings)
    (wake,) = load_wake_words(settings, base, [args.wake_word])
    positives = audio_files(args.positives)
    if not positives:
        raise ConfigError(f"--positives: no audio files in {[str(p) for p in args.positives]}")
    peaks = positive_peaks(base, wake.model, positives, smoothing_hops=wake.smoothing_hops)
    episodes, hours = negative_scores(base, wake.model, audio_files(args.negatives))
    if hours <= 0:
        raise ConfigError("--negatives: the files hold no audio")
    curve = det_curve(
        peaks, episodes, hours=hours, smoothing_hops=wake.smoothing_hops,
        refractory_hops=refractory_hops(wake.refractory_s, wake.model.hop_s),
    )  # fmt: skip
    return {wake.name: _summary(curve)}, {wake.name: curve}


FSDD_TARGET_PER_HOUR = 1.0
"""The false-alarm target whose calibrated threshold the FSDD protocol checks on other audio."""


def _fsdd(
    args: argparse.Namespace, settings: Settings, base: Embedder
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    from agent.cli.progress import StageProgress
    from agent.paths import DEFAULT_FSDD
    from models.speech.dataset import DIGIT_WORDS
    from models.wake.evaluation import false_alarm_rate, fsdd_stream, stream_det
    from models.wake.recipe import WakeRecipe
    from models.wake.streams import StreamRecipe, load_or_build_stream

    directory = DEFAULT_FSDD if args.fsdd == Path() else args.fsdd
    if not directory.is_dir():
        raise ConfigError(f"--fsdd: {directory} is not a folder of FSDD recordings")
    results: dict[str, dict[str, Any]] = {}
    curves: dict[str, Any] = {}
    smoothing, refractory = 2, 2.0
    with StageProgress(unit="step") as progress:
        labelled = fsdd_stream(base, directory)
        synthetic = load_or_build_stream(
            base, StreamRecipe(WakeRecipe().calibration_stream_s), "evaluation", progress=progress
        )
        models = fsdd_text_models(base, DIGIT_WORDS, progress)
        for digit, model in models.items():
            curve = stream_det(
                base.geometry, model, labelled, [synthetic], smoothing_hops=smoothing,
                refractory_s=refractory,
            )  # fmt: skip
            threshold, _ = model.threshold_for(
                FSDD_TARGET_PER_HOUR, smoothing_hops=smoothing, refractory_s=refractory
            )
            measured = {
                f"false_alarms_per_hour_{name}": round(
                    false_alarm_rate(
                        base.geometry,
                        model,
                        stream,
                        threshold,
                        smoothing_hops=smoothing,
                        refractory_s=refractory,
                    ),  # fmt: skip
                    3,
                )
                for name, stream in (("fsdd", labelled), ("synthetic", synthetic))
            }
            missed = curve.miss_rate_at_threshold(threshold)
            results[digit], curves[digit] = (
                {
                    **_summary(curve),
                    "calibrated_threshold": round(threshold, 6),
                    "target_false_alarms_per_hour": FSDD_TARGET_PER_HOUR,
                    **measured,
                    "miss_rate_at_calibrated_threshold": round(missed, 4),
                },
                curve,
            )
    keys = (
        "miss_rate_at_1_per_hour", "miss_rate_at_1_per_10_hours", "false_alarms_per_hour_fsdd",
        "false_alarms_per_hour_synthetic", "miss_rate_at_calibrated_threshold",
    )  # fmt: skip
    means = {k: round(float(np.mean([r[k] for r in results.values()])), 4) for k in keys}
    results["mean"] = {**results[DIGIT_WORDS[0]], **means, "positives": 0}
    results["mean"]["positives"] = sum(results[d]["positives"] for d in DIGIT_WORDS)
    del results["mean"]["calibrated_threshold"]
    return results, curves


def fsdd_text_models(
    base: Embedder, digits: Sequence[str], progress: Any
) -> dict[str, WakeWordModel]:
    """Each digit word's detector trained from text only (cached per base and recipe)."""
    from models.wake.model import WakeWordModel, model_path, stale_reason
    from models.wake.training import train_wake_word

    directory = fsdd_text_models_dir(base)
    models = {}
    for digit in digits:
        path = model_path(directory, digit)
        if stale_reason(path, digit, base.sha256) is not None:
            model, report = train_wake_word(digit, digit, base, progress=progress)
            model.save(path, **report)
        models[digit] = WakeWordModel.load(path, base_sha256=base.sha256)
    return models


def fsdd_text_models_dir(base: Embedder) -> Path:
    """Where `fsdd_text_models` keeps the digits' text-only detectors."""
    import hashlib

    from models.speech.cache import cache_dir
    from models.wake.recipe import WakeRecipe

    recipe = json.dumps(WakeRecipe().as_dict(), sort_keys=True).encode()
    return cache_dir("fsdd-wake") / base.name / hashlib.sha256(recipe).hexdigest()[:12]
