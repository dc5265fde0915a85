"""The privacy gate: the only code in earshot that sends anything over the network.

After a wake word, the daemon opens an `Upload` and writes the command audio into it as it is
captured. The gate itself enforces what may leave the machine:

- nothing from before ``wake_end_s - pre_roll_s`` (stream time) is ever sent: `Upload.write`
  trims it, whatever the caller passes (in its `agent.egress.buffer.AudioBuffer`);
- at most ``max_audio_s + pre_roll_s`` seconds of audio per upload, buffered in memory only;
- only over https (or TLS), or plain http (or tcp, or a Unix socket) to this machine (checked by
  `agent.egress.target` as well as in the settings);
- at most ``max_in_flight`` uploads at once; more are refused, never queued;
- every upload is in the audit log (`agent.egress.audit`), written ahead: its attempt is
  recorded before anything is sent (an upload whose attempt cannot be recorded sends nothing,
  and a gate whose log cannot be written is not made), its result when it ends;
- no token ever appears in a log line, event, audit entry or exception message.

Three kinds of endpoint are spoken to. ``http``: a chunked ``POST`` that streams the audio (WAV
or raw 16-bit PCM) while the user still speaks. ``openai-transcription``: one multipart ``POST``
in the shape of OpenAI's ``/v1/audio/transcriptions`` once the command has ended. ``wyoming``:
a Wyoming speech-to-text server, sent ``transcribe`` and the audio as events while the user still
speaks, which answers with a ``transcript``. Failed attempts are retried a bounded number of
times with exponential backoff, resending the buffered audio from its start. A transcript in the
answer becomes a ``transcript`` event and is kept in the audit entry. Here are the gate and the
life of an upload (admission, attempts and retries, audit entry and events); each attempt's body
comes from `agent.egress.payload`, the request itself and the reading of its answer from
`agent.egress.exchange` (or, for ``wyoming``, `agent.egress.wyoming_exchange`, imported only
then), and the bytes (WAV, PCM, multipart bodies, replies) from the pure helpers of
`agent.egress.wire`.
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.egress.audit import SENDING, AuditLog, Recorded, Result, make_entry
from agent.egress.buffer import AudioBuffer
from agent.egress.exchange import Cancelled, Outcome, post
from agent.egress.payload import Payload
from agent.egress.target import MeteredSocket, SocketMeter, Target
from agent.egress.wire import Response, backoff_s, clean_text, upload_headers, user_agent
from agent.settings import EndpointSettings
from dsp.constants import SAMPLE_RATE_HZ

_LOGGER = logging.getLogger(__name__)

TRANSCRIPT_AUDIT_CHARS = 1000
"""A transcript is kept in the audit log on one line, cut to this many characters."""
TRANSCRIBING_KINDS = ("openai-transcription", "wyoming")
"""Kinds whose accepted answer is a transcript, even an empty one."""


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


class PrivacyGate:
    """Opens uploads to the configured endpoint, and enforces what they may send.

    Parameters
    ----------
    endpoint
        Where audio goes; ``url=None`` disables forwarding (`open` then sends nothing).
    audit
        The audit log; every upload opened on an enabled gate is recorded there (see
        `agent.egress.audit`).
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
        The endpoint is unsafe (plain http or tcp off this machine), its token or CA file is
        missing, or the audit log cannot be written (forwarding is enabled).
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
        if self.target is not None:
            audit.check_writable()
        self.user_agent = user_agent()
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

        The attempt is recorded in the audit log first; then, for the ``http`` and ``wyoming``
        kinds, a worker thread connects at once and streams audio as it is written. Beyond
        ``max_in_flight`` (after `close`, or when the attempt cannot be recorded) the upload is
        refused: audited as dropped if the log allows, and its methods do nothing. On a disabled
        gate nothing is audited or sent.
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
            refusal = upload.write_ahead()
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
        for upload in uploads:  # a thread still stuck: audit what it had sent by now
            upload.drop()

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
        self.upload_id = os.urandom(8).hex()
        """The id of its attempt and result lines in the audit log."""
        self.attempts = 0
        """Requests made so far."""
        self._cancelled = threading.Event()
        stall_deadline = time.monotonic() + gate.max_audio_s + gate.pre_roll_s
        if gate.target is not None:
            stall_deadline += gate.target.timeout_s
        self.audio = AudioBuffer(
            cutoff_s=request.wake_end_s - gate.pre_roll_s,
            max_samples=round((gate.max_audio_s + gate.pre_roll_s) * SAMPLE_RATE_HZ),
            stall_deadline=stall_deadline,
            cancelled=self._cancelled,
            label=request.wake_word,
        )
        """The audio to send, trimmed as it is written."""
        self._lock = threading.Lock()
        self._completed = False
        self._conn: http.client.HTTPConnection | None = None
        self._stream: MeteredSocket | None = None
        """The socket of a ``wyoming`` attempt under way."""
        self._thread: threading.Thread | None = None
        self.payload = Payload(self.audio, gate.endpoint)
        """The body of each attempt, and what the latest one sent."""

    def __repr__(self) -> str:
        return f"Upload({self.request.wake_word!r}, samples={self.audio.samples})"

    @property
    def seconds(self) -> float:
        """Seconds of audio buffered (everything that is, or will be, sent)."""
        return self.audio.seconds

    def write(self, chunk: np.ndarray, start_s: float) -> None:
        """Add float32 mono 16 kHz audio whose first sample lies at stream time ``start_s``.

        Samples before ``request.wake_end_s - pre_roll_s`` and beyond the length limit are
        dropped here. Never blocks on the network.
        """
        if not self.inert:
            self.audio.write(chunk, start_s)

    def finish(self) -> None:
        """The command has ended: complete the request with the audio written so far."""
        self.audio.finish()

    def cancel(self) -> None:
        """Abandon the upload; it is audited as dropped unless it has already completed.

        The worker thread, woken here, writes the audit entry once its socket calls have
        returned, so that the bytes it records are all the bytes the socket took; without a
        running worker the entry is written now.
        """
        if self.inert:
            return
        self._cancelled.set()
        self.audio.wake()
        with self._lock:
            conn, stream = self._conn, self._stream
        sock = conn.sock if conn is not None else stream
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked on the socket
            except OSError:
                pass
        if self._thread is None or not self._thread.is_alive():
            self.drop()

    def drop(self) -> None:
        """Audit the upload as dropped (cancelled) unless it has already completed."""
        if not self.inert:
            self.complete("dropped", status=None, attempts=self.attempts, error="cancelled")

    def join(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the worker thread to end."""
        if self._thread is not None:
            self._thread.join(timeout_s)

    def write_ahead(self) -> str | None:
        """Record the attempt in the audit log, before `start`; None, or why it is refused."""
        with self._lock:  # a cancel completes it first, or after the attempt is recorded
            if self._completed:
                return "cancelled"
            try:
                self.gate.audit.append(self._entry(SENDING, status=None, error=None))
            except OSError as err:
                reason = err.strerror or err.__class__.__name__
                self.refused = f"cannot write the audit log ({reason})"
                self.inert = True
                return self.refused
        return None

    def start(self) -> None:
        """Start the worker thread (called by `PrivacyGate.open`)."""
        name = f"earshot-upload-{self.request.wake_word}"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def complete(
        self,
        result: Result,
        *,
        status: int | None,
        attempts: int,
        error: str | None,
        transcript: str | None = None,
    ) -> None:
        """Audit the upload and emit its ``upload`` event; only the first call counts.

        ``transcript`` (the endpoint's text, if it sent one) is kept in the audit entry on one
        line, cut to `TRANSCRIPT_AUDIT_CHARS`.
        """
        with self._lock:
            if self._completed:
                return
            self._completed = True
        gate = self.gate
        target = gate.target
        assert target is not None
        error = target.scrub(error)
        first_byte_s = None
        if self.payload.first_byte_at is not None:
            first_byte_s = round(self.payload.first_byte_at - self.request.detected_at, 4)
        if transcript is not None:
            transcript = clean_text(transcript, TRANSCRIPT_AUDIT_CHARS, secret=target.secret)
        entry = self._entry(
            result, status=status, error=error, attempts=attempts, transcript=transcript
        )
        gate.record(entry)
        fields = {key: entry[key] for key in ("wake_word", "score", "result", "status")}
        fields.update(
            attempts=attempts, seconds=entry["seconds"], bytes=entry["bytes"],
            endpoint=target.display, error=error, first_byte_s=first_byte_s,
        )  # fmt: skip
        gate.emit("upload", fields)
        gate.forget(self)

    def _entry(
        self,
        result: Recorded,
        *,
        status: int | None,
        error: str | None,
        attempts: int = 0,
        transcript: str | None = None,
    ) -> dict[str, Any]:
        """The audit entry of this upload as it stands, with ``result``."""
        target = self.gate.target
        assert target is not None
        return make_entry(
            wake_word=self.request.wake_word, score=self.request.score, seconds=self.seconds,
            bytes_sent=self.payload.bytes_sent, endpoint=target.display, kind=target.kind,
            result=result, status=status, attempts=attempts, error=error,
            upload=self.upload_id, transcript=transcript,
        )  # fmt: skip

    def _run(self) -> None:
        target = self.gate.target
        assert target is not None
        status: int | None = None
        error: str | None = "no attempt made"
        try:
            for attempt in range(1, self.gate.endpoint.retries + 2):
                if attempt > 1 and self._cancelled.wait(backoff_s(attempt - 1)):
                    raise Cancelled
                outcome = self._attempt()
                status, error = outcome.status, target.scrub(outcome.error)
                self._log_attempt(attempt, outcome)
                if outcome.error is None:
                    text = self._transcript(outcome.response)
                    self.complete(
                        "ok", status=status, attempts=self.attempts, error=None, transcript=text
                    )
                    self._emit_transcript(text)
                    return
                if not outcome.retry:
                    break
        except Cancelled:
            self.drop()
            return
        except Exception as err:  # supervisor of the worker: log, audit, never leak the thread
            _LOGGER.exception("upload for %s failed unexpectedly", self.request.wake_word)
            error = f"internal error: {err.__class__.__name__}"
        self.complete("failed", status=status, attempts=self.attempts, error=error)

    def _log_attempt(self, attempt: int, outcome: Outcome) -> None:
        target = self.gate.target
        assert target is not None
        total = self.gate.endpoint.retries + 1
        if outcome.error is None:
            answer = "answered" if outcome.status is None else f"answered {outcome.status}"
            _LOGGER.info(
                "upload for %s: %s %s (attempt %d/%d, %.2f s of audio, %d bytes)",
                self.request.wake_word, target.display, answer, attempt, total, self.seconds,
                self.payload.bytes_sent,
            )  # fmt: skip
        else:
            _LOGGER.warning(
                "upload for %s to %s failed (attempt %d/%d%s): %s",
                self.request.wake_word, target.display, attempt, total,
                ", retrying" if outcome.retry and attempt < total else "",
                target.scrub(outcome.error),
            )  # fmt: skip

    def _transcript(self, response: Response | None) -> str | None:
        """The text of an accepted answer, without secrets, or None when there is none.

        An accepted answer of a transcribing kind without text is an empty transcript ("").
        """
        target = self.gate.target
        assert target is not None
        text = response.text if response is not None else None
        if text is None and target.kind in TRANSCRIBING_KINDS:
            text = ""
        return target.scrub(text)

    def _emit_transcript(self, text: str | None) -> None:
        if text is not None:
            self.gate.emit("transcript", {"wake_word": self.request.wake_word, "text": text})

    def _attempt(self) -> Outcome:
        """One request or exchange, as the endpoint's kind wants it.

        ``http`` streams the audio, ``openai-transcription`` posts the whole recording, and
        ``wyoming`` streams events to a Wyoming server (`_attempt_wyoming`).
        """
        target = self.gate.target
        assert target is not None
        if target.kind == "wyoming":
            return self._attempt_wyoming(target)
        request = self.request
        headers = upload_headers(
            user_agent=self.gate.user_agent, wake_word=request.wake_word, score=request.score,
            detected_at=request.detected_at, wake_end_s=request.wake_end_s,
            pre_roll_s=self.gate.pre_roll_s, device_id=target.device_id,
            token=None if target.token is None else target.token.value,
        )  # fmt: skip
        meter = SocketMeter()
        body = self.payload.body(headers, meter)
        conn = target.connection(meter)
        with self._lock:
            self._conn = conn
            self.attempts += 1
        try:
            return post(conn, target.path, headers, body, cancelled=self._cancelled,
                        sent_any=lambda: meter.total > 0, secret=target.secret)  # fmt: skip
        finally:
            with self._lock:
                self._conn = None
            conn.close()

    def _attempt_wyoming(self, target: Target) -> Outcome:
        """One Wyoming exchange on a new socket, held where `cancel` can shut it down."""
        from agent.egress import wyoming_exchange  # only uploads of this kind load the package

        meter = SocketMeter()
        with self._lock:
            self.attempts += 1

        def connect() -> MeteredSocket:
            sock = target.open_stream(meter)
            with self._lock:
                self._stream = sock
            if self._cancelled.is_set():  # cancelled while connecting: send nothing
                raise Cancelled
            return sock

        try:
            return wyoming_exchange.transcribe(
                connect, self.payload, meter, language=self.gate.endpoint.language,
                timeout_s=target.timeout_s, cancelled=self._cancelled, secret=target.secret,
            )  # fmt: skip
        finally:
            with self._lock:
                sock, self._stream = self._stream, None
            if sock is not None:
                sock.close()
