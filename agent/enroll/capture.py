"""Recording enrollment takes of a wake phrase: from the microphone, or from files.

One audio source stays open for the whole session and a background thread keeps reading it, so
no audio is lost while a take is being checked or a prompt printed. The session first records
the quiet room (its noise floor tunes the voice-activity detection and the take checks; the
audio is returned for augmentation), then asks for each take, captures it from speech onset to
a stretch of silence, and checks it (`models.enroll.takes`).
"""

from __future__ import annotations

import math
import queue
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO

import numpy as np

from agent.capture.levels import level_dbfs, meter_bar
from dsp.audio import load_audio
from dsp.constants import SAMPLE_RATE_HZ
from dsp.vad import FRAME_SAMPLES, VoiceActivity, noise_floor_dbfs, speech_segments
from kernels.errors import AudioError, ConfigError
from models.enroll.takes import TakeChecker, TakeSet, TakeVerdict

MIN_SAMPLES = 3
"""Fewest takes an enrollment may have."""
PRE_ROLL_S = 0.2
"""Audio kept from before the detected speech onset, in seconds."""
TRAILING_SILENCE_S = 0.6
"""Silence after speech that ends a take, in seconds."""
EXTRA_TAKE_S = 1.0
"""A take is cut this long past the longest allowed speech (the checker then refuses it)."""
ROOM_MAX_SPEECH_S = 0.5
"""Speech in the room recording above which it is recorded again, in seconds."""
NO_AUDIO_TIMEOUT_S = 5.0
"""Wall-clock seconds without any audio from the source before giving up."""


class ChunkSource(Protocol):
    """What a session reads: `agent.capture.sources.MicrophoneSource` or any audio source."""

    def chunks(self) -> Iterator[np.ndarray]:
        """Yield mono float32 chunks at 16 kHz."""
        ...

    def close(self) -> None:
        """Stop producing audio."""
        ...


@dataclass
class EnrollmentAudio:
    """What an enrollment produced."""

    takes: list[np.ndarray]
    """Accepted takes, trimmed to their speech with a small margin (16 kHz float32)."""
    room: np.ndarray
    """The room's background noise (empty for takes from files)."""
    rejected: list[str] = field(default_factory=list)
    """Why each refused take was refused, in order."""


