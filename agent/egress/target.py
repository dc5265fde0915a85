"""The checked endpoint the privacy gate sends to: address, TLS context and bearer token.

`Target.from_settings` turns the ``endpoint`` settings into what a request needs, refusing an
unsafe one: plain http (and, for a ``wyoming`` endpoint, plain tcp) is allowed only to this
machine (checked here as well as in the settings), the token comes from ``token_env`` or
``token_file`` and must fit in a header, and a ``ca_file`` must load. The token never shows: its
repr and str are ``[redacted]``, messages about it do not quote it, and `Target.scrub` takes it
out of any text a server echoes back. HTTP connections (`Target.connection`) and the plain
sockets of Wyoming endpoints (`Target.open_stream`: TCP, TCP in TLS, or a Unix socket) count the
bytes their socket accepts (`SocketMeter`), so that the audit log says what was sent.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.egress.wire import REDACTED, redact_secret, redact_url
from agent.settings import EndpointSettings, endpoint_url_parts
from kernels.errors import ConfigError


class _Token:
    """A bearer token whose repr and str never show it."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return REDACTED

    __str__ = __repr__


def _checked_token(value: str, where: str) -> _Token:
    """``value`` as a token, refusing characters a header cannot carry (without showing it).

    Raises
    ------
    ConfigError
        The token contains spaces, control characters or non-ASCII characters.
    """
    if not all(33 <= ord(char) <= 126 for char in value):
        raise ConfigError(
            f"{where}: the token contains spaces, control or non-ASCII characters; expected "
            "printable ASCII only (the token itself is not shown)"
        )
    return _Token(value)


def _read_token(endpoint: EndpointSettings) -> _Token | None:
    """The token from ``token_env`` or the first line of ``token_file``; None when neither is set.

    Raises
    ------
    ConfigError
        The variable is unset or empty, or the file is unreadable or empty.
    """
    if endpoint.token_env is not None:
        value = os.environ.get(endpoint.token_env, "").strip()
        if not value:
            raise ConfigError(
                f"endpoint.token_env: environment variable {endpoint.token_env} is not set or "
                "empty; export the bearer token in it, or remove token_env"
            )
        return _checked_token(value, f"endpoint.token_env ({endpoint.token_env})")
    if endpoint.token_file is not None:
        path = Path(endpoint.token_file).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(
                f"endpoint.token_file: cannot read {path}: {err.__class__.__name__}"
            ) from None
        value = lines[0].strip() if lines else ""
        if not value:
            raise ConfigError(f"endpoint.token_file: {path} is empty; expected the token on line 1")
        return _checked_token(value, f"endpoint.token_file ({path})")
    return None


class SocketMeter:
    """The bytes a connection's socket has accepted for sending, request head included."""

    def __init__(self) -> None:
        self.total = 0

    def __repr__(self) -> str:
        return f"SocketMeter(total={self.total})"


class MeteredSocket:
    """A connected socket whose `sendall` counts, in ``meter``, every byte the kernel accepts.

    ``sendall`` is made of ``send`` calls, so that bytes accepted before a failure count too;
    everything else (``makefile``, ``shutdown``, ``close``...) is the wrapped socket's.
    """

    def __init__(self, sock: socket.socket, meter: SocketMeter) -> None:
        self._sock = sock
        self._meter = meter

    def sendall(self, data: bytes) -> None:
        """Send all of ``data``, counting each part the kernel accepts as it goes."""
        view = memoryview(data).cast("B")
        while view:
            sent = self._sock.send(view)
            self._meter.total += sent
            view = view[sent:]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _MeteredHTTPConnection(http.client.HTTPConnection):
    meter: SocketMeter

    def connect(self) -> None:
        super().connect()
        self.sock = MeteredSocket(self.sock, self.meter)


class _MeteredHTTPSConnection(http.client.HTTPSConnection):
    meter: SocketMeter

    def connect(self) -> None:
        super().connect()  # the TLS handshake; what is metered is what TLS is given to send
        self.sock = MeteredSocket(self.sock, self.meter)


