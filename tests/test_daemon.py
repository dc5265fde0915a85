"""The daemon on recordings: what it sends (and does not), events, status, signals and reloads.

Every test runs the real ``earshot run`` in a subprocess with its data, config and control socket
in a temporary folder, against a real local HTTP endpoint.
"""

from __future__ import annotations

import json
import queue
import signal
import socket
import stat
import subprocess
import threading
import time

import pytest

from agent.control.server import request
from agent.egress.audit import AuditLog
from agent.egress.receiver import Receiver
from models.speech.demo_stream import WAKE_VOICE, Line, other_speech, wake_and_command
from tests.conftest import EARSHOT, REPO, agent_home, run_earshot
from tests.daemon_harness import COMMAND_TEXT, RunningAgent, write_config, write_stream


@pytest.fixture(scope="module")
def short_command(tmp_path_factory):
    """A few seconds: other talk, the wake word and a command."""
    path = tmp_path_factory.mktemp("streams") / "command.wav"
    write_stream(path, [*other_speech(2.0), *wake_and_command("computer", COMMAND_TEXT)])
    return path


@pytest.fixture(scope="module")
def wake_then_silence(tmp_path_factory):
    """The wake word, then nobody says anything."""
    path = tmp_path_factory.mktemp("streams") / "silence.wav"
    pause = Line("", WAKE_VOICE, "other", 1.0)
    write_stream(path, [*other_speech(2.0), pause, Line("computer", WAKE_VOICE, "wake", 6.0)])
    return path


def events_of(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def kinds(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["event"] == kind]


def run_file(tmp_path, wav, config: dict, *extra: str) -> tuple[int, list[dict], str]:
    path = write_config(tmp_path / "earshot.yaml", **config)
    result = run_earshot(
        "run", "--config", str(path), "--file", str(wav), "--fast", *extra,
        env=agent_home(tmp_path / "home"),
    )  # fmt: skip
    return result.returncode, events_of(result.stdout), result.stderr


def test_demo_forwards_its_commands_to_a_local_receiver(tmp_path):
    env = agent_home(tmp_path)
    result = run_earshot("run", "--demo", "--fast", env=env)
    assert result.returncode == 0, result.stderr
    events = events_of(result.stdout)
    # Two voices say "computer" in the demo's noisy room, each followed by a request.
    assert [e["wake_word"] for e in kinds(events, "wake")] == ["computer", "computer"]
    uploads = kinds(events, "upload")
    assert len(uploads) == 2
    for upload in uploads:
        assert upload["result"] == "ok" and upload["endpoint"].startswith("http://127.0.0.1:")
    saved = tmp_path / "data" / "earshot" / "demo"
    assert sorted(p.suffix for p in saved.iterdir()) == [".json", ".json", ".wav", ".wav"]
    entries = AuditLog.read(tmp_path / "data" / "earshot" / "audit.jsonl")
    assert [(e["result"], e["bytes"]) for e in entries] == [("ok", u["bytes"]) for u in uploads]
    states = [e["state"] for e in kinds(events, "state")]
    assert states[:5] == ["listening", "woken", "capturing", "forwarding", "listening"]


def test_transcription_endpoint_text_becomes_an_event(tmp_path, short_command):
    with Receiver(tmp_path / "received", transcript="turn on the kitchen lights") as receiver:
        code, events, stderr = run_file(tmp_path, short_command, {
            "endpoint": {"kind": "openai-transcription",
                         "url": f"{receiver.url}/v1/audio/transcriptions"},
        })  # fmt: skip
        assert code == 0, stderr
        assert len(receiver.uploads) == 1
        assert receiver.uploads[0].metadata["kind"] == "openai-transcription"
    (transcript,) = kinds(events, "transcript")
    assert transcript["text"] == "turn on the kitchen lights"
    assert transcript["wake_word"] == "computer"


def test_a_wake_word_with_no_command_sends_nothing(tmp_path, wake_then_silence):
    with Receiver(tmp_path / "received") as receiver:
        code, events, stderr = run_file(
            tmp_path, wake_then_silence, {"endpoint": {"url": f"{receiver.url}/audio"}}
        )
        assert code == 0, stderr
        assert not receiver.uploads
    assert len(kinds(events, "wake")) == 1
    (command,) = kinds(events, "command")
    assert command["outcome"] == "no_speech"
    assert not kinds(events, "upload")
    assert not (tmp_path / "home" / "data" / "earshot" / "audit.jsonl").exists()


def test_without_an_endpoint_nothing_is_sent_or_written(tmp_path, short_command):
    code, events, stderr = run_file(tmp_path, short_command, {})
    assert code == 0, stderr
    assert kinds(events, "command")[0]["outcome"] == "ended"
    assert "no endpoint configured" in stderr
    written = [p for p in (tmp_path / "home").rglob("*") if p.is_file()]
    assert written == []  # no audio, no audit log, nothing (the control socket is gone too)


def test_debug_audio_is_saved_owner_only_when_asked(tmp_path, short_command):
    debug = tmp_path / "debug"
    config = {"privacy": {"debug_audio_dir": str(debug)}}
    code, _, stderr = run_file(tmp_path, short_command, config)
    assert code == 0, stderr
    (saved,) = debug.iterdir()
    assert saved.suffix == ".wav"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(debug.stat().st_mode) == 0o700


def start_realtime(tmp_path, wav, config: dict) -> RunningAgent:
    home = tmp_path / "home"
    env = agent_home(home)
    path = write_config(tmp_path / "earshot.yaml", **config)
    agent = RunningAgent.start(
        "--config", str(path), "--file", str(wav), env=env,
        socket=home / "run" / "earshot" / "control.sock",
    )  # fmt: skip
    agent.wait_until_hearing()
    return agent


def test_status_reports_state_level_and_resources(tmp_path, short_command):
    agent = start_realtime(tmp_path, short_command, {})
    try:
        status = request(agent.socket, "status")
        assert stat.S_IMODE(agent.socket.stat().st_mode) == 0o600
        shown = run_earshot(
            "status", "--socket", str(agent.socket), env=agent_home(tmp_path / "home")
        )
    finally:
        code, stderr, took = agent.stop()
    assert code == 0 and took < 2.0, stderr
    assert status["state"] in ("listening", "woken", "capturing")
    assert status["wake_words"] == ["computer"]
    assert status["uptime_s"] > 0 and status["audio_s"] > 0.5
    assert -120 <= status["level_dbfs"] <= 0
    assert 0 <= status["cpu_percent"] < 400 and 10 < status["rss_mb"] < 4000
    assert shown.returncode == 0 and "listening" in shown.stdout + shown.stderr


def test_sighup_with_a_broken_config_keeps_the_running_one(tmp_path, short_command):
    agent = start_realtime(tmp_path, short_command, {})
    config = tmp_path / "earshot.yaml"
    try:
        config.write_text("wake_words:\n  - name: Bad Name\n    phrase: computer\n")
        agent.process.send_signal(signal.SIGHUP)
        error = agent.wait_for("error", 10)
        assert "reload refused" in error["error"] and "wake_words[0].name" in error["error"]
        assert request(agent.socket, "status")["wake_words"] == ["computer"]
        write_config(config, wake_words=[{"name": "computer", "phrase": "computer"}],
                     commands=[{"name": "stop", "builtin": "stop"}])  # fmt: skip
        reply = request(agent.socket, "reload", timeout_s=10)
        assert reply["ok"] is True, reply
        assert request(agent.socket, "status")["commands"] == ["stop"]
    finally:
        code, stderr, _ = agent.stop()
    assert code == 0, stderr
    assert "reload refused, the running config is kept" in stderr


def test_sigterm_during_a_hanging_upload_exits_within_two_seconds(tmp_path, short_command):
    hanging = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(hanging.accept()[0]), daemon=True).start()
    port = hanging.getsockname()[1]
    agent = start_realtime(tmp_path, short_command, {
        "endpoint": {"url": f"http://127.0.0.1:{port}/audio", "timeout_s": 30},
    })  # fmt: skip
    try:
        agent.wait_for("state", 20, state="forwarding")
        time.sleep(0.3)
        assert accepted  # the upload is connected, and the endpoint never answers
    finally:
        code, stderr, took = agent.stop()
        hanging.close()
    assert code == 0, stderr
    assert took < 2.0
    (entry,) = AuditLog.read(tmp_path / "home" / "data" / "earshot" / "audit.jsonl")
    assert entry["result"] in ("dropped", "failed")


