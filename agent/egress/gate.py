"""The privacy gate: the only code in earshot that sends anything over the network.

After a wake word, the daemon opens an `Upload` and writes the command audio into it as it is
captured. The gate itself enforces what may leave the machine:

- nothing from before ``wake_end_s - pre_roll_s`` (stream time) is ever sent: `Upload.write`
  trims it, whatever the caller passes;
- at most ``max_audio_s + pre_roll_s`` seconds of audio per upload, buffered in memory only;
- only over https, or plain http to this machine (checked here as well as in the settings);
- at most ``max_in_flight`` uploads at once; more are refused, never queued;
- each upload gets exactly one entry in the audit log (`agent.egress.audit`), and no token ever
  appears in a log line, event, audit entry or exception message.

Two kinds of endpoint are spoken to. ``http``: a chunked ``POST`` that streams the audio (WAV
or raw 16-bit PCM) while the user still speaks. ``openai-transcription``: one multipart ``POST``
in the shape of OpenAI's ``/v1/audio/transcriptions`` once the command has ended. Failed
attempts are retried a bounded number of times with exponential backoff, resending the buffered
audio from its start. The bytes themselves (WAV, PCM, multipart bodies, replies) are built and read
by the pure helpers of `agent.egress.wire`.
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.egress.audit import AuditLog, Result, make_entry
from agent.egress.wire import (
    BYTES_PER_SAMPLE,
    PCM_CONTENT_TYPE,
    RETRY_STATUSES,
    SAMPLE_RATE_HZ,
    Response,
    backoff_s,
    clean_text,
    encode_pcm16,
    first_kept_index,
    header_value,
    iso_utc,
    multipart_body,
    parse_response,
    redact_url,
    wav_header,
)
from agent.settings import EndpointSettings, endpoint_url_parts
from kernels.errors import ConfigError

_LOGGER = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 1 << 20
"""Response bodies are read up to this many bytes."""
EARLY_RESPONSE_TIMEOUT_S = 1.0
"""How long to look for a response a server sent before dropping the upload's connection."""
_REDACTED = "[redacted]"


@dataclass(frozen=True)
class UploadRequest:
    """What the daemon knows about a wake when it opens an upload."""

    wake_word: str
    score: float
    wake_end_s: float
    """Stream time of the wake word's end, in seconds; audio before ``wake_end_s - pre_roll_s``
    is never sent."""
    detected_at: float
    """`time.time` of the detection."""


class _Token:
    """A bearer token whose repr and str never show it."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return _REDACTED

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
    host: str
    port: int
    path: str
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
            Not an http(s) URL, plain http to a host other than loopback, a missing token or an
            unreadable CA file.
        """
        assert endpoint.url is not None
        display = redact_url(endpoint.url)
        parts = endpoint_url_parts(endpoint.url, "endpoint.url", repr(display))
        host, port = parts.hostname, parts.port
        assert host is not None
        secure = parts.scheme == "https"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(
            kind=endpoint.kind,
            host=host,
            port=port or (443 if secure else 80),
            path=path,
            display=display,
            tls=_ssl_context(endpoint.ca_file) if secure else None,
            token=_read_token(endpoint),
            device_id=endpoint.device_id or socket.gethostname(),
            timeout_s=endpoint.timeout_s,
        )

    def connection(self) -> http.client.HTTPConnection:
        """A new, not yet connected connection whose socket operations time out."""
        if self.tls is not None:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout_s, context=self.tls
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)

    def scrub(self, text: str | None) -> str | None:
        """``text`` with the token (should a server echo it) replaced."""
        if text is None or self.token is None:
            return text
        return text.replace(self.token.value, _REDACTED)


def _user_agent() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"earshot/{version('earshot')}"
    except PackageNotFoundError:
        return "earshot/0"


