"""A reference endpoint: receives what `agent.egress.gate` sends and saves it, for tests and demos.

`Receiver` runs a small threaded HTTP(S) server that accepts both kinds of upload:

- ``POST /v1/audio/transcriptions``: a multipart form (``file``, ``model``, ...) as OpenAI's
  transcription API takes it; answers ``{"text": TRANSCRIPT}``;
- ``POST`` to any other path: a body (chunked or with a length) of WAV or ``audio/L16`` PCM;
  answers ``{"ok": true, ...}``.

Each upload is saved as ``NNNN.wav`` (16-bit mono 16 kHz) and ``NNNN.json`` (the ``X-Earshot-*``
headers, content type, kind, sizes and arrival times, never the ``Authorization`` header) in an
owner-only folder. With a token, requests without ``Authorization: Bearer TOKEN`` get 401.
Malformed requests get 400 with a JSON error; the server never crashes on them. Here are the
server, its reading of bodies off the socket and the saved files; `agent.egress.decoder` turns a
body into audio.
"""

from __future__ import annotations

import hmac
import json
import logging
import ssl
import threading
import time
import wave
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from agent.egress.decoder import BadRequest, decode_upload
from agent.private_files import private_dir, write_private
from dsp.constants import SAMPLE_RATE_HZ

_LOGGER = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 << 20
TLS_HANDSHAKE_TIMEOUT_S = 10.0
SHUTDOWN_POLL_S = 0.05
"""How often the serving thread checks for `Receiver.stop`."""
_MAX_CHUNK_LINE = 1024


@dataclass
class ReceivedUpload:
    """One saved upload."""

    path: Path
    """The saved WAV file."""
    metadata: dict[str, Any]
    bytes: int
    """Body bytes received (the whole multipart body for transcription requests)."""
    audio: np.ndarray = field(repr=False)
    """The decoded samples, float32 in [-1, 1)."""
    received_at: float
    """`time.time` when the body was complete."""


def _wav_file_bytes(samples: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE_HZ)
        pcm = np.clip(np.rint(samples * 32768.0), -32768, 32767).astype("<i2")
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


class _Handler(BaseHTTPRequestHandler):
    """One request; the server is a `_Server` that owns the receiver's state."""

    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        _LOGGER.debug("%s " + format, self.client_address[0], *args)

    def do_POST(self) -> None:  # noqa: N802 (the base class's naming)
        """Authorize, read and save one upload; answer with JSON."""
        self.close_connection = True
        receiver = self.server.receiver
        try:
            authorized = receiver.authorized(self.headers.get("Authorization"))
            started = time.time()
            body, first_byte_at = self._read_body()
            if not authorized:
                raise BadRequest("missing or wrong bearer token", status=401)
            reply = receiver.save(self, body, started, first_byte_at)
            self._reply(200, reply)
        except BadRequest as err:
            _LOGGER.warning("refused a request to %s: %s", self.path, err)
            self._reply(err.status, {"error": str(err)})
        except (OSError, ValueError) as err:
            _LOGGER.warning("bad request to %s: %s", self.path, err)
            self._reply(400, {"error": f"unreadable request: {err.__class__.__name__}"})

    def _reply(self, status: int, document: dict[str, Any]) -> None:
        data = json.dumps(document).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client is gone

    def _read_body(self) -> tuple[bytes, float | None]:
        """The request body, de-chunked, and when its first byte arrived."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise BadRequest("Content-Length is not a number") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            raise BadRequest(f"body of {length} bytes; at most {MAX_BODY_BYTES}", status=413)
        data = self.rfile.read(length)
        self.server.receiver.count_bytes(len(data))
        return data, time.time() if data else None

    def _read_chunked(self) -> tuple[bytes, float | None]:
        body = bytearray()
        first_byte_at = None
        while True:
            line = self.rfile.readline(_MAX_CHUNK_LINE)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadRequest("malformed chunk size line") from None
            if size == 0:
                while self.rfile.readline(_MAX_CHUNK_LINE).strip():
                    pass  # trailers
                return bytes(body), first_byte_at
            if size < 0 or len(body) + size > MAX_BODY_BYTES:
                raise BadRequest(f"body over {MAX_BODY_BYTES} bytes", status=413)
            data = self.rfile.read(size)
            if len(data) != size or self.rfile.read(2) != b"\r\n":
                raise BadRequest("truncated chunk")
            if first_byte_at is None:
                first_byte_at = time.time()
            body += data
            self.server.receiver.count_bytes(size)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: Receiver, address: tuple[str, int]) -> None:
        self.receiver = receiver
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Wrap the connection in TLS (in the request's own thread) when configured."""
        context = self.receiver.ssl_context
        if context is not None:
            request.settimeout(TLS_HANDSHAKE_TIMEOUT_S)
            try:
                request = context.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as err:
                _LOGGER.info("TLS handshake with %s failed: %s", client_address[0], err)
                return
        super().finish_request(request, client_address)