def _ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """A verifying TLS context trusting ``ca_file`` (else the system's CAs).

    Raises
    ------
    ConfigError
        ``ca_file`` cannot be read or holds no certificate.
    """
    try:
        return ssl.create_default_context(
            cafile=None if ca_file is None else str(Path(ca_file).expanduser())
        )
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(
            f"endpoint.ca_file: cannot load {ca_file}: {err}; expected a PEM file of CA "
            "certificates"
        ) from None


@dataclass(frozen=True, repr=False)
class Target:
    """A checked endpoint: where to connect, the request path, the TLS context, the token."""

    kind: str
    scheme: str
    """The URL's scheme: ``http`` or ``https``; for ``wyoming``, ``tcp``, ``tls`` or ``unix``."""
    host: str
    """The host name or address; empty for a Unix socket."""
    port: int
    """The TCP port; 0 for a Unix socket."""
    path: str
    """The HTTP request target (path and query), or the path of a Unix socket."""
    display: str
    """The URL without secrets, for logs, events and the audit log."""
    tls: ssl.SSLContext | None
    token: _Token | None
    device_id: str
    timeout_s: float

    def __repr__(self) -> str:
        return f"Target({self.kind!r}, {self.display!r})"

    @classmethod
    def from_settings(cls, endpoint: EndpointSettings) -> Target:
        """Check ``endpoint`` and read its token and CA file.

        Raises
        ------
        ConfigError
            A URL its kind does not take, plain http or tcp to a host other than loopback, a
            missing token or an unreadable CA file.
        """
        assert endpoint.url is not None
        display = redact_url(endpoint.url)
        parts = endpoint_url_parts(endpoint.url, "endpoint.url", repr(display), endpoint.kind)
        scheme = parts.scheme.lower()
        secure = scheme in ("https", "tls")
        if scheme == "unix":
            host, port, path = "", 0, parts.path
        else:
            assert parts.hostname is not None
            host, port = parts.hostname, parts.port or (443 if secure else 80)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(
            kind=endpoint.kind,
            scheme=scheme,
            host=host,
            port=port,
            path=path,
            display=display,
            tls=_ssl_context(endpoint.ca_file) if secure else None,
            token=_read_token(endpoint),
            device_id=endpoint.device_id or socket.gethostname(),
            timeout_s=endpoint.timeout_s,
        )

    @property
    def secret(self) -> str | None:
        """The token's value, for taking it out of what a server answers; None without one."""
        return None if self.token is None else self.token.value

    def connection(self, meter: SocketMeter) -> http.client.HTTPConnection:
        """A new, not yet connected connection whose socket operations time out.

        Parameters
        ----------
        meter
            Counts the bytes the connection's socket accepts for sending.
        """
        conn: _MeteredHTTPConnection | _MeteredHTTPSConnection
        if self.tls is not None:
            conn = _MeteredHTTPSConnection(
                self.host, self.port, timeout=self.timeout_s, context=self.tls
            )
        else:
            conn = _MeteredHTTPConnection(self.host, self.port, timeout=self.timeout_s)
        conn.meter = meter
        return conn

    def open_stream(self, meter: SocketMeter) -> MeteredSocket:
        """A connected socket to a ``tcp``, ``tls`` or ``unix`` endpoint, metered and timing out.

        Connecting (and the TLS handshake) and every later operation on the socket time out
        after ``timeout_s``; what the socket accepts for sending is counted in ``meter`` (for
        TLS, what TLS is given to send).

        Raises
        ------
        OSError
            The endpoint cannot be reached, or the TLS handshake fails (`ssl.SSLError`).
        """
        sock: socket.socket
        if self.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout_s)
            try:
                sock.connect(self.path)
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
            if self.tls is not None:
                try:
                    sock = self.tls.wrap_socket(sock, server_hostname=self.host)
                except OSError:
                    sock.close()
                    raise
        return MeteredSocket(sock, meter)

    def scrub(self, text: str | None) -> str | None:
        """``text`` with the token (should a server echo it), or a cut-off start of it, replaced."""
        if text is None:
            return text
        return redact_secret(text, self.secret)