class PrivacyGate:
    """Opens uploads to the configured endpoint, and enforces what they may send.

    Parameters
    ----------
    endpoint
        Where audio goes; ``url=None`` disables forwarding (`open` then sends nothing).
    audit
        The audit log; every upload opened on an enabled gate adds exactly one entry.
    on_event
        Called with ``("upload", fields)`` once per upload and ``("transcript", fields)`` when
        a response carries text; from worker threads.
    pre_roll_s
        Seconds of audio from before the wake word's end that may be sent.
    max_audio_s
        Seconds of audio after the wake word's end that may be sent; more is dropped.
    max_in_flight
        Uploads that may run at once; further ones are refused and audited as dropped.

    Raises
    ------
    ConfigError
        The endpoint is unsafe (plain http off this machine) or its token or CA file is missing.
    """

    def __init__(
        self,
        endpoint: EndpointSettings,
        audit: AuditLog,
        *,
        on_event: Callable[[str, dict[str, Any]], None],
        pre_roll_s: float = 0.0,
        max_audio_s: float = 11.0,
        max_in_flight: int = 2,
    ) -> None:
        self.endpoint = endpoint
        self.audit = audit
        self.on_event = on_event
        self.pre_roll_s = max(0.0, float(pre_roll_s))
        self.max_audio_s = float(max_audio_s)
        self.max_in_flight = int(max_in_flight)
        self.enabled = endpoint.url is not None
        self.target = Target.from_settings(endpoint) if endpoint.url is not None else None
        self.user_agent = _user_agent()
        self._lock = threading.Lock()
        self._uploads: set[Upload] = set()
        self._closed = False

    def __repr__(self) -> str:
        where = self.target.display if self.target is not None else "disabled"
        return f"PrivacyGate({self.endpoint.kind!r}, {where!r}, in_flight={self.in_flight})"

    @property
    def in_flight(self) -> int:
        """Uploads open now (buffering, sending or retrying)."""
        with self._lock:
            return len(self._uploads)

    def open(self, request: UploadRequest) -> Upload:
        """Start an upload for the wake ``request``; write its audio, then finish or cancel it.

        For the ``http`` kind a worker thread connects at once and streams audio as it is
        written. Beyond ``max_in_flight`` (or after `close`) the upload is refused: audited as
        dropped, and its methods do nothing. On a disabled gate nothing is audited or sent.
        """
        if self.target is None:
            return Upload(self, request, refused=None)
        with self._lock:
            if self._closed:
                refusal: str | None = "forwarding is shutting down"
            elif len(self._uploads) >= self.max_in_flight:
                refusal = "too many uploads in flight"
            else:
                refusal = None
            upload = Upload(self, request, refused=refusal)
            if refusal is None:
                self._uploads.add(upload)
        if refusal is None:
            upload.start()
        else:
            _LOGGER.warning("upload for %s refused: %s", request.wake_word, refusal)
            upload.complete("dropped", status=None, attempts=0, error=refusal)
        return upload

    def close(self, timeout_s: float = 1.5) -> None:
        """Cancel every upload in flight and wait up to ``timeout_s`` for their threads."""
        with self._lock:
            self._closed = True
            uploads = list(self._uploads)
        for upload in uploads:
            upload.cancel()
        deadline = time.monotonic() + timeout_s
        for upload in uploads:
            upload.join(max(0.0, deadline - time.monotonic()))

    def emit(self, kind: str, fields: dict[str, Any]) -> None:
        """Pass an event on, logging (not raising) a failing callback."""
        try:
            self.on_event(kind, fields)
        except Exception:  # a broken subscriber must not kill an upload thread
            _LOGGER.exception("event callback failed for a %s event", kind)

    def forget(self, upload: Upload) -> None:
        """Take a completed upload off the in-flight set."""
        with self._lock:
            self._uploads.discard(upload)

    def record(self, entry: dict[str, Any]) -> None:
        """Append an audit entry, logging (not raising) a failure to write it."""
        try:
            self.audit.append(entry)
        except OSError as err:
            _LOGGER.error("cannot write the audit log %s: %s", self.audit.path, err)


class _Cancelled(Exception):
    """Raised inside the body generator to abandon a request."""


