"""Shared fixtures: real components (a PulseAudio server with a null sink, data paths).

A test that needs a real component calls `require`: outside CI it skips with the reason when the
component is missing; under CI=true it fails, because CI must exercise it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
FSDD_DIR = Path(
    os.environ.get("EARSHOT_FSDD_DIR", REPO.parent / "shared" / "data" / "fsdd" / "recordings")
)
IN_CI = os.environ.get("CI", "").lower() == "true"
EARSHOT = [sys.executable, "-m", "agent"]
PULSE_SINK = "earshot_test"
PULSE_START_TIMEOUT_S = 10.0


def require(condition: bool, reason: str) -> None:
    """Skip (or fail under CI=true) when a real component the test needs is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must run this test, but {reason}")
    pytest.skip(reason)


def fsdd_files(pattern: str = "*.wav") -> list[Path]:
    """FSDD recordings matching ``pattern``; skips the test when the data set is absent."""
    files = sorted(FSDD_DIR.glob(pattern)) if FSDD_DIR.is_dir() else []
    if not files:
        pytest.skip(f"FSDD recordings not found in {FSDD_DIR}")
    return files


def run_earshot(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, **kwargs
) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess, as a user would; returns the completed process."""
    return subprocess.run(
        [*EARSHOT, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout,
        **kwargs,
    )  # fmt: skip


@dataclass
class PulseServer:
    """A private PulseAudio server with a null sink; ``env`` points clients at it."""

    process: subprocess.Popen
    runtime_dir: Path
    sink: str

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(XDG_RUNTIME_DIR=str(self.runtime_dir), PULSE_SOURCE=f"{self.sink}.monitor")
        env.pop("PULSE_SERVER", None)
        return env

    def play(self, wav: Path) -> None:
        """Play a WAV file into the null sink, in real time, and wait until it has played."""
        subprocess.run(
            ["paplay", f"--device={self.sink}", str(wav)], env=self.env, check=True, timeout=60
        )


def agent_home(root: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment whose earshot data, config and control socket live under ``root``."""
    runtime = root / "run"
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = dict(os.environ if base is None else base)
    pulse_socket = Path(env.get("XDG_RUNTIME_DIR", "/nonexistent")) / "pulse" / "native"
    if "PULSE_SERVER" not in env and pulse_socket.exists():
        env["PULSE_SERVER"] = f"unix:{pulse_socket}"  # the sound server stays reachable
    env.update(
        XDG_DATA_HOME=str(root / "data"),
        XDG_CONFIG_HOME=str(root / "config"),
        XDG_RUNTIME_DIR=str(runtime),
    )
    return env


@pytest.fixture
def agent_env(tmp_path: Path) -> dict[str, str]:
    """`agent_home` under the test's temporary folder: the daemon touches nothing of the user's."""
    return agent_home(tmp_path / "home")


@pytest.fixture(scope="session")
def pulse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulseServer]:
    """Start a PulseAudio server for the session and stop it, by its pid, afterwards."""
    require(shutil.which("pulseaudio") is not None, "pulseaudio is not installed")
    require(shutil.which("paplay") is not None, "paplay (pulseaudio-utils) is not installed")
    runtime_dir = tmp_path_factory.mktemp("pulse-runtime")
    runtime_dir.chmod(0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime_dir), HOME=str(runtime_dir))
    process = subprocess.Popen(
        [
            "pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit",
            "--load=module-native-protocol-unix auth-anonymous=1",
            f"--load=module-null-sink sink_name={PULSE_SINK}",
        ],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    socket = runtime_dir / "pulse" / "native"
    deadline = time.monotonic() + PULSE_START_TIMEOUT_S
    while not socket.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not socket.exists():
        process.kill()
        stderr = process.communicate()[1].decode(errors="replace")[-2000:]
        require(False, f"pulseaudio did not start: {stderr}")
    server = PulseServer(process, runtime_dir, PULSE_SINK)
    yield server
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def pulse_env(pulse_server, monkeypatch):
    """Point this process's PortAudio at the private server."""
    from agent.capture.devices import rescan_devices

    for key, value in pulse_server.env.items():
        monkeypatch.setenv(key, value)
    rescan_devices()
    yield pulse_server
    monkeypatch.undo()
    rescan_devices()


@pytest.fixture(scope="session")
def gpu():
    """The best wgpu adapter's device (lavapipe on machines without a GPU)."""
    from kernels.device import list_adapters, open_device
    from kernels.errors import DeviceError

    try:
        adapters = list_adapters()
    except DeviceError:
        adapters = []
    require(bool(adapters), "no wgpu adapter (install mesa-vulkan-drivers for lavapipe)")
    return open_device()


def tone(freq_hz: float, seconds: float, sr: int, amplitude: float = 0.5) -> np.ndarray:
    """A sine tone, float32."""
    t = np.arange(int(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)
