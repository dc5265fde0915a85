"""Reading an upload's body back into audio, for the reference receiver.

The receiving side of `agent.egress.wire`: `decode_upload` takes a request's path, content type
and body and returns the kind of upload and its samples. A ``POST`` to
``/v1/audio/transcriptions`` is a ``multipart/form-data`` form whose ``file`` field is a WAV file;
any other path takes a WAV body (``audio/wav``) or raw 16-bit little-endian PCM
(``audio/L16; rate=16000; channels=1``). Whatever is malformed raises `BadRequest` with the HTTP
status to answer; nothing here touches a socket or a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser

import numpy as np

from dsp.constants import SAMPLE_RATE_HZ

TRANSCRIPTION_PATH = "/v1/audio/transcriptions"
_WAV_TYPES = ("audio/wav", "audio/wave", "audio/x-wav")


class BadRequest(Exception):
    """A request the receiver refuses; carries the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class DecodedUpload:
    """The audio of one request body, and what kind of upload carried it."""

    kind: str
    """``openai-transcription`` or ``http``."""
    audio: np.ndarray
    """The samples, float32 in [-1, 1)."""
    form: dict[str, str] | None
    """The form fields other than ``file`` (transcription requests only)."""


def decode_upload(path: str, content_type: str, body: bytes) -> DecodedUpload:
    """The audio of a request to ``path`` (query removed) with this content type and body.

    Raises
    ------
    BadRequest
        The body is not audio earshot sends.
    """
    if path == TRANSCRIPTION_PATH:
        fields = parse_multipart(content_type, body)
        if "file" not in fields:
            raise BadRequest("multipart form without a 'file' field")
        audio = parse_wav(fields["file"])
        form = {k: v.decode("utf-8", "replace") for k, v in fields.items() if k != "file"}
        return DecodedUpload("openai-transcription", audio, form)
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind in _WAV_TYPES:
        audio = parse_wav(body)
    elif kind == "audio/l16":
        _check_l16(content_type)
        audio = parse_pcm(body)
    else:
        raise BadRequest(f"Content-Type {content_type!r}: expected audio/wav or audio/L16")
    return DecodedUpload("http", audio, None)


def parse_wav(data: bytes) -> np.ndarray:
    """Samples of a 16-bit mono 16 kHz PCM WAV file; streaming (0xFFFFFFFF) sizes are allowed.

    Raises
    ------
    BadRequest
        Not a RIFF/WAVE file, or another sample format.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise BadRequest("body is not a RIFF/WAVE file")
    offset, fmt = 12, None
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        size = int.from_bytes(data[offset + 4 : offset + 8], "little")
        offset += 8
        if chunk_id == b"fmt ":
            fmt = data[offset : offset + 16]
        elif chunk_id == b"data":
            if fmt is None or len(fmt) < 16:
                raise BadRequest("WAV data chunk before its fmt chunk")
            tag, channels, rate = (
                int.from_bytes(fmt[0:2], "little"),
                int.from_bytes(fmt[2:4], "little"),
                int.from_bytes(fmt[4:8], "little"),
            )
            bits = int.from_bytes(fmt[14:16], "little")
            if (tag, channels, rate, bits) != (1, 1, SAMPLE_RATE_HZ, 16):
                raise BadRequest(
                    f"WAV format: got tag {tag}, {channels} channel(s), {rate} Hz, {bits} bits; "
                    f"expected PCM, mono, {SAMPLE_RATE_HZ} Hz, 16 bits"
                )
            end = len(data) if size == 0xFFFFFFFF else min(len(data), offset + size)
            return parse_pcm(data[offset:end])
        offset += size + (size & 1)
    raise BadRequest("WAV file without a data chunk")


def parse_pcm(data: bytes) -> np.ndarray:
    """16-bit little-endian PCM as float32 samples (an odd last byte is ignored)."""
    usable = len(data) - len(data) % 2
    return (np.frombuffer(data[:usable], dtype="<i2").astype(np.float32)) / 32768.0


def _check_l16(content_type: str) -> None:
    message = Message()
    message["Content-Type"] = content_type
    rate, channels = message.get_param("rate"), message.get_param("channels", "1")
    if rate != str(SAMPLE_RATE_HZ) or channels != "1":
        raise BadRequest(
            f"Content-Type {content_type!r}: expected rate={SAMPLE_RATE_HZ} and channels=1"
        )


def parse_multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    """The fields of a ``multipart/form-data`` body, by name.

    Raises
    ------
    BadRequest
        Not a multipart body.
    """
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser().parsebytes(head + body)
    if not message.is_multipart():
        raise BadRequest("expected a multipart/form-data body")
    fields: dict[str, bytes] = {}
    for part in message.get_payload():
        if not isinstance(part, Message):
            continue
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = payload
    return fields
