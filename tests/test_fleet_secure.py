"""The fleet's privacy features: TLS with node authentication, SecAgg+, a device's own DP.

One federation exercises the first two together, with real Flower processes on loopback: a
coordinator (`earshot fleet serve`) with TLS (a CA and a server certificate made here),
``authorized_keys`` and ``secure_aggregation``, three devices that sign in with their keys (one
also clipping its own update), and beside them two devices that must be turned away: one whose key
was never registered, one without TLS. The device's differential privacy (`privatize`) and the
settings that cannot go together are checked in-process.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import select
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from agent.fleet.coordinator import load_round
from agent.fleet.device import head_arrays, privatize, update_norm
from agent.fleet.flower import write_node_keys
from agent.learning.feedback import FeedbackStore
from agent.settings import load_settings
from kernels.errors import ConfigError
from models.wake.model import WakeWordModel, model_path
from tests.conftest import EARSHOT, REPO, require, run_earshot
from tests.test_enroll_cli import voice_clip
from tests.test_fleet import DEVICES, _running_with, device_updates, free_port
from tests.test_wake_cli import place, trained_seven

LOCAL_CLIP = 0.05
"""Device 0 clips its own update to this norm (no noise, so its update can be recomputed)."""


def make_tls(folder: Path) -> dict[str, str]:
    """A throw-away CA and a server certificate for 127.0.0.1 signed by it: the fleet's files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True)
    now = dt.datetime.now(dt.UTC)

    def certificate(subject: str, key, issuer: str, signer, ca: bool):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )  # fmt: skip
        if not ca:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            builder = builder.add_extension(san, critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    server_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("earshot test CA", ca_key, "earshot test CA", ca_key, ca=True)
    server = certificate("127.0.0.1", server_key, "earshot test CA", ca_key, ca=False)
    pem = serialization.Encoding.PEM
    (folder / "ca.crt").write_bytes(ca.public_bytes(pem))
    (folder / "server.crt").write_bytes(server.public_bytes(pem))
    (folder / "server.key").write_bytes(server_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    return {"ca_file": str(folder / "ca.crt"), "cert_file": str(folder / "server.crt"),
            "key_file": str(folder / "server.key")}  # fmt: skip


def device_config(home: Path, wake: list, models: Path, fleet: dict, voice_index: int) -> Path:
    """A device's config with learning on and two kept misses of ``seven``."""
    config = home / "earshot.yaml"
    home.mkdir()
    config.write_text(yaml.safe_dump({
        "wake_words": wake, "models": {"directory": str(models)},
        "detection": {"backend": "numpy"},
        "learning": {"enabled": True, "directory": str(home / "feedback")},
        "privacy": {"audit_log": str(home / "audit.jsonl")}, "fleet": fleet,
    }))  # fmt: skip
    if voice_index >= 0:
        store = FeedbackStore(load_settings(config).learning)
        voice = DEVICES[voice_index]
        for j, rate in enumerate((0.9, 1.0 + 0.05 * voice_index)):
            store.keep("missed", "seven", place([(1.0, voice_clip(voice, rate))], 3.0, seed=j))
    return config


def read_until(process: subprocess.Popen, text: str, timeout_s: float) -> str:
    """What ``process`` printed up to the first line holding ``text`` (or its end)."""
    assert process.stdout is not None
    seen, deadline = "", time.monotonic() + timeout_s
    while text not in seen and time.monotonic() < deadline:
        if select.select([process.stdout], [], [], 0.5)[0]:
            line = process.stdout.readline()
            if not line:
                break
            seen += line
    return seen


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """One round of a TLS + node auth + SecAgg+ federation; two devices that must be refused."""
    require((Path(sys.executable).parent / "flower-superlink").exists(), "flwr is not installed")
    seven = trained_seven(tmp_path_factory)
    started = time.monotonic()
    models = seven.parent / "models"
    root = tmp_path_factory.mktemp("fleet-secure")
    tls = make_tls(root / "tls")
    keygen = run_earshot("fleet", "keygen", str(root / "keys"), "--name", "device0")
    keys = [(root / "keys" / "device0.key", root / "keys" / "device0.pub")]
    keys += [write_node_keys(root / "keys", f"device{i}") for i in range(1, len(DEVICES))]
    stranger = write_node_keys(root / "keys", "stranger")
    port = free_port()
    wake = [{"name": "seven", "phrase": "seven", "threshold": 0.5}]
    coordinator = root / "coordinator.yaml"
    coordinator.write_text(yaml.safe_dump({
        "wake_words": wake, "models": {"directory": str(models)},
        "fleet": {"rounds": 1, "min_devices": len(DEVICES), "listen": f"127.0.0.1:{port}",
                  "directory": str(root / "out"), "round_timeout_s": 240,
                  "secure_aggregation": True, "authorized_keys": [str(p) for _, p in keys],
                  **tls},
    }))  # fmt: skip
    devices = []
    for i, (key, _) in enumerate(keys):
        own = {"ca_file": tls["ca_file"], "node_key_file": str(key),
               "local_dp_clipping_norm": LOCAL_CLIP if i == 0 else 0.0}  # fmt: skip
        devices.append(device_config(root / f"device{i}", wake, models, own, i))
    unknown = {"ca_file": tls["ca_file"], "node_key_file": str(stranger[0])}
    refused = {
        "stranger": device_config(root / "stranger", wake, models, unknown, -1),
        "plain": device_config(root / "plain", wake, models, {}, -1),
    }
    env = dict(os.environ, XDG_DATA_HOME=str(root / "data"))

    def join(config: Path) -> subprocess.Popen:
        return subprocess.Popen(
            [*EARSHOT, "fleet", "join", "--server", f"127.0.0.1:{port}", "--config", str(config),
             "--max-wait", "8"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    serve = subprocess.Popen(
        [*EARSHOT, "fleet", "serve", "--config", str(coordinator)], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    processes = [serve]
    try:
        head = read_until(serve, "coordinator on", 60)  # the keys are registered by then
        joins = [join(c) for c in devices]
        turned_away = {name: join(c) for name, c in refused.items()}
        processes += [*joins, *turned_away.values()]
        out, err = serve.communicate(timeout=300)
        joined = [j.communicate(timeout=60) for j in joins]
        away = {name: (p.communicate(timeout=60), p.returncode) for name, p in turned_away.items()}
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
    return {
        "root": root, "coordinator": coordinator, "devices": devices, "models": models,
        "keygen": keygen, "serve": (serve.returncode, head + out, err),
        "joins": [(j.returncode, *o) for j, o in zip(joins, joined, strict=True)],
        "refused": {name: (code, *o) for name, (o, code) in away.items()},
        "seconds": time.monotonic() - started,
    }  # fmt: skip


def test_a_tls_authenticated_secure_federation_writes_the_round(fleet):
    code, out, err = fleet["serve"]
    assert code == 0, out + err[-3000:] + repr(fleet["joins"])
    assert "with secure aggregation; admits the 3 authorized device(s)" in out
    assert f"round 1: {len(DEVICES)} device(s) contributed" in out
    written = fleet["root"] / "out"
    manifest = json.loads((written / "manifest.json").read_text())
    assert manifest["all_rounds_accepted"]
    assert [r["contributors"] for r in manifest["rounds"]] == [len(DEVICES)]
    assert json.loads((written / "seven" / "latest.json").read_text()) == {"round": 1}
    record = json.loads((written / "seven" / "round-1.json").read_text())
    text = WakeWordModel.load(model_path(fleet["models"], "seven"))
    assert record["base_sha256"] == text.base_sha256
    assert record["shapes"] == {k: list(v.shape) for k, v in text.head.state().items()}
    for code, out, err in fleet["joins"]:
        assert code == 0, err[-2000:]
        assert "joined the fleet" in out and "Traceback" not in err


def test_the_written_head_is_the_fedavg_within_secagg_quantization(fleet):
    """SecAgg+ quantizes each weighted update by stochastic rounding to a step of 2 C / Q of the
    weighted value (C the clipping range, Q the levels), unbiased; after dividing by the summed
    weights sum(w / MAX_WEIGHT), each value of the average is off by less than n * step / that
    sum, plus the weights' own rounding (relative 0.5 / (Q w / MAX_WEIGHT): ~1e-6 here) and the
    head's float32 rounding (below 1e-6 for values up to 9)."""
    from agent.fleet import secure

    text = WakeWordModel.load(model_path(fleet["models"], "seven"))
    start = head_arrays({"seven": text.head})
    sent = device_updates(fleet, start)  # training is seeded; device 0 clips as it did
    weights = np.array([min(n, secure.MAX_WEIGHT) for _, n, _ in sent], float)
    written = load_round(fleet["root"] / "out", "seven", 1).state()
    errors = np.concatenate([
        (written[key] - sum(w * s[f"seven/{key}"] for w, (s, _, _) in
                            zip(weights, sent, strict=True)) / weights.sum()).ravel()
        for key in written
    ])  # fmt: skip
    step = 2 * secure.CLIPPING_RANGE / secure.QUANTIZATION_RANGE
    bound = len(sent) * step / (weights.sum() / secure.MAX_WEIGHT) + 1e-6
    print(f"SecAgg+ error: max {np.abs(errors).max():.3g}, std {errors.std():.3g}, "
          f"bound {bound:.3g}, {errors.size} values")  # fmt: skip
    assert np.abs(errors).max() < bound
    assert abs(errors.mean()) < 5 * errors.std() / np.sqrt(errors.size)  # unbiased rounding
    moved = np.concatenate([(written[k] - start[f"seven/{k}"]).ravel() for k in written])
    assert np.abs(moved).max() > 100 * bound  # the devices' training is far above the error


def test_the_coordinator_recorded_only_masked_vectors(fleet):
    from agent.fleet import secure

    text = WakeWordModel.load(model_path(fleet["models"], "seven"))
    shapes = [[1], *(list(v.shape) for v in text.head.state().values())]
    path = fleet["root"] / "out" / "replies" / "replies-1.json"
    replies = json.loads(path.read_text())
    assert len(replies) == len(DEVICES)
    for reply in replies:
        assert "error" not in reply and reply["masked"] == secure.MASKED
        assert all(record == {} for record in reply["arrays"].values())  # emptied by SecAgg+
        masked = reply["configs"]["secaggplus_configs"]["masked_params"]
        assert sorted(m["shape"] for m in masked) == sorted(shapes)  # the weight, then the head
        assert all(m["dtype"].startswith(("int", "uint")) for m in masked)
        assert set(reply["protocol"]) == {"setup", "share_keys", "unmask"}
        assert reply["metrics"] == {"fitres.num_examples": ["num_examples"]}
    dtypes = re.findall(r'"dtype": "(\w+)"', path.read_text())
    assert dtypes and not [d for d in dtypes if "float" in d]  # no device's plain array came


def test_an_unregistered_device_is_refused_with_a_clear_message(fleet):
    code, out, err = fleet["refused"]["stranger"]
    assert code == 1, out + err
    assert "refused this device's key" in err and "not among its fleet.authorized_keys" in err
    assert "Traceback" not in err and "joined the fleet" not in out
    assert not (fleet["root"] / "stranger" / "audit.jsonl").exists()  # never given a round


def test_a_device_without_tls_is_refused_by_a_tls_coordinator(fleet):
    code, out, err = fleet["refused"]["plain"]
    assert code == 2, out + err
    assert "speaks TLS; set fleet.ca_file" in err and "Traceback" not in err


def test_a_device_audits_secure_aggregation_and_the_clipping_it_applied(fleet):
    port = load_settings(fleet["coordinator"]).fleet.listen
    for i, config in enumerate(fleet["devices"]):
        lines = (config.parent / "audit.jsonl").read_text().splitlines()
        (entry,) = [
            e for e in map(json.loads, lines) if e["kind"] == "fleet" and e["endpoint"] == port
        ]
        assert entry["secure_aggregation"] is True
        if i == 0:
            applied = entry["local_dp"]
            assert applied["clipping_norm"] == LOCAL_CLIP and applied["noise_std"] == 0
            assert applied["update_norm"] > LOCAL_CLIP  # the clipping did something
        else:
            assert entry["local_dp"] is None


def test_keygen_writes_an_owner_only_key_pair_flower_reads(fleet):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    assert fleet["keygen"].returncode == 0, fleet["keygen"].stderr
    private = fleet["root"] / "keys" / "device0.key"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert str(private) in fleet["keygen"].stdout
    key = serialization.load_ssh_private_key(private.read_bytes(), None)
    public = serialization.load_ssh_public_key((private.with_suffix(".pub")).read_bytes())
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
    assert isinstance(public, ec.EllipticCurvePublicKey)
    again = run_earshot("fleet", "keygen", str(private.parent), "--name", "device0")
    assert again.returncode == 2 and "exists already" in again.stderr


def test_no_flower_process_is_left(fleet):
    print(f"federation fixture: {fleet['seconds']:.1f} s")
    deadline = time.monotonic() + 10
    while _running_with(str(fleet["root"])) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _running_with(str(fleet["root"])) == []


def test_local_dp_clips_the_update_to_the_norm():
    rng = np.random.default_rng(0)
    received = {"w/a": rng.normal(size=(40, 8)).astype(np.float32), "w/b": np.zeros(8, np.float32)}
    trained = {k: v + rng.normal(size=v.shape).astype(np.float32) for k, v in received.items()}
    assert update_norm(trained, received) > 1.0
    sent, applied = privatize(trained, received, 1.0, 0.0)
    assert update_norm(sent, received) == pytest.approx(1.0, rel=1e-5)
    assert applied == {"clipping_norm": 1.0, "noise_multiplier": 0.0, "noise_std": 0.0,
                       "update_norm": pytest.approx(update_norm(trained, received))}  # fmt: skip
    direction = np.concatenate([(sent[k] - received[k]).ravel() for k in received])
    original = np.concatenate([(trained[k] - received[k]).ravel() for k in received])
    assert np.corrcoef(direction, original)[0, 1] > 0.9999  # scaled, not changed
    small, _ = privatize(trained, received, 1e3, 0.0)  # inside the norm: sent as trained
    assert all(np.allclose(small[k], trained[k]) for k in trained)
    assert privatize(trained, received, 0.0, 0.0) == (trained, None)


def test_local_dp_adds_noise_of_the_stated_std():
    rng = np.random.default_rng(1)
    received = {"w/a": rng.normal(size=(200, 100)).astype(np.float32)}
    trained = {"w/a": received["w/a"] + rng.normal(size=(200, 100)).astype(np.float32)}
    clip, multiplier = 0.5, 0.2
    clipped, _ = privatize(trained, received, clip, 0.0)
    sent, applied = privatize(trained, received, clip, multiplier, np.random.default_rng(2))
    assert applied is not None and applied["noise_std"] == pytest.approx(clip * multiplier)
    noise = (sent["w/a"].astype(np.float64) - clipped["w/a"]).ravel()
    expected = clip * multiplier
    # the std of 20 000 draws is off by 0.5 % (one sigma) of the true one: 3 % is six sigmas
    assert noise.std() == pytest.approx(expected, rel=0.03)
    assert abs(noise.mean()) < 5 * expected / np.sqrt(noise.size)


@pytest.mark.parametrize(
    ("fleet_settings", "message"),
    [
        ({"authorized_keys": ["a.pub"]}, "fleet.authorized_keys: node authentication needs TLS"),
        ({"node_key_file": "device.key"}, "fleet.node_key_file: node authentication needs TLS"),
        ({"secure_aggregation": True, "dp_noise_multiplier": 0.5},
         "fleet.dp_noise_multiplier: got 0.5, expected 0 with secure_aggregation"),
        ({"secure_aggregation": True, "min_devices": 1}, "expected at least 2"),
        ({"local_dp_noise_multiplier": 1.0}, "needs local_dp_clipping_norm above 0"),
    ],
)  # fmt: skip
def test_settings_that_cannot_work_together_are_refused(tmp_path, fleet_settings, message):
    config = tmp_path / "earshot.yaml"
    config.write_text(yaml.safe_dump({"fleet": fleet_settings}))
    with pytest.raises(ConfigError, match=message):
        load_settings(config)
