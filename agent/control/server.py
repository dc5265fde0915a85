"""The owner-only Unix control socket: `earshot status`, `earshot events` and reloads.

Protocol: the client sends one JSON object per line and gets one JSON line back.

- ``{"command": "status"}``: the daemon's status (``"ok": true`` added);
- ``{"command": "reload"}``: the result of reloading the configuration;
- ``{"command": "feedback", "kind": "false-alarm" | "missed", "wake_word": NAME}``: keep the
  audio of the last detection, or of the last seconds, for learning (``wake_word`` optional);
- ``{"command": "subscribe"}``: ``{"ok": true, "subscribed": true}``, then every later event
  line until the client disconnects (the connection takes no more commands);
- anything else (bad JSON, an unknown command): ``{"ok": false, "error": "..."}``, and the
  connection stays usable. A line longer than `MAX_LINE_BYTES` closes the connection.

The socket is 0600, created under a 0177 umask so no other user can connect even for an
instant, in a folder only its user can write to; the folder is checked, and an exclusive lock
beside the socket taken, before anything at the path is touched (`agent.control.claim`). Only a
Unix socket is ever opened: the agent listens on no network port. Standard library only.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from agent.control.claim import SocketInUseError, SocketLock, prepare_folder
from agent.control.events import EventBus, to_json_safe
from agent.paths import PRIVATE_FILE
from kernels.errors import EarshotError

_LOGGER = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 1024
"""Longest request or reply line; a longer request closes its connection."""
FLUSH_TIMEOUT_S = 1.0
"""How long `ControlServer.close` lets subscribers receive the events already emitted."""
_PROBE_TIMEOUT_S = 1.0
_SOCKET_UMASK = 0o177

StatusFunction = Callable[[], dict[str, object]]
ReloadFunction = Callable[[], dict[str, object] | Awaitable[dict[str, object]]]
FeedbackFunction = Callable[[dict[str, object]], Awaitable[dict[str, object]]]


class NotRunningError(EarshotError):
    """Nothing listens on the control socket: the agent is not running."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"earshot is not running (no control socket at {path})")
        self.path = path


