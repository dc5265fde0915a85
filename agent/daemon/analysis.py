"""The detect stage's work on one audio block: wake-word detections, voice activity and level.

The daemon's detect stage hands every block to `Analyser.analyse` on its one inference worker
thread, so the loop stays responsive, and the decide stage reads the `Analysis` it returns.
Voice activity runs over the whole stream, its frames numbered from the stream's start; the
detector is replaced on a reload and counts time from then, so its detections are moved onto the
stream's clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.capture.levels import level_dbfs
from dsp.vad import VoiceActivity
from models.wake.detector import Detection, Detector


@dataclass(frozen=True)
class Analysis:
    """What the detect stage found in one block."""

    start_s: float
    block: np.ndarray
    detections: list[Detection]
    vad_first_frame: int
    vad_flags: np.ndarray
    level_dbfs: float


class Analyser:
    """Voice activity over the stream and a detector over each block, on one worker thread."""

    def __init__(self) -> None:
        self._vad = VoiceActivity()

    def analyse(
        self, detector: Detector, origin_s: float, start_s: float, block: np.ndarray
    ) -> Analysis:
        """Detector and voice activity over one block that starts ``start_s`` into the stream.

        ``origin_s`` is the stream time at which ``detector`` started.
        """
        first_frame = self._vad.frames_decided
        flags = self._vad.push(block)
        detections = [shifted(d, origin_s) for d in detector.push(block)]
        return Analysis(start_s, block, detections, first_frame, flags, level_dbfs(block))


def shifted(detection: Detection, origin_s: float) -> Detection:
    """A detection's times moved from the detector's clock to the daemon's stream clock."""
    if origin_s == 0.0:
        return detection
    return Detection(
        detection.name, detection.score, detection.start_s + origin_s,
        detection.end_s + origin_s, detection.time_s + origin_s, detection.speaker_score,
    )  # fmt: skip
