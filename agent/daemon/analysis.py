"""The detect stage: each audio block's wake-word detections, voice activity and level.

The capture's `agent.capture.stage.AudioQueue` tells the `DetectStage` of every block it takes
in; the stage analyses the blocks one at a time, in order, on the daemon's one inference worker
(`Analyser.analyse`), and hands each `Analysis` to the event loop, where the decide stage reads
it with `DetectStage.get`. The loop never hands a block on: a block wakes the worker, and the
loop is woken for its analysis. While the decide stage has no command under way and no wake word
was heard, nothing in an analysis is urgent (the decide stage only keeps the recent audio, voice
activity and level), so analyses are handed on together, about `BATCH_S` of audio at a time: the
listening daemon's loop wakes a few times a second, not once per block. A detection, a command
under way, or the end of the input hands everything on at once.

The worker never waits for the decide stage (which may itself wait for the worker, to match a
local command): once `ANALYSES_AHEAD` analyses wait for it, no further block is taken until it
catches up, so the capture's queue fills and, as before, drops the oldest audio of a microphone
or holds back the reader of a recording.

Voice activity runs over the whole stream, its frames numbered from the stream's start; the
detector is replaced on a reload and counts time from then, so its detections are moved onto the
stream's clock.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.capture.levels import level_dbfs
from agent.capture.stage import AudioQueue
from dsp.constants import SAMPLE_RATE_HZ
from dsp.vad import VoiceActivity
from models.wake.detector import Detection, Detector

ANALYSES_AHEAD = 8
"""Analyses handed on, held or under way that the decide stage has not taken, at most."""
BATCH_S = 0.4
"""Audio whose analyses are handed on together while nothing is urgent, in seconds (no more
than ``ANALYSES_AHEAD - 1`` blocks)."""


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


class DetectStage:
    """Analyses the capture's blocks on the inference worker and hands the results to the loop.

    Parameters
    ----------
    audio : AudioQueue
        The capture's queue; the stage becomes its consumer.
    worker : Executor
        The daemon's one inference worker (a local command's match runs there too).
    detector : Detector
        The wake-word detector (`use` replaces it).
    max_audio_s : float, optional
        End the stream after this much audio, as if the input ended there.
    """

    def __init__(
        self,
        audio: AudioQueue,
        worker: Executor,
        detector: Detector,
        *,
        max_audio_s: float | None = None,
    ):
        self.audio = audio
        self.stream_s = 0.0
        """Seconds of audio taken from the queue so far: the stream's clock."""
        self._worker = worker
        self._max_audio_s = max_audio_s
        self._analyser = Analyser()
        self._detector = detector
        self._origin_s = 0.0  # stream time at which the detector started
        # Shared between threads, under the lock:
        self._lock = threading.Lock()
        self._next_detector: Detector | None = None  # from a reload, for the next block
        self._scheduled = False  # an analysis is queued on the worker or under way
        self._ahead = 0  # analyses queued, under way, held or handed on, and not taken yet
        self._ended = False  # the end was handed on, an analysis failed, or the task stopped
        self._busy = False  # the decide stage has a command under way
        self._processed = 0  # analyses the decide stage has taken and dealt with
        # The loop's own: analyses the decide stage has taken.
        self._taken = 0
        # The worker's own: analyses made, the number of the last one with a detection, and
        # those not handed on yet.
        self._produced = 0
        self._heard = -1
        self._held: list[Analysis | None] = []
        self._held_samples = 0
        self._results: asyncio.Queue[Analysis | None] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outcome: asyncio.Future[None] | None = None

    async def run(self) -> None:
        """The detect task: analyse blocks until the input ends; raise what an analysis raised."""
        self._loop = asyncio.get_running_loop()
        self._outcome = self._loop.create_future()
        self.audio.on_block = self._schedule
        self._schedule()
        try:
            await self._outcome
        finally:
            with self._lock:
                self._ended = True

    async def get(self, *, busy: bool) -> Analysis | None:
        """The next block's analysis, in stream order; None once the input has ended.

        ``busy`` says whether the caller, having dealt with the analyses it took before, has a
        command under way: analyses are then handed on one by one, as soon as they are ready.
        """
        with self._lock:
            self._busy, self._processed = busy, self._taken
        analysis = await self._results.get()
        self._taken += 1
        with self._lock:
            self._ahead -= 1
        self._schedule()
        return analysis

    def use(self, detector: Detector) -> None:
        """Detect with ``detector`` from the next block on; its clock starts at that block."""
        with self._lock:
            self._next_detector = detector

    def _schedule(self) -> None:
        """Queue the next block's analysis on the worker, if a block waits and it may (any thread).

        Nothing is queued while an analysis is queued or under way, after the end, or while
        the decide stage is `ANALYSES_AHEAD` analyses behind.
        """
        with self._lock:
            if self._scheduled or self._ended or not self.audio or self._ahead >= ANALYSES_AHEAD:
                return
            self._scheduled = True
            self._ahead += 1
        try:
            self._worker.submit(self._analyse_next)
        except RuntimeError:  # the worker has shut down: the daemon is stopping
            pass

    def _analyse_next(self) -> None:
        """On the worker: analyse the oldest block, hand the result to the loop, go on."""
        try:
            block = self.audio.take()
            if self._max_audio_s is not None and self.stream_s >= self._max_audio_s:
                block = None
            result = None if block is None else self._analyse(block)
        except Exception as err:  # raised in the detect task by ``_fail``
            with self._lock:
                self._scheduled, self._ended = False, True
            self._on_loop(self._fail, err)
            return
        if result is not None and result.detections:
            self._heard = self._produced
        self._produced += 1
        with self._lock:
            self._scheduled, self._ended = False, result is None
            # A detection the decide stage has not dealt with yet may open a command.
            urgent = self._busy or self._heard >= self._processed
        self._hold_or_hand_on(result, urgent)
        self._schedule()

    def _hold_or_hand_on(self, result: Analysis | None, urgent: bool) -> None:
        """Hand ``result`` and those held before it to the loop, or hold them while not urgent."""
        self._held.append(result)
        if result is not None:
            self._held_samples += result.block.size
            if (
                not urgent
                and self._held_samples < BATCH_S * SAMPLE_RATE_HZ
                and len(self._held) < ANALYSES_AHEAD - 1
            ):
                return
        held, self._held, self._held_samples = self._held, [], 0
        self._on_loop(self._deliver, held)

    def _analyse(self, block: np.ndarray) -> Analysis:
        if self._next_detector is not None:  # a reload: the detector and its clock change together
            with self._lock:
                detector, self._next_detector = self._next_detector, None
            if detector is not None:
                self._detector, self._origin_s = detector, self.stream_s
        start_s = self.stream_s
        self.stream_s = start_s + block.size / SAMPLE_RATE_HZ
        return self._analyser.analyse(self._detector, self._origin_s, start_s, block)

    def _on_loop(self, callback: Callable[[Any], None], argument: object) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(callback, argument)
        except RuntimeError:  # the loop has closed: the daemon has stopped
            pass

    def _deliver(self, analyses: list[Analysis | None]) -> None:  # on the loop
        for analysis in analyses:
            self._results.put_nowait(analysis)
        if analyses[-1] is None and self._outcome is not None and not self._outcome.done():
            self._outcome.set_result(None)

    def _fail(self, error: Exception) -> None:  # on the loop
        if self._outcome is not None and not self._outcome.done():
            self._outcome.set_exception(error)
