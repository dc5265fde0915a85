"""The audit log is written ahead of every upload, and records what was really sent.

An upload's attempt is recorded before a byte leaves (and nothing leaves when it cannot be); a
log that cannot be written stops the agent at start-up; a cancelled or failed upload records the
requests it made and the body bytes its socket accepted. Servers are real, on loopback.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.egress.audit import AuditLog
from agent.egress.receiver import Receiver
from kernels.errors import ConfigError
from tests.conftest import agent_home, run_earshot
from tests.daemon_harness import write_config
from tests.test_gate import WAIT_S, Events, make_gate, noise, request, send_once, write_stream

HEAD_END = b"\r\n\r\n"
SENDING = "sending"
"""The result of an attempt line, written before anything is sent."""


class RawServer:
    """A loopback TCP server that runs ``serve(conn, server)`` on each connection it accepts.

    ``state`` (connections accepted, bytes received) is shared by every connection and guarded
    by `cond`; `wait` waits for a condition on it.
    """

    def __init__(self, serve: Callable[[socket.socket, RawServer], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/upload"
        self.state: dict = {"connections": 0, "received": b""}
        self.cond = threading.Condition()
        self._serve = serve
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.cond:
                self.state["connections"] += 1
                self.cond.notify_all()
            threading.Thread(target=self._serve, args=(conn, self), daemon=True).start()

    def add(self, data: bytes) -> None:
        with self.cond:
            self.state["received"] += data
            self.cond.notify_all()

    def wait(self, condition: Callable[[dict], bool]) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: condition(self.state), WAIT_S), self.state

    def close(self) -> None:
        self.listener.close()


def swallow(conn: socket.socket, server: RawServer) -> None:
    """Read everything, answer nothing."""
    with conn, contextlib.suppress(OSError):  # the client may reset the connection
        while data := conn.recv(65536):
            server.add(data)


def close_after_head(conn: socket.socket, server: RawServer) -> None:
    """Read the request line and headers, then close the connection."""
    with conn:
        while HEAD_END not in server.state["received"]:
            data = conn.recv(65536)
            if not data:
                break
            server.add(data)


def raw_lines(path: Path) -> list[dict]:
    """Every line of the audit log at ``path``, as written; [] when it does not exist."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def head_and_body(received: bytes) -> tuple[dict[str, str], bytes]:
    head, _, body = received.partition(HEAD_END)
    lines = head.decode("latin-1").split("\r\n")[1:]
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    return headers, body


def dechunk(body: bytes) -> bytes:
    """The payload of a complete-or-not chunked body, as far as whole chunks go."""
    out = b""
    while b"\r\n" in body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0 or len(rest) < size + 2:
            break
        out, body = out + rest[:size], rest[size + 2 :]
    return out


@pytest.fixture
def receiver(tmp_path: Path):
    with Receiver(tmp_path / "received") as server:
        yield server


@pytest.fixture
def swallowing_server():
    server = RawServer(swallow)
    yield server
    server.close()


# --- written ahead -------------------------------------------------------------------------------


def test_an_upload_has_an_attempt_line_then_its_result_and_reads_as_one(
    receiver: Receiver, tmp_path: Path
) -> None:
    events = Events()
    gate = make_gate(f"{receiver.url}/upload", tmp_path, events)
    upload = gate.open(request(0.0))
    write_stream(upload, noise(0.4), 0.0)
    upload.finish()
    assert events.wait("upload")[0]["result"] == "ok"
    [received] = receiver.uploads
    attempt, result = raw_lines(gate.audit.path)
    assert attempt["result"] == SENDING and result["result"] == "ok"
    assert attempt["upload"] == result["upload"] == upload.upload_id
    assert attempt["wake_word"] == "computer" and attempt["endpoint"] == f"{receiver.url}/upload"
    assert attempt["bytes"] == 0 and attempt["attempts"] == 0
    assert AuditLog.read(gate.audit.path) == [result]  # one entry per upload: its result
    assert result["bytes"] == received.bytes and result["attempts"] == 1


def test_the_log_holds_the_attempt_when_the_request_arrives(tmp_path: Path) -> None:
    audit_path = tmp_path / "data" / "audit.jsonl"
    at_arrival: list[list[dict]] = []

    def snapshot_then_swallow(conn: socket.socket, server: RawServer) -> None:
        at_arrival.append(raw_lines(audit_path))  # connected: no byte of the request yet
        swallow(conn, server)

    server = RawServer(snapshot_then_swallow)
    try:
        gate = make_gate(server.url, tmp_path, Events())
        upload = gate.open(request(0.0))
        upload.write(noise(0.2), 0.0)
        server.wait(lambda state: HEAD_END in state["received"])
        gate.close()
    finally:
        server.close()
    [[attempt]] = at_arrival
    assert attempt["result"] == SENDING and attempt["upload"] == upload.upload_id


def test_nothing_is_sent_when_the_attempt_cannot_be_recorded(
    swallowing_server: RawServer, tmp_path: Path
) -> None:
    events = Events()
    gate = make_gate(swallowing_server.url, tmp_path, events)
    gate.audit.path.mkdir(parents=True)  # the log became a folder after the gate was made
    upload = send_once(gate)
    [dropped] = events.wait("upload")
    assert dropped["result"] == "dropped" and dropped["attempts"] == 0
    assert "cannot write the audit log" in dropped["error"]
    assert upload.inert and gate.in_flight == 0
    # Once the log can be written again, the next upload goes out: the server saw only that one.
    gate.audit.path.rmdir()
    second = send_once(gate)
    swallowing_server.wait(lambda state: HEAD_END in state["received"])
    gate.close()
    assert swallowing_server.state["connections"] == 1
    [entry] = AuditLog.read(gate.audit.path)
    assert entry["upload"] == second.upload_id


