"""The privacy gate against real local servers: what is sent, what is trimmed, and failures.

Every server here is real (the reference `Receiver`, or a small purpose-built one on a thread);
ports come from binding to port 0.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import logging
import secrets
import socket
import ssl
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from agent.egress.audit import AuditLog
from agent.egress.gate import PrivacyGate, UploadRequest
from agent.egress.receiver import Receiver
from agent.egress.wire import SAMPLE_RATE_HZ, first_kept_index, parse_response, redact_url
from agent.settings import EndpointSettings
from kernels.errors import ConfigError

SR = SAMPLE_RATE_HZ
QUANT = 1.0 / 32768  # one int16 step
WAIT_S = 10.0


class Events:
    """Collects the gate's events from its worker threads."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict]] = []
        self._cond = threading.Condition()

    def __call__(self, kind: str, fields: dict) -> None:
        with self._cond:
            self.items.append((kind, dict(fields)))
            self._cond.notify_all()

    def of(self, kind: str) -> list[dict]:
        with self._cond:
            return [fields for k, fields in self.items if k == kind]

    def wait(self, kind: str, count: int = 1, timeout_s: float = WAIT_S) -> list[dict]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.of(kind)) >= count, timeout_s), self.items
        return self.of(kind)


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.9, 0.9, round(seconds * SR)).astype(np.float32)


def make_gate(url: str | None, tmp_path: Path, events: Events, **settings) -> PrivacyGate:
    gate_options = {
        key: settings.pop(key) for key in ("pre_roll_s", "max_audio_s", "max_in_flight")
        if key in settings
    }  # fmt: skip
    settings.setdefault("timeout_s", 2.0)
    endpoint = EndpointSettings(url=url, **settings)
    audit = AuditLog(tmp_path / "data" / "audit.jsonl")
    return PrivacyGate(endpoint, audit, on_event=events, **gate_options)


def request(wake_end_s: float = 1.0) -> UploadRequest:
    return UploadRequest(
        wake_word="computer", score=0.87, wake_end_s=wake_end_s, detected_at=time.time()
    )


def write_stream(upload, audio: np.ndarray, start_s: float, block: int = 1280) -> None:
    for offset in range(0, audio.size, block):
        upload.write(audio[offset : offset + block], start_s + offset / SR)


@pytest.fixture
def receiver(tmp_path: Path):
    with Receiver(tmp_path / "received", transcript="lights on") as server:
        yield server


def audit_entries(gate: PrivacyGate) -> list[dict]:
    return AuditLog.read(gate.audit.path)


@pytest.mark.parametrize("audio_format", ["wav", "pcm"])
def test_a_stream_arrives_intact_with_headers_and_one_audit_entry(
    receiver: Receiver, tmp_path: Path, audio_format: str
) -> None:
    events = Events()
    url = receiver.url + "/upload?key=secret#frag"  # (user info in a URL is refused)
    gate = make_gate(url, tmp_path, events, format=audio_format, device_id="kitchen")
    audio = noise(1.0)
    upload = gate.open(request(wake_end_s=1.0))
    write_stream(upload, audio, start_s=1.0)
    upload.finish()
    event = events.wait("upload")[0]
    assert event["result"] == "ok" and event["status"] == 200 and event["attempts"] == 1
    assert event["first_byte_s"] is not None and 0 <= event["first_byte_s"] < WAIT_S
    [received] = receiver.uploads
    assert received.audio.size == audio.size
    np.testing.assert_allclose(received.audio, audio, atol=QUANT)
    headers = received.metadata["headers"]
    assert headers["X-Earshot-Wake-Word"] == "computer"
    assert float(headers["X-Earshot-Score"]) == pytest.approx(0.87)
    assert float(headers["X-Earshot-Wake-End-S"]) == 1.0
    assert float(headers["X-Earshot-Pre-Roll-S"]) == 0.0
    assert headers["X-Earshot-Device-Id"] == "kitchen"
    assert datetime.fromisoformat(headers["X-Earshot-Detected-At"]).tzinfo is not None
    expected_type = "audio/wav" if audio_format == "wav" else "audio/L16; rate=16000; channels=1"
    assert received.metadata["content_type"] == expected_type
    [entry] = audit_entries(gate)
    header_bytes = 44 if audio_format == "wav" else 0
    assert entry["bytes"] == header_bytes + 2 * audio.size == received.bytes
    assert entry["seconds"] == 1.0 and entry["result"] == "ok" and entry["status"] == 200
    assert entry["endpoint"] == f"{receiver.url}/upload"
    assert entry["kind"] == "http" and entry["attempts"] == 1 and entry["error"] is None
    assert entry["wake_word"] == "computer" and entry["score"] == pytest.approx(0.87)
    # The receiver answered JSON with "text": the http kind reports it as a transcript, in the
    # audit entry too.
    assert entry["transcript"] == "lights on"
    assert events.wait("transcript")[0] == {"wake_word": "computer", "text": "lights on"}
    assert gate.in_flight == 0