def test_sigterm_while_uploads_drain_at_the_end_of_the_input_exits_within_two_seconds(
    tmp_path, short_command
):
    # At the end of a file the agent waits for uploads still in flight (up to their timeouts and
    # retries: 3 x 32 s here); a SIGTERM then must still end it within 2 s.
    hanging = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=lambda: hanging.accept(), daemon=True).start()
    port = hanging.getsockname()[1]
    config = write_config(tmp_path / "earshot.yaml", endpoint={
        "url": f"http://127.0.0.1:{port}/audio", "timeout_s": 30, "retries": 2,
    })  # fmt: skip
    process = subprocess.Popen(
        [*EARSHOT, "run", "--config", str(config), "--file", str(short_command), "--fast"],
        cwd=REPO, env=agent_home(tmp_path / "home"), text=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    assert process.stderr is not None
    stderr = process.stderr
    threading.Thread(target=lambda: [lines.put(line) for line in stderr], daemon=True).start()
    seen: list[str] = []
    try:
        while not any("end of input: waiting up to 96 s for 1 upload" in s for s in seen):
            seen.append(lines.get(timeout=60))  # queue.Empty: the drain never began
        process.send_signal(signal.SIGTERM)
        start = time.monotonic()
        code = process.wait(timeout=10)
        took = time.monotonic() - start
    finally:
        if process.poll() is None:
            process.kill()
        hanging.close()
    assert code == 0, "".join(seen)
    assert took < 2.0


@pytest.mark.parametrize("seconds", ["-5", "0", "nan", "inf"])
def test_a_seconds_limit_that_is_not_a_positive_number_is_a_usage_error(tmp_path, seconds):
    result = run_earshot(
        "run", "--demo", "--fast", "--seconds", seconds, env=agent_home(tmp_path / "home")
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"earshot: error: --seconds: got {seconds}, expected a positive, finite number of "
        "seconds of audio (leave it out for no limit)"
    ]
    assert not result.stdout  # nothing ran
