"""The real daemon, capturing a PulseAudio virtual microphone, forwarding to a real local endpoint.

The conversation played into the microphone is 20 s of other talk, the wake word and a command,
then more talk. The endpoint must receive exactly one upload: the command, and nothing from
before the wake word. With the command configured as a local one, nothing is sent at all and its
shell action runs instead.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from agent.egress.audit import AuditLog
from agent.egress.receiver import Receiver
from dsp.constants import SAMPLE_RATE_HZ
from models.speech.demo_stream import WAKE_VOICE, Line, other_speech, wake_and_command
from tests.conftest import agent_home, run_earshot
from tests.daemon_harness import (
    COMMAND_TEXT,
    RunningAgent,
    best_alignment,
    conversation,
    write_config,
    write_stream,
)  # fmt: skip

pytestmark = pytest.mark.pulse

MIN_COMMAND_CORRELATION = 0.8
UPLOAD_WAIT_S = 15.0


@pytest.fixture(scope="module")
def played(tmp_path_factory):
    """The conversation as a WAV file, with where its parts lie."""
    path = tmp_path_factory.mktemp("e2e") / "conversation.wav"
    return path, write_stream(path, conversation())


@pytest.fixture(scope="module")
def trained_lights(tmp_path_factory):
    """A folder holding the detector of the phrase command "lights", trained with --small."""
    root = tmp_path_factory.mktemp("lights")
    config = write_config(
        root / "earshot.yaml",
        commands=[{"name": "lights", "phrase": COMMAND_TEXT}],
        models={"directory": str(root / "models")},
    )
    result = run_earshot("train", "lights", "--small", "--config", str(config), timeout=600)
    assert result.returncode == 0, result.stderr
    assert "lights: trained in" in result.stdout
    return root / "models"


def _start(tmp_path, pulse_server, config: dict) -> tuple[RunningAgent, dict[str, str]]:
    env = agent_home(tmp_path / "home", pulse_server.env)
    socket = tmp_path / "home" / "run" / "earshot" / "control.sock"
    path = write_config(tmp_path / "earshot.yaml", **config)
    agent = RunningAgent.start("--config", str(path), env=env, socket=socket)
    agent.wait_until_hearing()
    return agent, env


def test_only_the_command_after_the_wake_word_reaches_the_endpoint(
    tmp_path, pulse_server, played
):
    wav, stream = played
    with Receiver(tmp_path / "received") as receiver:
        audit = tmp_path / "audit.jsonl"
        agent, _ = _start(tmp_path, pulse_server, {
            "endpoint": {"kind": "http", "url": f"{receiver.url}/audio"},
            "privacy": {"audit_log": str(audit)},
        })  # fmt: skip
        try:
            pulse_server.play(wav)
            upload = agent.wait_for("upload", UPLOAD_WAIT_S)
        finally:
            code, stderr, took = agent.stop()
        assert code == 0, stderr
        assert took < 2.0
        uploads = list(receiver.uploads)

    assert upload["result"] == "ok", upload
    assert len(agent.of("wake")) == 1, agent.events
    assert len(uploads) == 1
    received = uploads[0].audio
    command_start, command_end = stream.span("command")
    command = stream.part(command_start, command_end)
    _, correlation = best_alignment(command, received)
    assert correlation > MIN_COMMAND_CORRELATION

    # Where the upload lies in what was played: it starts after the wake word began and ends
    # soon after the command did, so none of the talk before the wake word was sent.
    offset, fit = best_alignment(received, stream.audio)
    assert fit > MIN_COMMAND_CORRELATION
    start_s = offset / SAMPLE_RATE_HZ
    wake_start, wake_end = stream.span("wake")
    assert wake_start < start_s <= command_start
    assert start_s + received.size / SAMPLE_RATE_HZ < command_end + 2.5

    entries = AuditLog.read(audit)
    assert len(entries) == 1
    assert entries[0]["result"] == "ok" and entries[0]["wake_word"] == "computer"
    assert entries[0]["bytes"] == uploads[0].bytes


def test_a_local_command_sends_nothing_and_runs_its_action(
    tmp_path, pulse_server, played, trained_lights
):
    wav, _ = played
    marker = tmp_path / "ran.txt"
    with Receiver(tmp_path / "received") as receiver:
        audit = tmp_path / "audit.jsonl"
        agent, _ = _start(tmp_path, pulse_server, {
            "endpoint": {"kind": "http", "url": f"{receiver.url}/audio"},
            "commands": [{
                "name": "lights", "phrase": COMMAND_TEXT, "action": "shell",
                "run": f'echo "$EARSHOT_COMMAND $EARSHOT_WAKE_WORD" > {marker}; '
                       f'echo "$EARSHOT_JSON" >> {marker}',
            }],
            "models": {"directory": str(trained_lights)},
            "privacy": {"audit_log": str(audit)},
        })  # fmt: skip
        try:
            pulse_server.play(wav)
            handled = agent.wait_for("command", UPLOAD_WAIT_S, action="shell")
        finally:
            code, stderr, _ = agent.stop()
        assert code == 0, stderr
        assert not receiver.uploads

    assert handled["command"] == "lights" and handled["command_score"] >= 0.5
    names, line = marker.read_text().strip().splitlines()
    assert names == "lights computer"
    assert json.loads(line)["command"] == "lights"
    assert not agent.of("upload")
    assert not audit.exists()


def _pactl(pulse_server, *args: str) -> None:
    subprocess.run(["pactl", *args], env=pulse_server.env, check=True, timeout=10)


@pytest.fixture(scope="module")
def short_command(tmp_path_factory):
    path = tmp_path_factory.mktemp("e2e") / "command.wav"
    script = [*other_speech(2.0), *wake_and_command("computer", COMMAND_TEXT)]
    return path, write_stream(path, script)


def test_a_lost_microphone_is_reopened_and_detection_goes_on(
    tmp_path, pulse_server, short_command
):
    wav, _ = short_command
    with Receiver(tmp_path / "received") as receiver:
        agent, _ = _start(tmp_path, pulse_server, {"endpoint": {"url": f"{receiver.url}/audio"}})
        try:
            _pactl(pulse_server, "unload-module", "module-null-sink")
            try:
                lost = agent.wait_for("device_lost", 15)
                time.sleep(1.0)  # a few failed reopening attempts
            finally:
                _pactl(pulse_server, "load-module", "module-null-sink",
                       f"sink_name={pulse_server.sink}")  # fmt: skip
            agent.wait_for("device_back", 20)
            agent.wait_until_hearing()
            pulse_server.play(wav)
            upload = agent.wait_for("upload", UPLOAD_WAIT_S)
        finally:
            code, stderr, _ = agent.stop()
        assert code == 0, stderr
    assert "microphone" in lost["source"]
    assert upload["result"] == "ok" and len(receiver.uploads) == 1
    assert "microphone lost" in stderr and "is back" in stderr


def test_a_phrase_command_can_be_enrolled_like_a_wake_word(tmp_path, trained_lights):
    takes = []
    for k, rate in enumerate((0.9, 1.0, 1.1, 0.95)):
        take = tmp_path / f"take{k}.wav"
        write_stream(take, [Line(COMMAND_TEXT, WAKE_VOICE, "command", 0.5, rate)])
        takes.append(str(take))
    config = write_config(
        tmp_path / "earshot.yaml",
        commands=[{"name": "lights", "phrase": COMMAND_TEXT}],
        models={"directory": str(trained_lights)},
    )
    env = agent_home(tmp_path / "home")
    enrolled = run_earshot("enroll", "lights", "--config", str(config), "--from", *takes, env=env,
                           timeout=600)  # fmt: skip
    assert enrolled.returncode == 0, enrolled.stderr
    listed = run_earshot("enroll", "--list", env=env)
    assert "lights" in listed.stdout
