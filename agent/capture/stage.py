"""The daemon's capture stage: audio from a source to the detect stage, and a lost microphone back.

Blocks go into an `AudioQueue`, which the detect stage (`agent.daemon.analysis.DetectStage`)
empties on its inference worker: the event loop is not woken for a block, only for what the
detect stage finds in it. A live microphone offers each block from PortAudio's thread; when the
daemon falls behind, the queue drops its oldest block, so capture never waits. A file or standard
input is read on a daemon thread that waits for room in the queue instead (nothing of a recording
is dropped), and ends the stream with ``None``; a stop closes the queue, which ends that wait at
once, and never waits for the thread, so whatever the input does (a pipe kept open and silent),
the process exits.

When a microphone delivers nothing for `LOST_AFTER_S` (unplugged, sound server restarted), the
stage reports it lost, closes it, and reopens it with backoff (`RETRY_DELAYS_S`, then every
`RETRY_MAX_S`) until it returns; the daemon never exits for it. While blocks arrive, the watch
wakes once per `LOST_AFTER_S`, not once per block.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

import numpy as np

from agent.capture.sources import AudioSource
from kernels.errors import AudioError

_LOGGER = logging.getLogger(__name__)

LOST_AFTER_S = 2.0
"""A live source silent (no blocks at all) for this long is taken as lost."""
FIRST_BLOCK_WITHIN_S = 6.0
"""... and one that has not delivered its first block this long after opening (some sound
servers take about 2 s to start a stream)."""
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)
RETRY_MAX_S = 8.0
"""Reopening a lost microphone waits these delays, then this long between tries."""

Block = np.ndarray | None
"""A block of 16 kHz mono float32 audio, or None at the end of a recording."""


def _nobody() -> None:
    """The listener of a queue nobody consumes yet."""


class AudioQueue:
    """A bounded, thread-safe queue of audio blocks from the capture to the detect stage.

    A live source `offer`s blocks, dropping the oldest one when the queue is full; a recording's
    reader `put`s them, waiting for room. After each block goes in, ``on_block`` is called on
    the producer's thread (outside the queue's lock): that is how the consumer learns of it, and
    it must return at once. The consumer `take`s the blocks. `close` ends every wait and refuses
    any later block.

    Parameters
    ----------
    maxsize : int
        Blocks held at most.
    """

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self.dropped = 0
        """Blocks `offer` dropped because the queue was full."""
        self.on_block: Callable[[], None] = _nobody
        self._blocks: deque[Block] = deque()
        self._changed = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        return len(self._blocks)

    def offer(self, block: Block) -> None:
        """Add ``block`` now, dropping the oldest one when full; any thread, never waits."""
        with self._changed:
            if self._closed:
                return
            if len(self._blocks) >= self.maxsize:
                self._blocks.popleft()
                self.dropped += 1
            self._blocks.append(block)
        self.on_block()

    def put(self, block: Block) -> bool:
        """Add ``block``, waiting for room; False (and nothing added) once the queue is closed."""
        with self._changed:
            while len(self._blocks) >= self.maxsize and not self._closed:
                self._changed.wait()
            if self._closed:
                return False
            self._blocks.append(block)
        self.on_block()
        return True

    def take(self) -> Block:
        """The oldest block; raises IndexError when there is none."""
        with self._changed:
            block = self._blocks.popleft()
            self._changed.notify()
        return block

    def close(self) -> None:
        """Refuse blocks from now on and end a `put` that waits for room."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()


class LiveSource(Protocol):
    """A source that pushes blocks (see `agent.capture.sources.MicrophoneSource`'s ``on_block``)."""

    name: str

    def close(self) -> None:
        """Stop capture."""
        ...


OpenLive = Callable[[Callable[[np.ndarray], None]], LiveSource]
"""Opens a live source that calls the given function with every block."""
Report = Callable[..., object]
"""``report(kind, **fields)``: emits an event (device_lost, device_back)."""


