"""``earshot run`` on a terminal: the live view; JSON lines with --json or without a terminal."""

import os
import pty
import re
import select
import subprocess

import pytest

from agent.cli.live_view import describe_event, meter
from tests.conftest import EARSHOT, REPO

ESCAPE = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def run_on_terminal(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """Run earshot with its output on a pseudo-terminal; its exit code and what it drew."""
    main, child = pty.openpty()
    process = subprocess.Popen(
        [*EARSHOT, *args], stdout=child, stderr=child, stdin=subprocess.DEVNULL, cwd=REPO,
        env=dict(env, COLUMNS="110", LINES="40", TERM="xterm-256color"),
    )  # fmt: skip
    os.close(child)
    out = b""
    while select.select([main], [], [], 60)[0]:
        try:
            data = os.read(main, 1 << 16)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        out += data
    os.close(main)
    return process.wait(timeout=60), ESCAPE.sub(b"", out).decode("utf-8", "replace")


def test_terminal_shows_the_live_view(agent_env, tmp_path):
    env = dict(agent_env, XDG_DATA_HOME=str(tmp_path))
    code, screen = run_on_terminal("run", "--demo", "--fast", env=env)
    assert code == 0, screen
    assert '{"event":' not in screen  # no JSON lines on a terminal
    assert "dBFS" in screen and "threshold" in screen  # the input meter and the words' table
    assert "heard computer" in screen
    assert screen.count("upload ok") >= 2  # the last drawing holds both uploads
    assert "stopped after 27.3 s of audio" in screen  # log lines print above the view
    assert "Traceback" not in screen


def test_json_on_a_terminal_prints_event_lines(agent_env, tmp_path):
    env = dict(agent_env, XDG_DATA_HOME=str(tmp_path))
    code, screen = run_on_terminal("run", "--demo", "--fast", "--json", env=env)
    assert code == 0, screen
    assert screen.count('"event":"wake"') == 2
    assert "dBFS" not in screen


@pytest.mark.parametrize(
    ("event", "shown"),
    [
        ({"event": "wake", "wake_word": "computer", "score": 0.98765, "end_s": 10.21},
         "heard computer  score 0.988 at 10.2 s"),
        ({"event": "command", "outcome": "ended", "seconds": 2.41, "action": "forward"},
         "command ended, 2.4 s -> forward"),
        ({"event": "command", "command": "lights", "outcome": "ended", "seconds": 1.0,
          "action": "shell"}, "command lights ended, 1.0 s -> shell"),
        ({"event": "upload", "result": "failed", "seconds": 3.0, "bytes": 0,
          "endpoint": "https://x/audio", "error": "timed out"},
         "upload failed  3.0 s, 0 bytes to https://x/audio: timed out"),
        ({"event": "transcript", "text": "turn on the lights"}, "transcript 'turn on the lights'"),
        ({"event": "error", "error": "reload refused"}, "error: reload refused"),
    ],
)  # fmt: skip
def test_each_event_kind_reads_as_one_line(event, shown):
    line = describe_event({"time": "2026-12-06T01:02:03.456Z", **event})
    assert line is not None
    assert line.plain == f"01:02:03  {shown}"


def test_state_events_are_not_lines_and_the_meter_fills():
    assert describe_event({"event": "state", "time": "", "state": "listening"}) is None
    assert meter(0.5, 10).plain == "█████·····"
    assert meter(-1, 4).plain == "····" and meter(2, 4).plain == "████"
