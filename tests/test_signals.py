"""SIGINT ends ``earshot run`` with exit code 130, as the README documents, whenever it comes.

Each test runs the real agent in a subprocess on the bundled demo recording, in real time, with
its data and control socket in a temporary folder.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from agent import EXIT_INTERRUPTED
from agent.paths import DEMO_AUDIO
from tests.conftest import EARSHOT, REPO, agent_home
from tests.daemon_harness import RunningAgent

START_WAIT_S = 30.0
"""Generous bound on reaching start-up (the interpreter and imports) on a busy machine."""
EXIT_WAIT_S = 10.0


def test_sigint_while_listening_exits_130(tmp_path):
    home = tmp_path / "home"
    agent = RunningAgent.start(
        "--file", str(DEMO_AUDIO), env=agent_home(home),
        socket=home / "run" / "earshot" / "control.sock",
    )  # fmt: skip
    agent.wait_until_hearing()
    code, stderr, _ = agent.stop(signal.SIGINT)
    assert code == EXIT_INTERRUPTED, stderr
    assert "Traceback" not in stderr
    assert agent.of("state")  # it was running, not starting


def is_starting(pid: int) -> bool:
    """``earshot run`` has begun: it ignores SIGHUP while its config and models load."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):  # a hex mask; bit n-1 is signal n
            return bool(int(line.split()[1], 16) & 1 << (signal.SIGHUP - 1))
    return False


def test_sigint_during_start_up_exits_130(tmp_path):
    process = subprocess.Popen(
        [*EARSHOT, "run", "--file", str(DEMO_AUDIO)], cwd=REPO, env=agent_home(tmp_path),
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_WAIT_S
        while not is_starting(process.pid):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "earshot run never started"
            time.sleep(0.005)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=EXIT_WAIT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "Traceback" not in stderr


def test_ctrl_c_while_the_command_line_loads_exits_130():
    # SIGINT raises KeyboardInterrupt wherever the main thread is; here it arrives while
    # agent.cli.main, the first heavy import of `earshot`, is being imported.
    code = (
        "import os, signal, sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'agent.cli.main':\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "from agent.__main__ import run\n"
        "sys.exit(run())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == EXIT_INTERRUPTED, result.stderr
    assert "Traceback" not in result.stderr
