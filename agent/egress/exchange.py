"""One attempt of an upload: the ``POST`` on a connection, and what its answer means.

`post` sends a request (a whole body, or one made of the blocks a generator yields, framing
included) and reads the answer up to `MAX_RESPONSE_BYTES`; when the server stops reading the body
early (a 401, say), the answer it sent is still read. The result is an `Outcome`: the status, the
interpreted reply (`agent.egress.wire.parse_response`), a short error text free of secrets (the
token is taken out before the text is cut), and whether the attempt is worth retrying (no answer,
a 5xx, 408 or 429). Cancelling the upload shows up here as `Cancelled`. `Outcome`, `Cancelled` and
`describe_error` (a network error in a few words) serve the ``wyoming`` kind's exchange too
(`agent.egress.wyoming_exchange`).
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
    secret: str | None = None,
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
        The whole body, or a generator of its blocks, sent as they are: ``headers`` give its
        ``Content-Length`` or ``Transfer-Encoding`` (and the blocks then carry the framing).
    cancelled
        Set when the upload is abandoned: a failure then raises `Cancelled`.
    sent_any
        Whether any bytes were written; only then is an early response looked for.
    secret
        The bearer token, taken out of the error text before it is cut.

    Raises
    ------
    Cancelled
        The request failed because the upload was cancelled.
    """
    try:
        conn.request("POST", path, body=body, headers=headers, encode_chunked=False)
    except (OSError, http.client.HTTPException) as err:
        if cancelled.is_set():
            raise Cancelled from None
        early = _early_response(conn, secret) if sent_any() else None
        return early if early is not None else Outcome(None, None, describe_error(err), True)
    try:
        response = conn.getresponse()
        data = response.read(MAX_RESPONSE_BYTES)
    except (OSError, http.client.HTTPException) as err:
        if cancelled.is_set():
            raise Cancelled from None
        return Outcome(None, None, describe_error(err), retry=True)
    return _classify(response.status, response.getheader("Content-Type"), data, secret)


def _early_response(conn: http.client.HTTPConnection, secret: str | None) -> Outcome | None:
    """A response the server sent before it stopped reading the body (e.g. a 401)."""
    if conn.sock is None:
        return None
    try:
        conn.sock.settimeout(EARLY_RESPONSE_TIMEOUT_S)
        response = conn.getresponse()
        data = response.read(MAX_RESPONSE_BYTES)
    except (OSError, http.client.HTTPException):
        return None
    return _classify(response.status, response.getheader("Content-Type"), data, secret)


def _classify(status: int, content_type: str | None, body: bytes, secret: str | None) -> Outcome:
    response = parse_response(status, content_type, body, secret=secret)
    if response.ok:
        return Outcome(status, response, None, retry=False)
    retry = status >= 500 or status in RETRY_STATUSES
    return Outcome(status, response, response.error, retry=retry)


def describe_error(err: BaseException) -> str:
    """A short, secret-free description of a network error."""
    if isinstance(err, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {err.verify_message}"
    text = str(err) or err.__class__.__name__
    return clean_text(f"{err.__class__.__name__}: {text}")
