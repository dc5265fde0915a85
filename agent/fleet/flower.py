"""Flower's deployment runtime as earshot starts it: a SuperLink, SuperNodes and ``flwr run``.

Each process is a real Flower program (``flower-superlink``, ``flower-supernode``, ``flwr``)
started from the Python environment earshot runs in, with its own ``FLWR_HOME`` and settings that
keep it offline and quiet: no telemetry, no update check, no per-run dependency installation (the
apps import the installed earshot). A SuperLink serves its Control, Fleet and Runtime APIs on one
port and is ready when ``GET /health`` answers; a SuperNode is ready when it logs its id. Flower
starts a ``flower-superexec`` child beside each, so `FlowerProcess.stop` signals the whole tree
by process id. Plain TCP is used only on loopback; anything else needs TLS (``ca_file`` etc.).

Node authentication (`start_superlink` with ``node_auth``) admits only SuperNodes whose public
key was registered (`register_devices`, before they join); each device signs with its private
key (`start_supernode` with ``node_key``), a pair `write_node_keys` makes. It needs TLS.

``flwr`` itself is the optional ``fleet`` extra: `require_flower` says how to install it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
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

from agent.private_files import write_private
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


class Refused(FleetError):
    """The SuperLink refused a SuperNode: Flower's error ``code`` and what it ``said``."""

    def __init__(self, name: str, code: int, said: str) -> None:
        super().__init__(f"{name} was refused by the SuperLink: [code: {code}] {said}")
        self.code, self.said = code, said


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
    home: Path | None = None
    """Its FLWR_HOME, which everything it starts inherits."""

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
        return cls(name, process, log, home=home)

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
        """SIGTERM it and everything it started, then SIGKILL what is left after ``timeout_s``.

        What it started is found as its descendants and, once it has exited, as the processes
        that still carry its ``FLWR_HOME`` (a helper it started while being stopped is
        re-parented away from it).
        """
        self.descendants.update(_descendants(self.process.pid))
        for pid in (self.process.pid, *self.descendants):
            _signal(pid, signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        strays = set(_carrying_home(self.home)) - self.descendants if self.home else set()
        for pid in strays:
            _signal(pid, signal.SIGTERM)
        others = [*self.descendants, *strays]
        _wait_gone(others, timeout_s)
        for pid in others:
            if _alive(pid):
                _signal(pid, signal.SIGKILL)
        _wait_gone(others, timeout_s)  # SIGKILL takes effect soon, not at once


def _carrying_home(home: Path) -> list[int]:
    """Processes whose environment has ``FLWR_HOME=home`` (`flower_env`'s, inherited)."""
    marker = f"FLWR_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


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


def speaks_tls(host: str, port: int, timeout_s: float = 2.0) -> bool | None:
    """Whether ``host:port`` answers a TLS handshake; None when nothing answers there.

    Only a probe for error messages: the certificate is not checked, and nothing but the
    handshake is sent.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw:
            with context.wrap_socket(raw, server_hostname=host):
                return True
    except ssl.SSLError:
        return False
    except OSError:
        return None


def start_superlink(
    host: str, port: int, root: Path, tls: Tls | None, *, node_auth: bool = False
) -> FlowerProcess:
    """A SuperLink on ``host:port`` (ready when it returns).

    With ``node_auth`` it admits only SuperNodes whose public key is registered
    (`register_devices`); that needs ``tls``.
    """
    command = ["flower-superlink", "--host", host, "--port", str(port),
               "--disable-runtime-dependency-installation"]  # fmt: skip
    if tls is None:
        if node_auth:
            raise ConfigError(
                "fleet.authorized_keys: node authentication needs TLS; set fleet.ca_file, "
                "fleet.cert_file and fleet.key_file"
            )
        command.append("--insecure")
    else:
        assert tls.cert_file is not None and tls.key_file is not None
        command += ["--ssl-certfile", str(tls.cert_file), "--ssl-keyfile", str(tls.key_file),
                    "--ssl-ca-certfile", str(tls.ca_file)]  # fmt: skip
    if node_auth:
        command.append("--enable-supernode-auth")
    link = FlowerProcess.start("the SuperLink", command, root / "superlink", root / "superlink.log")
    _wait_or_stop(link, lambda: health(host, port, tls))
    return link


def _wait_or_stop(process: FlowerProcess, ready: Any) -> None:
    """`FlowerProcess.wait_until`, stopping what the process started when it fails.

    Also when interrupted (SIGTERM's `SystemExit`, ^C): nothing is left running.
    """
    try:
        process.wait_until(ready)
    except BaseException:
        process.stop()
        raise


def register_devices(root: Path, superlink: str, tls: Tls | None, keys: list[Path]) -> None:
    """Admit the devices whose public key files are ``keys`` to a SuperLink with node auth.

    Raises
    ------
    ConfigError
        A key file is missing or not a public key Flower accepts (OpenSSH, NIST EC curve).
    """
    for i, key in enumerate(keys):
        where = f"fleet.authorized_keys[{i}]"
        if not key.is_file():
            raise ConfigError(f"{where}: got {str(key)!r}, which is not a file")
        try:
            flwr(root, superlink, tls, "supernode", "register", str(key), CONNECTION)
        except FleetError as err:
            raise ConfigError(
                f"{where}: {key} was refused ({_gist(str(err))}); expected a device's public "
                "key from `earshot fleet keygen` (OpenSSH, NIST EC curve), each listed once"
            ) from err


def _gist(text: str) -> str:
    """Flower's error output on one line: no colours, no banner, no pointer to its docs."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    noise = ("flwr ", "Using SuperLink", "For more information", "ERROR")
    lines = [line.strip() for line in plain.splitlines()]
    return "; ".join(line for line in lines if line and not line.startswith(noise))


def write_node_keys(directory: Path, name: str = "device") -> tuple[Path, Path]:
    """A device's key pair for node authentication: ``NAME.key`` (0600) and ``NAME.pub``.

    An ECDSA key on NIST P-384, both files in OpenSSH format, as Flower reads them (the
    SuperNode's ``--auth-supernode-private-key``, ``flwr supernode register``). Existing files
    are not overwritten.

    Raises
    ------
    ConfigError
        One of the two files exists already.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private, public = directory / f"{name}.key", directory / f"{name}.pub"
    for path in (private, public):
        if path.exists():
            raise ConfigError(f"{path} exists already; remove it or choose another folder")
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    secret = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )  # fmt: skip
    write_private(private, secret)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        + b"\n"
    )
    return private, public


def start_supernode(
    superlink: str,
    root: Path,
    name: str,
    node_config: dict[str, str],
    tls: Tls | None,
    *,
    max_wait_s: float = 60.0,
    nice: int = 0,
    node_key: Path | None = None,
) -> FlowerProcess:
    """A SuperNode connected to ``superlink`` (ready when it has registered).

    It exits ``max_wait_s`` after the SuperLink stops answering. ``node_key`` is the device's
    private key, for a SuperLink with node authentication.
    """
    config = " ".join(f"{k}={json.dumps(v)}" for k, v in node_config.items())
    command = [
        "flower-supernode", "--superlink", superlink, "--host", "127.0.0.1",
        "--port", str(free_port()), "--node-config", config,
        "--max-wait-time", str(max_wait_s),
    ]  # fmt: skip
    command += ["--insecure"] if tls is None else ["--root-certificates", str(tls.ca_file)]
    if node_key is not None:
        command += ["--auth-supernode-private-key", str(node_key)]
    node = FlowerProcess.start(
        f"SuperNode {name}", command, root / name, root / f"{name}.log", nice=nice
    )
    try:
        _wait_or_stop(node, lambda: "SuperNode ID" in node.text())
    except FleetError as err:
        # Flower logs e.g. "[code: 2004] Failed to activate SuperNode." before exiting.
        found = re.search(r"\[code: (\d+)\] ([^\n]*)", node.text())
        if found is None:
            raise
        raise Refused(node.name, int(found[1]), found[2].strip()) from err
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
    try:
        done = subprocess.run(
            [str(BIN / "flwr"), *args, "--format", "json"], env=flower_env(home), cwd=home,
            capture_output=True, text=True, timeout=timeout_s,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise FleetError(f"flwr {args[0]}: no answer within {timeout_s:.0f} s") from None
    try:
        answer = json.loads(done.stdout[done.stdout.index("{") :])
    except ValueError:
        raise FleetError(f"flwr {args[0]}: {done.stderr.strip() or done.stdout.strip()}") from None
    if done.returncode != 0 or answer.get("success") is False:
        raise FleetError(f"flwr {args[0]}: {answer.get('error-message', answer)}")
    return answer


def run_status(
    root: Path, superlink: str, tls: Tls | None, run_id: int, *, tries: int = 5
) -> str:
    """The run's status (``running``, ``finished:completed`` ...) from ``flwr ls``.

    A busy machine can make one ``flwr`` call fail or time out: it is asked again, up to
    ``tries`` times in a row, before the last failure is raised.
    """
    for attempt in range(tries):
        try:
            answer = flwr(root, superlink, tls, "ls", "earshot", "--run-id", str(run_id))
        except FleetError:
            if attempt == tries - 1:
                raise
            time.sleep(1.0)
            continue
        runs = answer.get("runs", [])
        return str(runs[0]["status"]) if runs else ""
    raise AssertionError("unreachable")
