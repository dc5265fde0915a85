"""Audio sources: microphone, file and raw PCM on standard input, behind one interface.

Every source yields mono float32 chunks at `dsp.constants.SAMPLE_RATE_HZ` from ``chunks()`` and is a
context manager. The microphone callback runs on PortAudio's thread and only copies audio into a
bounded queue (dropping the oldest block when the consumer falls behind), so capture never blocks.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import select
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol, Self

import numpy as np
import soxr

from agent.capture.devices import find_input_device
from dsp.audio import stream_audio, to_mono
from dsp.constants import SAMPLE_RATE_HZ
from kernels.errors import AudioError

_LOGGER = logging.getLogger(__name__)

DEFAULT_BLOCK_MS = 80
"""Default chunk length handed to the pipeline, in milliseconds (1280 samples)."""

PCM16_BYTES_PER_SAMPLE = 2
PCM16_FULL_SCALE = 32768.0
POLL_S = 0.1
"""How often a source waiting for input checks whether it has been closed, in seconds."""


class AudioSource(Protocol):
    """What the pipeline reads audio from."""

    name: str
    """Human-readable description, for logs."""

    def chunks(self) -> Iterator[np.ndarray]:
        """Yield mono float32 chunks [shape=(n,)] at 16 kHz until the source ends or is closed."""
        ...

    def close(self) -> None:
        """Stop producing audio and release the device or file."""
        ...


class _ContextSource:
    """Context-manager plumbing shared by the sources."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release resources; the base has none."""


def block_samples(block_ms: int) -> int:
    """Samples in a block of ``block_ms`` milliseconds at 16 kHz."""
    return SAMPLE_RATE_HZ * block_ms // 1000


