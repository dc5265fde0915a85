"""`earshot status`, `earshot events` and `earshot service` through the real CLI.

The "agent" is a real `ControlServer` on a real Unix socket, run on a thread of the test process;
the CLI runs in a subprocess, as a user would run it. `systemctl` is a small script on ``PATH``
that records its arguments, so ``--now`` is checked without touching the machine's systemd.
"""

from __future__ import annotations

import asyncio
import configparser
import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.control.events import EventBus
from agent.control.server import ControlServer
from agent.settings import EventSettings
from tests.conftest import EARSHOT, REPO, run_earshot

START_TIMEOUT_S = 5.0
STATUS = {
    "state": "listening",
    "uptime_s": 3725.0,
    "source": "demo.wav",
    "level_dbfs": -42.25,
    "cpu_percent": 1.5,
    "rss_mb": 61.0,
    "wake_words": ["computer", "jarvis"],
    "counts": {"wake:computer": 3, "upload:ok": 2},
    "battery": "n/a",
}


@dataclass
class LiveAgent:
    """A control server on its own thread and event loop."""

    path: Path
    bus: EventBus = field(default_factory=lambda: EventBus(EventSettings(stdout=False)))
    loop: asyncio.AbstractEventLoop | None = None
    stopping: asyncio.Event | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    async def serve(self) -> None:
        server = ControlServer(self.path, self.bus, lambda: dict(STATUS))
        await server.start()
        self.loop, self.stopping = asyncio.get_running_loop(), asyncio.Event()
        self.ready.set()
        await self.stopping.wait()
        await server.close()

    def stop(self) -> None:
        if self.loop is not None and self.stopping is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.stopping.set)


@pytest.fixture
def live_agent() -> Iterator[LiveAgent]:
    with tempfile.TemporaryDirectory(prefix="earshot-test-") as name:
        agent = LiveAgent(Path(name) / "control.sock")
        thread = threading.Thread(target=asyncio.run, args=(agent.serve(),), daemon=True)
        thread.start()
        assert agent.ready.wait(START_TIMEOUT_S), "the control server did not start"
        yield agent
        agent.stop()
        thread.join(START_TIMEOUT_S)


def test_status_without_an_agent_says_so_without_a_traceback():
    result = run_earshot("status", "--socket", "/nonexistent/earshot/control.sock")
    assert result.returncode == 1
    assert "earshot is not running (no control socket at /nonexistent/earshot/control.sock)" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_status_prints_the_agents_summary(live_agent):
    result = run_earshot("status", "--socket", str(live_agent.path))
    assert result.returncode == 0, result.stderr
    rows = dict(line.split(":", 1) for line in result.stdout.splitlines())
    rows = {key: value.strip() for key, value in rows.items()}
    assert rows["state"] == "listening"
    assert rows["uptime"] == "1:02:05"
    assert rows["input level"] == "-42.2 dBFS"
    assert rows["memory (RSS)"] == "61.0 MB"
    assert rows["wake words"] == "computer, jarvis"
    assert rows["detections"] == "computer 3"
    assert rows["uploads"] == "ok 2"
    assert rows["battery"] == "n/a"  # keys the CLI does not know are shown too
    assert list(rows)[0] == "state"

    raw = run_earshot("status", "--socket", str(live_agent.path), "--json")
    assert raw.returncode == 0, raw.stderr
    assert json.loads(raw.stdout) == {"ok": True, **STATUS}


