"""The Wyoming wake-word server: one handler per connection, each with its own detector.

A connection may send, in any order and as often as it likes:

- ``describe``: answered with `agent.wyoming_service.info.wake_info`;
- ``ping``: answered with ``pong``;
- ``detect`` (optional): its ``names`` restrict which wake words may answer until the stream
  ends;
- ``audio-start``, ``audio-chunk``..., ``audio-stop``: a stream at any rate, sample width (1-4
  bytes) and channel count. Each chunk is converted to 16 kHz 16-bit
  (`wyoming.audio.AudioChunkConverter`), its channels are averaged to mono, and it is fed to the
  connection's own `models.wake.detector.Detector` (reset by every ``audio-start``). Every
  detection is answered at once with a ``detection`` event (its timestamp: milliseconds of audio
  since ``audio-start`` when the detector decided); ``audio-stop`` after a stream without one is
  answered with ``not-detected``.

The detector runs on a small thread pool, so a connection's audio never holds up the others.
Client mistakes never end the server: an event that is well framed but wrong (an ``audio-chunk``
outside a stream, an unknown sample width, a rate that is not a number, a payload that is not a
whole number of samples) is answered with an ``error`` event and the connection kept; a stream
that cannot be read as events (a header that is not JSON, a length that does not match) is
answered with an ``error`` event and closed. Unknown event types are ignored. Each mistake is
one warning line in the log, without a traceback.

Privacy: audio is only received. Nothing here forwards, stores or uploads it; the privacy gate
(`agent.egress`) is not used. The only bytes sent are the events named above, to the client that
sent the audio.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
from wyoming.audio import AudioChunk, AudioChunkConverter, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_read_event
from wyoming.info import Describe
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler, AsyncServer
from wyoming.wake import Detect, Detection, NotDetected

from dsp.constants import SAMPLE_RATE_HZ
from kernels.errors import ConfigError
from kernels.runtime import Backend
from models.base.geometry import Embedder
from models.wake.detector import Detection as WakeDetection
from models.wake.detector import Detector, WakeWord

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")

SAMPLE_WIDTHS = (1, 2, 3, 4)
"""Bytes per sample a client may send (8-bit unsigned, 16-, 24- and 32-bit signed)."""
RATE_RANGE_HZ = (1000, 384_000)
"""Sample rates a client may send, in Hz."""
MAX_CHANNELS = 64
"""Most channels a client may send (they are averaged to mono)."""
MAX_EVENT_BYTES = 16 * 1024 * 1024
"""Largest data or payload one event may announce; a longer one ends the connection."""
DEFAULT_WORKERS = 4
"""Threads running detectors, at most (fewer on machines with fewer cores)."""


class ClientError(Exception):
    """A client's event is wrong; the message says what, and the connection goes on."""

    code = "bad-event"


class UnreadableStream(Exception):
    """The bytes a client sent cannot be read as Wyoming events; the connection ends."""


class WakeService:
    """What every connection shares: the models, the ``info`` answer and the worker threads.

    Parameters
    ----------
    base : Embedder
        The base the wake words were trained on (`agent.daemon.detectors.Models.detector`'s).
    wake_words : sequence of WakeWord
        The configured wake words, loaded.
    backend : {"auto", "numpy", "wgpu"}
        Where each connection's detector runs its base (the config's ``detection.backend``).
    workers : int, optional
        Threads running detectors; `DEFAULT_WORKERS` or the number of cores, the fewer.
    """

    def __init__(
        self,
        base: Embedder,
        wake_words: Sequence[WakeWord],
        *,
        backend: Backend = "auto",
        workers: int | None = None,
    ):
        from agent.wyoming_service.info import wake_info

        self.base = base
        self.wake_words = list(wake_words)
        self.backend: Backend = backend
        self.names = [w.name for w in self.wake_words]
        self.info = wake_info(self.wake_words).event()
        count = workers or min(DEFAULT_WORKERS, os.cpu_count() or 1)
        self._executor = ThreadPoolExecutor(count, thread_name_prefix="earshot-wyoming")

    def detector(self) -> Detector:
        """A new detector over every wake word: one per connection, never shared."""
        return Detector(self.base, self.wake_words, backend=self.backend)

    def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> WakeHandler:
        """The package's handler factory: a `WakeHandler` for a new connection."""
        return WakeHandler(self, reader, writer)

    async def in_worker(self, function: Callable[..., _T], *args: Any) -> _T:
        """``function(*args)`` on a worker thread, so that the event loop goes on serving."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def close(self) -> None:
        """Stop the worker threads (work not started is dropped)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