@dataclass(frozen=True)
class _Outcome:
    """One attempt's end: the status (None without a response), an error, whether to retry."""

    status: int | None
    response: Response | None
    error: str | None
    retry: bool


def _classify(status: int, content_type: str | None, body: bytes) -> _Outcome:
    response = parse_response(status, content_type, body)
    if response.ok:
        return _Outcome(status, response, None, retry=False)
    retry = status >= 500 or status in RETRY_STATUSES
    return _Outcome(status, response, response.error, retry=retry)


class Upload:
    """One wake's command audio on its way to the endpoint; made by `PrivacyGate.open`.

    `write` buffers (never blocks), trimming audio from before the wake word and beyond the
    length limit; `finish` ends the command and `cancel` abandons it.
    """

    def __init__(self, gate: PrivacyGate, request: UploadRequest, *, refused: str | None) -> None:
        self.gate = gate
        self.request = request
        self.refused = refused
        """Why the upload was refused; None when it runs (or the gate is disabled)."""
        self.inert = gate.target is None or refused is not None
        self.cutoff_s = request.wake_end_s - gate.pre_roll_s
        self.max_samples = round((gate.max_audio_s + gate.pre_roll_s) * SAMPLE_RATE_HZ)
        self._cond = threading.Condition()
        self._chunks: list[bytes] = []
        self._samples = 0
        self._finished = False
        self._cancelled = threading.Event()
        self._completed = False
        self._conn: http.client.HTTPConnection | None = None
        self._thread: threading.Thread | None = None
        self._stall_deadline = time.monotonic() + gate.max_audio_s + gate.pre_roll_s
        if gate.target is not None:
            self._stall_deadline += gate.target.timeout_s
        self.bytes_sent = 0
        """Body bytes written to the socket by the latest attempt."""
        self.first_byte_at: float | None = None
        """`time.time` when the first audio byte was written to the socket."""

    def __repr__(self) -> str:
        return f"Upload({self.request.wake_word!r}, samples={self._samples})"

    @property
    def seconds(self) -> float:
        """Seconds of audio buffered (everything that is, or will be, sent)."""
        return self._samples / SAMPLE_RATE_HZ

    def write(self, chunk: np.ndarray, start_s: float) -> None:
        """Add float32 mono 16 kHz audio whose first sample lies at stream time ``start_s``.

        Samples before ``request.wake_end_s - pre_roll_s`` and beyond the length limit are
        dropped here. Never blocks on the network.
        """
        if self.inert or self._finished or self._cancelled.is_set():
            return
        samples = np.asarray(chunk, dtype=np.float32).reshape(-1)
        samples = samples[first_kept_index(start_s, self.cutoff_s, samples.size) :]
        with self._cond:
            samples = samples[: max(0, self.max_samples - self._samples)]
            if samples.size == 0:
                return
            self._chunks.append(encode_pcm16(samples))
            self._samples += samples.size
            self._cond.notify_all()

    def finish(self) -> None:
        """The command has ended: complete the request with the audio written so far."""
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    def cancel(self) -> None:
        """Abandon the upload; it is audited as dropped unless it has already completed."""
        if self.inert:
            return
        self._cancelled.set()
        with self._cond:
            self._cond.notify_all()
            conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked on the socket
            except OSError:
                pass
        self.complete("dropped", status=None, attempts=0, error="cancelled")

    def join(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the worker thread to end."""
        if self._thread is not None:
            self._thread.join(timeout_s)

    def start(self) -> None:
        """Start the worker thread (called by `PrivacyGate.open`)."""
        name = f"earshot-upload-{self.request.wake_word}"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def complete(
        self, result: Result, *, status: int | None, attempts: int, error: str | None
    ) -> None:
        """Audit the upload and emit its ``upload`` event; only the first call counts."""
        with self._cond:
            if self._completed:
                return
            self._completed = True
        gate = self.gate
        target = gate.target
        assert target is not None
        error = target.scrub(error)
        first_byte_s = None
        if self.first_byte_at is not None:
            first_byte_s = round(self.first_byte_at - self.request.detected_at, 4)
        entry = make_entry(
            wake_word=self.request.wake_word, score=self.request.score, seconds=self.seconds,
            bytes_sent=self.bytes_sent, endpoint=target.display, kind=target.kind,
            result=result, status=status, attempts=attempts, error=error,
        )  # fmt: skip
        gate.record(entry)
        fields = {key: entry[key] for key in ("wake_word", "score", "result", "status")}
        fields.update(
            attempts=attempts, seconds=entry["seconds"], bytes=entry["bytes"],
            endpoint=target.display, error=error, first_byte_s=first_byte_s,
        )  # fmt: skip
        gate.emit("upload", fields)
        gate.forget(self)

    def _run(self) -> None:
        target = self.gate.target
        assert target is not None
        status: int | None = None
        error: str | None = "no attempt made"
        attempts = 0
        try:
            for attempt in range(1, self.gate.endpoint.retries + 2):
                if attempt > 1 and self._cancelled.wait(backoff_s(attempt - 1)):
                    return
                attempts = attempt
                outcome = self._attempt()
                status, error = outcome.status, target.scrub(outcome.error)
                self._log_attempt(attempt, outcome)
                if outcome.error is None:
                    self.complete("ok", status=status, attempts=attempts, error=None)
                    self._emit_transcript(outcome.response)
                    return
                if not outcome.retry:
                    break
        except _Cancelled:
            return
        except Exception as err:  # supervisor of the worker: log, audit, never leak the thread
            _LOGGER.exception("upload for %s failed unexpectedly", self.request.wake_word)
            error = f"internal error: {err.__class__.__name__}"
        self.complete("failed", status=status, attempts=attempts, error=error)

    def _log_attempt(self, attempt: int, outcome: _Outcome) -> None:
        target = self.gate.target
        assert target is not None
        total = self.gate.endpoint.retries + 1
        if outcome.error is None:
            _LOGGER.info(
                "upload for %s: %s answered %s (attempt %d/%d, %.2f s of audio, %d bytes)",
                self.request.wake_word, target.display, outcome.status, attempt, total,
                self.seconds, self.bytes_sent,
            )  # fmt: skip
        else:
            _LOGGER.warning(
                "upload for %s to %s failed (attempt %d/%d%s): %s",
                self.request.wake_word, target.display, attempt, total,
                ", retrying" if outcome.retry and attempt < total else "",
                target.scrub(outcome.error),
            )  # fmt: skip

    def _emit_transcript(self, response: Response | None) -> None:
        target = self.gate.target
        assert target is not None
        text = response.text if response is not None else None
        if text is None and target.kind == "openai-transcription":
            text = ""
        if text is not None:
            self.gate.emit(
                "transcript", {"wake_word": self.request.wake_word, "text": target.scrub(text)}
            )

    def _headers(self) -> dict[str, str]:
        target = self.gate.target
        assert target is not None
        request = self.request
        headers = {
            "User-Agent": self.gate.user_agent,
            "X-Earshot-Wake-Word": header_value(request.wake_word),
            "X-Earshot-Score": f"{request.score:.4f}",
            "X-Earshot-Detected-At": iso_utc(request.detected_at),
            "X-Earshot-Wake-End-S": f"{request.wake_end_s:.3f}",
            "X-Earshot-Pre-Roll-S": f"{self.gate.pre_roll_s:.3f}",
            "X-Earshot-Device-Id": header_value(target.device_id),
        }
        if target.token is not None:
            headers["Authorization"] = f"Bearer {target.token.value}"
        return headers

    def _wait_for_audio(self, index: int) -> bool:
        """Wait until chunk ``index`` exists (True) or the command is over (False).

        Raises
        ------
        _Cancelled
            The upload was cancelled.
        """
        with self._cond:
            while index >= len(self._chunks) and not self._finished:
                if self._cancelled.is_set():
                    raise _Cancelled
                remaining = self._stall_deadline - time.monotonic()
                if remaining <= 0:
                    _LOGGER.warning("upload for %s never finished; sending what it has",
                                    self.request.wake_word)  # fmt: skip
                    self._finished = True
                    break
                self._cond.wait(remaining)
            if self._cancelled.is_set():
                raise _Cancelled
            return index < len(self._chunks)

    def _stream(self, header: bytes) -> Iterator[bytes]:
        """The body of a streaming request: ``header``, then audio as it is written."""
        self.bytes_sent = 0
        if header:
            yield header
            self.bytes_sent += len(header)
        index = 0
        while self._wait_for_audio(index):
            with self._cond:
                data = b"".join(self._chunks[index:])
                index = len(self._chunks)
            yield data
            self.bytes_sent += len(data)  # resumed: http.client has written the chunk
            if self.first_byte_at is None:
                self.first_byte_at = time.time()

    def _attempt(self) -> _Outcome:
        """One request: stream (http) or post the whole recording (openai-transcription)."""
        target = self.gate.target
        assert target is not None
        headers = self._headers()
        if target.kind == "openai-transcription":
            while self._wait_for_audio(len(self._chunks)):
                pass  # wait for the end of the command
            body: bytes | Iterator[bytes] = self._multipart(headers)
        elif self.gate.endpoint.format == "wav":
            headers["Content-Type"] = "audio/wav"
            body = self._stream(wav_header(None))
        else:
            headers["Content-Type"] = PCM_CONTENT_TYPE
            body = self._stream(b"")
        conn = target.connection()
        with self._cond:
            self._conn = conn
        try:
            return self._exchange(conn, headers, body)
        finally:
            with self._cond:
                self._conn = None
            conn.close()

    def _multipart(self, headers: dict[str, str]) -> bytes:
        with self._cond:
            audio = b"".join(self._chunks)
        wav = wav_header(len(audio) // BYTES_PER_SAMPLE) + audio
        body, content_type = multipart_body([
            ("file", "audio.wav", "audio/wav", wav),
            ("model", None, None, self.gate.endpoint.model.encode()),
            ("response_format", None, None, b"json"),
        ])  # fmt: skip
        headers["Content-Type"] = content_type
        self.bytes_sent = len(body)
        if self.first_byte_at is None and audio:
            self.first_byte_at = time.time()
        return body

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        headers: dict[str, str],
        body: bytes | Iterator[bytes],
    ) -> _Outcome:
        """Send the request on ``conn`` and read the response (up to 1 MB)."""
        target = self.gate.target
        assert target is not None
        try:
            conn.request("POST", target.path, body=body, headers=headers,
                         encode_chunked=not isinstance(body, bytes))  # fmt: skip
        except (OSError, http.client.HTTPException) as err:
            if self._cancelled.is_set():
                raise _Cancelled from None
            early = self._early_response(conn)
            return early if early is not None else _Outcome(None, None, _describe(err), True)
        try:
            response = conn.getresponse()
            data = response.read(MAX_RESPONSE_BYTES)
        except (OSError, http.client.HTTPException) as err:
            if self._cancelled.is_set():
                raise _Cancelled from None
            return _Outcome(None, None, _describe(err), retry=True)
        return _classify(response.status, response.getheader("Content-Type"), data)

    def _early_response(self, conn: http.client.HTTPConnection) -> _Outcome | None:
        """A response the server sent before it stopped reading the body (e.g. a 401)."""
        if conn.sock is None or self.bytes_sent == 0:
            return None
        try:
            conn.sock.settimeout(EARLY_RESPONSE_TIMEOUT_S)
            response = conn.getresponse()
            data = response.read(MAX_RESPONSE_BYTES)
        except (OSError, http.client.HTTPException):
            return None
        return _classify(response.status, response.getheader("Content-Type"), data)


def _describe(err: BaseException) -> str:
    """A short, secret-free description of a network error."""
    if isinstance(err, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {err.verify_message}"
    text = str(err) or err.__class__.__name__
    return clean_text(f"{err.__class__.__name__}: {text}")
