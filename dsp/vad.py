"""Energy-based voice-activity detection, for whole signals and for audio that arrives in chunks.

Audio is high-passed to the speech band (`speech_band`: a linear-phase FIR with its cutoff near
150 Hz, so rumble, drift and DC do not count), cut into non-overlapping frames of
``HOP_SAMPLES`` (10 ms), and each frame's level is measured in dBFS (`band_levels_dbfs`). A
frame is *active* when its level is at least ``threshold_db`` above the noise floor and at least
``min_level_dbfs``. The noise floor is either given (measured on a recording of the room, see
`noise_floor_dbfs`) or tracked: the quietest 100 ms block of the last few seconds, so it follows
a room that gets louder within seconds and a room that gets quieter at once.

Active frames become *speech* through two smoothing rules:

- inactive gaps shorter than ``bridge_gap_s`` between active frames are speech (the closure of a
  "p" or "t", or the pause between two words of a phrase, does not split it);
- a run of bridged frames is speech only when it holds at least ``min_speech_s`` of active
  frames (a click or a door knock is not).

Deciding a frame therefore waits for up to ``max(bridge_gap_s, min_speech_s)`` of later audio.
`VoiceActivity` returns each frame's decision as soon as it is known; `speech_segments` and
`trim_to_speech` run the same machine over a whole signal, so both give identical decisions.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import Enum

import numpy as np

from dsp.constants import FRAMES_PER_SECOND, HOP_SAMPLES, SAMPLE_RATE_HZ, SILENCE_DBFS

FRAME_SAMPLES = HOP_SAMPLES
"""Samples in one VAD frame (10 ms at 16 kHz)."""


FLOOR_BLOCK_FRAMES = 10
"""Frames averaged into one block of the noise-floor tracker (100 ms)."""

ROOM_FLOOR_PERCENTILE = 20.0
"""Percentile of a room recording's 100 ms block levels taken as its noise floor."""

HIGH_PASS_CUTOFF_HZ = 150.0
"""Centre of the speech-band filter's transition (about 50 to 250 Hz wide), in Hz."""

HIGH_PASS_TAPS = 255
"""Length of the speech-band FIR filter, in samples (odd: linear phase, a delay of 127 samples)."""


