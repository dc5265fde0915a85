"""The body each attempt of an upload sends, made from its buffered audio, and what went out.

For an ``http`` endpoint the body is chunked (framed here, ``Transfer-Encoding: chunked``) and
sent chunk by chunk: a WAV header of unknown length (or nothing, for raw PCM), then the audio as it
is written, until the command ends. For ``openai-transcription`` it is one ``multipart/form-data``
form with its ``Content-Length``, made once the command has ended. Every attempt starts again from
the first sample. `Payload` counts the body bytes the latest attempt's socket accepted (framing
excluded, and a block cut off by a failure counted as far as it went) and notes when the first
audio byte left.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from agent.egress.buffer import AudioBuffer
from agent.egress.target import SocketMeter
from agent.egress.wire import BYTES_PER_SAMPLE, PCM_CONTENT_TYPE, multipart_body, wav_header
from agent.settings import EndpointSettings

CHUNKED_END = b"0\r\n\r\n"
"""The last chunk of a chunked body."""


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
            return self._send(form, chunked=False)
        headers["Transfer-Encoding"] = "chunked"
        if self.endpoint.format == "wav":
            headers["Content-Type"] = "audio/wav"
            return self._stream(wav_header(None))
        headers["Content-Type"] = PCM_CONTENT_TYPE
        return self._stream(b"")

    def _send(self, data: bytes, *, chunked: bool) -> Iterator[bytes]:
        """Hand ``data`` (framed as a chunk when ``chunked``) to the request, and count it."""
        framing = f"{len(data):X}\r\n".encode("ascii") if chunked else b""
        self._handed = (self._meter.total, len(framing), len(data))
        yield framing + data + (b"\r\n" if chunked else b"")
        # Resumed: the request has written the whole block.
        self._handed = None
        self._done += len(data)

    def _stream(self, header: bytes) -> Iterator[bytes]:
        """The body of a streaming request: ``header``, then audio as it is written."""
        if header:
            yield from self._send(header, chunked=True)
        index = 0
        while self.audio.wait_for(index):
            data, index = self.audio.read_from(index)
            if not data:
                continue
            yield from self._send(data, chunked=True)
            if self.first_byte_at is None:
                self.first_byte_at = time.time()
        yield CHUNKED_END

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
