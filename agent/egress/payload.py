"""The body each attempt of an upload sends, made from its buffered audio, and what went out.

For an ``http`` endpoint the body is a generator that the request sends chunk by chunk: a WAV
header of unknown length (or nothing, for raw PCM), then the audio as it is written, until the
command ends. For ``openai-transcription`` it is one ``multipart/form-data`` form, made once the
command has ended. Every attempt starts again from the first sample. `Payload` counts the body
bytes the latest attempt put on the socket and notes when the first audio byte left.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from agent.egress.buffer import AudioBuffer
from agent.egress.wire import BYTES_PER_SAMPLE, PCM_CONTENT_TYPE, multipart_body, wav_header
from agent.settings import EndpointSettings


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
        self.bytes_sent = 0
        """Body bytes written to the socket by the latest attempt."""
        self.first_byte_at: float | None = None
        """`time.time` when the first audio byte was written to the socket."""

    def __repr__(self) -> str:
        return f"Payload({self.endpoint.kind!r}, bytes_sent={self.bytes_sent})"

    def body(self, headers: dict[str, str]) -> bytes | Iterator[bytes]:
        """The next attempt's body; sets its ``Content-Type`` in ``headers``.

        For ``openai-transcription`` this waits for the end of the command.

        Raises
        ------
        agent.egress.exchange.Cancelled
            The upload was cancelled while waiting for the command to end.
        """
        if self.endpoint.kind == "openai-transcription":
            self.audio.wait_for_end()
            return self._multipart(headers)
        if self.endpoint.format == "wav":
            headers["Content-Type"] = "audio/wav"
            return self._stream(wav_header(None))
        headers["Content-Type"] = PCM_CONTENT_TYPE
        return self._stream(b"")

    def _stream(self, header: bytes) -> Iterator[bytes]:
        """The body of a streaming request: ``header``, then audio as it is written."""
        self.bytes_sent = 0
        if header:
            yield header
            self.bytes_sent += len(header)
        index = 0
        while self.audio.wait_for(index):
            data, index = self.audio.read_from(index)
            yield data
            self.bytes_sent += len(data)  # resumed: http.client has written the chunk
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
        self.bytes_sent = len(body)
        if self.first_byte_at is None and audio:
            self.first_byte_at = time.time()
        return body