async def serve(service: WakeService, server: AsyncServer, uri: str, stop: asyncio.Event) -> None:
    """Serve ``service`` on ``server`` until ``stop`` is set; then close every connection.

    Raises
    ------
    ConfigError
        The server cannot listen at ``uri`` (address in use, no permission, path too long).
    """
    try:
        await server.start(service.handler)
    except OSError as err:
        reason = err.strerror or str(err)
        raise ConfigError(f"--uri: cannot listen on {uri} ({reason})") from None
    words = ", ".join(f"{w.name} ({w.model.phrase!r})" for w in service.wake_words)
    _LOGGER.info("wyoming: listening on %s for wake words: %s", uri, words)
    try:
        await stop.wait()
    finally:
        await server.stop()
        _LOGGER.info("wyoming: stopped listening on %s", uri)


@dataclass
class _Stream:
    """One audio stream of a connection, from ``audio-start`` to ``audio-stop``."""

    rate: int
    width: int
    channels: int
    converter: AudioChunkConverter
    detected: bool = False


class _ReadTracker:
    """The connection's reader as `wyoming.event.async_read_event` uses it.

    It notes whether a header line was read (so that an event the package could not parse is
    told apart from the end of the stream) and refuses lengths that are not whole numbers or
    over `MAX_EVENT_BYTES`.
    """

    def __init__(self, reader: asyncio.StreamReader):
        self.reader = reader
        self.read_header = False
        self.read_body = False

    def start(self) -> None:
        """Forget what the previous event read."""
        self.read_header = self.read_body = False

    async def readline(self) -> bytes:
        """The header line (empty at the end of the stream)."""
        self.read_header = True  # a line over the reader's limit counts as read (and unreadable)
        line = await self.reader.readline()
        self.read_header = bool(line)
        return line

    async def readexactly(self, n: int) -> bytes:
        """The data or payload the header announced."""
        if not isinstance(n, int) or isinstance(n, bool):
            raise UnreadableStream(f"a data or payload length of {n!r}, not a whole number")
        if n > MAX_EVENT_BYTES:
            raise UnreadableStream(
                f"a data or payload length of {n} bytes, over the limit of {MAX_EVENT_BYTES}"
            )
        self.read_body = True
        return await self.reader.readexactly(n)


