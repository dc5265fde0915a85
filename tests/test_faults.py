"""The daemon through faults: a failing endpoint, a broken model file.

For each endpoint fault the recording holds two commands a few seconds apart, played in real
time. The first upload meets the fault: it is retried a bounded number of times and audited as
failed, while detection goes on; the endpoint then recovers, and the second command's upload
succeeds.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import struct

import numpy as np
import pytest

from agent.control.server import request
from agent.egress.audit import AuditLog
from agent.egress.receiver import Receiver
from models.nn.checkpoint import MANIFEST_KEY, Manifest, save_model
from models.speech.demo_stream import other_speech, wake_and_command
from models.wake.model import shipped_detector
from tests.conftest import agent_home, run_earshot
from tests.daemon_harness import RunningAgent, write_config, write_stream
from tests.fault_proxy import FaultProxy

RETRIES = 1
TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def two_commands(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "two.wav"
    write_stream(path, [
        *other_speech(1.0),
        *wake_and_command("computer", "turn on the kitchen lights"),
        *other_speech(3.0, offset=2),
        *wake_and_command("computer", "what time is it"),
    ])  # fmt: skip
    return path


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """Server contexts with a certificate the daemon trusts and one it does not; the CA file."""
    trustme = pytest.importorskip("trustme", reason="pip install trustme (the dev extra)")
    contexts = []
    for ca in (trustme.CA(), trustme.CA()):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        contexts.append((ca, context))
    folder = tmp_path_factory.mktemp("tls")
    contexts[0][0].cert_pem.write_to_path(str(folder / "ca.pem"))
    return contexts[0][1], contexts[1][1], folder / "ca.pem"


def start(tmp_path, wav, endpoint: dict) -> RunningAgent:
    home = tmp_path / "home"
    endpoint = {"timeout_s": TIMEOUT_S, "retries": RETRIES, **endpoint}
    config = write_config(
        tmp_path / "earshot.yaml", endpoint=endpoint,
        privacy={"audit_log": str(tmp_path / "audit.jsonl")},
    )  # fmt: skip
    agent = RunningAgent.start(
        "--config", str(config), "--file", str(wav), env=agent_home(home),
        socket=home / "run" / "earshot" / "control.sock",
    )  # fmt: skip
    agent.wait_until_hearing()
    return agent


def check_recovery(agent: RunningAgent, tmp_path, receiver: Receiver) -> None:
    failed = agent.wait_for("upload", 20, result="failed")
    assert failed["attempts"] == 1 + RETRIES
    status = request(agent.socket, "status")
    assert status["uploads_in_flight"] <= 2 and status["state"] != "stopped"
    ok = agent.wait_for("upload", 20, result="ok")
    code, stderr, _ = agent.stop()
    assert code == 0, stderr
    assert len(agent.of("wake")) == 2
    assert len(receiver.uploads) == 1 and ok["bytes"] == receiver.uploads[0].bytes
    entries = AuditLog.read(tmp_path / "audit.jsonl")
    assert [e["result"] for e in entries] == ["failed", "ok"]
    assert entries[0]["attempts"] == 1 + RETRIES and entries[0]["error"]


@pytest.mark.parametrize("fault", ["500", "hang", "close"])
def test_a_failing_endpoint_is_audited_and_the_next_command_gets_through(
    tmp_path, two_commands, fault
):
    with Receiver(tmp_path / "received") as receiver:
        proxy = FaultProxy(fault, receiver.port, failures=1 + RETRIES)
        try:
            agent = start(tmp_path, two_commands, {"url": f"http://127.0.0.1:{proxy.port}/a"})
            check_recovery(agent, tmp_path, receiver)
        finally:
            proxy.close()


def test_an_untrusted_certificate_is_refused_then_a_trusted_one_accepted(
    tmp_path, two_commands, tls
):
    trusted, untrusted, ca_file = tls
    with Receiver(tmp_path / "received", ssl_context=trusted) as receiver:
        proxy = FaultProxy("untrusted", receiver.port, failures=1 + RETRIES, untrusted=untrusted)
        try:
            agent = start(tmp_path, two_commands, {
                "url": f"https://127.0.0.1:{proxy.port}/a", "ca_file": str(ca_file),
            })  # fmt: skip
            check_recovery(agent, tmp_path, receiver)
        finally:
            proxy.close()
    assert "certificate" in AuditLog.read(tmp_path / "audit.jsonl")[0]["error"].lower()


def test_a_refused_connection_is_audited_and_the_endpoint_used_once_it_listens(
    tmp_path, two_commands
):
    with Receiver(tmp_path / "received") as receiver:
        with socket.create_server(("127.0.0.1", 0)) as probe:
            closed_port = probe.getsockname()[1]  # nothing listens there once it is closed
        agent = start(tmp_path, two_commands, {"url": f"http://127.0.0.1:{closed_port}/a"})
        failed = agent.wait_for("upload", 20, result="failed")
        assert "refused" in failed["error"].lower()
        proxy = FaultProxy("500", receiver.port, failures=0, port=closed_port)
        try:
            ok = agent.wait_for("upload", 20, result="ok")
        finally:
            code, stderr, _ = agent.stop()
            proxy.close()
        assert code == 0, stderr
        assert ok["attempts"] == 1 and len(receiver.uploads) == 1


# ---- model files ---------------------------------------------------------------------------------


def rewrite(path, *, weights_delta: float = 0.0, **front_end: object) -> None:
    """Rewrite a model file with its weights shifted or its manifest's front end changed."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    manifest = json.loads(str(arrays.pop(MANIFEST_KEY)))
    first = next(name for name, a in arrays.items() if a.dtype.kind == "f")
    arrays[first] = arrays[first] + weights_delta
    if front_end:  # a consistent file (checksum recomputed), made for another front end
        manifest["front_end"] = {**manifest["front_end"], **front_end}
        save_model(path, arrays, Manifest(**manifest))
        return
    np.savez(path, **arrays, **{MANIFEST_KEY: np.array(json.dumps(manifest))})


def corrupt(path, how: str) -> None:
    if how == "checksum":
        return rewrite(path, weights_delta=1e-3)
    if how == "front-end":
        return rewrite(path, n_mels=64)
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "flipped":
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(struct.pack("<I", 0xDEADBEEF) * 64)


@pytest.mark.parametrize(
    ("how", "problem"),
    [
        ("truncated", "not a readable model file"),
        ("flipped", "not a readable model file"),
        ("garbage", "not a readable model file"),
        ("checksum", "checksum mismatch"),
        ("front-end", "n_mels"),
    ],
)
def test_a_corrupt_wake_word_model_stops_the_daemon_before_it_starts(tmp_path, how, problem):
    models = tmp_path / "models"
    models.mkdir()
    model = models / "computer.npz"
    shutil.copy(shipped_detector("computer"), model)
    corrupt(model, how)
    config = write_config(tmp_path / "earshot.yaml", models={"directory": str(models)})
    result = run_earshot(
        "run", "--config", str(config), "--demo", "--fast", env=agent_home(tmp_path / "home")
    )
    assert result.returncode == 5, result.stderr
    assert str(model) in result.stderr and problem in result.stderr
    assert "Traceback" not in result.stderr
    assert '"state"' not in result.stdout  # nothing started half-configured
    assert not (tmp_path / "home" / "data" / "earshot" / "demo").exists()