class Capture:
    """Feeds an `AudioQueue` from a live source or a recording until stopped.

    Parameters
    ----------
    queue : AudioQueue
        Where blocks go.
    report : callable
        ``report(kind, **fields)`` for device_lost and device_back events.
    open_live : callable, optional
        Opens the microphone in push mode; give this or ``recording``.
    recording : AudioSource, optional
        A file or stream read to its end.
    """

    def __init__(
        self,
        queue: AudioQueue,
        report: Report,
        *,
        open_live: OpenLive | None = None,
        recording: AudioSource | None = None,
    ):
        if (open_live is None) == (recording is None):
            raise ValueError("give open_live or recording")
        self.queue = queue
        self.report = report
        self.open_live = open_live
        self.recording = recording
        self.name = recording.name if recording is not None else "microphone"
        self.lost = False
        self._last_block = time.monotonic()
        self._stop = threading.Event()

    async def run(self) -> None:
        """Capture until cancelled (or until a recording ends)."""
        if self.recording is not None:
            await self._read_recording(self.recording)
        else:
            await self._supervise_live()

    def stop(self) -> None:
        """Close the queue and stop a recording's reader thread (the task is cancelled apart)."""
        self._stop.set()
        self.queue.close()
        if self.recording is not None:
            self.recording.close()

    async def _read_recording(self, source: AudioSource) -> None:
        """Read ``source`` on a daemon thread into the queue; return when it ends, raise its error.

        The thread is a daemon thread, not the loop's executor (which the loop joins on exit), so a
        source stuck in a read can never hold the process after a stop: `stop` closes the queue,
        which ends the thread's wait for room, and closes the source.
        """
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()

        def settle(error: BaseException | None) -> None:  # on the loop
            if finished.done():
                return
            if error is None:
                finished.set_result(None)
            else:
                finished.set_exception(error)

        def read() -> None:
            error: BaseException | None = None
            try:
                for chunk in source.chunks():
                    if not self.queue.put(chunk):
                        return
                self.queue.put(None)
            except Exception as err:  # raised in the capture task by ``settle``
                error = err
            if self._stop.is_set():
                return
            try:
                loop.call_soon_threadsafe(settle, error)
            except RuntimeError:  # the loop has closed: nobody waits for the outcome
                pass

        threading.Thread(target=read, name="capture-reader", daemon=True).start()
        await finished

    async def _supervise_live(self) -> None:
        assert self.open_live is not None
        attempt = 0
        while True:
            try:
                source = self.open_live(self._arrived)
            except AudioError as err:
                self._lose(str(err))
                delay = RETRY_DELAYS_S[attempt] if attempt < len(RETRY_DELAYS_S) else RETRY_MAX_S
                attempt += 1
                _LOGGER.info("microphone unavailable; trying again in %.1f s", delay)
                await asyncio.sleep(delay)
                continue
            self.name = source.name
            self._last_block = time.monotonic() + FIRST_BLOCK_WITHIN_S - LOST_AFTER_S
            if self.lost:
                self.lost, attempt = False, 0
                _LOGGER.warning("%s is back", source.name)
                self.report("device_back", source=source.name)
            try:
                await self._watch()
            finally:
                await asyncio.to_thread(source.close)
            self._lose(f"{source.name}: no audio for {LOST_AFTER_S:g} s or more")

    def _arrived(self, block: np.ndarray) -> None:
        """A live block, on the source's thread (PortAudio's): straight into the queue."""
        self._last_block = time.monotonic()
        self.queue.offer(block)

    async def _watch(self) -> None:
        """Return once the source has been silent for `LOST_AFTER_S`.

        It sleeps until the moment the source would have been silent that long, so while blocks
        arrive it wakes once per `LOST_AFTER_S`.
        """
        while (silent_s := time.monotonic() - self._last_block) < LOST_AFTER_S:
            await asyncio.sleep(LOST_AFTER_S - silent_s)

    def _lose(self, why: str) -> None:
        if self.lost:
            return
        self.lost = True
        _LOGGER.warning("microphone lost: %s; retrying with backoff", why)
        self.report("device_lost", source=self.name, error=why)
