"""``earshot fleet demo``: a coordinator and three devices on this machine, in one command.

Each device is its own config, feedback folder and audit log under the work folder, and keeps
two misses of the first wake word said by a synthetic voice of its own (as `earshot feedback
missed` would keep them). The coordinator (`earshot fleet serve`) and the devices (`earshot fleet
join`) run as the separate processes they are in a real fleet, over loopback. The coordinator's
lines are shown as they come; at the end, each device's audit log: what it sent each round and
whether it took the fleet's final head.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from kernels.errors import ConfigError

VOICES = ("en-gb-scotland+caleb", "en-us+f3", "en-029+m3")
"""espeak-ng voices of the three devices' users."""
SPEED = (0.9, 1.05)
"""How fast each user says the wake word in its two kept misses."""


def add_parser(actions: argparse._SubParsersAction) -> None:
    """Register ``fleet demo``."""
    from agent.cli.wake import add_config_option

    demo = actions.add_parser(
        "demo", help="a coordinator and three devices on this machine, in one command",
        description="Runs `earshot fleet serve` and three `earshot fleet join` on loopback. Each "
        "device keeps two misses of the first configured wake word said by its own synthetic "
        "voice; the coordinator averages what they learn from them; each device then checks the "
        "fleet's head on its clips before using it. Shows the coordinator's progress and each "
        "device's audit log.",
        epilog="exit codes: 0 every round written; 1 the run failed; 2 invalid configuration",
    )  # fmt: skip
    demo.add_argument("--rounds", type=int, default=2, help="fleet rounds (default 2)")
    demo.add_argument(
        "--work", type=Path, metavar="DIR",
        help="keep the devices, the coordinator's heads and the logs here (default: a temporary "
        "folder, removed afterwards)",
    )  # fmt: skip
    add_config_option(demo)


def run(args: argparse.Namespace) -> int:
    """Run the demo; the coordinator's exit code."""
    from agent.cli.run import config_path
    from agent.fleet.flower import free_port
    from agent.settings import load_settings

    if args.rounds < 1:
        raise ConfigError(f"--rounds: got {args.rounds}, expected at least 1")
    settings = load_settings(config_path(args))
    if not settings.wake_words:
        raise ConfigError("wake_words: the demo needs at least one configured wake word")
    wake = settings.wake_words[0]
    work = args.work or Path(tempfile.mkdtemp(prefix="earshot-fleet-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    common: dict[str, Any] = {
        "wake_words": [{"name": wake.name, "phrase": wake.phrase}],
        "models": {"directory": str(settings.models.resolved_directory())},
        "detection": {"backend": "numpy"},
    }
    if settings.models.base is not None:
        common["models"]["base"] = str(settings.models.base)
    coordinator = _write(work / "coordinator.yaml", common, fleet={
        "rounds": args.rounds, "min_devices": len(VOICES), "listen": f"127.0.0.1:{port}",
        "directory": str(work / "fleet"), "round_timeout_s": 600,
    })  # fmt: skip
    print(f"demo in {work}: wake word {wake.name!r}, {len(VOICES)} devices, {args.rounds} "
          "round(s)", flush=True)  # fmt: skip
    devices = [_device(work / f"device-{i + 1}", common, wake.name, wake.phrase, voice)
               for i, voice in enumerate(VOICES)]  # fmt: skip
    try:
        code = _federate(coordinator, devices, port)
        for device in devices:
            _show_audit(device)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return code


def _write(path: Path, common: dict[str, Any], **sections: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({**common, **sections}, sort_keys=False))
    return path


def _device(home: Path, common: dict[str, Any], name: str, phrase: str, voice: str) -> Path:
    """A device's config, with two misses of ``phrase`` said by ``voice`` kept."""
    import numpy as np

    from agent.learning.feedback import FeedbackStore
    from agent.settings import load_settings
    from dsp.constants import SAMPLE_RATE_HZ
    from models.speech.synth import Rendition, SpeechCache, Voice

    config = _write(home / "earshot.yaml", common, learning={
        "enabled": True, "directory": str(home / "feedback")}, privacy={
        "audit_log": str(home / "audit.jsonl")})  # fmt: skip
    store = FeedbackStore(load_settings(config).learning)
    rng = np.random.default_rng(len(voice))
    for rate in SPEED:
        said = SpeechCache().get(Rendition(phrase, Voice("espeak-ng", voice), rate=rate))
        said = said * (0.1 / max(float(np.sqrt(np.mean(np.square(said)))), 1e-6))
        audio = (rng.standard_normal(3 * SAMPLE_RATE_HZ) * 3e-3).astype(np.float32)
        audio[SAMPLE_RATE_HZ : SAMPLE_RATE_HZ + said.size] += said[: 2 * SAMPLE_RATE_HZ]
        store.keep("missed", name, audio)
    print(f"{home.name}: {voice} said {phrase!r} twice, kept as misses", flush=True)
    return config


def _federate(coordinator: Path, devices: list[Path], port: int) -> int:
    """``fleet serve`` and a ``fleet join`` per device; the coordinator's lines as they come."""
    earshot = [sys.executable, "-m", "agent"]
    serve = subprocess.Popen(
        [*earshot, "fleet", "serve", "--config", str(coordinator)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    joins = [
        subprocess.Popen(
            [
                *earshot,
                "fleet",
                "join",
                "--server",
                f"127.0.0.1:{port}",
                "--config",
                str(c),
                "--max-wait",
                "8",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for c in devices
    ]
    try:
        assert serve.stdout is not None
        for line in serve.stdout:
            print(f"coordinator: {line.rstrip()}", flush=True)
        code = serve.wait()
        for config, join in zip(devices, joins, strict=True):
            out, _ = join.communicate(timeout=120)
            for line in out.strip().splitlines():
                print(f"{config.parent.name}: {line}")
            print(f"{config.parent.name}: exit {join.returncode}")
    finally:
        for process in (serve, *joins):
            if process.poll() is None:
                process.terminate()
                process.wait(10)
    return code


def _show_audit(config: Path) -> None:
    """What the device's audit log says about the fleet."""
    log = config.parent / "audit.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    for entry in entries:
        if entry.get("kind") == "fleet":
            print(f"{config.parent.name}: round {entry['round']}: sent {len(entry['sent'])} "
                  f"arrays, {entry['bytes']} bytes, from {entry['examples']} examples")  # fmt: skip
        elif entry.get("kind") == "fleet-head":
            print(f"{config.parent.name}: fleet head of round {entry['round']}: "
                  f"{entry['result']} ({entry['reason']})")  # fmt: skip
