"""Fleet learning over a real Flower SuperLink and SuperNodes on loopback.

Three devices, each with its own config, feedback and audit log, federate the wake word
``seven`` (trained from text with the small recipe, `tests.test_wake_cli`) for two rounds with a
coordinator: `earshot fleet serve` and three `earshot fleet join`, all as subprocesses, started
by `earshot fleet demo` (and, for the DP run, by the test itself).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from agent.fleet.coordinator import load_round
from agent.fleet.device import head_arrays, local_update
from agent.learning.feedback import FeedbackStore, learned_models_dir
from agent.settings import load_settings
from models.speech.synth import Voice
from models.wake.model import WakeWordModel, model_path
from tests.conftest import EARSHOT, REPO, require, run_earshot
from tests.test_enroll_cli import voice_clip
from tests.test_wake_cli import place, trained_seven

DEVICES = [Voice("espeak-ng", v) for v in ("en-gb-scotland+caleb", "en-us+f3", "en-029+m3")]
ROUNDS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_fleet(tmp_path_factory, name: str, rounds: int, **fleet_settings):
    """The coordinator and `DEVICES` as subprocesses for ``rounds``; what each printed."""
    require(
        (Path(sys.executable).parent / "flower-superlink").exists(),
        "flwr (the fleet extra) is not installed",
    )
    seven = trained_seven(tmp_path_factory)
    models = seven.parent / "models"
    root = tmp_path_factory.mktemp(name)
    port = free_port()
    wake = [{"name": "seven", "phrase": "seven", "threshold": 0.5}]
    coordinator = root / "coordinator.yaml"
    coordinator.write_text(yaml.safe_dump({
        "wake_words": wake, "models": {"directory": str(models)},
        "fleet": {"rounds": rounds, "min_devices": len(DEVICES), "listen": f"127.0.0.1:{port}",
                  "directory": str(root / "out"), "round_timeout_s": 240, **fleet_settings},
    }))  # fmt: skip
    devices = []
    for i, voice in enumerate(DEVICES):
        home = root / f"device{i}"
        config = home / "earshot.yaml"
        home.mkdir()
        config.write_text(yaml.safe_dump({
            "wake_words": wake, "models": {"directory": str(models)},
            "detection": {"backend": "numpy"},
            "learning": {"enabled": True, "directory": str(home / "feedback")},
            "privacy": {"audit_log": str(home / "audit.jsonl")},
        }))  # fmt: skip
        store = FeedbackStore(load_settings(config).learning)
        for j, rate in enumerate((0.9, 1.0 + 0.05 * i)):
            store.keep("missed", "seven", place([(1.0, voice_clip(voice, rate))], 3.0, seed=j))
        devices.append(config)
    env = dict(os.environ, XDG_DATA_HOME=str(root / "data"))
    serve = subprocess.Popen(
        [*EARSHOT, "fleet", "serve", "--config", str(coordinator)], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    joins = [
        subprocess.Popen(
            [*EARSHOT, "fleet", "join", "--server", f"127.0.0.1:{port}", "--config", str(c),
             "--max-wait", "8"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for c in devices
    ]
    try:
        out, err = serve.communicate(timeout=600)
        joined = [j.communicate(timeout=120) for j in joins]
    finally:
        for process in (serve, *joins):
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
    return {
        "root": root, "coordinator": coordinator, "devices": devices, "models": models,
        "serve": (serve.returncode, out, err), "joins": [(j.returncode, *o) for j, o in
                                                          zip(joins, joined, strict=True)],
    }  # fmt: skip


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """`earshot fleet demo`: a coordinator and three devices, each keeping misses of ``seven``."""
    require(
        (Path(sys.executable).parent / "flower-superlink").exists(),
        "flwr (the fleet extra) is not installed",
    )
    seven = trained_seven(tmp_path_factory)
    root = tmp_path_factory.mktemp("fleet")
    config = root / "earshot.yaml"
    config.write_text(yaml.safe_dump({
        "wake_words": [{"name": "seven", "phrase": "seven"}],
        "models": {"directory": str(seven.parent / "models")},
    }))  # fmt: skip
    work = root / "demo"
    done = run_earshot(
        "fleet", "demo", "--rounds", str(ROUNDS), "--work", str(work), "--config", str(config),
        env=dict(os.environ, XDG_DATA_HOME=str(root / "data")), timeout=900,
    )  # fmt: skip
    return {
        "root": work, "out": work / "fleet", "coordinator": work / "coordinator.yaml",
        "devices": sorted(work.glob("device-*/earshot.yaml")), "models": seven.parent / "models",
        "demo": done,
    }  # fmt: skip


def device_updates(fleet, start: dict[str, np.ndarray]) -> list[tuple[dict, int, dict]]:
    """Each device's update of ``start``, recomputed here (its training is seeded)."""
    return [local_update(c, start, coordinator="test", round_number=1) for c in fleet["devices"]]