class Receiver:
    """An HTTP(S) endpoint that saves what earshot uploads; see the module docstring.

    Parameters
    ----------
    out_dir
        Folder for ``NNNN.wav`` and ``NNNN.json`` (created owner-only).
    host, port
        Address to listen on; port 0 picks a free one (see `url`).
    token
        Bearer token requests must carry; None accepts any request.
    ssl_context
        A server-side TLS context (certificate loaded) to serve https.
    transcript
        The text of transcription replies (``""`` when None).
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        transcript: str | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.host, self.port = host, port
        self.ssl_context = ssl_context
        self.transcript = transcript
        self._token = token
        self._lock = threading.Condition()
        self._uploads: list[ReceivedUpload] = []
        self._received_bytes = 0
        self._next_number = 1
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"Receiver({str(self.out_dir)!r}, port={self.port})"

    @property
    def url(self) -> str:
        """The server's base URL, e.g. ``http://127.0.0.1:8765``."""
        scheme = "https" if self.ssl_context is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def uploads(self) -> list[ReceivedUpload]:
        """The uploads saved so far (a copy)."""
        with self._lock:
            return list(self._uploads)

    @property
    def received_bytes(self) -> int:
        """Body bytes received so far, uploads still in progress included."""
        with self._lock:
            return self._received_bytes

    def wait_for_bytes(self, count: int, timeout_s: float) -> bool:
        """Wait until at least ``count`` body bytes have arrived; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._received_bytes >= count, timeout_s)

    def start(self) -> Receiver:
        """Create the output folder, bind and serve on a background thread."""
        private_dir(self.out_dir)
        numbers = [int(p.stem) for p in self.out_dir.glob("*.wav") if p.stem.isdigit()]
        self._next_number = max(numbers, default=0) + 1  # never overwrite earlier uploads
        self._server = _Server(self, (self.host, self.port))
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_S},
            name="earshot-receiver",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def authorized(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header value carries the token (always, without one)."""
        if self._token is None:
            return True
        expected = f"Bearer {self._token}".encode()
        return hmac.compare_digest((header or "").encode("utf-8", "replace"), expected)

    def count_bytes(self, count: int) -> None:
        """Note ``count`` more body bytes (called by request threads as data arrives)."""
        with self._lock:
            self._received_bytes += count
            self._lock.notify_all()

    def save(
        self, handler: BaseHTTPRequestHandler, body: bytes, started: float, first: float | None
    ) -> dict[str, Any]:
        """Decode, save and record one upload; returns the JSON reply.

        Raises
        ------
        BadRequest
            The body is not audio earshot sends.
        """
        content_type = handler.headers.get("Content-Type", "")
        path = handler.path.split("?", 1)[0]
        metadata: dict[str, Any] = {
            "path": path,
            "headers": {
                k: v for k, v in handler.headers.items() if k.lower().startswith("x-earshot-")
            },
            "content_type": content_type,
        }
        decoded = decode_upload(path, content_type, body)
        audio = decoded.audio
        metadata["kind"] = decoded.kind
        if decoded.kind == "openai-transcription":
            metadata["form"] = decoded.form
            reply: dict[str, Any] = {"text": self.transcript or ""}
        else:
            reply = {"ok": True, "seconds": round(audio.size / SAMPLE_RATE_HZ, 3)}
            if self.transcript is not None:
                reply["text"] = self.transcript
        received_at = time.time()
        metadata.update(
            bytes=len(body), seconds=round(audio.size / SAMPLE_RATE_HZ, 4),
            started_at=started, first_byte_at=first, last_byte_at=received_at,
        )  # fmt: skip
        upload = self._store(metadata, audio, len(body), received_at)
        _LOGGER.info(
            "received %s: %.2f s of audio, %d bytes, wake word %s",
            upload.path.name, audio.size / SAMPLE_RATE_HZ, len(body),
            metadata["headers"].get("X-Earshot-Wake-Word", "?"),
        )  # fmt: skip
        return reply

    def _store(
        self, metadata: dict[str, Any], audio: np.ndarray, size: int, received_at: float
    ) -> ReceivedUpload:
        with self._lock:
            number = self._next_number
            self._next_number += 1
            stem = self.out_dir / f"{number:04d}"
            upload = ReceivedUpload(stem.with_suffix(".wav"), metadata, size, audio, received_at)
            write_private(upload.path, _wav_file_bytes(audio))
            write_private(stem.with_suffix(".json"), json.dumps(metadata, indent=2).encode())
            self._uploads.append(upload)
            self._lock.notify_all()
        return upload