def _high_pass_taps() -> np.ndarray:
    """Hann-windowed sinc high-pass (spectral inversion of the low-pass), float64."""
    n = np.arange(HIGH_PASS_TAPS) - (HIGH_PASS_TAPS - 1) / 2
    cutoff = HIGH_PASS_CUTOFF_HZ / SAMPLE_RATE_HZ
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(HIGH_PASS_TAPS) / (HIGH_PASS_TAPS - 1))
    low = 2 * cutoff * np.sinc(2 * cutoff * n) * window
    low /= low.sum()
    high = -low
    high[(HIGH_PASS_TAPS - 1) // 2] += 1.0
    return high


_TAPS = _high_pass_taps()

WARMUP_FRAMES = -(-(HIGH_PASS_TAPS - 1) // FRAME_SAMPLES)
"""Frames at a stream's start that the filter sees only partly (2); they never set the floor."""


@dataclass(frozen=True)
class VadSettings:
    """How frames are judged and smoothed.

    Parameters
    ----------
    threshold_db : float
        A frame is active when at least this many dB above the noise floor.
    min_level_dbfs : float
        ... and at least this loud, in dBFS, whatever the floor (digital silence has no speech).
    min_speech_s : float
        Active audio, in seconds, a run needs to count as speech.
    bridge_gap_s : float
        Inactive gaps shorter than this, in seconds, inside speech are speech.
    floor_window_s : float
        The tracked noise floor is the quietest 100 ms block of the last this many seconds.
    """

    threshold_db: float = 6.0
    min_level_dbfs: float = -70.0
    min_speech_s: float = 0.08
    bridge_gap_s: float = 0.25
    floor_window_s: float = 3.0

    @property
    def min_speech_frames(self) -> int:
        """``min_speech_s`` in frames (at least 1)."""
        return max(1, round(self.min_speech_s * FRAMES_PER_SECOND))

    @property
    def bridge_frames(self) -> int:
        """``bridge_gap_s`` in frames (at least 1)."""
        return max(1, round(self.bridge_gap_s * FRAMES_PER_SECOND))

    @property
    def floor_blocks(self) -> int:
        """``floor_window_s`` in 100 ms blocks (at least 1)."""
        return max(1, round(self.floor_window_s * FRAMES_PER_SECOND / FLOOR_BLOCK_FRAMES))


DEFAULT_VAD = VadSettings()


def _power_to_dbfs(power: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        levels = 10.0 * np.log10(power)
    return np.maximum(levels, SILENCE_DBFS)


def frame_levels_dbfs(samples: np.ndarray) -> np.ndarray:
    """RMS level of every complete 10 ms frame, in dBFS.

    Parameters
    ----------
    samples : np.ndarray
        Mono audio at 16 kHz, float in [-1, 1] [shape=(n,)].

    Returns
    -------
    np.ndarray
        float64 [shape=(n // FRAME_SAMPLES,)], each >= `SILENCE_DBFS`; a trailing partial frame
        is ignored. A full-scale sine is about -3 dBFS.
    """
    samples = np.asarray(samples, dtype=np.float64).ravel()
    n = samples.size // FRAME_SAMPLES
    frames = samples[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES)
    return _power_to_dbfs(np.mean(np.square(frames), axis=1))


class _SpeechBandFilter:
    """Streaming `speech_band`: the filter's history carries over between chunks."""

    def __init__(self) -> None:
        self._history = np.zeros(HIGH_PASS_TAPS - 1, dtype=np.float64)

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        padded = np.concatenate((self._history, np.asarray(chunk, dtype=np.float64).ravel()))
        self._history = padded[padded.size - (HIGH_PASS_TAPS - 1) :]
        return np.convolve(padded, _TAPS, mode="valid")


def speech_band(samples: np.ndarray) -> np.ndarray:
    """High-pass audio to the band that carries speech energy (see `HIGH_PASS_CUTOFF_HZ`).

    The filter is causal and starts from silence: output ``i`` depends on inputs ``<= i``, so
    feeding the audio in chunks through `VoiceActivity` gives the same samples.

    Parameters
    ----------
    samples : np.ndarray
        Mono audio at 16 kHz [shape=(n,)].

    Returns
    -------
    np.ndarray
        float64 [shape=(n,)], delayed by ``(HIGH_PASS_TAPS - 1) // 2`` samples (8 ms).
    """
    return _SpeechBandFilter()(samples)


def band_levels_dbfs(samples: np.ndarray) -> np.ndarray:
    """Speech-band level of every complete 10 ms frame, in dBFS: what the detector judges.

    ``frame_levels_dbfs(speech_band(samples))``; frame ``k`` covers input samples
    ``[k * FRAME_SAMPLES, (k + 1) * FRAME_SAMPLES)`` (the filter's 8 ms delay is not undone).
    """
    return frame_levels_dbfs(speech_band(samples))


def noise_floor_dbfs(room: np.ndarray) -> float:
    """Noise floor of a recording of the room, in dBFS, on the scale `VoiceActivity` uses.

    The `ROOM_FLOOR_PERCENTILE` percentile of the recording's speech-band (`band_levels_dbfs`)
    levels over 100 ms blocks, so a few seconds of speech or a knock in it barely move the
    estimate.

    Parameters
    ----------
    room : np.ndarray
        Mono audio at 16 kHz [shape=(n,)], at least 100 ms.
    """
    levels = band_levels_dbfs(room)
    blocks = levels.size // FLOOR_BLOCK_FRAMES
    if blocks == 0:
        raise ValueError(
            f"noise_floor_dbfs: got {room.size} samples, need at least "
            f"{FLOOR_BLOCK_FRAMES * FRAME_SAMPLES} (100 ms)"
        )
    power = 10.0 ** (levels[: blocks * FLOOR_BLOCK_FRAMES] / 10.0)
    block_levels = _power_to_dbfs(power.reshape(blocks, FLOOR_BLOCK_FRAMES).mean(axis=1))
    return float(np.percentile(block_levels, ROOM_FLOOR_PERCENTILE))


class _State(Enum):
    SILENCE = 0
    CANDIDATE = 1
    """Active frames seen, not yet enough of them to be speech."""
    SPEECH = 2


class _FloorTracker:
    """Quietest 100 ms block of the last ``blocks`` blocks, in dBFS.

    Until the first block is complete, the quietest single frame so far (infinite before any:
    nothing is speech until the floor is known).
    """

    def __init__(self, blocks: int) -> None:
        self._blocks: deque[float] = deque(maxlen=blocks)
        self._power_sum = 0.0
        self._frames = 0
        self._first_min = math.inf

    def update(self, level_dbfs: float, *, warm: bool) -> float:
        if not warm:
            return min(self._blocks) if self._blocks else self._first_min
        self._power_sum += 10.0 ** (level_dbfs / 10.0)
        self._frames += 1
        self._first_min = min(self._first_min, level_dbfs)
        if self._frames == FLOOR_BLOCK_FRAMES:
            mean = self._power_sum / FLOOR_BLOCK_FRAMES
            self._blocks.append(10.0 * math.log10(mean) if mean > 0 else SILENCE_DBFS)
            self._power_sum, self._frames = 0.0, 0
        return min(self._blocks) if self._blocks else self._first_min


class VoiceActivity:
    """Streaming voice-activity detector: feed chunks of any size, get per-frame speech flags.

    Frame ``k`` covers stream samples ``[k * FRAME_SAMPLES, (k + 1) * FRAME_SAMPLES)``. Decisions
    come out in frame order, each up to ``max(bridge_gap_s, min_speech_s)`` after its frame;
    concatenating every `push` result and a final `flush` gives the same flags whatever the
    chunk sizes.

    Parameters
    ----------
    noise_floor_dbfs : float, optional
        The room's noise level in dBFS (see `noise_floor_dbfs`); tracked from the audio when None.
    settings : VadSettings
        Thresholds and smoothing.

    Examples
    --------
    >>> vad = VoiceActivity()
    >>> flags = np.concatenate([vad.push(c) for c in chunks] + [vad.flush()])
    """

    def __init__(
        self, noise_floor_dbfs: float | None = None, *, settings: VadSettings = DEFAULT_VAD
    ) -> None:
        self.settings = settings
        self.fixed_floor_dbfs = noise_floor_dbfs
        self.noise_floor_dbfs = noise_floor_dbfs if noise_floor_dbfs is not None else SILENCE_DBFS
        """The floor the latest frame was judged against, in dBFS."""
        self.frames_seen = 0
        """Complete frames measured so far."""
        self.frames_decided = 0
        """Frames whose flag has been returned; frame ``frames_decided`` is the next one."""
        self._tracker = _FloorTracker(settings.floor_blocks)
        self._filter = _SpeechBandFilter()
        self._partial = np.zeros(0, dtype=np.float64)
        self._state = _State.SILENCE
        self._held = 0
        """Undecided frames: the candidate run (CANDIDATE) or the trailing gap (SPEECH)."""
        self._held_active = 0
        self._gap = 0

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add mono audio [shape=(n,)] and return the flags of the frames now decided.

        Returns
        -------
        np.ndarray
            bool [shape=(k,)], k >= 0: True where the frame is speech, for frames
            ``frames_decided`` (before the call) onwards.
        """
        samples = np.concatenate((self._partial, self._filter(chunk)))
        n = samples.size // FRAME_SAMPLES
        self._partial = samples[n * FRAME_SAMPLES :]
        levels = frame_levels_dbfs(samples[: n * FRAME_SAMPLES])
        out: list[bool] = []
        for level in levels:
            self._step(float(level), out)
            self.frames_seen += 1
        return self._emit(out)

    def flush(self) -> np.ndarray:
        """Decide the frames still held as if the stream ended here; the detector then goes on.

        A run without enough active audio is not speech, and a trailing gap is not speech. The
        samples of an incomplete frame stay buffered.
        """
        held = {_State.CANDIDATE: self._held, _State.SPEECH: self._gap}.get(self._state, 0)
        out = [False] * held
        self._state, self._held, self._held_active, self._gap = _State.SILENCE, 0, 0, 0
        return self._emit(out)

    def _emit(self, flags: list[bool]) -> np.ndarray:
        self.frames_decided += len(flags)
        return np.array(flags, dtype=bool)

    def _step(self, level: float, out: list[bool]) -> None:
        """Judge one frame and advance the smoothing machine, appending decided flags to ``out``."""
        if self.fixed_floor_dbfs is None:
            warm = self.frames_seen >= WARMUP_FRAMES
            self.noise_floor_dbfs = self._tracker.update(level, warm=warm)
        s = self.settings
        active = level >= max(self.noise_floor_dbfs + s.threshold_db, s.min_level_dbfs)
        if self._state == _State.SILENCE:
            if not active:
                out.append(False)
                return
            self._state, self._held, self._held_active, self._gap = _State.CANDIDATE, 0, 0, 0
        if self._state == _State.CANDIDATE:
            self._held += 1
            if active:
                self._held_active += 1
                self._gap = 0
                if self._held_active >= s.min_speech_frames:
                    out.extend([True] * self._held)
                    self._state, self._held = _State.SPEECH, 0
            else:
                self._gap += 1
                if self._gap >= s.bridge_frames:
                    out.extend([False] * self._held)
                    self._state, self._held = _State.SILENCE, 0
            return
        # SPEECH: only the trailing gap is undecided.
        if active:
            out.extend([True] * (self._gap + 1))
            self._gap = 0
        else:
            self._gap += 1
            if self._gap >= s.bridge_frames:
                out.extend([False] * self._gap)
                self._state, self._gap = _State.SILENCE, 0


def speech_flags(
    audio: np.ndarray,
    *,
    noise_floor_dbfs: float | None = None,
    settings: VadSettings = DEFAULT_VAD,
) -> np.ndarray:
    """Speech flag of every complete 10 ms frame of a whole signal (as `VoiceActivity` decides).

    Returns
    -------
    np.ndarray
        bool [shape=(len(audio) // FRAME_SAMPLES,)].
    """
    vad = VoiceActivity(noise_floor_dbfs, settings=settings)
    return np.concatenate((vad.push(audio), vad.flush()))


def flags_to_segments(flags: np.ndarray) -> list[tuple[float, float]]:
    """Runs of True frames as ``(start_s, end_s)`` pairs, in seconds from the first frame."""
    edges = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    frame_s = FRAME_SAMPLES / SAMPLE_RATE_HZ
    return [(float(a * frame_s), float(b * frame_s)) for a, b in zip(starts, ends, strict=True)]


def speech_segments(
    audio: np.ndarray,
    *,
    noise_floor_dbfs: float | None = None,
    settings: VadSettings = DEFAULT_VAD,
) -> list[tuple[float, float]]:
    """Stretches of speech in a whole signal.

    Parameters
    ----------
    audio : np.ndarray
        Mono audio at 16 kHz, float in [-1, 1] [shape=(n,)].
    noise_floor_dbfs : float, optional
        The room's noise level in dBFS; tracked from the audio when None.
    settings : VadSettings
        Thresholds and smoothing.

    Returns
    -------
    list of (float, float)
        ``(start_s, end_s)`` of each stretch, in seconds from the start, in order; multiples of
        10 ms.
    """
    return flags_to_segments(
        speech_flags(audio, noise_floor_dbfs=noise_floor_dbfs, settings=settings)
    )


def trim_to_speech(
    audio: np.ndarray,
    *,
    margin_s: float = 0.1,
    noise_floor_dbfs: float | None = None,
    settings: VadSettings = DEFAULT_VAD,
) -> np.ndarray:
    """The audio from the first speech to the last, with ``margin_s`` of context on each side.

    Returns
    -------
    np.ndarray
        A slice of ``audio`` [shape=(m,)]; empty when there is no speech.
    """
    segments = speech_segments(audio, noise_floor_dbfs=noise_floor_dbfs, settings=settings)
    if not segments:
        return audio[:0]
    start = max(0, round((segments[0][0] - margin_s) * SAMPLE_RATE_HZ))
    end = min(audio.size, round((segments[-1][1] + margin_s) * SAMPLE_RATE_HZ))
    return audio[start:end]
