"""One attempt of an upload to a ``wyoming`` endpoint: the Wyoming speech-to-text exchange.

Wyoming (Home Assistant's voice protocol) sends events over a plain byte stream: a JSON line,
then optional data and a binary payload. On a socket from `agent.egress.target.Target.open_stream`
(TCP to this machine, TCP in TLS, or a Unix socket), `transcribe` sends ``transcribe`` (with the
language, when one is set), ``audio-start`` (16 kHz, 16-bit, mono), the command audio as
``audio-chunk`` events as it is captured (one event per piece the upload's buffer hands out), and
``audio-stop`` once the command ends. It then reads events until ``transcript``, skipping the
streaming ``transcript-start``, ``transcript-chunk`` and ``transcript-stop`` events and any other,
for at most the endpoint's timeout. An ``error`` event, a closed connection, a timeout or a reply
larger than `MAX_REPLY_BYTES` fail the attempt; the result is an `agent.egress.exchange.Outcome`
(without an HTTP status) whose error text is short and free of secrets.

Events are encoded and decoded by the ``wyoming`` package (`wyoming.event.write_event`,
`wyoming.event.read_event`); this module is imported only when an upload to a ``wyoming``
endpoint is made, so the daemon does not load the package for the other kinds. The audio bytes
the socket accepts are counted by `agent.egress.payload.Payload`, framing excluded.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from typing import BinaryIO, cast

from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, read_event, write_event

from agent.egress.exchange import (
    EARLY_RESPONSE_TIMEOUT_S,
    MAX_RESPONSE_BYTES,
    Cancelled,
    Outcome,
    describe_error,
)
from agent.egress.payload import Payload
from agent.egress.target import MeteredSocket, SocketMeter
from agent.egress.wire import BYTES_PER_SAMPLE, SAMPLE_RATE_HZ, Response, clean_text

CHANNELS = 1
MAX_REPLY_BYTES = MAX_RESPONSE_BYTES
"""The server's events after ``audio-stop`` are read up to this many bytes in all."""


class ReplyTooLarge(Exception):
    """The server sent more than `MAX_REPLY_BYTES`."""


class _LimitedReader:
    """The binary reader `wyoming.event.read_event` reads from, refusing to read past a limit.

    Parameters
    ----------
    raw
        The socket's buffered reader.
    limit
        Bytes that may be read in all; reading past them raises `ReplyTooLarge`.
    """

    def __init__(self, raw: BinaryIO, limit: int) -> None:
        self._raw = raw
        self._left = limit

    def readline(self, size: int = -1) -> bytes:
        allowed = self._left + 1 if size < 0 else min(size, self._left + 1)
        return self._count(self._raw.readline(allowed))

    def read(self, size: int = -1) -> bytes:
        allowed = self._left + 1 if size < 0 else min(size, self._left + 1)
        return self._count(self._raw.read(allowed))

    def _count(self, data: bytes) -> bytes:
        if len(data) > self._left:
            raise ReplyTooLarge
        self._left -= len(data)
        return data


def encode(event: Event) -> bytes:
    """``event`` as the bytes Wyoming sends: its JSON line, data and payload."""
    buffer = io.BytesIO()
    write_event(event, buffer)
    return buffer.getvalue()


def milliseconds(samples: int) -> int:
    """The duration of ``samples`` samples at 16 kHz, in whole milliseconds."""
    return samples * 1000 // SAMPLE_RATE_HZ


def chunk_framing(pcm: bytes, offset: int) -> tuple[bytes, bytes]:
    """The bytes before ``pcm`` (and after it: none) that make it one ``audio-chunk`` event.

    Parameters
    ----------
    pcm
        16-bit mono PCM at 16 kHz.
    offset
        Index of its first sample in the upload's audio; the event's ``timestamp`` is its time
        in milliseconds.
    """
    chunk = AudioChunk(
        rate=SAMPLE_RATE_HZ, width=BYTES_PER_SAMPLE, channels=CHANNELS, audio=pcm,
        timestamp=milliseconds(offset),
    )  # fmt: skip
    encoded = encode(chunk.event())
    return encoded[: len(encoded) - len(pcm)], b""