class FileSource(_ContextSource):
    """Audio from a file, either paced in real time or as fast as it can be read.

    The file is decoded, mixed to mono and resampled block by block while it is read
    (`dsp.audio.stream_audio`), so memory stays flat whatever its length. It is opened and its
    first block decoded at once, so a missing, unreadable or empty file fails here; a problem
    further into the file (undecodable data, NaN samples) raises `AudioError` from `chunks`.

    Parameters
    ----------
    path : Path
        Any file `dsp.audio.load_audio` reads.
    realtime : bool
        Sleep so that chunks arrive at the pace of a live microphone.
    block_ms : int
        Chunk length, in milliseconds.
    """

    def __init__(
        self, path: str | Path, *, realtime: bool = False, block_ms: int = DEFAULT_BLOCK_MS
    ):
        self.path = Path(path)
        self.realtime = realtime
        self.block = block_samples(block_ms)
        self.name = f"file {self.path}"
        self._closed = False
        self._started = False
        self._lock = threading.Lock()
        self._decoded = stream_audio(self.path)
        self._first: np.ndarray | None = next(self._decoded)

    def chunks(self) -> Iterator[np.ndarray]:
        """Yield the file's audio in blocks of ``block_ms`` (the last may be shorter), once."""
        with self._lock:
            if self._closed:
                return
            self._started = True
        start_time = time.monotonic()
        sent = 0
        try:
            for chunk in self._fixed_size(self._decoded):
                if self._closed:
                    return
                if self.realtime:
                    due = start_time + sent / SAMPLE_RATE_HZ
                    time.sleep(max(0.0, due - time.monotonic()))
                yield chunk
                sent += chunk.size
        finally:
            self._decoded.close()

    def _fixed_size(self, decoded: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """Regroup decoded blocks of any length into blocks of ``self.block`` samples."""
        first, self._first = self._first, None
        held = np.zeros(0, np.float32)
        for piece in decoded if first is None else itertools.chain((first,), decoded):
            held = np.concatenate((held, piece))
            whole = held.size - held.size % self.block
            for start in range(0, whole, self.block):
                yield held[start : start + self.block]
            held = held[whole:]
        if held.size:
            yield held

    def close(self) -> None:
        """Stop at the next block (and release the file now if it was never read)."""
        with self._lock:
            self._closed = True
            unread = not self._started
        if unread:
            self._decoded.close()


class StdinSource(_ContextSource):
    """Raw signed 16-bit little-endian mono PCM at 16 kHz from a byte stream (stdin by default).

    A stream with a file descriptor is read through ``poll`` with a timeout, never by a read
    that blocks, so `close` stops `chunks` within `POLL_S` whatever the writer does (a pipe kept
    open and silent included). Other streams (in-memory buffers) are read with their ``read``.
    """

    def __init__(self, stream: IO[bytes] | None = None, *, block_ms: int = DEFAULT_BLOCK_MS):
        self.stream = stream if stream is not None else sys.stdin.buffer
        self.block_bytes = block_samples(block_ms) * PCM16_BYTES_PER_SAMPLE
        self.name = "raw 16-bit PCM on standard input"
        self._carry = b""
        self._closed = threading.Event()
        self._poller = _poll_for(self.stream)

    def chunks(self) -> Iterator[np.ndarray]:
        """Yield blocks until the stream ends or is closed; a dangling odd byte is dropped."""
        while True:
            data = self._read_block()
            if not data:
                return
            data = self._carry + data
            usable = len(data) - len(data) % PCM16_BYTES_PER_SAMPLE
            self._carry = data[usable:]
            if usable:
                yield (
                    np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / PCM16_FULL_SCALE
                )

    def close(self) -> None:
        """Stop reading within `POLL_S` (the stream itself is left open)."""
        self._closed.set()

    def _read_block(self) -> bytes:
        """``block_bytes`` (fewer at the end of the stream); b"" at its end or once closed."""
        if self._poller is None:
            return b"" if self._closed.is_set() else self.stream.read(self.block_bytes)
        parts: list[bytes] = []
        wanted = self.block_bytes
        while wanted and not self._closed.is_set():
            ready = self._poller.poll(POLL_S * 1000)
            if not ready:
                continue
            data = os.read(ready[0][0], wanted)
            if not data:
                break
            parts.append(data)
            wanted -= len(data)
        return b"" if self._closed.is_set() else b"".join(parts)


def _poll_for(stream: IO[bytes]) -> select.poll | None:
    """A poll object watching ``stream``'s file descriptor; None when it has none."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return None
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return poller


class MicrophoneSource(_ContextSource):
    """Live capture through sounddevice (PortAudio).

    Parameters
    ----------
    device : str, int or None
        Name substring, index, or None for the system default input.
    block_ms : int
        Capture block, in milliseconds.
    queue_blocks : int
        Blocks buffered between the capture thread and the consumer; the oldest is dropped when
        the consumer falls behind.
    capture_rate_hz : int, optional
        Capture at this rate and resample to 16 kHz; by default 16 kHz when the device offers it,
        else the device's default rate.
    on_block : callable, optional
        Push mode: called on PortAudio's thread with every block, already at 16 kHz, instead of
        queueing it for `chunks`; it must return at once (the daemon's capture stage puts the
        block on a queue that never waits, `agent.capture.stage.AudioQueue.offer`).
    """

    def __init__(
        self,
        device: str | int | None = None,
        *,
        block_ms: int = DEFAULT_BLOCK_MS,
        queue_blocks: int = 25,
        capture_rate_hz: int | None = None,
        on_block: Callable[[np.ndarray], None] | None = None,
    ):
        import sounddevice as sd

        self.device = find_input_device(device)
        self.name = f"microphone [{self.device.index}] {self.device.name}"
        self.capture_rate_hz, self.channels = self._choose_format(sd, capture_rate_hz)
        self.overflows = 0
        self.dropped_blocks = 0
        self._on_block = on_block
        self._queue: queue.Queue[np.ndarray] = queue.Queue(maxsize=queue_blocks)
        self._resampler = (
            None
            if self.capture_rate_hz == SAMPLE_RATE_HZ
            else soxr.ResampleStream(self.capture_rate_hz, SAMPLE_RATE_HZ, 1, dtype="float32")
        )
        try:
            self._stream = sd.InputStream(
                device=self.device.index,
                samplerate=self.capture_rate_hz,
                channels=self.channels,
                dtype="float32",
                blocksize=int(self.capture_rate_hz * block_ms / 1000),
                callback=self._on_audio,
            )
            self._stream.start()
        except sd.PortAudioError as err:
            raise AudioError(f"{self.name}: cannot start capture: {err}") from err
        _LOGGER.info(
            "capturing from %s at %d Hz, %d channel(s)%s",
            self.name,
            self.capture_rate_hz,
            self.channels,
            "" if self._resampler is None else f", resampled to {SAMPLE_RATE_HZ} Hz",
        )

    def _choose_format(self, sd: Any, wanted_rate_hz: int | None) -> tuple[int, int]:
        """Capture at 16 kHz mono if the device offers it, else at its native rate and channels."""
        native_hz = int(self.device.default_samplerate_hz)
        rates = [wanted_rate_hz] if wanted_rate_hz else [SAMPLE_RATE_HZ, native_hz]
        candidates = [(rate, 1) for rate in rates] + [(rates[-1], self.device.max_input_channels)]
        for rate, channels in candidates:
            try:
                sd.check_input_settings(
                    device=self.device.index, samplerate=rate, channels=channels, dtype="float32"
                )
                return rate, channels
            except sd.PortAudioError:
                continue
        raise AudioError(f"{self.name}: cannot capture float32 audio at {rates} Hz")

    def _on_audio(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio callback: copy, never block."""
        if status.input_overflow:
            self.overflows += 1
            _LOGGER.warning(
                "%s: input overflow (audio was lost), %d so far", self.name, self.overflows
            )
        block = to_mono(indata.copy()) if self.channels > 1 else indata[:, 0].copy()
        if self._on_block is not None:
            block = self._resample(block)
            if block.size:
                self._on_block(block)
            return
        while True:
            try:
                self._queue.put_nowait(block)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped_blocks += 1
                except queue.Empty:
                    pass

    def chunks(self, *, poll_s: float = 0.5) -> Iterator[np.ndarray]:
        """Yield captured blocks at 16 kHz until `close` is called."""
        while self._stream.active or not self._queue.empty():
            try:
                block = self._queue.get(timeout=poll_s)
            except queue.Empty:
                continue
            block = self._resample(block)
            if block.size:
                yield block

    def _resample(self, block: np.ndarray) -> np.ndarray:
        return block if self._resampler is None else self._resampler.resample_chunk(block)

    def close(self) -> None:
        """Stop and close the PortAudio stream (quietly when the device has already gone)."""
        import sounddevice as sd

        try:
            self._stream.stop()
            self._stream.close()
        except sd.PortAudioError as err:
            _LOGGER.debug("%s: closing: %s", self.name, err)
