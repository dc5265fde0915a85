"""Scores to decisions: smoothing, detection events, false alarms per hour, miss rates, DET curves.

The streaming detector and the offline tools count detections the same way: per-hop scores are
averaged over ``smoothing`` hops, a detection fires when the average reaches the threshold, and
the same wake word cannot fire again for ``refractory`` hops. False alarms per hour are such
events on a stream with no wake word in it; a positive recording is missed when no event fires
during it. Only numpy: the agent calibrates thresholds at load time with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SECONDS_PER_HOUR = 3600.0
THRESHOLD_GRID = 1.0 / (1.0 + np.exp(-np.linspace(-8.0, 10.0, 721)))
"""Thresholds the curves are drawn at: even steps of 0.025 in logit, from 3e-4 to 0.99995."""
MAX_THRESHOLD = float(THRESHOLD_GRID[-1])
EXTRAPOLATION_EVENTS = (1, 30)
"""Event counts whose rates the tail fit of `threshold_for_rate` uses."""


def smooth(scores: np.ndarray, hops: int) -> np.ndarray:
    """Causal moving average over ``hops`` hops (the first hops average what exists so far)."""
    scores = np.asarray(scores, dtype=np.float64)
    if hops <= 1 or scores.size == 0:
        return scores
    total = np.cumsum(scores)
    out = total.copy()
    out[hops:] = total[hops:] - total[:-hops]
    counts = np.minimum(np.arange(1, scores.size + 1), hops)
    return out / counts


def event_hops(smoothed: np.ndarray, threshold: float, refractory_hops: int) -> np.ndarray:
    """Hops at which detections fire: at or above ``threshold``, outside the refractory period."""
    above = np.flatnonzero(smoothed >= threshold)
    events: list[int] = []
    i = 0
    while i < above.size:
        events.append(int(above[i]))
        i = int(np.searchsorted(above, above[i] + max(refractory_hops, 1)))
    return np.array(events, dtype=np.int64)


def count_events(
    episodes: Sequence[np.ndarray], threshold: float, refractory_hops: int, limit: int | None = None
) -> int:
    """Detections over independent smoothed score streams; stops counting past ``limit``."""
    total = 0
    for smoothed in episodes:
        total += event_hops(smoothed, threshold, refractory_hops).size
        if limit is not None and total > limit:
            break
    return total


@dataclass(frozen=True)
class FalseAlarmCurve:
    """False alarms per hour of a negative stream at each threshold of a grid."""

    thresholds: np.ndarray
    per_hour: np.ndarray
    hours: float

    @property
    def resolution_per_hour(self) -> float:
        """The smallest non-zero rate the stream can show: one event in its length."""
        return 1.0 / self.hours


def false_alarm_curve(
    scores: Sequence[np.ndarray],
    *,
    hours: float,
    smoothing_hops: int,
    refractory_hops: int,
    thresholds: np.ndarray = THRESHOLD_GRID,
    max_per_hour: float = 1000.0,
) -> FalseAlarmCurve:
    """False alarms per hour over raw per-hop score episodes of a negative stream.

    Counting stops past ``max_per_hour``: higher rates read as just above it, so the curve still
    falls as the threshold rises.
    """
    if hours <= 0:
        raise ValueError(f"hours: got {hours}, expected a positive length of negative audio")
    episodes = [smooth(s, smoothing_hops) for s in scores]
    limit = int(max_per_hour * hours) + 1
    counts = np.array(
        [count_events(episodes, float(t), refractory_hops, limit) for t in thresholds], np.float64
    )
    # count_events stops after the episode that passes the limit, so a count past it depends on
    # where the episodes end; capping keeps the curve monotone.
    counts = np.minimum(counts, limit)
    return FalseAlarmCurve(np.asarray(thresholds, np.float64), counts / hours, hours)


def _logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def threshold_for_rate(curve: FalseAlarmCurve, per_hour: float) -> tuple[float, bool]:
    """The lowest threshold whose false-alarm rate is at most ``per_hour``; and if extrapolated.

    A rate below the stream's resolution (one event in its length) cannot be read off the curve:
    the threshold is then taken where a straight line through log(rate) against logit(threshold),
    fitted on the curve's sparsest points (1 to 30 events), reaches ``per_hour``; never below the
    first threshold with no events, never above `MAX_THRESHOLD`.
    """
    ok = np.flatnonzero(curve.per_hour <= per_hour)
    if ok.size == 0:
        return MAX_THRESHOLD, False
    first = float(curve.thresholds[ok[0]])
    if per_hour >= curve.resolution_per_hour:
        return first, False
    events = curve.per_hour * curve.hours
    tail = (events >= EXTRAPOLATION_EVENTS[0]) & (events <= EXTRAPOLATION_EVENTS[1])
    if np.unique(events[tail]).size < 3:
        return first, True
    slope, intercept = np.polyfit(_logit(curve.thresholds[tail]), np.log(curve.per_hour[tail]), 1)
    if slope >= 0:
        return first, True
    x = (np.log(per_hour) - intercept) / slope
    return float(np.clip(1.0 / (1.0 + np.exp(-x)), first, MAX_THRESHOLD)), True


def rate_at_threshold(curve: FalseAlarmCurve, threshold: float) -> float:
    """False alarms per hour at ``threshold``.

    Read off the curve; where the stream had none, from the same log-linear tail
    `threshold_for_rate` extrapolates with (0 when there is no tail to fit).
    """
    index = int(np.clip(np.searchsorted(curve.thresholds, threshold, side="right") - 1, 0, None))
    measured = float(curve.per_hour[index])
    if measured > 0:
        return measured
    events = curve.per_hour * curve.hours
    tail = (events >= EXTRAPOLATION_EVENTS[0]) & (events <= EXTRAPOLATION_EVENTS[1])
    if np.unique(events[tail]).size < 3:
        return 0.0
    slope, intercept = np.polyfit(_logit(curve.thresholds[tail]), np.log(curve.per_hour[tail]), 1)
    if slope >= 0:
        return 0.0
    return float(min(curve.resolution_per_hour, np.exp(intercept + slope * _logit(threshold))))


@dataclass(frozen=True)
class DetCurve:
    """Detection error trade-off: miss rate against false alarms per hour, per threshold."""

    thresholds: np.ndarray
    per_hour: np.ndarray
    miss_rate: np.ndarray
    hours: float
    positives: int

    def miss_rate_at(self, per_hour: float) -> tuple[float, float]:
        """Miss rate at the lowest threshold with at most ``per_hour`` false alarms (and it).

        Below the negative stream's resolution this is the operating point with no false alarm
        at all on the stream: the honest figure such a stream supports.
        """
        ok = np.flatnonzero(self.per_hour <= per_hour)
        if ok.size == 0:
            return 1.0, MAX_THRESHOLD
        return float(self.miss_rate[ok[0]]), float(self.thresholds[ok[0]])

    def miss_rate_at_threshold(self, threshold: float) -> float:
        """Miss rate at the first threshold of the curve's grid at or above ``threshold``."""
        at = np.flatnonzero(self.thresholds >= threshold)
        return float(self.miss_rate[at[0]]) if at.size else 1.0

    def rows(self) -> list[tuple[float, float, float]]:
        """(threshold, false alarms per hour, miss rate) rows, for a CSV."""
        return [
            (float(t), float(f), float(m))
            for t, f, m in zip(self.thresholds, self.per_hour, self.miss_rate, strict=True)
        ]


