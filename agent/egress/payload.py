"""The body each attempt of an upload sends, made from its buffered audio, and what went out.

For an ``http`` endpoint the body is chunked (framed here, ``Transfer-Encoding: chunked``) and
sent chunk by chunk: a WAV header of unknown length (or nothing, for raw PCM), then the audio as it
is written, until the command ends. For ``openai-transcription`` it is one ``multipart/form-data``
form with its ``Content-Length``, made once the command has ended. For ``wyoming`` it is the
audio as it is written, each piece the buffer hands out framed as one ``audio-chunk`` event (the
framing comes from `agent.egress.wyoming_exchange`). Every attempt starts again from the first
sample. `Payload` counts the body bytes (for ``wyoming``, the audio bytes) the latest attempt's
socket accepted (framing excluded, and a block cut off by a failure counted as far as it went)
and notes when the first audio byte left.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from agent.egress.buffer import AudioBuffer
from agent.egress.target import SocketMeter
from agent.egress.wire import BYTES_PER_SAMPLE, PCM_CONTENT_TYPE, multipart_body, wav_header
from agent.settings import EndpointSettings

CHUNKED_END = b"0\r\n\r\n"
"""The last chunk of a chunked body."""
Framer = Callable[[bytes, int], tuple[bytes, bytes]]
"""What frames a piece of audio: given its PCM and the offset of its first sample, the bytes
that go before and after it on the wire."""


class Payload:
    """The bodies of one upload's attempts, read from ``audio`` as ``endpoint`` wants them.

    Parameters
    ----------
    audio
        The upload's audio.
    endpoint
        Its ``kind``, ``format`` and ``model`` say what the body looks like.
    """

    def __init__(self, audio: AudioBuffer, endpoint: EndpointSettings) -> None:
        self.audio = audio
        self.endpoint = endpoint
        self.first_byte_at: float | None = None
        """`time.time` when the first audio byte was written to the socket."""
        self._done = 0  # body bytes of the blocks the socket took whole
        self._meter = SocketMeter()
        self._handed: tuple[int, int, int] | None = None
        """The block being sent: the meter's total before it, its framing before the body
        bytes, and its body bytes."""

    def __repr__(self) -> str:
        return f"Payload({self.endpoint.kind!r}, bytes_sent={self.bytes_sent})"

    @property
    def bytes_sent(self) -> int:
        """Body bytes the socket of the latest attempt accepted (headers and framing excluded)."""
        handed = self._handed
        if handed is None:
            return self._done
        before, framing, size = handed
        return self._done + min(size, max(0, self._meter.total - before - framing))

    def body(self, headers: dict[str, str], meter: SocketMeter) -> Iterator[bytes]:
        """The next attempt's body; sets its ``Content-Type`` and length or framing in ``headers``.

        For ``openai-transcription`` this waits for the end of the command.

        Parameters
        ----------
        headers
            The attempt's request headers, completed here.
        meter
            Counts the bytes the attempt's socket accepts.

        Raises
        ------
        agent.egress.exchange.Cancelled
            The upload was cancelled while waiting for the command to end.
        """
        self._done, self._meter, self._handed = 0, meter, None
        if self.endpoint.kind == "openai-transcription":
            self.audio.wait_for_end()
            form = self._multipart(headers)
            headers["Content-Length"] = str(len(form))
            return self._send(form, b"", b"")
        headers["Transfer-Encoding"] = "chunked"
        if self.endpoint.format == "wav":
            headers["Content-Type"] = "audio/wav"
            return self._stream(wav_header(None))
        headers["Content-Type"] = PCM_CONTENT_TYPE
        return self._stream(b"")

    def frames(self, meter: SocketMeter, frame: Framer) -> Iterator[bytes]:
        """The audio of the next ``wyoming`` attempt, as it is written, each piece framed.

        Each block is one piece of PCM the buffer hands out, with ``frame``'s bytes around it;
        the blocks end when the command does.

        Parameters
        ----------
        meter
            Counts the bytes the attempt's socket accepts.
        frame
            Gives the bytes before and after a piece of PCM (see `Framer`).

        Raises
        ------
        agent.egress.exchange.Cancelled
            The upload was cancelled while waiting for audio.
        """
        self._done, self._meter, self._handed = 0, meter, None
        return self._audio(frame)

    def _send(self, data: bytes, head: bytes, tail: bytes) -> Iterator[bytes]:
        """Hand ``data``, between ``head`` and ``tail``, to the request, and count it."""
        self._handed = (self._meter.total, len(head), len(data))
        yield head + data + tail
        # Resumed: the request has written the whole block.
        self._handed = None
        self._done += len(data)

    def _stream(self, header: bytes) -> Iterator[bytes]:
        """The body of a chunked request: ``header``, then audio as it is written."""
        if header:
            yield from self._send(header, *_chunk_framing(header, 0))
        yield from self._audio(_chunk_framing)
        yield CHUNKED_END

    def _audio(self, frame: Framer) -> Iterator[bytes]:
        """The audio as it is written, each piece framed by ``frame``; ends with the command."""
        index = offset = 0
        while self.audio.wait_for(index):
            data, index = self.audio.read_from(index)
            if not data:
                continue
            yield from self._send(data, *frame(data, offset))
            offset += len(data) // BYTES_PER_SAMPLE
            if self.first_byte_at is None:
                self.first_byte_at = time.time()

    def _multipart(self, headers: dict[str, str]) -> bytes:
        audio = self.audio.read_all()
        wav = wav_header(len(audio) // BYTES_PER_SAMPLE) + audio
        body, content_type = multipart_body([
            ("file", "audio.wav", "audio/wav", wav),
            ("model", None, None, self.endpoint.model.encode()),
            ("response_format", None, None, b"json"),
        ])  # fmt: skip
        headers["Content-Type"] = content_type
        if self.first_byte_at is None and audio:
            self.first_byte_at = time.time()
        return body


def _chunk_framing(data: bytes, offset: int) -> tuple[bytes, bytes]:
    """The framing of ``data`` as one chunk of a chunked body (``offset`` is not used)."""
    return f"{len(data):X}\r\n".encode("ascii"), b"\r\n"
