"""A trained head's calibration: its scores over a stream with no wake word, and their curve.

The raw scores (`calibration_scores`) are kept in the model, so the threshold for any target of
false alarms per hour is found at load time (`models.wake.model`); `calibration_report` is the
curve at the settings the model was trained for, as stored in its manifest for people to read.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.base.geometry import Geometry
from models.wake.metrics import MAX_THRESHOLD
from models.wake.model import WakeHead, WakeWordModel
from models.wake.streams import NegativeStream


def calibration_scores(
    head: WakeHead, stream: NegativeStream, phrase: str, geometry: Geometry
) -> list[np.ndarray]:
    """Raw per-hop scores over a negative stream; hops near the phrase itself score 0."""
    return [
        np.where(keep, head.scores(contexts), 0.0).astype(np.float32)
        for contexts, keep in stream.contexts(geometry, phrase)
    ]


def calibration_report(
    model: WakeWordModel, smoothing_hops: int, refractory_s: float
) -> dict[str, Any]:
    """The false-alarm curve at the given settings, as stored in the model's manifest."""
    curve = model.false_alarm_curve(smoothing_hops, refractory_s)
    useful = curve.per_hour <= 100
    return {
        "smoothing_hops": smoothing_hops,
        "refractory_s": refractory_s,
        "hop_s": model.hop_s,
        "hours": curve.hours,
        "thresholds": [round(float(t), 6) for t in curve.thresholds[useful]],
        "false_alarms_per_hour": [round(float(r), 4) for r in curve.per_hour[useful]],
        "max_threshold": MAX_THRESHOLD,
    }
