"""Pictures for people tuning wake words: detections over a recording, and DET curves.

matplotlib is imported here only, lazily, with the non-interactive Agg backend, so the agent
never loads it unless a plot is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kernels.errors import ConfigError


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    try:
        fig.savefig(path, dpi=110)
    except OSError as err:
        raise ConfigError(f"{path}: cannot write plot: {err}") from err
    finally:
        _pyplot().close(fig)


def plot_detections(
    path: Path,
    audio: np.ndarray,
    hops: Sequence[tuple[float, np.ndarray]],
    names: Sequence[str],
    thresholds: Sequence[float],
    detections: Sequence[Any],
) -> None:
    """Waveform, log-mel spectrogram and per-hop scores, with detections shaded."""
    from dsp.constants import SAMPLE_RATE_HZ
    from dsp.features import log_mel

    plt = _pyplot()
    fig, (wave, spec, score) = plt.subplots(3, 1, figsize=(11, 7), sharex=True)
    t = np.arange(audio.size) / SAMPLE_RATE_HZ
    wave.plot(t, audio, lw=0.5, color="0.3")
    wave.set_ylabel("waveform")
    features = log_mel(audio)
    spec.imshow(
        features.T, origin="lower", aspect="auto", cmap="magma",
        extent=(0, features.shape[0] * 0.01, 0, features.shape[1]),
    )  # fmt: skip
    spec.set_ylabel("mel band")
    times = np.array([h[0] for h in hops])
    values = np.array([h[1] for h in hops]) if hops else np.zeros((0, len(names)))
    for i, (name, threshold) in enumerate(zip(names, thresholds, strict=True)):
        (line,) = score.plot(times, values[:, i] if values.size else [], label=name)
        score.axhline(threshold, ls="--", lw=0.8, color=line.get_color())
    for d in detections:
        for ax in (wave, spec, score):
            ax.axvspan(d.start_s, d.end_s, color="tab:green", alpha=0.25)
        score.annotate(d.name, (d.time_s, d.score), fontsize=8)
    score.set_ylim(0, 1.02)
    score.set_ylabel("score")
    score.set_xlabel("time (s)")
    score.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_det(path: Path, curves: dict[str, Any]) -> None:
    """DET curves (miss rate against false alarms per hour, log axes), one line per wake word."""
    plot_det_panels(path, {"": curves})


def plot_det_panels(path: Path, panels: dict[str, dict[str, Any]]) -> None:
    """DET curves of several sets side by side (e.g. one panel per base), shared axes."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels) + 1, 5), sharey=True,
                             squeeze=False)  # fmt: skip
    for ax, (title, curves) in zip(axes[0], panels.items(), strict=True):
        for name, curve in curves.items():
            keep = curve.per_hour > 0
            ax.plot(curve.per_hour[keep], np.maximum(curve.miss_rate[keep], 1e-4), label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axvline(1.0, ls=":", color="0.5")
        ax.axhline(0.1, ls=":", color="0.5")
        if title:
            ax.set_title(title)
        ax.set_xlabel("false alarms per hour")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("miss rate")
    fig.tight_layout()
    _save(fig, path)
