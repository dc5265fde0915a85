"""What the daemon exposes and what it lets out: ports, tokens, plain http, and silence on the wire.

The privacy check runs the real daemon over ten minutes of talk without the wake word, against an
endpoint that counts every connection and byte it receives: it must receive nothing. No child of
the agent (a hook, a shell action) sees the endpoint's token variable. The control socket is
never put in a shared folder, and never taken from a running agent by a second one.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from agent.control.server import request
from agent.egress.audit import AuditLog
from agent.egress.receiver import Receiver
from agent.paths import DEMO_AUDIO
from kernels.errors import EarshotError
from models.speech.demo_stream import other_speech, wake_and_command
from tests.conftest import EARSHOT, REPO, agent_home, run_earshot
from tests.daemon_harness import RunningAgent, write_config, write_stream
from tests.fault_proxy import FaultProxy

TOKEN = "tok-planted-5f1c2e9a7b"
"""A bearer token unlikely to appear anywhere by chance."""
NEGATIVE_STREAM_S = 600.0
TCP_LISTEN = "0A"
CHILD_WAIT_S = 10.0
"""How long a detached shell action may take to write its file after the agent exits."""
AGENT_START_S = 60.0
"""Generous bound on an agent's start-up (config, models, control socket) on a busy machine."""
LONG_INPUT_S = 300
STOP_WAIT_S = 10.0


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


# ---- children never see the endpoint's secrets ---------------------------------------------------


@pytest.fixture(scope="module")
def stop_command(tmp_path_factory):
    """The wake word, then "stop" (a built-in command word)."""
    path = tmp_path_factory.mktemp("security") / "stop.wav"
    write_stream(path, wake_and_command("computer", "stop"))
    return path


def dump_env(path: Path) -> str:
    """A shell line writing the environment to ``path`` (whole, or not at all)."""
    return f"env > {path}.part && mv {path}.part {path}"


def environment_in(path: Path) -> dict[str, str]:
    """The variables a child wrote with `dump_env`, once it has written them."""
    deadline = time.monotonic() + CHILD_WAIT_S
    while not path.exists():
        assert time.monotonic() < deadline, f"no child wrote {path}"
        time.sleep(0.05)
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_no_hook_or_shell_action_gets_the_token_variable(tmp_path, stop_command):
    hook, action = tmp_path / "hook.env", tmp_path / "action.env"
    config = write_config(
        tmp_path / "earshot.yaml",
        endpoint={"url": "http://127.0.0.1:9/audio", "token_env": "EARSHOT_TEST_TOKEN"},
        commands=[{"name": "stop", "builtin": "stop", "action": "shell", "run": dump_env(action)}],
        events={"hooks": {"wake": dump_env(hook)}},
    )
    env = agent_home(tmp_path / "home") | {"EARSHOT_TEST_TOKEN": TOKEN}
    # In real time: the wake hook must finish before the agent stops its hooks at the end.
    result = run_earshot("run", "--config", str(config), "--file", str(stop_command), env=env)
    assert result.returncode == 0, result.stderr
    handled = [json.loads(line) for line in result.stdout.splitlines() if '"command"' in line]
    assert [(e["command"], e["action"]) for e in handled] == [("stop", "shell")], result.stdout

    for path, kind in ((hook, "wake"), (action, "command")):
        variables = environment_in(path)
        assert variables["EARSHOT_EVENT"] == kind  # the child's own environment
        assert "EARSHOT_TEST_TOKEN" not in variables, path.name
        assert TOKEN not in path.read_text(), path.name
        assert variables["PATH"] == env["PATH"]  # the rest is passed on


def test_no_hook_gets_a_variable_naming_the_token_file(tmp_path, stop_command):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    hook = tmp_path / "hook.env"
    with Receiver(tmp_path / "received", token=TOKEN) as receiver:
        config = write_config(
            tmp_path / "earshot.yaml",
            endpoint={"url": f"{receiver.url}/audio", "token_file": str(token_file)},
            events={"hooks": {"wake": dump_env(hook)}},
        )
        env = agent_home(tmp_path / "home") | {"EARSHOT_TEST_TOKEN_FILE": str(token_file)}
        result = run_earshot("run", "--config", str(config), "--file", str(stop_command), env=env)
        assert result.returncode == 0, result.stderr
        assert len(receiver.uploads) == 1  # the agent itself read the token

    variables = environment_in(hook)
    assert variables["EARSHOT_EVENT"] == "wake"
    assert "EARSHOT_TEST_TOKEN_FILE" not in variables
    assert TOKEN not in hook.read_text() and str(token_file) not in hook.read_text()


# ---- the control socket's folder and lock --------------------------------------------------------


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path (AF_UNIX socket paths are limited to 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="earshot-sec-") as name:
        yield Path(name)