def test_the_coordinator_writes_every_round_from_every_device(fleet):
    done = fleet["demo"]
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-3000:]
    assert len(fleet["devices"]) == len(DEVICES)
    for number in range(1, ROUNDS + 1):
        assert f"coordinator: round {number}: {len(DEVICES)} device(s) contributed" in out
    manifest = json.loads((fleet["out"] / "manifest.json").read_text())
    assert manifest["all_rounds_accepted"]
    assert [r["contributors"] for r in manifest["rounds"]] == [len(DEVICES)] * ROUNDS
    record = json.loads((fleet["out"] / "seven" / f"round-{ROUNDS}.json").read_text())
    text = WakeWordModel.load(model_path(fleet["models"], "seven"))
    assert record["base_sha256"] == text.base_sha256
    assert record["shapes"] == {k: list(v.shape) for k, v in text.head.state().items()}
    for device in range(1, len(DEVICES) + 1):  # each `fleet join`, as the demo shows it
        assert f"device-{device}: joined the fleet" in out
        assert f"device-{device}: the run's last round is done" in out
        assert f"device-{device}: exit 0" in out
        assert f"device-{device}: the fleet's seven of round {ROUNDS}: " in out
        assert f"device-{device}: round {ROUNDS}: sent 4 arrays" in out  # its audit log
    assert "Traceback" not in out + done.stderr


def test_only_head_arrays_reach_the_coordinator(fleet):
    text = WakeWordModel.load(model_path(fleet["models"], "seven"))
    expected = {f"seven/{k}": {"shape": list(v.shape), "dtype": "float32"}
                for k, v in text.head.state().items()}  # fmt: skip
    for number in range(1, ROUNDS + 1):
        path = fleet["out"] / "replies" / f"replies-{number}.json"
        replies = json.loads(path.read_text())
        assert len(replies) == len(DEVICES)
        for reply in replies:
            assert reply["arrays"] == {"arrays": expected}  # no audio, features or embeddings
            assert reply["metrics"] == {"metrics": ["examples", "num-examples"]}
            assert reply["configs"] == {}


def test_round_one_is_the_fedavg_of_what_the_devices_sent(fleet):
    """Recompute each device's update from the starting head (training is seeded)."""
    text = WakeWordModel.load(model_path(fleet["models"], "seven"))
    start = head_arrays({"seven": text.head})
    sent = device_updates(fleet, start)
    weights = np.array([n for _, n, _ in sent], float)
    first = load_round(fleet["out"], "seven", 1).state()
    for key, value in first.items():
        mean = sum(w * s[f"seven/{key}"] for w, (s, _, _) in zip(weights, sent, strict=True))
        np.testing.assert_allclose(value, mean / weights.sum(), atol=1e-5)


def test_each_device_audits_what_it_sent(fleet):
    port = load_settings(fleet["coordinator"]).fleet.listen
    for config in fleet["devices"]:
        lines = [json.loads(line) for line in
                 (config.parent / "audit.jsonl").read_text().splitlines()]  # fmt: skip
        fleet_lines = [e for e in lines if e.get("kind") == "fleet" and e["endpoint"] == port]
        assert [e["round"] for e in fleet_lines] == list(range(1, ROUNDS + 1))
        for entry in fleet_lines:
            assert {s["name"] for s in entry["sent"]} == {
                "seven/0.weight", "seven/0.bias", "seven/2.weight", "seven/2.bias"}
            assert entry["bytes"] == sum(s["bytes"] for s in entry["sent"])


def test_every_device_checks_the_final_heads_before_using_them(fleet):
    """The run's last written heads are offered to each device, which checks them on its own
    kept clips (`agent.fleet.adopt`), audits its decision and, if it accepts, uses them."""
    out = fleet["out"]
    offered = json.loads((out / "replies" / "offer.json").read_text())
    assert len(offered) == len(DEVICES)
    for reply in offered:  # only how many heads were taken: nothing of the device's clips
        assert reply["arrays"] == {} and reply["metrics"] == {"metrics": ["accepted", "refused"]}
    final = load_round(out, "seven", ROUNDS).state()
    port = load_settings(fleet["coordinator"]).fleet.listen
    decisions = []
    for config in fleet["devices"]:
        settings = load_settings(config)
        lines = [json.loads(line) for line in
                 settings.privacy.resolved_audit_log().read_text().splitlines()]  # fmt: skip
        [entry] = [e for e in lines if e["kind"] == "fleet-head"]
        assert (entry["endpoint"], entry["round"], entry["wake_word"]) == (port, ROUNDS, "seven")
        learned = model_path(learned_models_dir(settings.learning), "seven")
        decisions.append(entry["result"])
        if entry["result"] == "accepted":
            state = WakeWordModel.load(learned).head.state()
            for key, value in final.items():
                np.testing.assert_array_equal(state[key], value)
            assert entry["fleet"]["heard"] >= entry["in_use"]["heard"]
        else:
            assert entry["reason"] in ("it hears fewer kept phrases",
                                       "it fires on more marked false alarms")  # fmt: skip
            assert not learned.exists()
    assert "accepted" in decisions, decisions