class ControlServer:
    """Serves the control protocol on a Unix socket; see the module docstring.

    Parameters
    ----------
    path
        The socket file; its folder is created (0700) when missing, and refused when shared
        or another user's (`agent.control.claim.prepare_folder`).
    bus
        Events for ``subscribe`` clients.
    status
        Called for each ``status`` request; returns a JSON-safe-able dict.
    reload
        Called for each ``reload`` request (a coroutine function too); None answers that
        reloading is not supported.
    feedback
        Awaited with each ``feedback`` request; None answers that it is not supported.
    """

    def __init__(
        self,
        path: Path,
        bus: EventBus,
        status: StatusFunction,
        *,
        reload: ReloadFunction | None = None,
        feedback: FeedbackFunction | None = None,
    ) -> None:
        self.path = Path(path)
        self._bus = bus
        self._status = status
        self._reload = reload
        self._feedback = feedback
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None
        self._lock = SocketLock(self.path)
        self._clients: set[asyncio.Task[None]] = set()
        self._streaming: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()

    async def start(self) -> None:
        """Bind and listen.

        Raises
        ------
        SocketInUseError
            Another earshot holds the socket's lock or answers on the socket (exit 2).
        ConfigError
            The socket's folder is shared or another user's.
        EarshotError
            The path is not a socket, or locking or binding fails.
        """
        prepare_folder(self.path.parent)
        self._lock.acquire()  # before the stale check: see `agent.control.claim`
        try:
            await self._clear_stale()
            await self._listen()
        except BaseException:
            self._lock.release()
            raise
        _LOGGER.info("control socket at %s", self.path)

    async def _listen(self) -> None:
        old_umask = os.umask(_SOCKET_UMASK)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_LINE_BYTES
            )
        except OSError as err:
            raise EarshotError(f"cannot listen on control socket {self.path}: {err}") from err
        finally:
            os.umask(old_umask)
        os.chmod(self.path, PRIVATE_FILE)
        self._inode = self.path.stat().st_ino

    async def close(self) -> None:
        """Stop listening, disconnect every client, remove the socket file and release its lock.

        Subscribers first get the events already emitted (the last ones tell why the agent
        stops), for up to `FLUSH_TIMEOUT_S`.
        """
        if self._server is not None:
            self._server.close()
        self._closing.set()
        if self._streaming:
            await asyncio.wait(self._streaming, timeout=FLUSH_TIMEOUT_S)
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        # Remove the file only if it is still ours (a newer instance may have replaced it).
        with contextlib.suppress(OSError):
            if self._inode is not None and self.path.stat().st_ino == self._inode:
                self.path.unlink()
        self._inode = None
        self._lock.release()

    async def _clear_stale(self) -> None:
        """Refuse a live socket at our path; remove a stale one."""
        try:
            mode = self.path.lstat().st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise EarshotError(
                f"control socket {self.path}: the path exists and is not a socket; remove it "
                "or set events.socket to another path"
            )
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(self.path)), _PROBE_TIMEOUT_S
            )
        except (TimeoutError, OSError):
            _LOGGER.info("removing stale control socket %s", self.path)
            self.path.unlink(missing_ok=True)
            return
        writer.close()
        raise SocketInUseError(self.path)  # an agent that takes no lock

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            await self._converse(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:  # a client must never take the server down
            _LOGGER.exception("control client failed")
        finally:
            self._clients.discard(task)
            writer.close()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # longer than the reader's limit
                _LOGGER.warning("control client sent a line over %d bytes", MAX_LINE_BYTES)
                return
            if not line:
                return
            if not line.strip():
                continue
            command, reply = await self._answer(line)
            await _send(writer, reply)
            if command == "subscribe":
                await self._stream(reader, writer)
                return

    async def _answer(self, line: bytes) -> tuple[str | None, dict[str, object]]:
        """The command named in ``line`` (None when invalid) and the reply to send."""
        try:
            request = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            return None, _error(f"invalid JSON: {err}")
        command = request.get("command") if isinstance(request, dict) else None
        if command == "subscribe":
            return command, {"ok": True, "subscribed": True}
        fields = request if isinstance(request, dict) else {}
        feedback = self._feedback
        handlers: dict[str, ReloadFunction | None] = {
            "status": self._status,
            "reload": self._reload,
            "feedback": None if feedback is None else lambda: feedback(fields),
        }
        if not isinstance(command, str) or command not in handlers:
            return None, _error(
                f"command: got {json.dumps(command)}, expected one of status, reload, feedback, "
                "subscribe"
            )
        handler = handlers[command]
        if handler is None:
            return command, _error(f"{command} is not supported by this agent")
        try:
            reply = handler()
            if inspect.isawaitable(reply):
                reply = await reply
        except EarshotError as err:  # a request the agent refuses, in its own words
            return command, _error(str(err))
        except Exception as err:  # the daemon's failure is reported, not fatal
            _LOGGER.exception("control command %s failed", command)
            return command, _error(f"{command} failed: {err}")
        return command, {"ok": True, **reply}

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Forward event lines until the client hangs up."""
        queue = self._bus.subscribe()
        task = asyncio.current_task()
        assert task is not None
        self._streaming.add(task)
        hung_up = asyncio.ensure_future(_until_eof(reader))
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            while not hung_up.done():
                line = asyncio.ensure_future(queue.get())
                await asyncio.wait({line, hung_up, closing}, return_when=asyncio.FIRST_COMPLETED)
                if line.done():
                    writer.write(line.result().encode() + b"\n")
                else:
                    line.cancel()
                if closing.done():
                    while not queue.empty():
                        writer.write(queue.get_nowait().encode() + b"\n")
                    await writer.drain()
                    return
                await writer.drain()
        finally:
            self._streaming.discard(task)
            hung_up.cancel()
            closing.cancel()
            self._bus.unsubscribe(queue)


async def _until_eof(reader: asyncio.StreamReader) -> None:
    """Read and ignore input until the peer closes (or breaks) the connection."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(MAX_LINE_BYTES):
            pass


async def _send(writer: asyncio.StreamWriter, reply: dict[str, object]) -> None:
    data = json.dumps(to_json_safe(reply), separators=(",", ":"), ensure_ascii=False)
    writer.write(data.encode() + b"\n")
    await writer.drain()


def _error(message: str) -> dict[str, object]:
    return {"ok": False, "error": message}


def _connect(path: Path, timeout_s: float) -> socket.socket:
    """A connected client socket.

    Raises
    ------
    NotRunningError
        No socket file, or nothing listening on it.
    EarshotError
        Another failure (permissions, a timeout).
    """
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(timeout_s)
    try:
        client.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as err:
        client.close()
        raise NotRunningError(path) from err
    except OSError as err:
        client.close()
        raise EarshotError(f"cannot connect to control socket {path}: {err}") from err
    return client


def _read_line(client: socket.socket, buffer: bytearray, path: Path) -> bytes | None:
    """The next line from ``client`` (without newline); None at end of stream."""
    while b"\n" not in buffer:
        if len(buffer) > MAX_LINE_BYTES:
            raise EarshotError(f"control socket {path}: reply longer than {MAX_LINE_BYTES} bytes")
        try:
            chunk = client.recv(MAX_LINE_BYTES)
        except TimeoutError as err:
            raise EarshotError(f"control socket {path}: no answer in time") from err
        except OSError as err:
            raise EarshotError(f"control socket {path}: {err}") from err
        if not chunk:
            return None
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line


def _decode(line: bytes | None, path: Path) -> dict[str, object]:
    if line is None:
        raise EarshotError(f"control socket {path}: the agent closed the connection")
    try:
        reply = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EarshotError(f"control socket {path}: invalid reply {line[:200]!r}") from err
    if not isinstance(reply, dict):
        raise EarshotError(f"control socket {path}: expected a JSON object, got {line[:200]!r}")
    return reply


def request(
    path: Path, command: str, timeout_s: float = 2.0, *, fields: dict[str, object] | None = None
) -> dict[str, object]:
    """Send one command (with ``fields`` beside it) and return the agent's reply (blocking).

    Raises
    ------
    NotRunningError
        Nothing listens at ``path``.
    EarshotError
        No reply within ``timeout_s`` seconds, or an invalid one.
    """
    with _connect(path, timeout_s) as client:
        client.sendall(json.dumps({"command": command, **(fields or {})}).encode() + b"\n")
        return _decode(_read_line(client, bytearray(), path), path)


def subscribe(path: Path, timeout_s: float = 2.0) -> Iterator[str]:
    """Every event line the agent emits from now on, until it closes the connection.

    Blocking; the subscription is confirmed (within ``timeout_s``) before the first line.

    Raises
    ------
    NotRunningError
        Nothing listens at ``path``.
    EarshotError
        The agent refuses or does not confirm the subscription.
    """
    with _connect(path, timeout_s) as client:
        client.sendall(b'{"command": "subscribe"}\n')
        buffer = bytearray()
        reply = _decode(_read_line(client, buffer, path), path)
        if reply.get("ok") is not True:
            raise EarshotError(f"control socket {path}: {reply.get('error', reply)}")
        client.settimeout(None)
        while (line := _read_line(client, buffer, path)) is not None:
            yield line.decode(errors="replace")