@pytest.mark.parametrize("how", ["folder", "under a file", "read-only folder"])
def test_a_gate_is_not_made_with_an_audit_log_it_cannot_write(tmp_path: Path, how: str) -> None:
    if how == "folder":
        path, reason = tmp_path / "audit", "is a folder"
        path.mkdir()
    elif how == "under a file":
        (tmp_path / "file").write_text("")
        path, reason = tmp_path / "file" / "audit.jsonl", "is not a folder"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        (tmp_path / "ro").mkdir(mode=0o500)
        path, reason = tmp_path / "ro" / "audit.jsonl", "not writable"
    from agent.egress.gate import PrivacyGate
    from agent.settings import EndpointSettings

    endpoint = EndpointSettings(url="http://127.0.0.1:1/upload")
    with pytest.raises(ConfigError, match=r"privacy\.audit_log") as caught:
        PrivacyGate(endpoint, AuditLog(path), on_event=Events())
    assert str(path) in str(caught.value) and reason in str(caught.value)
    assert PrivacyGate(EndpointSettings(), AuditLog(path), on_event=Events()).enabled is False
    assert not any(p.name == "audit.jsonl" for p in tmp_path.rglob("*"))


def test_run_refuses_an_audit_log_it_cannot_write_at_start_up(tmp_path: Path) -> None:
    folder = tmp_path / "audit-folder"
    folder.mkdir()
    config = write_config(tmp_path / "earshot.yaml", privacy={"audit_log": str(folder)})
    env = agent_home(tmp_path / "home")
    check = run_earshot("config", "check", str(config), env=env)
    assert check.returncode == 0, check.stderr  # the file's syntax is fine
    result = run_earshot("run", "--config", str(config), "--demo", "--fast", env=env)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()[-1:]
    assert str(folder) in line and "is a folder" in line and "Traceback" not in result.stderr
    assert '"event":"upload"' not in result.stdout and '"event": "upload"' not in result.stdout
    demo = tmp_path / "home" / "data" / "earshot" / "demo"
    assert not demo.exists() or not list(demo.iterdir())  # the demo's receiver got nothing


# --- what was sent -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["http", "openai-transcription"])
def test_a_cancelled_upload_records_the_request_it_made_and_its_bytes(
    swallowing_server: RawServer, tmp_path: Path, kind: str
) -> None:
    events = Events()
    gate = make_gate(swallowing_server.url, tmp_path, events, kind=kind)
    audio = noise(0.5)
    upload = gate.open(request(0.0))
    write_stream(upload, audio, 0.0)
    if kind == "openai-transcription":
        upload.finish()  # sent once the command ends; then the server never answers

        def sent(state: dict) -> bool:
            headers, body = head_and_body(state["received"])
            return "content-length" in headers and len(body) == int(headers["content-length"])
    else:

        def sent(state: dict) -> bool:
            return len(dechunk(head_and_body(state["received"])[1])) == 44 + 2 * audio.size

    swallowing_server.wait(sent)
    gate.close()  # what SIGTERM does
    [entry] = AuditLog.read(gate.audit.path)
    headers, body = head_and_body(swallowing_server.state["received"])
    payload = body if kind == "openai-transcription" else dechunk(body)
    assert entry["result"] == "dropped" and entry["error"] == "cancelled"
    assert entry["attempts"] == 1 and events.of("upload")[0]["attempts"] == 1
    assert entry["bytes"] == len(payload) > 2 * audio.size


def test_a_failed_upload_that_never_connected_records_no_bytes(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again: nothing listens there
    events = Events()
    gate = make_gate(
        f"http://127.0.0.1:{port}/v1/audio/transcriptions", tmp_path, events,
        kind="openai-transcription", retries=0,
    )  # fmt: skip
    send_once(gate, seconds=1.0)
    [event] = events.wait("upload")
    [entry] = AuditLog.read(gate.audit.path)
    assert event["result"] == entry["result"] == "failed" and entry["attempts"] == 1
    assert event["bytes"] == entry["bytes"] == 0


def test_a_failed_upload_records_the_bytes_its_socket_took_not_the_whole_body(
    tmp_path: Path,
) -> None:
    # The body is far larger than what loopback's socket buffers hold (a few MB), so a server
    # that closes after the headers leaves part of it unsent, whatever the timing.
    seconds = 300.0
    server = RawServer(close_after_head)
    try:
        events = Events()
        gate = make_gate(
            server.url, tmp_path, events, kind="openai-transcription", retries=0,
            max_audio_s=seconds + 1,
        )  # fmt: skip
        send_once(gate, seconds=seconds)
        [event] = events.wait("upload", timeout_s=30.0)
    finally:
        server.close()
    headers, _ = head_and_body(server.state["received"])
    whole = int(headers["content-length"])
    [entry] = AuditLog.read(gate.audit.path)
    assert entry["result"] == "failed" and entry["attempts"] == 1
    assert whole > 2 * seconds * 16000
    assert 0 <= entry["bytes"] == event["bytes"] < whole