def test_no_flower_process_is_left(fleet):
    root = str(fleet["root"])
    left = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "flower" in command and root in command:
                left.append(command)
    assert left == []


def test_differential_privacy_clips_each_update_and_adds_the_stated_noise(tmp_path_factory):
    """Server-side DP: each device's update clipped to the norm, Gaussian noise of
    noise_multiplier x clipping_norm / devices added to the average."""
    noise, clip = 0.5, 0.05
    run = run_fleet(tmp_path_factory, "fleet-dp", 1, dp_noise_multiplier=noise,
                    dp_clipping_norm=clip)  # fmt: skip
    code, out, err = run["serve"]
    assert code == 0, out + err[-3000:]
    text = WakeWordModel.load(model_path(run["models"], "seven"))
    start = head_arrays({"seven": text.head})
    keys = list(start)
    clipped, weights, norms = [], [], []
    for sent, examples, _ in device_updates(run, start):
        update = [sent[k] - start[k] for k in keys]
        norm = np.sqrt(sum(float(np.sum(u.astype(np.float64) ** 2)) for u in update))
        norms.append(norm)
        scale = min(1.0, clip / norm)
        clipped.append([start[k] + u * scale for k, u in zip(keys, update, strict=True)])
        weights.append(examples)
    assert min(norms) > clip  # every update was clipped
    w = np.array(weights, float) / sum(weights)
    first = load_round(run["root"] / "out", "seven", 1).state()
    residual = np.concatenate([
        (first[k.split("/")[1]] - sum(wi * c[i] for wi, c in zip(w, clipped, strict=True))).ravel()
        for i, k in enumerate(keys)
    ])  # fmt: skip
    expected = noise * clip / len(DEVICES)
    assert residual.std() == pytest.approx(expected, rel=0.05)
    assert abs(residual.mean()) < 5 * expected / np.sqrt(residual.size)


def test_sigterm_stops_a_device_and_its_supernode(tmp_path):
    """A device stopped by its service manager leaves no Flower process behind."""
    from agent.fleet.flower import start_superlink

    seven_free = tmp_path / "device.yaml"
    seven_free.write_text(yaml.safe_dump({"learning": {"enabled": True}}))
    port = free_port()
    link = start_superlink("127.0.0.1", port, tmp_path / "link", None)
    try:
        join = subprocess.Popen(
            [*EARSHOT, "fleet", "join", "--server", f"127.0.0.1:{port}", "--config",
             str(seven_free)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert join.stdout is not None
        assert "joined the fleet" in join.stdout.readline()
        join.send_signal(signal.SIGTERM)
        _, err = join.communicate(timeout=30)
        assert join.returncode == 0, err
    finally:
        link.stop()
    deadline = time.monotonic() + 10
    while _running_with(str(seven_free)) and time.monotonic() < deadline:
        time.sleep(0.2)  # a process killed at the end of stop() may take a moment to go
    assert _running_with(str(seven_free)) == [], _running_with(str(seven_free))


def _running_with(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (zombies have none)."""
    return [c for p in Path("/proc").iterdir() if p.name.isdigit() and text in (c := _cmdline(p))]


def _cmdline(process: Path) -> str:
    try:
        return (process / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_a_flwr_call_that_does_not_answer_is_an_error_and_polling_asks_again(tmp_path):
    """A busy machine can stall one `flwr` call: a clear error, not a traceback, and the run's
    status is asked again before giving up."""
    from agent.fleet.flower import FleetError, flwr, run_status

    with pytest.raises(FleetError, match=r"^flwr ls: no answer within 0 s$"):
        flwr(tmp_path, "127.0.0.1:9", None, "ls", "earshot", timeout_s=0.01)
    started = time.monotonic()
    with pytest.raises(FleetError, match=r"^flwr ls: "):
        run_status(tmp_path, f"127.0.0.1:{free_port()}", None, 1, tries=2)
    assert time.monotonic() - started >= 1.0  # it waited and asked a second time