def test_status_finds_the_socket_through_the_config(live_agent, tmp_path):
    config = tmp_path / "earshot.yaml"
    config.write_text(f"events:\n  socket: {live_agent.path}\n")
    result = run_earshot("status", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "listening" in result.stdout


def test_events_prints_lines_until_the_agent_goes_away(live_agent):
    process = subprocess.Popen(
        [*EARSHOT, "events", "--socket", str(live_agent.path)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not live_agent.bus._subscribers and process.poll() is None:
            assert time.monotonic() < deadline, "`earshot events` never subscribed"
            time.sleep(0.05)
        live_agent.bus.emit("wake", wake_word="computer", score=0.93)  # from another thread
        assert process.stdout is not None
        line = json.loads(process.stdout.readline())
        live_agent.stop()
        rest, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (line["event"], line["wake_word"], line["score"]) == ("wake", "computer", 0.93)
    assert rest == ""
    assert process.returncode == 1
    assert "closed the control socket" in stderr and "Traceback" not in stderr


def service_env(tmp_path: Path, systemctl_exit: int | None = None) -> dict[str, str]:
    """XDG directories under ``tmp_path``; a recording fake `systemctl` on PATH when asked."""
    env = dict(os.environ)
    for name in ("CONFIG", "DATA", "CACHE"):
        env[f"XDG_{name}_HOME"] = str(tmp_path / name.lower())
    if systemctl_exit is not None:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        fake = bin_dir / "systemctl"
        fake.write_text(
            f'#!/bin/sh\necho "$@" >> {tmp_path}/systemctl.log\nexit {systemctl_exit}\n'
        )
        fake.chmod(0o755)
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def exec_start(unit_text: str) -> str:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(unit_text)
    return unit["Service"]["ExecStart"]


def test_service_install_print_points_at_this_earshot(tmp_path):
    config = tmp_path / "my config.yaml"
    config.write_text("audio:\n  block_ms: 80\n")
    result = run_earshot("service", "install", "--print", "--config", str(config))
    assert result.returncode == 0, result.stderr
    command = exec_start(result.stdout)
    program = command.split()[0]
    assert Path(program).is_absolute() and os.access(program, os.X_OK)
    assert command.endswith(f' run --no-demo --json --config "{config}"')
    assert "ReadWritePaths=" in result.stdout and "%t/earshot" in result.stdout
    assert "UMask=0077" in result.stdout


def test_service_install_refuses_a_broken_config(tmp_path):
    config = tmp_path / "earshot.yaml"
    config.write_text("audio:\n  block_ms: 5\n")
    result = run_earshot("service", "install", "--config", str(config), env=service_env(tmp_path))
    assert result.returncode == 2
    assert "block_ms" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "config").exists()


def test_service_install_writes_refuses_to_clobber_and_uninstalls(tmp_path):
    env = service_env(tmp_path)
    unit = tmp_path / "config" / "systemd" / "user" / "earshot.service"
    first = run_earshot("service", "install", env=env)
    assert first.returncode == 0, first.stderr
    assert unit.is_file() and f"wrote {unit}" in first.stdout
    assert "systemctl --user enable --now earshot" in first.stdout
    assert exec_start(unit.read_text()).endswith(" run --no-demo --json")
    assert (tmp_path / "data" / "earshot").is_dir() and (tmp_path / "cache" / "earshot").is_dir()

    again = run_earshot("service", "install", env=env)
    assert again.returncode == 0 and "unchanged" in again.stdout

    config = tmp_path / "earshot.yaml"
    config.write_text("")
    changed = run_earshot("service", "install", "--config", str(config), env=env)
    assert changed.returncode == 1
    assert "--force" in changed.stderr and "Traceback" not in changed.stderr
    assert exec_start(unit.read_text()).endswith(" run --no-demo --json")
    forced = run_earshot("service", "install", "--config", str(config), "--force", env=env)
    assert forced.returncode == 0, forced.stderr
    assert exec_start(unit.read_text()).endswith(f" run --no-demo --json --config {config}")

    removed = run_earshot("service", "uninstall", env=env)
    assert removed.returncode == 0 and f"removed {unit}" in removed.stdout
    assert not unit.exists()
    gone = run_earshot("service", "uninstall", env=env)
    assert gone.returncode == 0 and "no unit installed" in gone.stdout


def test_service_now_runs_systemctl(tmp_path):
    env = service_env(tmp_path, systemctl_exit=0)
    log = tmp_path / "systemctl.log"
    installed = run_earshot("service", "install", "--now", env=env)
    assert installed.returncode == 0, installed.stderr
    assert log.read_text().splitlines() == ["--user daemon-reload", "--user enable --now earshot"]
    log.unlink()
    removed = run_earshot("service", "uninstall", "--now", env=env)
    assert removed.returncode == 0, removed.stderr
    assert log.read_text().splitlines() == ["--user disable --now earshot", "--user daemon-reload"]


def test_service_now_prints_the_commands_when_systemctl_fails(tmp_path):
    env = service_env(tmp_path, systemctl_exit=3)
    result = run_earshot("service", "install", "--now", env=env)
    assert result.returncode == 1
    assert "systemctl --user daemon-reload` failed" in result.stderr
    assert "systemctl --user daemon-reload\n  systemctl --user enable --now earshot" in (
        result.stdout
    )
    assert (tmp_path / "config" / "systemd" / "user" / "earshot.service").is_file()
