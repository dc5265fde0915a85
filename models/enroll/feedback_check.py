"""Whether a new head is no worse than the current one on what the user's device kept.

A head that replaces the one in use (learned from feedback here, or, later, from a fleet) must
first pass the device's own check: at each head's threshold for the configured false-alarm rate,
it must hear at least as many of the user's kept phrases (enrollment takes and reported misses)
and fire on no more of the false alarms the user marked. `FeedbackScore` counts both for one
head; `FeedbackScore.no_worse_than` compares two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from dsp.constants import SAMPLE_RATE_HZ
from models.base.geometry import Embedder
from models.wake.detector import stream_scores
from models.wake.metrics import smooth
from models.wake.model import WakeHead

LEAD_S = 0.5
"""Quiet put before a trimmed take, so the detector's context starts as it would in a room."""
TAIL_S = 0.6
"""... and after it: the detector decides up to this long after the phrase ends."""


@dataclass(frozen=True)
class FeedbackScore:
    """One head on the kept clips, at one threshold."""

    heard: int
    """Kept phrases (takes, misses) whose peak smoothed score reaches the threshold."""
    phrases: int
    fired: int
    """Marked false alarms whose peak smoothed score reaches the threshold."""
    false_alarms: int

    def no_worse_than(self, other: FeedbackScore) -> bool:
        """At least as many phrases heard and no more false alarms fired as ``other``."""
        return self.heard >= other.heard and self.fired <= other.fired

    def as_dict(self) -> dict[str, int]:
        """The counts, for manifests and messages."""
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"hears {self.heard}/{self.phrases} kept phrases, fires on {self.fired}/"
            f"{self.false_alarms} marked false alarms"
        )


def peak(base: Embedder, head: WakeHead, audio: np.ndarray, smoothing_hops: int) -> float:
    """Highest smoothed score of ``head`` over ``audio`` (streamed from silence)."""
    scores = smooth(stream_scores(base, [head], audio)[:, 0], smoothing_hops)
    return float(scores.max()) if scores.size else 0.0


def padded(take: np.ndarray) -> np.ndarray:
    """A trimmed take with quiet before and after it."""
    lead = np.zeros(round(LEAD_S * SAMPLE_RATE_HZ), np.float32)
    tail = np.zeros(round(TAIL_S * SAMPLE_RATE_HZ), np.float32)
    return np.concatenate([lead, take.astype(np.float32), tail])


def feedback_score(
    base: Embedder,
    head: WakeHead,
    threshold: float,
    *,
    phrases: Sequence[np.ndarray],
    false_alarms: Sequence[np.ndarray],
    smoothing_hops: int,
) -> FeedbackScore:
    """Count the kept ``phrases`` heard and the marked ``false_alarms`` fired at ``threshold``.

    ``phrases`` are clips that hold the phrase (trimmed takes are padded with quiet first, clips
    of misses as they were kept); ``false_alarms`` the clips the user marked.
    """
    heard = sum(peak(base, head, p, smoothing_hops) >= threshold for p in phrases)
    fired = sum(peak(base, head, f, smoothing_hops) >= threshold for f in false_alarms)
    return FeedbackScore(int(heard), len(phrases), int(fired), len(false_alarms))
