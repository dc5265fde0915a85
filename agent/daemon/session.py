"""One wake word's command, from the detection to its end: the daemon's states in one small class.

The daemon is *listening* until a wake word fires. A `CommandSession` then holds the audio from
the wake word's end (less the pre-roll) onwards and is *woken* until the command's speech starts,
then *capturing* until the `agent.daemon.command_capture.Endpointer` says it ended. With no local
commands configured the upload opens as soon as speech starts and streams while the user still
speaks; with local commands it waits for the end, because a local command must send nothing.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from agent.daemon.command_capture import Cut, Endpointer
from agent.settings import CommandCaptureSettings
from dsp.constants import SAMPLE_RATE_HZ
from models.wake.detector import Detection


class State(enum.Enum):
    """What the daemon is doing."""

    LISTENING = "listening"
    WOKEN = "woken"
    CAPTURING = "capturing"
    FORWARDING = "forwarding"
    HANDLING = "handling"


@dataclass
class RecentAudio:
    """The last few seconds of the stream, so a command can start before its wake word fired.

    The detector decides up to a second after a phrase ends; the audio between the phrase's end
    and that moment (and the optional pre-roll before it) is taken from here.
    """

    seconds: float
    blocks: deque[tuple[float, np.ndarray]] = field(default_factory=deque)

    def add(self, start_s: float, block: np.ndarray) -> None:
        """Keep ``block`` (starting at stream time ``start_s``), forgetting older audio."""
        self.blocks.append((start_s, block))
        while self.blocks and start_s - self.blocks[0][0] > self.seconds:
            self.blocks.popleft()

    def since(self, start_s: float) -> list[tuple[float, np.ndarray]]:
        """Blocks (with their start times) that end after ``start_s``."""
        return [(t, b) for t, b in self.blocks if t + b.size / SAMPLE_RATE_HZ > start_s]


class CommandSession:
    """The command after one detection.

    Parameters
    ----------
    detection : Detection
        The wake word (times on the daemon's stream clock).
    settings : CommandCaptureSettings
        Endpointing and pre-roll.
    history : list of (float, ndarray)
        Recent blocks from `RecentAudio.since`, to start the command's audio.
    """

    def __init__(
        self,
        detection: Detection,
        settings: CommandCaptureSettings,
        history: list[tuple[float, np.ndarray]],
    ):
        self.detection = detection
        self.endpointer = Endpointer(settings, detection.end_s)
        self.audio_start_s = max(0.0, detection.end_s - settings.pre_roll_s)
        self.blocks: list[tuple[float, np.ndarray]] = []
        self.cut: Cut | None = None
        for start_s, block in history:
            self.add_audio(start_s, block)

    @property
    def state(self) -> State:
        """WOKEN until speech starts, then CAPTURING."""
        return State.CAPTURING if self.endpointer.started else State.WOKEN

    def add_audio(self, start_s: float, block: np.ndarray) -> None:
        """Keep the part of a block from the command's audio start on."""
        skip = int(round((self.audio_start_s - start_s) * SAMPLE_RATE_HZ))
        if skip >= block.size:
            return
        if skip > 0:
            block, start_s = block[skip:], start_s + skip / SAMPLE_RATE_HZ
        self.blocks.append((start_s, block))

    def push_flags(self, first_frame: int, flags: np.ndarray) -> Cut | None:
        """Feed voice-activity flags; the capture's `Cut` once it has finished."""
        if self.cut is None:
            self.cut = self.endpointer.push(first_frame, flags)
        return self.cut

    def utterance(self, end_s: float | None = None) -> np.ndarray:
        """The command's audio from its start up to ``end_s`` (everything held by default)."""
        audio = np.concatenate([b for _, b in self.blocks]) if self.blocks else np.zeros(0)
        if end_s is not None:
            audio = audio[: max(0, int(round((end_s - self.audio_start_s) * SAMPLE_RATE_HZ)))]
        return audio.astype(np.float32, copy=False)