@pytest.mark.parametrize("pre_roll_s", [0.0, 0.25])
def test_audio_before_the_wake_word_end_minus_pre_roll_is_never_sent(
    receiver: Receiver, tmp_path: Path, pre_roll_s: float
) -> None:
    events = Events()
    gate = make_gate(f"{receiver.url}/upload", tmp_path, events, pre_roll_s=pre_roll_s)
    upload = gate.open(request(wake_end_s=2.0))
    before = noise(0.5, seed=1)  # 0.5 .. 1.0 s: entirely before the wake word's end
    straddling = noise(1.0, seed=2)  # 1.5 .. 2.5 s: half before, half after
    after = noise(0.5, seed=3)  # 2.5 .. 3.0 s
    upload.write(before, 0.5)
    upload.write(straddling, 1.5)
    upload.write(after, 2.5)
    upload.finish()
    assert events.wait("upload")[0]["result"] == "ok"
    [received] = receiver.uploads
    kept_from = round((0.5 - pre_roll_s) * SR)  # index of 2.0 - pre_roll_s in `straddling`
    expected = np.concatenate([straddling[kept_from:], after])
    assert received.audio.size == expected.size == round((1.0 + pre_roll_s) * SR)
    np.testing.assert_allclose(received.audio, expected, atol=QUANT)
    assert float(received.metadata["headers"]["X-Earshot-Pre-Roll-S"]) == pre_roll_s


