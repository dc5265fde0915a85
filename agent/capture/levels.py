"""Input levels: the RMS level of audio in dBFS, and a text meter for terminals."""

from __future__ import annotations

import math

import numpy as np

from dsp.constants import SILENCE_DBFS

METER_WIDTH = 30
METER_FLOOR_DBFS = -80.0


def level_dbfs(chunk: np.ndarray) -> float:
    """RMS level of a chunk in dB relative to full scale; `SILENCE_DBFS` for digital silence."""
    rms = float(np.sqrt(np.mean(np.square(chunk, dtype=np.float64)))) if chunk.size else 0.0
    return 20.0 * math.log10(rms) if rms > 0 else SILENCE_DBFS


def meter_bar(dbfs: float) -> str:
    """A fixed-width bar of ``#`` for a level in dBFS, empty at `METER_FLOOR_DBFS`, full at 0."""
    filled = round(METER_WIDTH * min(1.0, max(0.0, 1 - dbfs / METER_FLOOR_DBFS)))
    return "#" * filled + " " * (METER_WIDTH - filled)
