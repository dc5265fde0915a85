"""What the daemon exposes and what it lets out: ports, tokens, plain http, and silence on the wire.

The privacy check runs the real daemon over ten minutes of talk without the wake word, against an
endpoint that counts every connection and byte it receives: it must receive nothing.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from agent.egress.audit import AuditLog
from agent.egress.receiver import Receiver
from models.speech.demo_stream import other_speech, wake_and_command
from tests.conftest import agent_home, run_earshot
from tests.daemon_harness import RunningAgent, write_config, write_stream
from tests.fault_proxy import FaultProxy

TOKEN = "tok-planted-5f1c2e9a7b"
"""A bearer token unlikely to appear anywhere by chance."""
NEGATIVE_STREAM_S = 600.0
TCP_LISTEN = "0A"


@pytest.fixture(scope="module")
def command(tmp_path_factory):
    path = tmp_path_factory.mktemp("security") / "command.wav"
    write_stream(path, [*other_speech(1.0), *wake_and_command("computer", "what time is it")])
    return path


def listening_tcp_inodes() -> set[str]:
    """Socket inodes of every listening TCP socket (IPv4 and IPv6) on this machine."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == TCP_LISTEN:
                inodes.add(fields[9])
    return inodes


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def test_the_daemon_listens_on_no_tcp_port_only_on_its_owner_only_socket(tmp_path, command):
    home = tmp_path / "home"
    agent = RunningAgent.start(
        "--file", str(command), env=agent_home(home),
        socket=home / "run" / "earshot" / "control.sock",
    )  # fmt: skip
    try:
        agent.wait_until_hearing()
        sockets = socket_inodes(agent.process.pid)
        listening = listening_tcp_inodes()
        mode = stat.S_IMODE(agent.socket.stat().st_mode)
        folder_mode = stat.S_IMODE(agent.socket.parent.stat().st_mode)
    finally:
        agent.stop()
    assert sockets  # the control socket, at least
    assert not sockets & listening
    assert mode == 0o600 and folder_mode == 0o700


def _run(tmp_path, wav, endpoint: dict, name: str) -> tuple[str, str, Path]:
    audit = tmp_path / f"{name}.jsonl"
    config = write_config(
        tmp_path / f"{name}.yaml", endpoint=endpoint, privacy={"audit_log": str(audit)}
    )
    env = agent_home(tmp_path / "home") | {"EARSHOT_TEST_TOKEN": TOKEN}
    result = run_earshot(
        "--debug", "run", "--config", str(config), "--file", str(wav), "--fast", env=env
    )
    assert result.returncode == 0, result.stderr
    return result.stdout, result.stderr, audit


def test_the_token_reaches_the_endpoint_and_nowhere_else(tmp_path, command):
    with Receiver(tmp_path / "received", token=TOKEN) as receiver:
        proxy = FaultProxy("500", receiver.port, failures=2)  # one failed upload, then ok
        endpoint = {"url": f"http://127.0.0.1:{proxy.port}/a", "token_env": "EARSHOT_TEST_TOKEN",
                    "retries": 1, "timeout_s": 2.0}  # fmt: skip
        failed = _run(tmp_path, command, endpoint, "failed")
        accepted = _run(tmp_path, command, endpoint, "accepted")
        proxy.close()
        assert len(receiver.uploads) == 1  # the receiver refuses requests without the token
    results = [json.loads(line)["result"] for line in failed[0].splitlines() if "upload" in line]
    assert "failed" in results
    for stdout, stderr, audit in (failed, accepted):
        assert TOKEN not in stdout and TOKEN not in stderr
        assert audit.exists() and TOKEN not in audit.read_text()
    assert [e["result"] for e in AuditLog.read(accepted[2])] == ["ok"]


def test_plain_http_to_another_machine_is_refused_before_anything_runs(tmp_path):
    config = write_config(tmp_path / "earshot.yaml", endpoint={"url": "http://192.0.2.7/audio"})
    for command in (["config", "check", str(config)], ["run", "--config", str(config), "--demo"]):
        result = run_earshot(*command, env=agent_home(tmp_path / "home"))
        assert result.returncode == 2
        assert "endpoint.url" in result.stderr and "https" in result.stderr
        assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def negative_stream(tmp_path_factory):
    path = tmp_path_factory.mktemp("negative") / "talk.wav"
    write_stream(path, other_speech(NEGATIVE_STREAM_S))
    return path


def test_ten_minutes_of_talk_without_the_wake_word_send_nothing(tmp_path, negative_stream):
    with Receiver(tmp_path / "received") as receiver:
        counter = FaultProxy("500", receiver.port, failures=0)  # counts every connection
        stdout, _, audit = _run(
            tmp_path, negative_stream, {"url": f"http://127.0.0.1:{counter.port}/a"}, "negative"
        )
        counter.close()
        connections, received = counter.connections, receiver.received_bytes
    events = [json.loads(line) for line in stdout.splitlines()]
    assert not [e for e in events if e["event"] == "wake"]
    assert connections == 0 and received == 0
    assert not audit.exists()
    assert not list((tmp_path / "received").glob("*"))
