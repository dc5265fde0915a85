"""The audio the running agent can keep when its user marks a false alarm or reports a miss.

`FeedbackMemory` sits on the daemon's recent audio (`agent.daemon.session.RecentAudio`, which
holds enough for either) and remembers the blocks around the last detection when learning is on.
`FeedbackMemory.clip` cuts what a ``feedback`` request keeps (`agent.learning.feedback`): for a
false alarm, from `FALSE_ALARM_S` before the detection's decision to after it; for a miss, the
last ``learning.missed_s`` seconds the loop has seen. Nothing here writes anything.
"""

from __future__ import annotations

import json

import numpy as np

from agent.daemon.session import RecentAudio
from agent.learning.feedback import KINDS, Kind
from agent.settings import Settings
from dsp.constants import SAMPLE_RATE_HZ
from kernels.errors import EarshotError
from models.wake.detector import Detection

FALSE_ALARM_S = (3.0, 0.5)
"""Audio kept when the user marks a false alarm: seconds before the detection's decision (the
phrase and the context the detector read) and after it."""


class FeedbackError(EarshotError):
    """A feedback request that cannot be honoured; the control socket answers its message."""


class FeedbackMemory:
    """The recent audio and the last detection's, for ``feedback`` requests."""

    def __init__(self, recent: RecentAudio) -> None:
        self.recent = recent
        self.last_wake: tuple[Detection, list[tuple[float, np.ndarray]]] | None = None

    def on_wake(self, detection: Detection) -> None:
        """Remember the audio that led to ``detection`` (call only with learning on)."""
        self.last_wake = (detection, self.recent.since(detection.time_s - FALSE_ALARM_S[0]))

    def clip(
        self, kind: object, wake_word: object, settings: Settings
    ) -> tuple[Kind, str, np.ndarray, dict[str, object]]:
        """(kind, wake word, audio, details) of what a request keeps.

        Raises
        ------
        FeedbackError
            An unknown kind, learning off, nothing heard or detected yet, or an ambiguous or
            unknown wake word; the message says which.
        """
        if kind not in KINDS:
            raise FeedbackError(f"kind: got {json.dumps(kind)}, expected one of {list(KINDS)}")
        if not settings.learning.enabled:
            raise FeedbackError(
                "learning is off (learning.enabled: false in the config): nothing was kept"
            )
        if kind == "false-alarm":
            return self._false_alarm()
        if wake_word is None:
            names = [w.name for w in settings.wake_words]
            if len(names) != 1:
                raise FeedbackError(f"wake_word: which one was missed? configured: {names}")
            wake_word = names[0]
        settings.wake_word(str(wake_word))  # refuses an unknown name, listing the configured ones
        if not self.recent.blocks:
            raise FeedbackError("no audio has been heard yet: there is no miss to keep")
        last_s, last = self.recent.blocks[-1]
        end_s = last_s + last.size / SAMPLE_RATE_HZ  # the newest audio the loop has seen
        start_s = end_s - settings.learning.missed_s
        audio = cut(self.recent.since(start_s), start_s, end_s)
        return "missed", str(wake_word), audio, {"stream_s": round(end_s, 3)}

    def _false_alarm(self) -> tuple[Kind, str, np.ndarray, dict[str, object]]:
        if self.last_wake is None:
            raise FeedbackError("no wake word has fired yet: there is no false alarm to keep")
        detection, blocks = self.last_wake
        if blocks:  # and the audio heard since, for the time after the decision
            blocks = blocks + [(t, b) for t, b in self.recent.blocks if t > blocks[-1][0]]
        start_s = detection.time_s - FALSE_ALARM_S[0]
        audio = cut(blocks, start_s, detection.time_s + FALSE_ALARM_S[1])
        self.last_wake = None  # one mark per false alarm
        details: dict[str, object] = {
            "score": round(detection.score, 4), "stream_s": round(detection.time_s, 3),
        }  # fmt: skip
        return "false-alarm", detection.name, audio, details


def cut(blocks: list[tuple[float, np.ndarray]], start_s: float, end_s: float) -> np.ndarray:
    """The audio of ``blocks`` (start time, samples) from stream time ``start_s`` to ``end_s``."""
    if not blocks:
        return np.zeros(0, np.float32)
    first_s = blocks[0][0]
    audio = np.concatenate([b for _, b in blocks])
    lo = max(0, round((start_s - first_s) * SAMPLE_RATE_HZ))
    hi = max(lo, round((end_s - first_s) * SAMPLE_RATE_HZ))
    return audio[lo:hi]
