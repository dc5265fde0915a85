"""A device takes a fleet head only after checking it on its own kept clips (`agent.fleet.adopt`).

The wake word ``seven`` (trained from text with the small recipe, `tests.test_wake_cli`) on a
device that kept two misses of a voice the text model was not trained on and the two other words
it scores highest on, marked as false alarms. No Flower here: the heads are handed over as a fleet
run's end hands them (`tests.test_fleet` covers that path).
"""

import json
import stat

import numpy as np
import pytest
import soundfile

from agent.control.server import request
from agent.daemon.detectors import load_detector_model
from agent.fleet.adopt import FleetRound, adopt_heads
from agent.fleet.device import head_arrays, local_update, split_heads
from agent.learning.feedback import FeedbackStore, learned_models_dir
from agent.settings import load_settings
from dsp.constants import SAMPLE_RATE_HZ
from models.enroll.feedback_check import peak
from models.wake.model import WakeHead, WakeWordModel, model_path
from tests.conftest import agent_home
from tests.daemon_harness import RunningAgent, write_config
from tests.test_enroll_cli import voice_clip
from tests.test_learning import CONFUSABLES, USER, _said
from tests.test_wake_cli import default_base, place, trained_seven

THRESHOLD = 0.5


@pytest.fixture(scope="module")
def base():
    return default_base()


@pytest.fixture(scope="module")
def device(tmp_path_factory, base):
    """A device's config (learning on, its own audit log and control socket), with kept clips."""
    seven = trained_seven(tmp_path_factory)
    root = tmp_path_factory.mktemp("adopt")
    models = seven.parent / "models"
    config = write_config(
        root / "earshot.yaml",
        wake_words=[{"name": "seven", "phrase": "seven", "threshold": THRESHOLD}],
        detection={"backend": "numpy"},
        models={"directory": str(models)},
        learning={"enabled": True, "directory": str(root / "feedback")},
        privacy={"audit_log": str(root / "audit.jsonl")},
        events={"socket": str(root / "home" / "run" / "earshot" / "control.sock")},
    )  # fmt: skip
    settings = load_settings(config)
    text = WakeWordModel.load(model_path(models, "seven"))
    store = FeedbackStore(settings.learning)
    for i, rate in enumerate((0.9, 1.1)):
        store.keep("missed", "seven", place([(1.0, voice_clip(USER, rate))], 3.0, seed=i))
    others = [place([(0.8, _said(w))], 3.5, seed=10 + i) for i, w in enumerate(CONFUSABLES)]
    for clip in sorted(others, key=lambda a: -peak(base, text.head, a, 2))[:2]:
        store.keep("false-alarm", "seven", clip, score=0.9)
    return config, settings, text


def origin(base_sha256: str, round_number: int = 4) -> FleetRound:
    return FleetRound("127.0.0.1:9092", round_number, base_sha256, contributors=3)


def audited(settings) -> list[dict]:
    path = settings.privacy.resolved_audit_log()
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [e for e in lines if e["kind"] == "fleet-head"]


def test_a_worse_head_is_refused_and_the_audit_log_says_why(device, base):
    _, settings, text = device
    deaf = WakeHead.from_state(text.head.state() | {"2.bias": np.array([20.0, -20.0], np.float32)})
    [decision] = adopt_heads(settings, {"seven": deaf}, origin(base.sha256))
    assert not decision.accepted and decision.reason == "it hears fewer kept phrases"
    assert decision.before.heard > 0 and decision.after.heard == 0
    [entry] = audited(settings)
    assert entry | {"time": None} == {
        "time": None, "kind": "fleet-head", "endpoint": "127.0.0.1:9092", "round": 4,
        "wake_word": "seven", "result": "refused", "reason": "it hears fewer kept phrases",
        "in_use": decision.before.as_dict(), "fleet": decision.after.as_dict(),
    }  # fmt: skip
    assert not model_path(learned_models_dir(settings.learning), "seven").exists()
    kept = load_detector_model(
        settings.wake_word("seven"), base.sha256, settings.models.resolved_directory(),
        learned_models_dir(settings.learning),
    )  # fmt: skip
    assert kept.manifest.sha256 == text.manifest.sha256


def test_heads_it_cannot_check_are_refused(device, base, tmp_path):
    config, settings, text = device
    before = len(audited(settings))
    decisions = adopt_heads(settings, {"seven": text.head, "eight": text.head},
                            origin("0" * 64))  # fmt: skip
    assert [(d.name, d.accepted) for d in decisions] == [("seven", False), ("eight", False)]
    assert decisions[0].reason.startswith("trained on base 000000000000, this device uses ")
    assert decisions[1].reason == "not a wake word configured on this device"
    empty = tmp_path / "empty.yaml"
    empty.write_text(config.read_text().replace(
        str(settings.learning.resolved_directory()), str(tmp_path / "nothing-kept")))  # fmt: skip
    [nothing] = adopt_heads(load_settings(empty), {"seven": text.head}, origin(base.sha256))
    assert nothing.reason == "nothing kept on this device to check it against"
    assert [e["result"] for e in audited(settings)[before:]] == ["refused"] * 3


def test_a_head_no_worse_is_checked_written_and_loaded_by_the_running_agent(device, base, tmp_path):
    config, settings, text = device
    arrays, examples, _ = local_update(
        config, head_arrays({"seven": text.head}), coordinator="test", round_number=1
    )
    assert examples == 4
    fleet_head = split_heads(arrays)["seven"]
    silence = tmp_path / "silence.wav"
    soundfile.write(silence, np.zeros(90 * SAMPLE_RATE_HZ, np.int16), SAMPLE_RATE_HZ)
    socket = settings.events.resolved_socket()
    agent = RunningAgent.start(
        "--config", str(config), "--file", str(silence), env=agent_home(socket.parent.parent),
        socket=socket,
    )  # fmt: skip
    try:
        agent.wait_until_hearing()
        assert request(socket, "status")["detectors"] == {"seven": text.manifest.sha256[:12]}
        said: list[str] = []
        [decision] = adopt_heads(
            settings, {"seven": fleet_head}, origin(base.sha256), say=said.append
        )
        assert decision.accepted, decision
        assert said[-1] == "the running agent reloaded its detectors"
        learned = WakeWordModel.load(decision.path)
        assert request(socket, "status")["detectors"] == {"seven": learned.manifest.sha256[:12]}
    finally:
        code, stderr, _ = agent.stop()
    assert code == 0 and "Traceback" not in stderr, stderr
    assert stat.S_IMODE(decision.path.stat().st_mode) == 0o600
    for key, value in fleet_head.state().items():
        np.testing.assert_array_equal(learned.head.state()[key], value)
    assert learned.extra["fleet"] == {"source": "127.0.0.1:9092", "round": 4, "contributors": 3}
    assert learned.extra["text_model_sha256"] == text.manifest.sha256
    assert decision.after.heard >= decision.before.heard
    assert decision.after.fired <= decision.before.fired
    assert audited(settings)[-1]["result"] == "accepted"
    # what the agent loads from now on, as long as the detector it replaced is the one in use
    loaded = load_detector_model(
        settings.wake_word("seven"), base.sha256, settings.models.resolved_directory(),
        learned_models_dir(settings.learning),
    )  # fmt: skip
    assert loaded.manifest.sha256 == learned.manifest.sha256