def test_audio_beyond_the_length_limit_is_dropped(receiver: Receiver, tmp_path: Path) -> None:
    events = Events()
    gate = make_gate(f"{receiver.url}/upload", tmp_path, events, max_audio_s=0.5)
    upload = gate.open(request(wake_end_s=0.0))
    audio = noise(2.0)
    write_stream(upload, audio, start_s=0.0)
    upload.finish()
    assert events.wait("upload")[0]["seconds"] == 0.5
    np.testing.assert_allclose(receiver.uploads[0].audio, audio[: SR // 2], atol=QUANT)


def test_chunk_boundaries_are_exact_despite_float_error() -> None:
    assert first_kept_index(0.1, 0.3, 10_000) == 3200
    assert first_kept_index(0.3, 0.3, 10) == 0
    assert first_kept_index(0.0, 5.0, 10) == 10
    assert first_kept_index(1.0, 0.5, 10) == 0


def test_audio_streams_before_the_command_ends(receiver: Receiver, tmp_path: Path) -> None:
    events = Events()
    gate = make_gate(f"{receiver.url}/upload", tmp_path, events)
    upload = gate.open(request(wake_end_s=0.0))
    upload.write(noise(0.5), 0.0)
    assert receiver.wait_for_bytes(44 + SR, timeout_s=5.0), "nothing arrived while speaking"
    assert receiver.uploads == []  # the request is still open
    finished_at = time.time()
    upload.write(noise(0.5, seed=4), 0.5)
    upload.finish()
    events.wait("upload")
    [received] = receiver.uploads
    assert received.metadata["first_byte_at"] < finished_at <= received.received_at
    assert received.audio.size == SR


def test_openai_transcription_kind_posts_multipart_and_reports_the_text(
    receiver: Receiver, tmp_path: Path
) -> None:
    events = Events()
    url = f"{receiver.url}/v1/audio/transcriptions"
    gate = make_gate(url, tmp_path, events, kind="openai-transcription", model="whisper-x")
    audio = noise(0.8)
    upload = gate.open(request(wake_end_s=0.0))
    write_stream(upload, audio, 0.0)
    time.sleep(0.1)
    assert receiver.received_bytes == 0  # nothing is sent before the command ends
    upload.finish()
    assert events.wait("transcript")[0] == {"wake_word": "computer", "text": "lights on"}
    [received] = receiver.uploads
    assert received.metadata["kind"] == "openai-transcription"
    assert received.metadata["form"] == {"model": "whisper-x", "response_format": "json"}
    np.testing.assert_allclose(received.audio, audio, atol=QUANT)
    [entry] = audit_entries(gate)
    assert entry["kind"] == "openai-transcription" and entry["result"] == "ok"
    assert entry["bytes"] == received.bytes


# --- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory):
    trustme = pytest.importorskip("trustme", reason="pip install trustme (the dev extra)")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    folder = tmp_path_factory.mktemp("tls")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    trustme.CA().cert_pem.write_to_path(str(folder / "other-ca.pem"))
    return server_context, folder


def test_https_with_a_trusted_ca_file(tls, tmp_path: Path) -> None:
    server_context, folder = tls
    events = Events()
    with Receiver(tmp_path / "in", ssl_context=server_context) as server:
        assert server.url.startswith("https://")
        gate = make_gate(f"{server.url}/upload", tmp_path, events, ca_file=str(folder / "ca.pem"))
        upload = gate.open(request(0.0))
        upload.write(noise(0.3), 0.0)
        upload.finish()
        assert events.wait("upload")[0]["result"] == "ok"
        assert server.uploads[0].audio.size == round(0.3 * SR)


def test_https_with_an_untrusted_certificate_fails_after_bounded_attempts(
    tls, tmp_path: Path
) -> None:
    server_context, folder = tls
    events = Events()
    with Receiver(tmp_path / "in", ssl_context=server_context) as server:
        gate = make_gate(
            f"{server.url}/upload", tmp_path, events, ca_file=str(folder / "other-ca.pem"),
            retries=1,
        )  # fmt: skip
        upload = gate.open(request(0.0))
        upload.write(noise(0.3), 0.0)
        upload.finish()
        event = events.wait("upload")[0]
        assert server.uploads == [] and server.received_bytes == 0
    assert event["result"] == "failed" and event["attempts"] == 2
    assert "certificate" in event["error"].lower()
    [entry] = audit_entries(gate)
    assert entry["result"] == "failed" and entry["attempts"] == 2 and entry["status"] is None


def test_an_unreadable_ca_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    with pytest.raises(ConfigError, match="no-such-ca.pem"):
        make_gate("https://127.0.0.1:1/upload", tmp_path, Events(), ca_file=str(missing))


# --- faults ------------------------------------------------------------------------------------


class FaultServer:
    """A real HTTP server that answers every request with ``status`` after reading its body."""

    def __init__(self, status: int = 500, body: bytes = b'{"error": "overloaded"}') -> None:
        self.status, self.body = status, body
        self.requests: list[dict[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                outer.requests.append(dict(self.headers.items()))
                _drain(self)
                body = outer.body.replace(b"$AUTH", self.headers.get("Authorization", "").encode())
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/upload"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _drain(handler: http.server.BaseHTTPRequestHandler) -> None:
    if "chunked" not in handler.headers.get("Transfer-Encoding", ""):
        handler.rfile.read(int(handler.headers.get("Content-Length", "0")))
        return
    while size := int(handler.rfile.readline().split(b";")[0], 16):
        handler.rfile.read(size + 2)
    handler.rfile.readline()


@pytest.fixture
def fault_server():
    server = FaultServer()
    yield server
    server.close()


class HangingServer:
    """Accepts connections, reads whatever comes, and never answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/upload"
        self.connections = 0
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._swallow, args=(conn,), daemon=True).start()

    def _swallow(self, conn: socket.socket) -> None:
        with conn:
            while not self._closed.is_set() and conn.recv(65536):
                pass

    def close(self) -> None:
        self._closed.set()
        self.listener.close()


@pytest.fixture
def hanging_server():
    server = HangingServer()
    yield server
    server.close()


def send_once(gate: PrivacyGate, seconds: float = 0.2):
    upload = gate.open(request(0.0))
    upload.write(noise(seconds), 0.0)
    upload.finish()
    return upload


def test_connection_refused_is_retried_then_audited_as_failed(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again: nothing listens there
    events = Events()
    gate = make_gate(f"http://127.0.0.1:{port}/upload", tmp_path, events, retries=2)
    started = time.monotonic()
    send_once(gate)
    event = events.wait("upload")[0]
    elapsed = time.monotonic() - started
    assert event["result"] == "failed" and event["attempts"] == 3 and event["status"] is None
    assert 0.7 <= elapsed < 3.0  # backoff 0.25 + 0.5 s, and no more
    assert "refused" in event["error"].lower()
    assert [e["result"] for e in audit_entries(gate)] == ["failed"]


def test_server_errors_are_retried_a_bounded_number_of_times(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    events = Events()
    gate = make_gate(fault_server.url, tmp_path, events, retries=2)
    send_once(gate, seconds=0.3)
    event = events.wait("upload")[0]
    assert event["result"] == "failed" and event["status"] == 500 and event["attempts"] == 3
    assert event["error"] == "HTTP 500: overloaded"
    assert len(fault_server.requests) == 3
    [entry] = audit_entries(gate)
    assert entry["bytes"] == 44 + 2 * round(0.3 * SR)  # each retry resent the whole recording
    # The endpoint recovers: the next upload through the same gate succeeds.
    fault_server.status, fault_server.body = 200, b"{}"
    send_once(gate)
    assert events.wait("upload", 2)[1]["result"] == "ok"
    assert [e["result"] for e in audit_entries(gate)] == ["failed", "ok"]
    assert gate.in_flight == 0


@pytest.mark.parametrize(("status", "attempts"), [(401, 1), (404, 1), (429, 2), (408, 2)])
def test_client_errors_are_final_except_timeouts_and_rate_limits(
    fault_server: FaultServer, tmp_path: Path, status: int, attempts: int
) -> None:
    fault_server.status = status
    events = Events()
    gate = make_gate(fault_server.url, tmp_path, events, retries=1)
    send_once(gate)
    event = events.wait("upload")[0]
    assert event["status"] == status and event["attempts"] == attempts
    assert event["result"] == "failed"


def test_a_wrong_token_gets_401_and_is_not_retried(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("EARSHOT_TEST_TOKEN", "wrong")
    events = Events()
    with Receiver(tmp_path / "in", token="right") as server:
        gate = make_gate(f"{server.url}/upload", tmp_path, events, token_env="EARSHOT_TEST_TOKEN")
        send_once(gate)
        event = events.wait("upload")[0]
        assert server.uploads == []
    assert event["status"] == 401 and event["attempts"] == 1 and event["result"] == "failed"


def test_a_server_that_hangs_times_out_within_the_bound(
    hanging_server: HangingServer, tmp_path: Path
) -> None:
    events = Events()
    gate = make_gate(hanging_server.url, tmp_path, events, timeout_s=0.5, retries=1)
    started = time.monotonic()
    send_once(gate)
    event = events.wait("upload")[0]
    elapsed = time.monotonic() - started
    assert event["result"] == "failed" and event["attempts"] == 2
    assert event["error"] == "timed out"
    assert elapsed < 2 * 0.5 + 0.25 + 1.0  # (1 + retries) * timeout + backoff, and slack
    assert hanging_server.connections == 2


def test_uploads_beyond_max_in_flight_are_refused_not_queued(
    receiver: Receiver, tmp_path: Path
) -> None:
    events = Events()
    gate = make_gate(f"{receiver.url}/upload", tmp_path, events, max_in_flight=1)
    first = gate.open(request(0.0))
    first.write(noise(0.2), 0.0)
    assert gate.in_flight == 1
    second = gate.open(request(0.0))
    second.write(noise(0.2), 0.0)  # ignored
    second.finish()
    refused = events.wait("upload")[0]
    assert refused["result"] == "dropped" and refused["error"] == "too many uploads in flight"
    assert refused["attempts"] == 0 and gate.in_flight == 1
    first.finish()
    assert events.wait("upload", 2)[1]["result"] == "ok"
    assert [e["result"] for e in audit_entries(gate)] == ["dropped", "ok"]
    assert len(receiver.uploads) == 1 and gate.in_flight == 0


@pytest.mark.parametrize("finished", [False, True])
def test_close_returns_quickly_while_an_upload_hangs(
    hanging_server: HangingServer, tmp_path: Path, finished: bool
) -> None:
    events = Events()
    gate = make_gate(hanging_server.url, tmp_path, events, timeout_s=30.0)
    upload = gate.open(request(0.0))
    upload.write(noise(0.2), 0.0)
    if finished:
        upload.finish()  # now blocked waiting for the response
    deadline = time.monotonic() + 5
    while hanging_server.connections == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    started = time.monotonic()
    gate.close(timeout_s=1.5)
    assert time.monotonic() - started < 2.0
    [entry] = audit_entries(gate)
    assert entry["result"] == "dropped" and entry["error"] == "cancelled"
    assert gate.in_flight == 0
    refused = gate.open(request(0.0))  # a closed gate starts nothing
    assert refused.refused is not None


def test_cancel_drops_the_upload_and_sends_no_more(receiver: Receiver, tmp_path: Path) -> None:
    events = Events()
    gate = make_gate(f"{receiver.url}/upload", tmp_path, events)
    upload = gate.open(request(0.0))
    upload.write(noise(0.2), 0.0)
    upload.cancel()
    upload.finish()
    assert events.wait("upload")[0]["result"] == "dropped"
    time.sleep(0.2)
    assert receiver.uploads == [] and len(audit_entries(gate)) == 1


# --- secrets and configuration -----------------------------------------------------------------


def test_the_token_never_appears_in_logs_events_audit_or_errors(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    token = "tok-" + secrets.token_hex(16)
    monkeypatch.setenv("EARSHOT_TEST_TOKEN", token)
    caplog.set_level(logging.DEBUG)
    events = Events()
    echo = FaultServer(status=500, body=b'{"error": "bad token $AUTH"}')  # echoes the header
    try:
        with Receiver(tmp_path / "in", token=token) as server:
            good = make_gate(f"{server.url}/up", tmp_path, events, token_env="EARSHOT_TEST_TOKEN")
            send_once(good)
            assert events.wait("upload")[0]["result"] == "ok"
            assert len(server.uploads) == 1  # the receiver accepted the right bearer token
        bad = make_gate(echo.url, tmp_path, events, token_env="EARSHOT_TEST_TOKEN", retries=0)
        send_once(bad)
        failed = events.wait("upload", 2)[1]
    finally:
        echo.close()
    assert echo.requests[0]["Authorization"] == f"Bearer {token}"
    assert failed["result"] == "failed" and "[redacted]" in failed["error"]
    texts = [record.getMessage() for record in caplog.records]
    texts += [json.dumps(fields) for _, fields in events.items]
    texts += [good.audit.path.read_text(), repr(good), repr(good.target), repr(bad.target)]
    assert texts and not [text for text in texts if token in text]


def test_a_missing_token_variable_is_a_config_error_naming_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("EARSHOT_NO_SUCH_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="EARSHOT_NO_SUCH_TOKEN"):
        make_gate("http://127.0.0.1:1/", tmp_path, Events(), token_env="EARSHOT_NO_SUCH_TOKEN")


def test_a_token_a_header_cannot_carry_is_refused_without_showing_it(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("EARSHOT_TEST_TOKEN", "abc\r\nX-Injected: 1")
    with pytest.raises(ConfigError, match="EARSHOT_TEST_TOKEN") as caught:
        make_gate("http://127.0.0.1:1/", tmp_path, Events(), token_env="EARSHOT_TEST_TOKEN")
    assert "abc" not in str(caught.value) and "Injected" not in str(caught.value)


def test_token_file_first_line_is_sent(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("file-token\nignored\n")
    events = Events()
    with Receiver(tmp_path / "in", token="file-token") as server:
        gate = make_gate(f"{server.url}/up", tmp_path, events, token_file=str(token_file))
        send_once(gate)
        assert events.wait("upload")[0]["result"] == "ok"
    with pytest.raises(ConfigError, match="missing-token"):
        missing = str(tmp_path / "missing-token")
        make_gate("http://127.0.0.1:1/", tmp_path, events, token_file=missing)


@pytest.mark.parametrize(
    "url", ["http://example.com/upload", "http://192.168.1.10:8080/", "ftp://127.0.0.1/x"]
)
def test_the_gate_refuses_plain_http_off_this_machine_even_unvalidated(
    tmp_path: Path, url: str
) -> None:
    endpoint = dataclasses.replace(EndpointSettings(), url=url)  # no schema validation ran
    with pytest.raises(ConfigError, match="endpoint.url"):
        PrivacyGate(endpoint, AuditLog(tmp_path / "audit.jsonl"), on_event=Events())


def test_a_disabled_gate_sends_and_records_nothing(tmp_path: Path) -> None:
    events = Events()
    gate = make_gate(None, tmp_path, events)
    assert not gate.enabled
    upload = gate.open(request(0.0))
    upload.write(noise(0.1), 0.0)
    upload.finish()
    assert events.items == [] and not gate.audit.path.exists() and gate.in_flight == 0


def test_redact_url_drops_userinfo_query_and_fragment() -> None:
    assert redact_url("https://u:p@host:8443/a/b?token=x#f") == "https://host:8443/a/b"


# --- responses ---------------------------------------------------------------------------------


def test_parse_response_reads_text_and_errors() -> None:
    assert parse_response(200, "application/json", b'{"text": "hi"}').text == "hi"
    assert parse_response(204, None, b"").ok
    failed = parse_response(503, "application/json", b'{"error": {"message": "busy"}}')
    assert not failed.ok and failed.error == "HTTP 503: busy"
    long = parse_response(500, "text/plain", b"x" * 5000 + b"\n\x00\x1b")
    assert long.error is not None and len(long.error) <= 220


def test_parse_response_never_raises_on_garbage() -> None:
    rng = np.random.default_rng(7)
    cases = [
        b"[" * 100_000, b"{" * 50_000, b'{"text": ' + b"9" * 10_000 + b"}", b"\xff\xfe\x00",
        b'{"text": 5, "error": [1]}', b'{"text": "\\ud800"}', b'"just a string"', b"",
    ]  # fmt: skip
    cases += [rng.bytes(int(rng.integers(0, 300))) for _ in range(500)]
    cases += [b"{" + rng.bytes(int(rng.integers(0, 50))) for _ in range(200)]
    for body in cases:
        for status in (200, 400, 500, -1, 99999):
            for content_type in ("application/json", None, "\x00;;"):
                response = parse_response(status, content_type, body)
                assert response.error is None or len(response.error) <= 220