def transcribe(
    connect: Callable[[], MeteredSocket],
    payload: Payload,
    meter: SocketMeter,
    *,
    language: str | None,
    timeout_s: float,
    cancelled: threading.Event,
    secret: str | None = None,
) -> Outcome:
    """Send the upload's audio to a Wyoming speech-to-text server and read its transcript.

    Parameters
    ----------
    connect
        Opens the attempt's socket, metered by ``meter`` (the caller closes it).
    payload
        The upload's audio, streamed as it is written (`Payload.frames`).
    meter
        Counts the bytes the socket accepts.
    language
        Sent in the ``transcribe`` event; None leaves it to the server.
    timeout_s
        How long the server may take to answer once the audio has ended (connecting and each
        send time out on the socket's own timeout).
    cancelled
        Set when the upload is abandoned: a failure then raises `Cancelled`.
    secret
        A secret to take out of the server's error text before it is cut.

    Returns
    -------
    Outcome
        ``status`` is None; on success ``response.text`` is the transcript.

    Raises
    ------
    Cancelled
        The upload was cancelled.
    """
    try:
        sock = connect()
    except OSError as err:
        if cancelled.is_set():
            raise Cancelled from None
        return Outcome(None, None, describe_error(err), retry=True)
    try:
        sock.sendall(encode(Transcribe(language=language).event()))
        start = AudioStart(
            rate=SAMPLE_RATE_HZ, width=BYTES_PER_SAMPLE, channels=CHANNELS, timestamp=0
        )
        sock.sendall(encode(start.event()))
        for block in payload.frames(meter, chunk_framing):
            sock.sendall(block)
        stop = AudioStop(timestamp=milliseconds(payload.audio.samples))
        sock.sendall(encode(stop.event()))
    except OSError as err:
        if cancelled.is_set():
            raise Cancelled from None
        early = _early_reply(sock, cancelled, secret)  # e.g. an error event, then a close
        return early if early is not None else Outcome(None, None, describe_error(err), True)
    return read_reply(sock, timeout_s, cancelled=cancelled, secret=secret)


def read_reply(
    sock: MeteredSocket, timeout_s: float, *, cancelled: threading.Event, secret: str | None
) -> Outcome:
    """Read events until ``transcript`` or ``error``, for at most ``timeout_s`` seconds.

    Raises
    ------
    Cancelled
        The upload was cancelled.
    """
    deadline = time.monotonic() + timeout_s
    raw = sock.makefile("rb")
    try:
        return _read_until_answer(sock, _LimitedReader(raw, MAX_REPLY_BYTES), deadline, cancelled,
                                  secret)  # fmt: skip
    finally:
        raw.close()  # the socket itself is closed by the caller


def _read_until_answer(
    sock: MeteredSocket,
    reader: _LimitedReader,
    deadline: float,
    cancelled: threading.Event,
    secret: str | None,
) -> Outcome:
    """`read_reply`'s loop: events from ``reader`` until an answer or `time.monotonic` ``deadline``.

    Raises
    ------
    Cancelled
        The upload was cancelled.
    """
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Outcome(None, None, "timed out waiting for a transcript", retry=True)
        try:
            sock.settimeout(remaining)
            event = read_event(cast(BinaryIO, reader))
        except ReplyTooLarge:
            return Outcome(
                None, None, f"the reply exceeded {MAX_REPLY_BYTES} bytes without a transcript",
                retry=False,
            )  # fmt: skip
        except OSError as err:
            if cancelled.is_set():
                raise Cancelled from None
            return Outcome(None, None, describe_error(err), retry=True)
        except (KeyError, TypeError, AttributeError, RecursionError):
            return Outcome(None, None, "the server sent a malformed event", retry=False)
        if event is None:
            if cancelled.is_set():
                raise Cancelled
            return Outcome(
                None, None, "the server closed the connection without a transcript", retry=True
            )
        outcome = _interpret(event, secret)
        if outcome is not None:
            return outcome


def _interpret(event: Event, secret: str | None) -> Outcome | None:
    """The outcome a ``transcript`` or ``error`` event gives; None for any other event."""
    data = event.data if isinstance(event.data, dict) else {}
    if Transcript.is_type(event.type):
        text = data.get("text")
        if not isinstance(text, str):
            return Outcome(None, None, "the transcript event carries no text", retry=False)
        return Outcome(None, Response(ok=True, text=text, error=None), None, retry=False)
    if Error.is_type(event.type):
        code = data.get("code")
        detail = clean_text(str(data.get("text", "")), secret=secret)
        error = clean_text(
            f"server error{f' ({code})' if code else ''}: {detail or 'no text'}", secret=secret
        )
        return Outcome(None, Response(ok=False, text=None, error=error), error, retry=True)
    return None


def _early_reply(
    sock: MeteredSocket, cancelled: threading.Event, secret: str | None
) -> Outcome | None:
    """A ``transcript`` or ``error`` the server sent before it stopped reading; else None."""
    try:
        outcome = read_reply(sock, EARLY_RESPONSE_TIMEOUT_S, cancelled=cancelled, secret=secret)
    except OSError:
        return None
    return outcome if outcome.response is not None else None
