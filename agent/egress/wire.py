"""The byte formats of uploads and replies; nothing here touches the network.

The privacy gate (`agent.egress.gate` and the modules beside it) sends what these functions build
and reads back what they interpret: the WAV header and 16-bit PCM of the audio, the
``multipart/form-data`` body of ``openai-transcription`` requests, metadata header values, the
reading of an endpoint's answer (with the bearer token taken out before any text is cut), the URL
as logs show it, the pre-roll trim point in a chunk, and the retry backoff. Everything here is
pure: it opens no connection and reads no file.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np

from dsp.constants import SAMPLE_RATE_HZ

BYTES_PER_SAMPLE = 2
PCM_CONTENT_TYPE = f"audio/L16; rate={SAMPLE_RATE_HZ}; channels=1"
ERROR_TEXT_CHARS = 200
REDACTED = "[redacted]"
"""What a secret is replaced with in any text earshot shows."""
SECRET_PREFIX_CHARS = 6
"""A text cut off in the middle of a secret is redacted from this many of its characters on."""
BACKOFF_FIRST_S = 0.25
BACKOFF_MAX_S = 2.0
RETRY_STATUSES = frozenset({408, 429})
"""4xx statuses that are worth retrying; every other 4xx is final."""


@dataclass(frozen=True)
class Response:
    """What an endpoint answered: accepted or not, the transcript, a short error text."""

    ok: bool
    text: str | None
    error: str | None


def redact_secret(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced by `REDACTED`.

    A text that ends in the first `SECRET_PREFIX_CHARS` or more characters of ``secret`` (it was
    cut off in the middle of it) has that end replaced too.
    """
    if not secret:
        return text
    text = text.replace(secret, REDACTED)
    for size in range(min(len(secret) - 1, len(text)), SECRET_PREFIX_CHARS - 1, -1):
        if text.endswith(secret[:size]):
            return text[:-size] + REDACTED
    return text


def clean_text(text: str, limit: int = ERROR_TEXT_CHARS, *, secret: str | None = None) -> str:
    """``text`` on one line of printable characters, cut to ``limit`` characters.

    ``secret`` (a token a server may echo) is taken out before each cut, and a beginning of it
    left at a cut is taken out after it, so no part of it longer than a few characters remains.
    """
    text = redact_secret(redact_secret(text, secret)[: limit * 4], secret)
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if len(flat) <= limit:
        return flat
    return redact_secret(flat[: limit - 3], secret) + "..."


