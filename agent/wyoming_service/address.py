"""Where `earshot wyoming` listens: the ``--uri`` forms, checked, as the package's servers.

``tcp://HOST:PORT`` gives `wyoming.server.AsyncTcpServer`, ``unix://PATH`` an
`wyoming.server.AsyncUnixServer` on a path that is free or holds a stale socket.
"""

from __future__ import annotations

import socket
import stat
from pathlib import Path
from urllib.parse import urlparse

from wyoming.server import AsyncServer, AsyncTcpServer, AsyncUnixServer

from agent.wyoming_service import DEFAULT_URI
from kernels.errors import ConfigError

URI_FORMS = "tcp://HOST:PORT (e.g. tcp://127.0.0.1:10400) or unix://PATH (e.g. unix:///run/x.sock)"
"""What ``--uri`` accepts, for messages."""


def server_for_uri(uri: str) -> AsyncServer:
    """The package's server for ``--uri``: `AsyncTcpServer` or `AsyncUnixServer`.

    Raises
    ------
    ConfigError
        The URI is neither form, names no port or path, or a path that is not a socket.
    """
    try:
        parsed = urlparse(uri)
        port = parsed.port if parsed.scheme == "tcp" else None
    except ValueError as err:  # a port that is not a number, or out of range
        raise ConfigError(f"--uri: got {uri!r} ({err}), expected {URI_FORMS}") from None
    if parsed.scheme == "tcp":
        if not parsed.hostname or port is None or port == 0 or parsed.path not in ("", "/"):
            raise ConfigError(
                f"--uri: got {uri!r}, expected tcp://HOST:PORT with a port from 1 to 65535, "
                f"e.g. {DEFAULT_URI}"
            )
        return AsyncTcpServer(parsed.hostname, port)
    if parsed.scheme == "unix":
        path = Path(parsed.netloc + parsed.path)
        check_socket_path(uri, path)
        return AsyncUnixServer(path)
    raise ConfigError(f"--uri: got {uri!r}, expected {URI_FORMS}")


def check_socket_path(uri: str, path: Path) -> None:
    """Refuse a Unix socket path the server cannot, or must not, listen on.

    The server replaces a stale socket at ``path``; it refuses anything else there, a socket
    another server listens on, and a folder that does not exist.

    Raises
    ------
    ConfigError
        The message names ``--uri``, the path and the reason.
    """
    if not str(path) or str(path) == ".":
        raise ConfigError(f"--uri: got {uri!r}, which names no socket path; expected {URI_FORMS}")
    if not path.parent.is_dir():
        raise ConfigError(f"--uri: {uri!r}: the folder {path.parent} does not exist")
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(
            f"--uri: {uri!r}: {path} exists and is not a socket; expected a new path or a "
            "stale socket to replace"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError:
        return  # a stale socket: the server replaces it
    finally:
        probe.close()
    raise ConfigError(f"--uri: {uri!r}: another server is listening on {path}")