class _Pump:
    """Reads a source on a daemon thread into an unbounded queue, so capture never waits."""

    def __init__(self, source: ChunkSource) -> None:
        self._queue: queue.Queue[np.ndarray | BaseException | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(source,), name="enroll-capture", daemon=True
        )
        self._thread.start()

    def _run(self, source: ChunkSource) -> None:
        try:
            for chunk in source.chunks():
                if self._stop.is_set():
                    return
                self._queue.put(np.asarray(chunk, dtype=np.float32))
        except BaseException as err:  # handed to the reading thread, which raises it
            self._queue.put(err)
            return
        self._queue.put(None)

    def next(self) -> np.ndarray:
        """The next chunk; AudioError when the source ends, fails or goes quiet for too long."""
        try:
            item = self._queue.get(timeout=NO_AUDIO_TIMEOUT_S)
        except queue.Empty:
            raise AudioError(
                f"no audio from the input for {NO_AUDIO_TIMEOUT_S:g} s; is the microphone working?"
            ) from None
        if item is None:
            raise AudioError("the audio input ended during enrollment")
        if isinstance(item, BaseException):
            raise item
        return item

    def drain(self) -> None:
        """Drop the audio read so far (what was said before a prompt)."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is None or isinstance(item, BaseException):
                self._queue.put(item)
                return

    def stop(self) -> None:
        """Ask the thread to stop at its next chunk."""
        self._stop.set()
        self._thread.join(timeout=1.0)


class _Session:
    """Prompts and a live level meter on ``out``, over audio from a `_Pump`."""

    def __init__(self, pump: _Pump, out: TextIO) -> None:
        self.pump = pump
        self.out = out
        self.live = out.isatty()
        self._meter_shown = False

    def say(self, text: str) -> None:
        """Print a line (over the meter, on a terminal)."""
        if self._meter_shown:
            self.out.write("\r" + " " * 60 + "\r")
            self._meter_shown = False
        self.out.write(text + "\n")
        self.out.flush()

    def chunk(self) -> np.ndarray:
        """The next chunk, shown on the meter."""
        chunk = self.pump.next()
        if self.live:
            dbfs = level_dbfs(chunk)
            self.out.write(f"\r  |{meter_bar(dbfs)}| {dbfs:6.1f} dBFS ")
            self.out.flush()
            self._meter_shown = True
        return chunk

    def record(self, seconds: float) -> np.ndarray:
        """The next ``seconds`` of audio."""
        wanted = round(seconds * SAMPLE_RATE_HZ)
        chunks, have = [], 0
        while have < wanted:
            chunks.append(self.chunk())
            have += chunks[-1].size
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return audio[:wanted]

    def countdown(self, seconds: float) -> None:
        """Count down, discarding the audio meanwhile (and whatever came before)."""
        if seconds <= 0:
            return
        self.pump.drain()
        left = seconds
        while left > 0:
            self.say(f"  {math.ceil(left)}...")
            step = left - math.ceil(left) + 1
            self.record(step)
            left -= step
        self.say("  now!")

    def capture(self, vad: VoiceActivity, *, timeout_s: float, max_s: float) -> np.ndarray | None:
        """Audio from just before speech starts until it is followed by silence, or None.

        None when no speech starts within ``timeout_s`` of audio; a take longer than ``max_s``
        is cut there.
        """
        pre_roll = round(PRE_ROLL_S * SAMPLE_RATE_HZ)
        needed_silence = round(TRAILING_SILENCE_S * SAMPLE_RATE_HZ / FRAME_SAMPLES)
        audio: list[np.ndarray] = []
        have = 0
        onset: int | None = None  # frame index
        silent = 0
        while True:
            chunk = self.chunk()
            audio.append(chunk)
            have += chunk.size
            first = vad.frames_decided
            flags = vad.push(chunk)
            speech = np.flatnonzero(flags)
            if onset is None and speech.size:
                onset = first + int(speech[0])
            if onset is not None:
                silent = flags.size - 1 - int(speech[-1]) if speech.size else silent + flags.size
                start = max(0, onset * FRAME_SAMPLES - pre_roll)
                if silent >= needed_silence or have - start >= max_s * SAMPLE_RATE_HZ:
                    return np.concatenate(audio)[start:]
            elif have >= timeout_s * SAMPLE_RATE_HZ:
                return None


def _kind(reason: str) -> str:
    """The kind of a refusal: its words before the first ':' or '('."""
    return reason.split(":")[0].split("(")[0].strip()


def _give_up(attempts: int, accepted: int, samples: int, reasons: list[str]) -> AudioError:
    kind, times = Counter(_kind(r) for r in reasons).most_common(1)[0]
    return AudioError(
        f"enrollment: gave up after {attempts} attempts with {accepted} of {samples} takes "
        f"accepted; most often the take was {kind} ({times} times); last: {reasons[-1]}"
    )


def _record_room(session: _Session, seconds: float) -> tuple[np.ndarray, float]:
    """The room's audio and noise floor; recorded again once if it holds speech."""
    session.say(f"Recording the room for {seconds:g} s: please stay quiet.")
    for attempt in range(2):
        room = session.record(seconds)
        floor = noise_floor_dbfs(room)
        heard = sum(b - a for a, b in speech_segments(room, noise_floor_dbfs=floor))
        if heard <= ROOM_MAX_SPEECH_S:
            return room, floor
        if attempt == 0:
            session.say(
                f"  heard {heard:.1f} s of something like speech (allowed {ROOM_MAX_SPEECH_S:g} "
                "s); once more, please stay quiet."
            )
    session.say("  the room is still not quiet; going on with this recording of it.")
    return room, floor


def _report(session: _Session, verdict: TakeVerdict) -> None:
    if verdict.ok:
        session.say(f"  ok ({verdict.summary()})")
    else:
        session.say(f"  refused: {verdict.reason}. Please try again.")
    if verdict.note:
        session.say(f"  note: {verdict.note}")


