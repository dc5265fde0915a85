"""The daemon's capture stage: audio from a source onto the event loop, and a lost microphone back.

A live microphone pushes blocks from PortAudio's thread; each is handed to the loop with
``call_soon_threadsafe`` and put on a bounded queue that drops its oldest block when the daemon
falls behind, so capture never waits. A file or standard input is read on a daemon thread that
waits for room in the queue instead (nothing of a recording is dropped), and ends the stream with
``None``; a stop makes it give up, and never waits for it, so whatever the input does (a pipe
kept open and silent), the process exits.

When a microphone delivers nothing for `LOST_AFTER_S` (unplugged, sound server restarted), the
stage reports it lost, closes it, and reopens it with backoff (`RETRY_DELAYS_S`, then every
`RETRY_MAX_S`) until it returns; the daemon never exits for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
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
STOP_POLL_S = 0.1
"""How often a recording's reader, waiting for room in the queue, checks for a stop, in seconds."""

Block = np.ndarray | None
"""A block of 16 kHz mono float32 audio, or None at the end of a recording."""


class AudioQueue(asyncio.Queue[Block]):
    """A bounded queue of audio blocks that drops its oldest block rather than block a producer."""

    def __init__(self, maxsize: int):
        super().__init__(maxsize)
        self.dropped = 0

    def offer(self, block: Block) -> None:
        """Put ``block`` now, dropping the oldest one when full (call on the loop thread)."""
        while self.full():
            self.get_nowait()
            self.dropped += 1
        self.put_nowait(block)


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
        """Ask a recording's reader thread to stop (the task is cancelled separately)."""
        self._stop.set()
        if self.recording is not None:
            self.recording.close()

    async def _read_recording(self, source: AudioSource) -> None:
        """Read ``source`` on a daemon thread into the queue; return when it ends, raise its error.

        The thread is a daemon thread, not the loop's executor (which the loop joins on exit), so a
        source stuck in a read can never hold the process after a stop: `stop` makes the thread
        give up its current hand-over and close the source.
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
                    if not self._hand_over(chunk, loop):
                        return
                self._hand_over(None, loop)
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

    def _hand_over(self, block: Block, loop: asyncio.AbstractEventLoop) -> bool:
        """Queue ``block`` from the reader thread, waiting for room; False once stopped."""
        if self._stop.is_set():
            return False
        coroutine = self.queue.put(block)
        try:
            put = asyncio.run_coroutine_threadsafe(coroutine, loop)
        except RuntimeError:  # the loop has closed
            coroutine.close()
            return False
        while True:
            try:
                put.result(timeout=STOP_POLL_S)
                return True
            except concurrent.futures.TimeoutError:
                if self._stop.is_set():
                    put.cancel()
                    return False

    async def _supervise_live(self) -> None:
        assert self.open_live is not None
        loop = asyncio.get_running_loop()

        def on_block(block: np.ndarray) -> None:  # PortAudio's thread
            loop.call_soon_threadsafe(self._arrived, block)

        attempt = 0
        while True:
            try:
                source = self.open_live(on_block)
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
        self._last_block = time.monotonic()
        self.queue.offer(block)

    async def _watch(self) -> None:
        """Return once the source has been silent for `LOST_AFTER_S`."""
        while time.monotonic() - self._last_block < LOST_AFTER_S:
            await asyncio.sleep(LOST_AFTER_S / 4)

    def _lose(self, why: str) -> None:
        if self.lost:
            return
        self.lost = True
        _LOGGER.warning("microphone lost: %s; retrying with backoff", why)
        self.report("device_lost", source=self.name, error=why)