class WakeHandler(AsyncEventHandler):
    """One connection: its own detector, stream and ``detect`` names.

    Parameters
    ----------
    service : WakeService
        What connections share.
    reader, writer : asyncio streams
        The connection.
    """

    def __init__(
        self, service: WakeService, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ):
        super().__init__(reader, writer)
        self.service = service
        self.peer = _peer_name(writer)
        self._detector: Detector | None = None
        self._stream: _Stream | None = None
        self._names: set[str] | None = None
        self._stray_chunks = 0  # audio-chunks outside a stream since the last complaint
        self._open = True

    async def run(self) -> None:
        """Read events until the client leaves, the server stops, or the stream is unreadable.

        The package's loop, with two additions: an event that cannot be read is answered with an
        ``error`` event before the connection closes, and nothing a client sends raises out of
        the connection's task.
        """
        self._is_running = True
        tracker = _ReadTracker(self.reader)
        _LOGGER.debug("wyoming %s: connected", self.peer)
        try:
            while self._is_running and self._open:
                tracker.start()
                try:
                    event = await async_read_event(cast(asyncio.StreamReader, tracker))
                except (UnreadableStream, EOFError, TypeError, KeyError, AttributeError) as err:
                    if self._is_running:  # not the server closing the connection mid-event
                        await self._refuse_stream(f"unreadable event: {_unreadable(err)}")
                    break
                except RecursionError:
                    await self._refuse_stream("unreadable event: its JSON is nested too deeply")
                    break
                if event is None:
                    if tracker.read_header:
                        part = "its data is" if tracker.read_body else "the header line is"
                        await self._refuse_stream(
                            f"unreadable event: {part} not JSON (a Wyoming event is a JSON "
                            "line, then its data and payload)"
                        )
                    break
                if not await self.handle_event(event):
                    break
        except ConnectionError as err:
            _LOGGER.debug("wyoming %s: connection lost (%s)", self.peer, err)
        except Exception:  # a fault of this service, not the client's: this connection ends
            _LOGGER.exception("wyoming %s: internal error; closing the connection", self.peer)
            await self._send(Error(text="internal error in earshot", code="internal").event())
        finally:
            self._open = False
            await self.disconnect()
            self.writer.close()
            _LOGGER.debug("wyoming %s: disconnected", self.peer)

    async def handle_event(self, event: Event) -> bool:
        """Answer one event; False ends the connection."""
        if not isinstance(event.type, str) or not isinstance(event.data, dict):
            await self._complain(
                ClientError(
                    f"event type {event.type!r} with data {type(event.data).__name__}: expected a "
                    "string type and a JSON object of data"
                )
            )
            return self._open
        try:
            await self._dispatch(event)
        except ClientError as err:
            await self._complain(err)
        return self._open

    async def _dispatch(self, event: Event) -> None:
        if AudioChunk.is_type(event.type):
            await self._on_chunk(event)
        elif AudioStart.is_type(event.type):
            await self._on_start(event)
        elif AudioStop.is_type(event.type):
            await self._on_stop()
        elif Detect.is_type(event.type):
            self._on_detect(event)
        elif Describe.is_type(event.type):
            await self._send(self.service.info)
        elif Ping.is_type(event.type):
            text = event.data.get("text")
            await self._send(Pong(text=text if isinstance(text, str) else None).event())
        else:
            _LOGGER.debug("wyoming %s: ignoring a %r event", self.peer, event.type)

    def _on_detect(self, event: Event) -> None:
        names = event.data.get("names")
        if names is None:
            self._names = None
            return
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ClientError(f"detect: names {names!r}: expected a list of wake-word names")
        self._names = set(names)
        unknown = sorted(self._names.difference(self.service.names))
        if unknown:
            _LOGGER.info(
                "wyoming %s: detect asks for %s; this service has %s",
                self.peer, ", ".join(unknown), ", ".join(self.service.names) or "none",
            )  # fmt: skip

    async def _on_start(self, event: Event) -> None:
        self._stream = None  # a malformed audio-start starts no stream
        rate, width, channels = _audio_format("audio-start", event.data)
        if self._detector is None:
            self._detector = await self.service.in_worker(self.service.detector)
        else:
            await self.service.in_worker(self._detector.reset)
        self._stream = _Stream(rate, width, channels, _converter())
        self._stray_chunks = 0
        _LOGGER.debug(
            "wyoming %s: audio-start (%d Hz, %d bytes, %d channels)",
            self.peer, rate, width, channels,
        )  # fmt: skip

    async def _on_chunk(self, event: Event) -> None:
        stream, detector = self._stream, self._detector
        if stream is None or detector is None:
            self._stray_chunks += 1
            if self._stray_chunks > 1:  # one error per run of stray chunks, not a flood
                return
            raise ClientError("audio-chunk before audio-start: send audio-start first")
        rate, width, channels = _audio_format("audio-chunk", event.data)
        audio = event.payload or b""
        if len(audio) % (width * channels):
            raise ClientError(
                f"audio-chunk: a payload of {len(audio)} bytes is not a whole number of samples "
                f"of {width} bytes x {channels} channels"
            )
        if (rate, width, channels) != (stream.rate, stream.width, stream.channels):
            # The resampler's state belongs to the old format: start it afresh.
            stream.rate, stream.width, stream.channels = rate, width, channels
            stream.converter = _converter()
        chunk = AudioChunk(rate=rate, width=width, channels=channels, audio=audio)
        detections = await self.service.in_worker(_push, detector, stream.converter, chunk)
        for detection in detections:
            if self._names is not None and detection.name not in self._names:
                continue
            stream.detected = True
            timestamp = int(round(detection.time_s * 1000))
            _LOGGER.info(
                "wyoming %s: %s detected (score %.3f, %d ms into the stream)",
                self.peer, detection.name, detection.score, timestamp,
            )  # fmt: skip
            await self._send(Detection(name=detection.name, timestamp=timestamp).event())

    async def _on_stop(self) -> None:
        stream, self._stream, self._names = self._stream, None, None
        if stream is None:
            raise ClientError("audio-stop without audio-start")
        _LOGGER.debug("wyoming %s: audio-stop", self.peer)
        if not stream.detected:
            await self._send(NotDetected().event())

    async def _complain(self, err: ClientError) -> None:
        """Answer a client's mistake with an ``error`` event; the connection goes on."""
        _LOGGER.warning("wyoming %s: %s", self.peer, err)
        await self._send(Error(text=str(err), code=err.code).event())

    async def _refuse_stream(self, text: str) -> None:
        """Answer an unreadable stream with an ``error`` event; the caller closes it."""
        _LOGGER.warning("wyoming %s: %s; closing the connection", self.peer, text)
        await self._send(Error(text=text, code="unreadable").event())

    async def _send(self, event: Event) -> None:
        """Write an event; a client that went away ends the connection quietly."""
        if not self._open:
            return
        try:
            await self.write_event(event)
        except (ConnectionError, RuntimeError) as err:
            _LOGGER.debug("wyoming %s: could not send %s (%s)", self.peer, event.type, err)
            self._open = False


