"""Reloading a running agent: a refused reload, by SIGHUP or by the control socket, keeps the old
config and models running and says why in an ``error`` event; a warning about the config is not
repeated on every reload.

Every test runs the real ``earshot run`` in a subprocess, in real time on a silent recording, with
its data, config and control socket in a temporary folder.
"""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile

from agent.control.server import request
from dsp.constants import SAMPLE_RATE_HZ
from models.paths import SHIPPED_BASE_MODEL
from models.wake.model import shipped_detector
from tests.conftest import agent_home
from tests.daemon_harness import RunningAgent, write_config
from tests.test_manifests import edited_copy, set_extra

SILENCE_S = 120
"""Longer than any test here runs: the agent is stopped before the recording ends."""


@pytest.fixture(scope="module")
def silence(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("streams") / "silence.wav"
    soundfile.write(path, np.zeros(SILENCE_S * SAMPLE_RATE_HZ, np.int16), SAMPLE_RATE_HZ)
    return path


def start(tmp_path: Path, recording: Path, config: dict) -> RunningAgent:
    home = tmp_path / "home"
    path = write_config(tmp_path / "earshot.yaml", **config)
    agent = RunningAgent.start(
        "--config", str(path), "--file", str(recording), env=agent_home(home),
        socket=home / "run" / "earshot" / "control.sock",
    )  # fmt: skip
    agent.wait_until_hearing()
    return agent


def stop(agent: RunningAgent) -> str:
    code, stderr, _ = agent.stop()
    assert code == 0, stderr
    assert "Traceback" not in stderr and "never retrieved" not in stderr, stderr
    return stderr


def test_sighup_refuses_an_edited_base_model_with_an_error_event(tmp_path, silence):
    agent = start(tmp_path, silence, {})
    edited = edited_copy(
        SHIPPED_BASE_MODEL, tmp_path / "base.npz",
        lambda m: m["architecture"]["args"].update(channels=1e6),
    )  # fmt: skip
    try:
        write_config(tmp_path / "earshot.yaml", models={"base": str(edited)})
        agent.process.send_signal(signal.SIGHUP)
        error = agent.wait_for("error", 20)
        assert error["error"] == (
            f"reload refused: {edited}: manifest architecture.args.channels: got float "
            "1000000.0, expected an integer in [1, 512]"
        )
        status = request(agent.socket, "status")
        assert status["wake_words"] == ["computer"] and agent.process.poll() is None
    finally:
        stderr = stop(agent)
    assert "reload refused, the running config is kept" in stderr


def test_socket_reload_refuses_an_edited_wake_word_model_with_an_error_event(tmp_path, silence):
    agent = start(tmp_path, silence, {})
    models = tmp_path / "models"
    models.mkdir()
    edited = edited_copy(
        shipped_detector("computer"), models / "computer.npz", set_extra(calibration_hours=0)
    )
    try:
        write_config(tmp_path / "earshot.yaml", models={"directory": str(models)})
        reply = request(agent.socket, "reload", timeout_s=20)
        assert reply["ok"] is False and str(edited) in str(reply["error"]), reply
        error = agent.wait_for("error", 5)
        assert error["error"].startswith("reload refused: ")
        assert str(edited) in error["error"], error
        assert "extra.calibration_hours: got int 0" in error["error"], error
        assert request(agent.socket, "status")["wake_words"] == ["computer"]
        write_config(tmp_path / "earshot.yaml")  # a good config is still taken afterwards
        assert request(agent.socket, "reload", timeout_s=20)["ok"] is True
    finally:
        stop(agent)


def test_a_token_file_others_can_read_is_warned_about_once(tmp_path, silence):
    token = tmp_path / "token"
    token.write_text("secret-token\n")
    token.chmod(0o644)
    config = {"endpoint": {"url": "http://127.0.0.1:9/audio", "token_file": str(token)}}
    agent = start(tmp_path, silence, config)
    try:
        assert request(agent.socket, "reload", timeout_s=20)["ok"] is True
        agent.process.send_signal(signal.SIGHUP)
        assert request(agent.socket, "reload", timeout_s=20)["ok"] is True
    finally:
        stderr = stop(agent)
    warnings = [line for line in stderr.splitlines() if "WARNING" in line and str(token) in line]
    assert len(warnings) == 1, stderr
    assert "readable by everyone (mode 0644)" in warnings[0] and "chmod 600" in warnings[0]
