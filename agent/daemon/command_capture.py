"""Cutting the command that follows a wake word, from voice-activity decisions.

After a wake word the daemon feeds every 10 ms voice-activity flag (`dsp.vad.VoiceActivity`, run
on the whole stream so its noise floor is already known) to an `Endpointer`, which says when the
command has started and when it has ended:

- the command *starts* once ``MIN_COMMAND_SPEECH_S`` of speech frames lie after the wake word's
  end (the tail of the wake word itself, which can leak a frame or two past the detector's
  estimate of its end, does not start it);
- it *ends* at its last speech frame once ``trailing_silence_s`` of silence follow it, or when it
  has lasted ``max_s``;
- it is *cancelled* when no speech has started ``no_speech_timeout_s`` after the wake word.

Times are stream times in seconds (samples pushed / 16 kHz), the clock the detector uses too.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from agent.settings import CommandCaptureSettings
from dsp.constants import SAMPLE_RATE_HZ
from dsp.vad import FRAME_SAMPLES

FRAME_S = FRAME_SAMPLES / SAMPLE_RATE_HZ
"""Length of one voice-activity frame, in seconds."""

MIN_COMMAND_SPEECH_S = 0.15
"""Speech after the wake word's end that counts as the command having started, in seconds."""


class Outcome(Enum):
    """How a command capture finished."""

    ENDED = "ended"
    """Speech, then enough silence: the command is complete."""
    MAX_LENGTH = "max_length"
    """The command reached its maximum length."""
    NO_SPEECH = "no_speech"
    """Nobody spoke after the wake word: nothing is sent."""


@dataclass(frozen=True)
class Cut:
    """A finished capture: what happened and the span of the command, in stream seconds."""

    outcome: Outcome
    start_s: float
    """The wake word's end: the command's audio starts here."""
    end_s: float
    """The command's end (its last speech frame, or the maximum length)."""


class Endpointer:
    """Decides where the command after one wake word ends.

    Parameters
    ----------
    settings : CommandCaptureSettings
        Trailing silence, maximum length and the no-speech timeout.
    wake_end_s : float
        Stream time of the wake word's end.
    """

    def __init__(self, settings: CommandCaptureSettings, wake_end_s: float):
        self.settings = settings
        self.start_s = wake_end_s
        self.started = False
        """Whether the command's speech has started."""
        self._first_frame = int(np.ceil(wake_end_s / FRAME_S))
        self._speech_frames = 0
        self._last_speech: int | None = None  # frame index of the latest speech frame

    def push(self, first_frame: int, flags: np.ndarray) -> Cut | None:
        """Add voice-activity flags for frames ``first_frame``, ``first_frame + 1``, ...

        Returns
        -------
        Cut or None
            The finished capture, or None while it goes on.
        """
        for offset in np.flatnonzero(flags):
            frame = first_frame + int(offset)
            if frame < self._first_frame:
                continue
            self._speech_frames += 1
            self._last_speech = frame
            if self._speech_frames * FRAME_S >= MIN_COMMAND_SPEECH_S:
                self.started = True
        decided_s = (first_frame + flags.size) * FRAME_S
        return self._verdict(decided_s)

    def _verdict(self, decided_s: float) -> Cut | None:
        """The outcome once voice activity is known up to ``decided_s``, if there is one."""
        settings = self.settings
        if self.started and self._last_speech is not None:
            last_speech_end_s = (self._last_speech + 1) * FRAME_S
            if decided_s - last_speech_end_s >= settings.trailing_silence_s:
                return Cut(Outcome.ENDED, self.start_s, last_speech_end_s)
        if decided_s - self.start_s >= settings.max_s:
            if not self.started:
                return Cut(Outcome.NO_SPEECH, self.start_s, decided_s)
            return Cut(Outcome.MAX_LENGTH, self.start_s, self.start_s + settings.max_s)
        if not self.started and decided_s - self.start_s >= settings.no_speech_timeout_s:
            return Cut(Outcome.NO_SPEECH, self.start_s, decided_s)
        return None