def record_enrollment(
    phrase: str,
    checker: TakeChecker,
    *,
    samples: int = 5,
    device: str | int | None = None,
    room_seconds: float = 10.0,
    countdown_s: float = 3.0,
    take_timeout_s: float = 6.0,
    max_attempts: int | None = None,
    out: TextIO = sys.stderr,
    source: ChunkSource | None = None,
) -> EnrollmentAudio:
    """Record the room, then ``samples`` good takes of ``phrase``, from one microphone session.

    Parameters
    ----------
    phrase : str
        The wake phrase, as the prompts show it.
    checker : TakeChecker
        Judges takes; the room's noise floor is set on a copy of it.
    samples : int
        Takes to accept, at least `MIN_SAMPLES`.
    device : str, int or None
        Input device (see `agent.capture.sources.find_input_device`), when ``source`` is None.
    room_seconds : float
        Length of the room recording, in seconds.
    countdown_s : float
        Countdown before each take, in seconds (its audio is discarded); 0 for none.
    take_timeout_s : float
        Seconds to wait for speech to start in a take.
    max_attempts : int, optional
        Takes to try before giving up; ``3 * samples`` by default.
    out : TextIO
        Where prompts go; a terminal also gets a live input-level meter.
    source : ChunkSource, optional
        Audio to read instead of opening ``device``; the caller closes it.

    Raises
    ------
    ConfigError
        ``samples`` is below `MIN_SAMPLES`.
    AudioError
        ``max_attempts`` takes did not give ``samples`` good ones (the message says what went
        wrong most often), or the audio input failed.
    """
    if samples < MIN_SAMPLES:
        raise ConfigError(f"samples: got {samples}, expected at least {MIN_SAMPLES}")
    max_attempts = max_attempts if max_attempts is not None else 3 * samples
    if source is None:
        from agent.capture.sources import MicrophoneSource

        with MicrophoneSource(device) as microphone:
            return _enroll(phrase, checker, microphone, samples, room_seconds, countdown_s,
                           take_timeout_s, max_attempts, out)  # fmt: skip
    return _enroll(phrase, checker, source, samples, room_seconds, countdown_s,
                   take_timeout_s, max_attempts, out)  # fmt: skip


def _enroll(
    phrase: str, checker: TakeChecker, source: ChunkSource, samples: int, room_seconds: float,
    countdown_s: float, take_timeout_s: float, max_attempts: int, out: TextIO,
) -> EnrollmentAudio:  # fmt: skip
    pump = _Pump(source)
    try:
        session = _Session(pump, out)
        room, floor = _record_room(session, room_seconds)
        takes = TakeSet(checker.with_noise_floor(floor))
        max_s = checker.allowed_s[1] + PRE_ROLL_S + EXTRA_TAKE_S
        rejected: list[str] = []
        attempt = 0
        while len(takes) < samples:
            if attempt >= max_attempts:
                raise _give_up(attempt, len(takes), samples, rejected)
            attempt += 1
            session.say(f'Take {len(takes) + 1} of {samples}: say "{phrase}"')
            session.countdown(countdown_s)
            vad = VoiceActivity(floor, settings=checker.vad)
            audio = session.capture(vad, timeout_s=take_timeout_s, max_s=max_s)
            if audio is None:
                reason = f"no speech heard in {take_timeout_s:g} s"
                session.say(f"  {reason}. Please try again.")
                rejected.append(reason)
                continue
            verdict = takes.offer(audio)
            _report(session, verdict)
            if not verdict.ok and verdict.reason is not None:
                rejected.append(verdict.reason)
        return EnrollmentAudio(takes.takes, room, rejected)
    finally:
        pump.stop()


def read_take_files(files: Sequence[str | Path]) -> list[np.ndarray]:
    """Every recording's audio (16 kHz mono float32), each file read once.

    Raises
    ------
    AudioError
        A file is missing, empty or not audio; the one-line message names every such file and
        why, before anything else is done with the takes.
    """
    recordings, unreadable = [], []
    for path in files:
        try:
            recordings.append(load_audio(Path(path)))
        except AudioError as err:
            unreadable.append(str(err))
    if unreadable:
        raise AudioError(
            f"enrollment: {len(unreadable)} of {len(files)} recordings cannot be read: "
            + "; ".join(unreadable)
        )
    return recordings


def check_take_files(
    files: Sequence[str | Path], recordings: Sequence[np.ndarray], checker: TakeChecker
) -> EnrollmentAudio:
    """Takes from recordings already read (`read_take_files`), checked as microphone takes are.

    Raises
    ------
    AudioError
        Fewer than `MIN_SAMPLES` takes pass; the message names each refused file and why.
    """
    takes = TakeSet(checker)
    rejected = []
    for path, audio in zip(files, recordings, strict=True):
        verdict = takes.offer(audio)
        if not verdict.ok:
            rejected.append(f"{path}: {verdict.reason}")
        if verdict.note:
            rejected.append(f"{path}: {verdict.note}")
    if len(takes) < MIN_SAMPLES:
        reasons = "".join(f"; {r}" for r in rejected)
        raise AudioError(
            f"enrollment: {len(takes)} of {len(files)} recordings are usable, need at least "
            f"{MIN_SAMPLES}{reasons}"
        )
    return EnrollmentAudio(takes.takes, np.zeros(0, np.float32), rejected)


def enrollment_from_files(files: Sequence[str | Path], checker: TakeChecker) -> EnrollmentAudio:
    """Takes from recordings, checked as microphone takes are (the room is unknown).

    Raises
    ------
    AudioError
        A file cannot be read, or fewer than `MIN_SAMPLES` takes pass; the message names each
        unreadable or refused file and why.
    """
    return check_take_files(files, read_take_files(files), checker)
