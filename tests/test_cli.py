"""The earshot command as a user runs it: exit codes, messages, and no tracebacks."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.conftest import REPO, run_earshot, tone
from tests.daemon_harness import RunningAgent


@pytest.fixture
def no_sound_env(tmp_path):
    """An environment where PortAudio finds no sound server (as on a headless machine)."""
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path), PULSE_SERVER="unix:/nonexistent/socket")
    listed = run_earshot("devices", env=env)
    if "no audio input devices found" not in listed.stdout:
        pytest.skip("this machine has a real audio input device")
    return env


def test_help_lists_every_command():
    result = run_earshot("--help")
    assert result.returncode == 0
    for command in ("run", "devices", "record", "config", "bench"):
        assert command in result.stdout
    run_help = run_earshot("run", "--help")
    assert "--demo" in run_help.stdout and "--device" in run_help.stdout


def test_run_reads_raw_pcm_from_stdin(agent_env):
    pcm = (tone(440, 1.5, 16_000) * 32767).astype("<i2").tobytes()
    result = run_earshot(
        "run", "--stdin", input=pcm.decode("latin-1"), encoding="latin-1", env=agent_env
    )
    assert result.returncode == 0, result.stderr
    assert "stopped after 1.5 s of audio" in result.stderr
    assert '"state":"listening"' in result.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty file"), (b"not audio" * 50, "not a readable audio file")],
)
def test_bad_input_file_is_one_line_error_with_exit_code_3(tmp_path, agent_env, content, message):
    path = tmp_path / "input.wav"
    path.write_bytes(content)
    result = run_earshot("run", "--file", str(path), env=agent_env)
    assert result.returncode == 3
    assert f"earshot: error: {path}: {message}" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_exits_2_before_anything_starts(tmp_path):
    config = tmp_path / "earshot.yaml"
    config.write_text("audio:\n  device: [1, 2]\n")
    result = run_earshot("run", "--demo", "--config", str(config))
    assert result.returncode == 2
    assert "audio.device: got list" in result.stderr
    assert "listening" not in result.stderr


def test_no_microphone_plays_the_demo_and_says_so_first(no_sound_env, tmp_path):
    env = dict(no_sound_env, XDG_DATA_HOME=str(tmp_path / "data"))
    env.pop("XDG_RUNTIME_DIR")  # as under `su` or in a container: probing libraries complain
    result = run_earshot("run", "--fast", env=env, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("earshot: no microphone found: playing the bundled demo recording")
    assert result.stdout.count('"event":"wake"') == 2
    assert "the demo's receiver got 2 upload(s)" in result.stderr
    assert "XDG_RUNTIME_DIR" not in result.stderr and "ALSA lib" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("option", [["--no-demo"], ["--device", "usb"]])
def test_no_microphone_is_an_error_when_one_is_required(no_sound_env, option):
    """A service (--no-demo) or a named device must not fall back to the demo recording."""
    result = run_earshot("run", *option, env=no_sound_env, stdin=subprocess.DEVNULL)
    assert result.returncode == 3
    assert "no audio input device found" in result.stderr
    assert "playing the bundled demo" not in result.stderr
    assert "Traceback" not in result.stderr
    listed = run_earshot("devices", env=no_sound_env)
    assert listed.returncode == 0
    assert "--demo" in listed.stdout


def test_sigterm_stops_a_running_agent_promptly(tmp_path, agent_env):
    long_file = tmp_path / "long.wav"
    soundfile.write(long_file, np.zeros(16_000 * 60, np.float32), 16_000)
    socket = Path(agent_env["XDG_RUNTIME_DIR"]) / "earshot" / "control.sock"
    agent = RunningAgent.start("--file", str(long_file), env=agent_env, socket=socket)
    agent.wait_until_hearing()  # running, not still starting: its signal handlers are in place
    code, stderr, took_s = agent.stop(signal.SIGTERM)
    assert took_s < 2.0, stderr
    assert code == 0, stderr


def test_agent_path_does_not_import_training_libraries(agent_env):
    code = (
        "import sys; from agent.cli.main import main; rc = main(['run', '--demo', '--fast']); "
        "heavy = ('librosa', 'numba', 'onnxruntime', 'scipy', 'matplotlib', 'tqdm', 'rich', "
        "'wyoming'); "
        "heavy = sorted(m for m in heavy if m in sys.modules); "
        "print(heavy); sys.exit(rc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=agent_env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
