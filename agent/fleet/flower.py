"""Flower's deployment runtime as earshot starts it: a SuperLink, SuperNodes and ``flwr run``.

Each process is a real Flower program (``flower-superlink``, ``flower-supernode``, ``flwr``)
started from the Python environment earshot runs in, with its own ``FLWR_HOME`` and settings that
keep it offline and quiet: no telemetry, no update check, no per-run dependency installation (the
apps import the installed earshot). A SuperLink serves its Control, Fleet and Runtime APIs on one
port and is ready when ``GET /health`` answers; a SuperNode is ready when it logs its id. Flower
starts a ``flower-superexec`` child beside each, so `FlowerProcess.stop` signals the whole tree
by process id. Plain TCP is used only on loopback; anything else needs TLS (``ca_file`` etc.).

``flwr`` itself is the optional ``fleet`` extra: `require_flower` says how to install it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.settings import is_loopback_host
from kernels.errors import ConfigError, EarshotError

BIN = Path(sys.executable).parent
"""Where the Flower programs of earshot's environment are."""
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 5.0
CONNECTION = "earshot"
"""The SuperLink connection's name in the ``flwr`` command's own FLWR_HOME."""


class FleetError(EarshotError):
    """A Flower process failed to start, or a run failed; the message says which and why."""


@dataclass(frozen=True)
class Tls:
    """TLS files: the CA every side trusts, and the SuperLink's certificate and key."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


def require_flower() -> None:
    """Refuse to go on without ``flwr`` (the ``fleet`` extra), saying how to install it."""
    if importlib.util.find_spec("flwr") is None or not (BIN / "flower-superlink").exists():
        raise ConfigError(
            "fleet learning needs Flower: pip install 'earshot[fleet]' (flwr 1.42) into the "
            "environment earshot runs in"
        )


def check_address(host: str, tls: Tls | None, what: str) -> None:
    """Plain TCP only on loopback, as for uploads."""
    if tls is None and not is_loopback_host(host):
        raise ConfigError(
            f"{what}: got {host}; without TLS the fleet runs only on localhost, 127.0.0.0/8 or "
            "::1 (set fleet.ca_file, and on the coordinator cert_file and key_file)"
        )


def flower_env(home: Path) -> dict[str, str]:
    """The environment of one Flower process: its own FLWR_HOME, offline and quiet."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return dict(
        os.environ,
        FLWR_HOME=str(home),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # Flower starts its helpers by name
        PYTHONUNBUFFERED="1",
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class FlowerProcess:
    """One running Flower program, its log file, and the processes it started."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    descendants: set[int] = field(default_factory=set)

    @classmethod
    def start(
        cls, name: str, command: list[str], home: Path, log: Path, nice: int = 0
    ) -> FlowerProcess:
        """Start ``command`` (a program of `BIN`) with `flower_env`, its output in ``log``.

        ``nice`` lowers its priority (a device trains in the background).
        """
        env = flower_env(home)
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(BIN / command[0]), *command[1:]], env=env, cwd=home, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=(lambda: os.nice(nice)) if nice else None,
            )  # fmt: skip
        return cls(name, process, log)

    def text(self) -> str:
        """What the process has logged so far."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def wait_until(self, ready: Any, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until ``ready()`` is true; a process that exits first is an error."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.descendants.update(_descendants(self.process.pid))
            if ready():
                return
            if self.process.poll() is not None:
                raise FleetError(f"{self.name} exited ({self.process.returncode}): {self.tail()}")
            time.sleep(0.2)
        raise FleetError(f"{self.name} not ready after {timeout_s:.0f} s: {self.tail()}")

    def tail(self, lines: int = 8) -> str:
        """The end of its log, for messages."""
        return " | ".join(self.text().strip().splitlines()[-lines:])

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM it and everything it started, then SIGKILL what is left after ``timeout_s``."""
        self.descendants.update(_descendants(self.process.pid))
        pids = [self.process.pid, *self.descendants]
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        _wait_gone(pids[1:], timeout_s)
        for pid in pids[1:]:
            if _alive(pid):
                _signal(pid, signal.SIGKILL)
        _wait_gone(pids[1:], timeout_s)  # SIGKILL takes effect soon, not at once


def _signal(pid: int, signum: signal.Signals) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_gone(pids: list[int], timeout_s: float) -> None:
    """Wait up to ``timeout_s`` until none of ``pids`` is running."""
    deadline = time.monotonic() + timeout_s
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def health(host: str, port: int, tls: Tls | None) -> bool:
    """Whether the SuperLink at ``host:port`` answers ``GET /health``."""
    scheme = "https" if tls is not None else "http"
    context = ssl.create_default_context(cafile=str(tls.ca_file)) if tls is not None else None
    try:
        with urllib.request.urlopen(
            f"{scheme}://{host}:{port}/health", timeout=1.0, context=context
        ) as reply:
            return bool(reply.status == 200)
    except (OSError, ValueError):
        return False


def start_superlink(host: str, port: int, root: Path, tls: Tls | None) -> FlowerProcess:
    """A SuperLink on ``host:port`` (ready when it returns)."""
    command = ["flower-superlink", "--host", host, "--port", str(port),
               "--disable-runtime-dependency-installation"]  # fmt: skip
    if tls is None:
        command.append("--insecure")
    else:
        assert tls.cert_file is not None and tls.key_file is not None
        command += ["--ssl-certfile", str(tls.cert_file), "--ssl-keyfile", str(tls.key_file),
                    "--ssl-ca-certfile", str(tls.ca_file)]  # fmt: skip
    link = FlowerProcess.start("the SuperLink", command, root / "superlink", root / "superlink.log")
    link.wait_until(lambda: health(host, port, tls))
    return link


def start_supernode(
    superlink: str,
    root: Path,
    name: str,
    node_config: dict[str, str],
    tls: Tls | None,
    *,
    max_wait_s: float = 60.0,
    nice: int = 0,
) -> FlowerProcess:
    """A SuperNode connected to ``superlink`` (ready when it has registered).

    It exits ``max_wait_s`` after the SuperLink stops answering.
    """
    config = " ".join(f"{k}={json.dumps(v)}" for k, v in node_config.items())
    command = [
        "flower-supernode", "--superlink", superlink, "--host", "127.0.0.1",
        "--port", str(free_port()), "--node-config", config,
        "--max-wait-time", str(max_wait_s),
    ]  # fmt: skip
    command += ["--insecure"] if tls is None else ["--root-certificates", str(tls.ca_file)]
    node = FlowerProcess.start(
        f"SuperNode {name}", command, root / name, root / f"{name}.log", nice=nice
    )
    node.wait_until(lambda: "SuperNode ID" in node.text())
    return node


def flwr(root: Path, superlink: str, tls: Tls | None, *args: str, timeout_s: float = 60) -> Any:
    """Run the ``flwr`` command against ``superlink``; its JSON answer."""
    home = root / "cli"
    home.mkdir(parents=True, exist_ok=True)
    security = "insecure = true" if tls is None else f'root-certificates = "{tls.ca_file}"'
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
        f'address = "{superlink}"\n{security}\n'
    )
    done = subprocess.run(
        [str(BIN / "flwr"), *args, "--format", "json"], env=flower_env(home), cwd=home,
        capture_output=True, text=True, timeout=timeout_s,
    )  # fmt: skip
    try:
        answer = json.loads(done.stdout[done.stdout.index("{") :])
    except ValueError:
        raise FleetError(f"flwr {args[0]}: {done.stderr.strip() or done.stdout.strip()}") from None
    if done.returncode != 0 or answer.get("success") is False:
        raise FleetError(f"flwr {args[0]}: {answer.get('error-message', answer)}")
    return answer
