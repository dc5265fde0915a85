"""A TCP proxy in front of a real endpoint that misbehaves for its first connections.

Each of the first ``failures`` connections meets a fault instead of the endpoint: a 500 reply, a
server that never answers, a connection closed mid-upload, or a TLS certificate the client does
not trust. Later connections are piped, byte for byte, to the real endpoint (TLS included).
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Literal

Fault = Literal["500", "hang", "close", "untrusted"]

SERVER_ERROR = (
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)
HANG_S = 30.0
CLOSE_AFTER_BYTES = 2048


class FaultProxy:
    """Listens on loopback; ``port`` is where the client should connect."""

    def __init__(
        self,
        fault: Fault,
        backend_port: int,
        *,
        failures: int,
        untrusted: ssl.SSLContext | None = None,
        port: int = 0,
    ):
        self.fault, self.backend_port, self.failures_left = fault, backend_port, failures
        self.untrusted = untrusted
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", port))
        self.port = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        """Stop listening and drop every connection."""
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            for conn in self._open:
                conn.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._open.append(client)
                self.connections += 1
                faulty = self.failures_left > 0
                self.failures_left -= faulty
            target = self._misbehave if faulty else self._pipe
            threading.Thread(target=target, args=(client,), daemon=True).start()

    def _misbehave(self, client: socket.socket) -> None:
        try:
            if self.fault == "untrusted":
                assert self.untrusted is not None
                with self.untrusted.wrap_socket(client, server_side=True):
                    pass  # the client refuses the handshake
            elif self.fault == "500":
                client.recv(65536)
                client.sendall(SERVER_ERROR)
            elif self.fault == "close":
                received = 0
                while received < CLOSE_AFTER_BYTES:
                    data = client.recv(CLOSE_AFTER_BYTES - received)
                    if not data:
                        break
                    received += len(data)
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            else:  # hang: read everything, answer nothing
                client.settimeout(HANG_S)
                while client.recv(65536):
                    pass
        except (OSError, ssl.SSLError):
            pass
        finally:
            client.close()

    def _pipe(self, client: socket.socket) -> None:
        backend = socket.create_connection(("127.0.0.1", self.backend_port))
        with self._lock:
            self._open.append(backend)

        def copy(source: socket.socket, sink: socket.socket) -> None:
            try:
                while data := source.recv(65536):
                    sink.sendall(data)
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        threading.Thread(target=copy, args=(backend, client), daemon=True).start()
        copy(client, backend)