def _json_object(content_type: str | None, body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one."""
    looks_json = "json" in (content_type or "").lower() or body.lstrip()[:1] == b"{"
    if not looks_json:
        return None
    try:
        value = json.loads(body.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def parse_response(
    status: int, content_type: str | None, body: bytes, *, secret: str | None = None
) -> Response:
    """Interpret an endpoint's answer; pure, and never raises whatever the bytes are.

    Parameters
    ----------
    status
        The HTTP status code; 2xx means accepted.
    content_type
        The ``Content-Type`` header, or None.
    body
        The response body (already capped by the caller).
    secret
        The bearer token, should the server echo it: ``error`` never holds it, nor a beginning
        of it cut off by the length limit.

    Returns
    -------
    Response
        ``text`` is the JSON ``"text"`` string when there is one; ``error`` (for a status other
        than 2xx) is at most ~200 printable characters.
    """
    document = _json_object(content_type, body)
    text = document.get("text") if document is not None else None
    text = text if isinstance(text, str) else None
    ok = 200 <= status < 300
    if ok:
        return Response(ok=True, text=text, error=None)
    detail: Any = document.get("error") if document is not None else None
    if isinstance(detail, dict):
        detail = detail.get("message")
    if not isinstance(detail, str):
        detail = body.decode("utf-8", errors="replace")
    detail = clean_text(detail, secret=secret)
    return Response(
        ok=False, text=text, error=f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
    )


def redact_url(url: str) -> str:
    """``url`` without user info, query or fragment: what logs and the audit log show."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
    except ValueError:
        return "<invalid url>"
    return f"{parts.scheme}://{netloc}{parts.path}"


def wav_header(num_samples: int | None) -> bytes:
    """A 44-byte header of 16-bit mono WAV at 16 kHz; None gives a streaming header.

    A streaming header has RIFF and data sizes of 0xFFFFFFFF, as streaming WAV writers (ffmpeg,
    sox) use when the length is not known yet.
    """
    if num_samples is None:
        riff_size = data_size = 0xFFFFFFFF
    else:
        data_size = num_samples * BYTES_PER_SAMPLE
        riff_size = 36 + data_size
    byte_rate = SAMPLE_RATE_HZ * BYTES_PER_SAMPLE
    return (
        b"RIFF" + riff_size.to_bytes(4, "little") + b"WAVEfmt "
        + (16).to_bytes(4, "little") + (1).to_bytes(2, "little") + (1).to_bytes(2, "little")
        + SAMPLE_RATE_HZ.to_bytes(4, "little") + byte_rate.to_bytes(4, "little")
        + BYTES_PER_SAMPLE.to_bytes(2, "little") + (16).to_bytes(2, "little")
        + b"data" + data_size.to_bytes(4, "little")
    )  # fmt: skip


def encode_pcm16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] as 16-bit little-endian PCM (scaled by 32768, rounded, clipped)."""
    scaled = np.rint(np.asarray(samples, dtype=np.float64) * 32768.0)
    return np.clip(scaled, -32768, 32767).astype("<i2").tobytes()


def multipart_body(fields: list[tuple[str, str | None, str | None, bytes]]) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body of ``(name, filename, content type, data)`` fields.

    Returns
    -------
    tuple of bytes and str
        The body and its ``Content-Type`` header value (with the boundary).
    """
    boundary = "earshot-" + os.urandom(12).hex()
    out = bytearray()
    for name, filename, content_type, data in fields:
        out += f"--{boundary}\r\n".encode()
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"Content-Disposition: {disposition}\r\n".encode()
        if content_type is not None:
            out += f"Content-Type: {content_type}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def header_value(value: object) -> str:
    """``value`` as a safe header value: printable ASCII, anything else percent-encoded."""
    return quote(str(value), safe=" !#$&'()*+,-./:;<=>?@[]^_`{|}~")


def iso_utc(timestamp: float) -> str:
    """``timestamp`` (`time.time`) as an ISO 8601 date and time in UTC."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def backoff_s(retry: int) -> float:
    """Seconds to wait before retry number ``retry`` (1, 2, ...): 0.25, 0.5, ... at most 2."""
    return min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (retry - 1))


def first_kept_index(start_s: float, cutoff_s: float, size: int) -> int:
    """Index of the first sample of a chunk starting at ``start_s`` that is not before ``cutoff_s``.

    Sample ``i`` lies at ``start_s + i / SAMPLE_RATE_HZ``; the offset is rounded to a microsample
    first so that float error does not keep or drop a sample at the boundary.
    """
    offset = (cutoff_s - start_s) * SAMPLE_RATE_HZ
    if offset <= 0:
        return 0
    return min(size, math.ceil(round(offset, 6)))


def user_agent() -> str:
    """``earshot/VERSION``: the User-Agent of every upload."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"earshot/{version('earshot')}"
    except PackageNotFoundError:
        return "earshot/0"


def upload_headers(
    *,
    user_agent: str,
    wake_word: str,
    score: float,
    detected_at: float,
    wake_end_s: float,
    pre_roll_s: float,
    device_id: str,
    token: str | None,
) -> dict[str, str]:
    """The headers of an upload: who sends, which wake word, when, and the bearer token if any."""
    headers = {
        "User-Agent": user_agent,
        "X-Earshot-Wake-Word": header_value(wake_word),
        "X-Earshot-Score": f"{score:.4f}",
        "X-Earshot-Detected-At": iso_utc(detected_at),
        "X-Earshot-Wake-End-S": f"{wake_end_s:.3f}",
        "X-Earshot-Pre-Roll-S": f"{pre_roll_s:.3f}",
        "X-Earshot-Device-Id": header_value(device_id),
    }
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers
