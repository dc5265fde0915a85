"""The agent's main job: pull audio from a source through the streaming front end.

Wake-word detection plugs in after the features; until a detector is installed this loop shows the
audio front end at work: input level, feature frames and capture health.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from typing import TextIO

import numpy as np

from agent.sources import AudioSource
from dsp.constants import SAMPLE_RATE_HZ
from dsp.features import LogMelStream

_LOGGER = logging.getLogger(__name__)

SILENCE_DBFS = -120.0
METER_WIDTH = 30
METER_FLOOR_DBFS = -80.0


def level_dbfs(chunk: np.ndarray) -> float:
    """RMS level of a chunk in dB relative to full scale; `SILENCE_DBFS` for digital silence."""
    rms = float(np.sqrt(np.mean(np.square(chunk, dtype=np.float64)))) if chunk.size else 0.0
    return 20.0 * math.log10(rms) if rms > 0 else SILENCE_DBFS


@dataclass
class ListenStats:
    """What one run of `listen` saw."""

    seconds: float = 0.0
    frames: int = 0
    peak_dbfs: float = SILENCE_DBFS


def meter_bar(dbfs: float) -> str:
    """A fixed-width bar of ``#`` for a level in dBFS, empty at `METER_FLOOR_DBFS`, full at 0."""
    filled = round(METER_WIDTH * min(1.0, max(0.0, 1 - dbfs / METER_FLOOR_DBFS)))
    return "#" * filled + " " * (METER_WIDTH - filled)


def listen(
    source: AudioSource,
    *,
    max_seconds: float | None = None,
    status_interval_s: float = 5.0,
    out: TextIO | None = None,
) -> ListenStats:
    """Run audio from ``source`` through the streaming log-mel front end until it ends.

    Parameters
    ----------
    source : AudioSource
        Where audio comes from.
    max_seconds : float, optional
        Stop after this much audio, in seconds.
    status_interval_s : float
        Seconds of audio between status lines when ``out`` is not a terminal.
    out : TextIO, optional
        Where the live meter goes (stderr by default); a terminal gets one updating line.
    """
    out = out if out is not None else sys.stderr
    live = out.isatty()
    features = LogMelStream()
    stats = ListenStats()
    next_status_s = status_interval_s
    for chunk in source.chunks():
        frames = features.push(chunk)
        stats.frames += frames.shape[0]
        stats.seconds += chunk.size / SAMPLE_RATE_HZ
        dbfs = level_dbfs(chunk)
        stats.peak_dbfs = max(stats.peak_dbfs, dbfs)
        if live:
            out.write(f"\r{stats.seconds:8.1f} s  |{meter_bar(dbfs)}| {dbfs:6.1f} dBFS  ")
            out.flush()
        elif stats.seconds >= next_status_s:
            _LOGGER.info(
                "%.1f s of audio, level %.1f dBFS, %d feature frames",
                stats.seconds,
                dbfs,
                stats.frames,
            )
            next_status_s += status_interval_s
        if max_seconds is not None and stats.seconds >= max_seconds:
            break
    if live:
        out.write("\n")
    return stats
