"""One attempt of an upload: the ``POST`` on a connection, and what its answer means.

`post` sends a request (a whole body, or a chunked one from a generator) and reads the answer up to
`MAX_RESPONSE_BYTES`; when the server stops reading the body early (a 401, say), the answer it
sent is still read. The result is an `Outcome`: the status, the interpreted reply
(`agent.egress.wire.parse_response`), a short error text free of secrets, and whether the attempt
is worth retrying (no answer, a 5xx, 408 or 429). Cancelling the upload shows up here as
`Cancelled`.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from agent.egress.wire import RETRY_STATUSES, Response, clean_text, parse_response

MAX_RESPONSE_BYTES = 1 << 20
"""Response bodies are read up to this many bytes."""
EARLY_RESPONSE_TIMEOUT_S = 1.0
"""How long to look for a response a server sent before dropping the upload's connection."""


class Cancelled(Exception):
    """Raised while a request is made or its body produced, to abandon it."""


@dataclass(frozen=True)
class Outcome:
    """One attempt's end: the status (None without a response), an error, whether to retry."""

    status: int | None
    response: Response | None
    error: str | None
    retry: bool


def post(
    conn: http.client.HTTPConnection,
    path: str,
    headers: dict[str, str],
    body: bytes | Iterator[bytes],
    *,
    cancelled: threading.Event,
    sent_any: Callable[[], bool],
) -> Outcome:
    """Send ``POST path`` on ``conn`` and read the response (up to 1 MB).

    Parameters
    ----------
    conn
        A connection, connected by the request itself.
    path
        The request target (path and query).
    headers
        The request headers.
    body
        The whole body, or a generator of chunks sent with chunked transfer encoding.
    cancelled
        Set when the upload is abandoned: a failure then raises `Cancelled`.
    sent_any
        Whether any body bytes were written; only then is an early response looked for.

    Raises
    ------
    Cancelled
        The request failed because the upload was cancelled.
    """
    try:
        conn.request("POST", path, body=body, headers=headers,
                     encode_chunked=not isinstance(body, bytes))  # fmt: skip
    except (OSError, http.client.HTTPException) as err:
        if cancelled.is_set():
            raise Cancelled from None
        early = _early_response(conn) if sent_any() else None
        return early if early is not None else Outcome(None, None, _describe(err), True)
    try:
        response = conn.getresponse()
        data = response.read(MAX_RESPONSE_BYTES)
    except (OSError, http.client.HTTPException) as err:
        if cancelled.is_set():
            raise Cancelled from None
        return Outcome(None, None, _describe(err), retry=True)
    return _classify(response.status, response.getheader("Content-Type"), data)


def _early_response(conn: http.client.HTTPConnection) -> Outcome | None:
    """A response the server sent before it stopped reading the body (e.g. a 401)."""
    if conn.sock is None:
        return None
    try:
        conn.sock.settimeout(EARLY_RESPONSE_TIMEOUT_S)
        response = conn.getresponse()
        data = response.read(MAX_RESPONSE_BYTES)
    except (OSError, http.client.HTTPException):
        return None
    return _classify(response.status, response.getheader("Content-Type"), data)


def _classify(status: int, content_type: str | None, body: bytes) -> Outcome:
    response = parse_response(status, content_type, body)
    if response.ok:
        return Outcome(status, response, None, retry=False)
    retry = status >= 500 or status in RETRY_STATUSES
    return Outcome(status, response, response.error, retry=retry)


def _describe(err: BaseException) -> str:
    """A short, secret-free description of a network error."""
    if isinstance(err, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {err.verify_message}"
    text = str(err) or err.__class__.__name__
    return clean_text(f"{err.__class__.__name__}: {text}")