def _converter() -> AudioChunkConverter:
    """A converter to 16 kHz 16-bit audio that keeps the channels (they are averaged after)."""
    return AudioChunkConverter(rate=SAMPLE_RATE_HZ, width=2)


def _push(
    detector: Detector, converter: AudioChunkConverter, chunk: AudioChunk
) -> list[WakeDetection]:
    """Convert a chunk to 16 kHz mono float and feed it to the detector (on a worker thread)."""
    converted = converter.convert(chunk)
    samples = np.frombuffer(converted.audio, dtype="<i2")
    if not samples.size:
        return []
    if converted.channels > 1:
        mono = samples.reshape(-1, converted.channels).mean(axis=1, dtype=np.float32)
    else:
        mono = samples.astype(np.float32)
    return detector.push(mono / np.float32(32768.0))


def _audio_format(what: str, data: dict[str, Any]) -> tuple[int, int, int]:
    """(rate, width, channels) of an ``audio-start`` or ``audio-chunk`` event's data.

    Raises
    ------
    ClientError
        A field is missing or out of range; the message names it, the value and what is allowed.
    """
    low, high = RATE_RANGE_HZ
    rate = _whole(what, "rate", data, low, high, "Hz")
    width = _whole(what, "width", data, min(SAMPLE_WIDTHS), max(SAMPLE_WIDTHS), "bytes")
    channels = _whole(what, "channels", data, 1, MAX_CHANNELS, "channels")
    return rate, width, channels


def _whole(what: str, field: str, data: dict[str, Any], low: int, high: int, unit: str) -> int:
    value = data.get(field)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ClientError(
            f"{what}: {field} {value!r}: expected a whole number of {unit} from {low} to {high}"
        )
    return value


def _unreadable(err: Exception) -> str:
    """What was wrong with an event `wyoming.event.async_read_event` could not read."""
    if isinstance(err, UnreadableStream):
        return str(err)
    if isinstance(err, asyncio.IncompleteReadError):
        return (
            f"the stream ended after {len(err.partial)} of the {err.expected} bytes of data or "
            "payload its header announced"
        )
    if isinstance(err, KeyError):
        return 'its header has no "type"'
    if isinstance(err, AttributeError):
        return "its header or data is JSON but not an object"
    if isinstance(err, TypeError):
        return f"a field of the wrong type in its header or data ({err})"
    return str(err) or type(err).__name__


def _peer_name(writer: asyncio.StreamWriter) -> str:
    """The client's address for log lines (``HOST:PORT``, or the socket path)."""
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    name = writer.get_extra_info("sockname")
    return f"unix:{name}" if name else "client"
