"""Audio sources: microphone, file and raw PCM on standard input, behind one interface.

Every source yields mono float32 chunks at `dsp.constants.SAMPLE_RATE_HZ` from ``chunks()`` and is a
context manager. The microphone callback runs on PortAudio's thread and only copies audio into a
bounded queue (dropping the oldest block when the consumer falls behind), so capture never blocks.
"""

from __future__ import annotations

import logging
import queue
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, Self

import numpy as np
import soxr

from dsp.audio import load_audio, to_mono
from dsp.constants import SAMPLE_RATE_HZ
from kernels.errors import AudioError

_LOGGER = logging.getLogger(__name__)

DEFAULT_BLOCK_MS = 80
"""Default chunk length handed to the pipeline, in milliseconds (1280 samples)."""

PCM16_BYTES_PER_SAMPLE = 2
PCM16_FULL_SCALE = 32768.0


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
        self.samples = load_audio(self.path)
        self.realtime = realtime
        self.block = block_samples(block_ms)
        self.name = f"file {self.path}"
        self._closed = False

    def chunks(self) -> Iterator[np.ndarray]:
        """Yield the file's audio in blocks; the last block may be shorter."""
        start_time = time.monotonic()
        for start in range(0, self.samples.size, self.block):
            if self._closed:
                return
            if self.realtime:
                due = start_time + start / SAMPLE_RATE_HZ
                time.sleep(max(0.0, due - time.monotonic()))
            yield self.samples[start : start + self.block]

    def close(self) -> None:
        """Stop at the next block."""
        self._closed = True


class StdinSource(_ContextSource):
    """Raw signed 16-bit little-endian mono PCM at 16 kHz from a byte stream (stdin by default)."""

    def __init__(self, stream: IO[bytes] | None = None, *, block_ms: int = DEFAULT_BLOCK_MS):
        self.stream = stream if stream is not None else sys.stdin.buffer
        self.block_bytes = block_samples(block_ms) * PCM16_BYTES_PER_SAMPLE
        self.name = "raw 16-bit PCM on standard input"
        self._carry = b""

    def chunks(self) -> Iterator[np.ndarray]:
        """Yield blocks until end of stream; a dangling odd byte at the end is dropped."""
        while True:
            data = self.stream.read(self.block_bytes)
            if not data:
                return
            data = self._carry + data
            usable = len(data) - len(data) % PCM16_BYTES_PER_SAMPLE
            self._carry = data[usable:]
            if usable:
                yield (
                    np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / PCM16_FULL_SCALE
                )


class NoInputDeviceError(AudioError):
    """The machine has no audio input device at all (no microphone, no sound server)."""


@dataclass(frozen=True)
class InputDevice:
    """An audio input device as PortAudio reports it."""

    index: int
    name: str
    host_api: str
    max_input_channels: int
    default_samplerate_hz: float
    is_default: bool


def list_input_devices() -> list[InputDevice]:
    """Every device with at least one input channel, in PortAudio's order."""
    import sounddevice as sd

    try:
        default_input = sd.default.device[0]
        devices = sd.query_devices()
        host_apis = sd.query_hostapis()
    except sd.PortAudioError as err:
        raise AudioError(f"cannot query audio devices: {err}") from err
    return [
        InputDevice(
            index=i,
            name=d["name"],
            host_api=host_apis[d["hostapi"]]["name"],
            max_input_channels=d["max_input_channels"],
            default_samplerate_hz=float(d["default_samplerate"]),
            is_default=(i == default_input),
        )
        for i, d in enumerate(devices)
        if d["max_input_channels"] > 0
    ]


def rescan_devices() -> None:
    """Make PortAudio enumerate devices again (after a hot-plug or a sound-server restart)."""
    import sounddevice as sd

    sd._terminate()
    sd._initialize()


def _describe(devices: list[InputDevice]) -> str:
    if not devices:
        return "no input devices are available"
    return "available input devices: " + "; ".join(f"[{d.index}] {d.name}" for d in devices)


def find_input_device(spec: str | int | None) -> InputDevice:
    """Resolve a device by index, by name (exact, then case-insensitive substring), or the default.

    Raises
    ------
    AudioError
        No such device, an ambiguous name, or no input devices at all; the message lists the
        available devices.
    """
    devices = list_input_devices()
    if not devices:
        raise NoInputDeviceError("no audio input device found (no microphone or sound server)")
    if spec is None or spec == "":
        default = [d for d in devices if d.is_default]
        return default[0] if default else devices[0]
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        matches = [d for d in devices if d.index == int(spec)]
    else:
        matches = [d for d in devices if d.name == spec] or [
            d for d in devices if spec.lower() in d.name.lower()
        ]
    if len(matches) == 1:
        return matches[0]
    problem = "matches several input devices" if matches else "is not an input device"
    raise AudioError(f"audio.device: {spec!r} {problem}; {_describe(matches or devices)}")


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
        queueing it for `chunks`; it must return at once (e.g. hand the block to an event loop
        with ``call_soon_threadsafe``).
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
