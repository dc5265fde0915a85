"""``earshot fleet serve`` and ``earshot fleet join``: fleet learning on Flower (`agent.fleet`).

``serve`` runs the coordinator: a Flower SuperLink on ``fleet.listen`` and one run of earshot's
ServerApp over the ``fleet.words``, for ``fleet.rounds`` rounds of at least ``fleet.min_devices``
devices, writing each round's heads under ``fleet.directory``; it prints each round as it is
written and exits when the run ends (0 when every round was written). ``join`` runs a device: a
Flower SuperNode (at low priority, in its own processes, never inside the daemon) with earshot's
ClientApp, until the coordinator goes away; it needs ``learning.enabled`` and sends only head
arrays, each exchange written to the audit log.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from agent.cli.run import config_path
from agent.cli.wake import add_config_option
from kernels.errors import ConfigError

if TYPE_CHECKING:
    from agent.fleet.flower import FlowerProcess, Tls
    from agent.settings import Settings

APP_DIR = Path(__file__).resolve().parent.parent / "fleet" / "app"
"""The Flower App folder `flwr run` ships (its components point at `agent.fleet.apps`)."""
POLL_S = 1.0


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
        epilog="exit codes: 0 done; 2 invalid configuration (learning off, no fleet extra)",
    )  # fmt: skip
    join.add_argument("--server", required=True, metavar="HOST:PORT", help="the coordinator")
    join.add_argument(
        "--max-wait", type=float, default=60.0, metavar="S",
        help="give up this long after the coordinator stops answering (default 60)",
    )  # fmt: skip
    add_config_option(join)


def run(args: argparse.Namespace) -> int:
    """Dispatch ``earshot fleet ACTION``; SIGTERM stops the Flower processes and exits 0."""
    from agent.fleet.flower import require_flower

    require_flower()
    signal.signal(signal.SIGTERM, _terminated)
    return _serve(args) if args.fleet_command == "serve" else _join(args)


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
    from agent.fleet.flower import check_address, flwr, start_superlink
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
    root = Path(tempfile.mkdtemp(prefix="earshot-fleet-"))
    link = start_superlink(host, port, root, tls)
    try:
        print(f"coordinator on {host}:{port}: {len(words)} word(s) {list(words)}, "
              f"{fleet.rounds} round(s) of at least {fleet.min_devices} device(s)",
              flush=True)  # fmt: skip
        config = {
            "config": str(path), "words": ",".join(words), "rounds": fleet.rounds,
            "min-devices": fleet.min_devices, "round-timeout": fleet.round_timeout_s,
            "out-dir": str(out), "dp-noise-multiplier": fleet.dp_noise_multiplier,
            "dp-clipping-norm": fleet.dp_clipping_norm,
        }  # fmt: skip
        overrides = " ".join(f"{k}={json.dumps(v)}" for k, v in config.items())
        superlink = f"{host}:{port}"
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
    from agent.fleet.flower import flwr

    shown = 0
    while True:
        answer = flwr(root, superlink, tls, "ls", "earshot", "--run-id", str(run_id))
        runs = answer.get("runs", [])
        status = str(runs[0]["status"]) if runs else ""
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
    from agent.fleet.flower import check_address, start_supernode
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
    root = Path(tempfile.mkdtemp(prefix="earshot-device-"))
    done = root / "done"
    node_config = {"config": str(path), "coordinator": f"{host}:{port}", "done-file": str(done)}
    try:
        node = start_supernode(
            f"{host}:{port}", root, "device", node_config, tls, max_wait_s=args.max_wait, nice=10
        )
        print(f"joined the fleet at {host}:{port}; training when a round comes", flush=True)
        try:
            ended = _until_done(node, done, host, port, tls, args.max_wait)
        finally:
            node.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(ended)
    return 0


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