def test_a_socket_in_a_shared_folder_is_refused_and_the_folder_left_alone(tmp_path, short_dir):
    shared = short_dir / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    config = write_config(tmp_path / "earshot.yaml", events={"socket": str(shared / "ctl.sock")})
    result = run_earshot(
        "run", "--config", str(config), "--demo", "--fast", env=agent_home(tmp_path / "home")
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()  # refused before any model was loaded
    assert line.startswith("earshot: error: events.socket: ") and str(shared) in line
    assert "writable by others (mode 1777)" in line
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert os.listdir(shared) == []
    assert not result.stdout  # refused before anything ran


def test_a_socket_in_a_new_folder_inside_a_shared_one_is_accepted(tmp_path, short_dir):
    shared = short_dir / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    socket = shared / "mine" / "ctl.sock"
    config = write_config(tmp_path / "earshot.yaml", events={"socket": str(socket)})
    agent = RunningAgent.start(
        "--config", str(config), "--file", str(DEMO_AUDIO), env=agent_home(tmp_path / "home"),
        socket=socket,
    )  # fmt: skip
    try:
        agent.wait_until_hearing()
        folder_mode = stat.S_IMODE(socket.parent.stat().st_mode)
    finally:
        code, stderr, _ = agent.stop()
    assert code == 0, stderr
    assert folder_mode == 0o700  # the folder earshot created
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777  # the one it did not
    assert os.listdir(socket.parent) == []  # socket and lock removed on exit


HELD_BEFORE_BIND = "held before binding the control socket"
HOLD_BEFORE_BIND = f"""
import asyncio, sys
bind = asyncio.start_unix_server
async def held(*args, **kwargs):
    print({HELD_BEFORE_BIND!r}, file=sys.stderr, flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    return await bind(*args, **kwargs)
asyncio.start_unix_server = held
from agent.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
"""``earshot`` whose agent stops between its check for a stale socket and its bind, until a
line arrives on its standard input."""


def stderr_lines(process: subprocess.Popen[str]) -> queue.Queue[str]:
    """The lines ``process`` writes to stderr, read on a thread."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def wait_for_line(lines: queue.Queue[str], text: str, timeout_s: float) -> None:
    """Wait until a line of ``lines`` contains ``text``."""
    deadline = time.monotonic() + timeout_s
    seen: list[str] = []
    while not seen or text not in seen[-1]:
        try:
            seen.append(lines.get(timeout=max(0.01, deadline - time.monotonic())))
        except queue.Empty:
            pytest.fail(f"no line with {text!r} within {timeout_s} s: {seen}")


def answered_status(socket: Path, timeout_s: float) -> dict:
    """The first ``status`` the agent on ``socket`` answers."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return request(socket, "status")
        except EarshotError:
            assert time.monotonic() < deadline, f"nothing answered on {socket}"
            time.sleep(0.1)


def stop(process: subprocess.Popen[str]) -> int:
    """SIGTERM ``process`` (SIGKILL if it outlives `STOP_WAIT_S`); its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def refused_or_listening(process: subprocess.Popen[str], socket: Path) -> bool:
    """Wait until ``process`` exits (False) or something answers on ``socket`` (True)."""
    deadline = time.monotonic() + AGENT_START_S
    while process.poll() is None:
        try:
            request(socket, "status")
            return True
        except EarshotError:
            assert time.monotonic() < deadline, "the agent neither exited nor listened"
            time.sleep(0.1)
    return False


def test_two_agents_on_one_socket_the_second_refuses_and_the_first_stays_reachable(
    tmp_path, short_dir
):
    socket = short_dir / "ctl.sock"
    config = write_config(
        tmp_path / "earshot.yaml", events={"socket": str(socket), "stdout": False}
    )
    long_input = tmp_path / "silence.wav"
    soundfile.write(long_input, np.zeros(LONG_INPUT_S * 16000, np.float32), 16000)
    env = agent_home(tmp_path / "home")
    run = ["run", "--config", str(config)]
    first = subprocess.Popen(
        [sys.executable, "-c", HOLD_BEFORE_BIND, *run, "--file", str(long_input)], cwd=REPO,
        env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    second = third = None
    try:
        # The first agent has looked for a stale socket (there is none) and not bound yet.
        wait_for_line(stderr_lines(first), HELD_BEFORE_BIND, AGENT_START_S)
        second = subprocess.Popen(
            [*EARSHOT, *run, "--stdin"], cwd=REPO, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert not refused_or_listening(second, socket), "the second agent listens on the socket"
        assert second.stderr is not None
        second_err = second.stderr.read()
        assert first.stdin is not None
        first.stdin.write("go on\n")
        first.stdin.flush()
        status = answered_status(socket, AGENT_START_S)
        # And a second agent started while the first listens is refused the same way.
        third = run_earshot(*run, "--stdin", input="", env=env, timeout=AGENT_START_S)
        status_after = run_earshot("status", "--config", str(config), "--json", env=env)
    finally:
        assert first.stdin is not None
        first.stdin.close()  # lets it go on, if it is still held
        code = stop(first)
        if second is not None:
            stop(second)

    for refused in (second_err, third.stderr):
        assert [line for line in refused.splitlines() if line.startswith("earshot:")] == [
            f"earshot: error: events.socket: another earshot is running on {socket} "
            f"(pid {first.pid}); stop it, or set events.socket to another path"
        ]
        assert "Traceback" not in refused
    assert second.returncode == 2 and third.returncode == 2
    assert status["source"] == f"file {long_input}"
    assert status_after.returncode == 0, status_after.stderr
    assert json.loads(status_after.stdout)["source"] == f"file {long_input}"
    assert code == 0
    assert os.listdir(short_dir) == []  # socket and lock removed on exit
