"""``earshot fleet serve``, ``join`` and ``keygen``: fleet learning on Flower (`agent.fleet`).

``serve`` runs the coordinator: a Flower SuperLink on ``fleet.listen`` and one run of earshot's
ServerApp over the ``fleet.words``, for ``fleet.rounds`` rounds of at least ``fleet.min_devices``
devices, writing each round's heads under ``fleet.directory``; it prints each round as it is
written and exits when the run ends (0 when every round was written). With
``fleet.authorized_keys`` (and TLS) only the devices whose public keys it lists may join; with
``fleet.secure_aggregation`` the ServerApp reads only each round's sum (SecAgg+). ``join`` runs a
device: a Flower SuperNode (at low priority, in its own processes, never inside the daemon) with
earshot's ClientApp, until the coordinator goes away; it needs ``learning.enabled`` and sends only
head arrays, each exchange written to the audit log; it signs in with ``fleet.node_key_file``.
``keygen`` makes a device's key pair.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import stat
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from agent.cli import fleet_demo
from agent.cli.run import config_path
from agent.cli.wake import add_config_option
from kernels.errors import ConfigError

if TYPE_CHECKING:
    from agent.fleet.flower import FlowerProcess, Refused, Tls
    from agent.settings import Settings

APP_DIR = Path(__file__).resolve().parent.parent / "fleet" / "app"
"""The Flower App folder `flwr run` ships (its components point at `agent.fleet.apps`)."""
POLL_S = 1.0
_LOGGER = logging.getLogger(__name__)


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``fleet serve`` and ``fleet join``."""
    fleet = commands.add_parser(
        "fleet", help="fleet learning: devices improve shared wake words together (Flower)",
        description="Devices train the shared wake words' heads on what they keep and send only "
        "the heads' weights to a coordinator, which averages them (FedAvg). Needs the fleet "
        "extra: pip install 'earshot[fleet]'.",
    )  # fmt: skip
    actions = fleet.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)
    serve = actions.add_parser(
        "serve", help="run the coordinator (the config's fleet: section) for one run",
        epilog="exit codes: 0 every round written; 1 a round lacked devices or the run failed; "
        "2 invalid configuration",
    )  # fmt: skip
    add_config_option(serve)
    join = actions.add_parser(
        "join", help="take part as a device until the coordinator's run ends",
        epilog="exit codes: 0 done; 1 the coordinator refused this device or could not be "
        "reached; 2 invalid configuration (learning off, TLS or key not as the coordinator's, no "
        "fleet extra)",
    )  # fmt: skip
    join.add_argument("--server", required=True, metavar="HOST:PORT", help="the coordinator")
    join.add_argument(
        "--max-wait", type=float, default=60.0, metavar="S",
        help="give up this long after the coordinator stops answering (default 60)",
    )  # fmt: skip
    add_config_option(join)
    fleet_demo.add_parser(actions)
    keygen = actions.add_parser(
        "keygen", help="make a device's key pair for node authentication",
        description="Writes DIR/NAME.key (the device's private key, owner-only: its "
        "fleet.node_key_file) and DIR/NAME.pub (its public key: list it in the coordinator's "
        "fleet.authorized_keys). ECDSA on NIST P-384, OpenSSH format, as Flower reads them.",
        epilog="exit codes: 0 written; 2 a file exists already",
    )  # fmt: skip
    keygen.add_argument("directory", metavar="DIR", type=Path, help="where to write the pair")
    keygen.add_argument(
        "--name", default="device", help="the files' name before .key and .pub (default device)"
    )


def run(args: argparse.Namespace) -> int:
    """Dispatch ``earshot fleet ACTION``; SIGTERM stops the Flower processes and exits 0."""
    from agent.fleet.flower import require_flower

    require_flower()
    if args.fleet_command == "keygen":
        return _keygen(args)
    signal.signal(signal.SIGTERM, _terminated)
    if args.fleet_command == "demo":
        return fleet_demo.run(args)
    return _serve(args) if args.fleet_command == "serve" else _join(args)


def _keygen(args: argparse.Namespace) -> int:
    from agent.fleet.flower import write_node_keys

    if not args.name or "/" in args.name:
        raise ConfigError(f"--name: got {args.name!r}, expected a file name without '/'")
    private, public = write_node_keys(args.directory.expanduser(), args.name)
    print(f"private key (keep it on the device, fleet.node_key_file): {private}")
    print(f"public key (list it in the coordinator's fleet.authorized_keys): {public}")
    return 0