def det_curve(
    positive_peaks: np.ndarray,
    negative_scores: Sequence[np.ndarray],
    *,
    hours: float,
    smoothing_hops: int,
    refractory_hops: int,
    thresholds: np.ndarray = THRESHOLD_GRID,
) -> DetCurve:
    """DET curve of positives (each its peak smoothed score) against a negative stream.

    Parameters
    ----------
    positive_peaks : np.ndarray
        Highest smoothed score reached during each positive recording.
    negative_scores : sequence of np.ndarray
        Raw per-hop scores of the negative stream, one array per independent episode.
    hours : float
        Length of the negative stream.
    """
    fa = false_alarm_curve(
        negative_scores,
        hours=hours,
        smoothing_hops=smoothing_hops,
        refractory_hops=refractory_hops,
        thresholds=thresholds,
    )
    peaks = np.asarray(positive_peaks, dtype=np.float64)
    miss = np.array([np.mean(peaks < t) if peaks.size else 1.0 for t in thresholds])
    return DetCurve(fa.thresholds, fa.per_hour, miss, hours, int(peaks.size))


# ---- showing thresholds --------------------------------------------------------------------------

THRESHOLD_DIGITS = 4
"""Decimals a score threshold is shown with, unless more are needed (see `threshold_text`)."""
MAX_THRESHOLD_DIGITS = 9
"""Most decimals `threshold_text` uses."""


def threshold_text(value: float) -> str:
    """A score threshold, with as many decimals as it takes not to read as 0 or 1.

    `THRESHOLD_DIGITS` decimals as a rule, up to `MAX_THRESHOLD_DIGITS` for a value in (0, 1)
    that would round to 0 or 1 with fewer: the highest calibrated threshold, 0.9999546, shows
    as ``0.99995``, not ``1.0000`` (a threshold of 1 would never fire); 0.5 shows as ``0.5000``.
    """
    digits = THRESHOLD_DIGITS
    text = f"{value:.{digits}f}"
    while 0 < value < 1 and float(text) in (0.0, 1.0) and digits < MAX_THRESHOLD_DIGITS:
        digits += 1
        text = f"{value:.{digits}f}"
    return text