def _terminated(signum: int, frame: object) -> None:
    """Unwind (running every ``finally`` that stops a Flower process), then exit 0."""
    raise SystemExit(0)


def _address(value: str, where: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: got {value!r}, expected HOST:PORT (e.g. 127.0.0.1:9092)")
    return host.strip("[]"), int(port)


def _tls(settings: Settings) -> Tls | None:
    from agent.fleet.flower import Tls

    fleet = settings.fleet
    if fleet.ca_file is None:
        return None
    cert = Path(fleet.cert_file).expanduser() if fleet.cert_file else None
    key = Path(fleet.key_file).expanduser() if fleet.key_file else None
    return Tls(Path(fleet.ca_file).expanduser(), cert, key)


def _serve(args: argparse.Namespace) -> int:
    from agent.fleet.flower import check_address, flwr, register_devices, start_superlink
    from agent.settings import load_settings

    path = config_path(args).resolve()
    settings = load_settings(path)
    fleet = settings.fleet
    host, port = _address(fleet.listen, "fleet.listen")
    tls = _tls(settings)
    check_address(host, tls, "fleet.listen")
    if tls is not None and (tls.cert_file is None or tls.key_file is None):
        raise ConfigError(
            "fleet.cert_file, fleet.key_file: the coordinator needs both when ca_file is set"
        )
    words = fleet.words or tuple(w.name for w in settings.wake_words)
    for word in words:
        settings.wake_word(word)  # an unknown name stops here, listing the configured ones
    out = fleet.resolved_directory().resolve()
    keys = [Path(key).expanduser().resolve() for key in fleet.authorized_keys]
    root = Path(tempfile.mkdtemp(prefix="earshot-fleet-"))
    link = start_superlink(host, port, root, tls, node_auth=bool(keys))
    try:
        superlink = f"{host}:{port}"
        register_devices(root, superlink, tls, keys)
        admits = f"the {len(keys)} authorized device(s)" if keys else "any device"
        secure = " with secure aggregation" if fleet.secure_aggregation else ""
        print(f"coordinator on {host}:{port}: {len(words)} word(s) {list(words)}, "
              f"{fleet.rounds} round(s) of at least {fleet.min_devices} device(s){secure}; "
              f"admits {admits}", flush=True)  # fmt: skip
        config = {
            "config": str(path), "words": ",".join(words), "rounds": fleet.rounds,
            "min-devices": fleet.min_devices, "round-timeout": fleet.round_timeout_s,
            "out-dir": str(out), "dp-noise-multiplier": fleet.dp_noise_multiplier,
            "dp-clipping-norm": fleet.dp_clipping_norm,
            "secure-aggregation": fleet.secure_aggregation,
        }  # fmt: skip
        overrides = " ".join(f"{k}={json.dumps(v)}" for k, v in config.items())
        started = flwr(
            root, superlink, tls, "run", str(APP_DIR), "earshot", "--run-config", overrides
        )
        run_id = int(started["run-id"])
        status = _wait(root, superlink, tls, run_id, out, fleet.rounds)
    finally:
        link.stop()
        shutil.rmtree(root, ignore_errors=True)
    written = out / "manifest.json"
    manifest = json.loads(written.read_text()) if written.is_file() else None
    if manifest is None or not manifest["all_rounds_accepted"]:
        print(f"the run ended ({status}) without every round written; see {out}")
        return 1
    print(f"done: {fleet.rounds} round(s) written to {out}")
    return 0


def _wait(root: Path, superlink: str, tls: Tls | None, run_id: int, out: Path, rounds: int) -> str:
    """Poll the run until it finishes, printing each round as the ServerApp writes it."""
    from agent.fleet.flower import run_status

    shown = 0
    while True:
        status = run_status(root, superlink, tls, run_id)
        for number in range(shown + 1, rounds + 1):
            record = out / "replies" / f"replies-{number}.json"
            if not record.is_file():
                break
            devices = sum("error" not in r for r in json.loads(record.read_text()))
            print(f"round {number}: {devices} device(s) contributed", flush=True)
            shown = number
        if status.startswith("finished"):
            return status
        time.sleep(POLL_S)


def _join(args: argparse.Namespace) -> int:
    from agent.egress.audit import AuditLog, utc_now_iso
    from agent.fleet.adopt import AUDIT_KIND
    from agent.fleet.flower import FleetError, Refused, check_address, start_supernode
    from agent.settings import load_settings

    path = config_path(args).resolve()
    settings = load_settings(path)
    if not settings.learning.enabled:
        raise ConfigError(
            "learning.enabled: false; a device takes part in a fleet only when it learns (set "
            "it to true and keep feedback with `earshot feedback`)"
        )
    host, port = _address(args.server, "--server")
    tls = _tls(settings)
    check_address(host, tls, "--server")
    _check_scheme(host, port, tls)
    key = _node_key(settings.fleet.node_key_file)
    root = Path(tempfile.mkdtemp(prefix="earshot-device-"))
    done = root / "done"
    node_config = {"config": str(path), "coordinator": f"{host}:{port}", "done-file": str(done)}
    try:
        try:
            node = start_supernode(
                f"{host}:{port}", root, "device", node_config, tls, max_wait_s=args.max_wait,
                nice=10, node_key=key,
            )  # fmt: skip
        except Refused as err:
            raise FleetError(_refused(err, f"{host}:{port}", key)) from err
        since = utc_now_iso()
        try:  # from here on, however the command ends (SIGTERM too), the SuperNode is stopped
            print(f"joined the fleet at {host}:{port}; training when a round comes", flush=True)
            ended = _until_done(node, done, host, port, tls, args.max_wait)
        finally:
            node.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(ended)
    for entry in AuditLog.lines(settings.privacy.resolved_audit_log()):
        if entry.get("kind") == AUDIT_KIND and str(entry.get("time", "")) >= since:
            print(f"the fleet's {entry['wake_word']} of round {entry['round']}: "
                  f"{entry['result']} ({entry['reason']})")  # fmt: skip
    return 0


def _node_key(value: str | None) -> Path | None:
    """The device's private key file; one its group or others may read is warned about."""
    if value is None:
        return None
    key = Path(value).expanduser().resolve()
    if not key.is_file():
        raise ConfigError(
            f"fleet.node_key_file: got {value!r}, which is not a file (make a key pair with "
            "`earshot fleet keygen DIR`)"
        )
    mode = stat.S_IMODE(key.stat().st_mode)
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        _LOGGER.warning(
            "fleet.node_key_file %s is readable by others (mode %04o); it signs for this "
            "device: chmod 600 %s", key, mode, key,
        )  # fmt: skip
    return key


def _check_scheme(host: str, port: int, tls: Tls | None) -> None:
    """Refuse to join a coordinator that speaks TLS without it, or plain TCP with it."""
    from agent.fleet.flower import speaks_tls

    speaks = speaks_tls(host, port)
    if speaks is None or speaks == (tls is not None):
        return  # nobody answers yet (the SuperNode waits for it), or both sides agree
    if speaks:
        raise ConfigError(
            f"--server {host}:{port} speaks TLS; set fleet.ca_file to the CA certificate the "
            "coordinator's certificate is signed by"
        )
    raise ConfigError(
        f"fleet.ca_file is set but --server {host}:{port} does not speak TLS; set the "
        "coordinator's fleet.ca_file, cert_file and key_file, or null ca_file here on loopback"
    )


def _refused(err: Refused, server: str, key: Path | None) -> str:
    """What to say when the coordinator refused this device, and what to do about it."""
    if err.code == 2001:  # Flower's FLEET_SUPERNODE_REGISTRATION_DISABLED
        return (
            f"the coordinator at {server} admits only authorized devices ({err.said}); set "
            "fleet.node_key_file to this device's private key (`earshot fleet keygen`) and have "
            "its public key listed in the coordinator's fleet.authorized_keys"
        )
    if err.code == 2004 and key is not None:  # FLEET_NODE_ACTIVATION_FAILED
        return (
            f"the coordinator at {server} refused this device's key ({err.said}): the public "
            f"key of fleet.node_key_file {key} is not among its fleet.authorized_keys"
        )
    return f"the coordinator at {server} refused this device: [code: {err.code}] {err.said}"


def _until_done(
    node: FlowerProcess, done: Path, host: str, port: int, tls: Tls | None, max_wait_s: float
) -> str:
    """Wait until the coordinator goes away (after the run's last round, or for good).

    The SuperNode is kept until then even after this device's last round (``done``): its reply
    is still on its way. A coordinator silent for ``max_wait_s`` ends the wait.
    """
    from agent.fleet.flower import health

    answered = time.monotonic()
    while node.process.poll() is None:
        if health(host, port, tls):
            answered = time.monotonic()
        elif done.exists():
            return "the run's last round is done"
        elif time.monotonic() - answered > max_wait_s:
            return f"the coordinator has not answered for {max_wait_s:.0f} s: stopped"
        time.sleep(POLL_S)
    return f"the SuperNode exited ({node.process.returncode}): {node.tail(3)}"
