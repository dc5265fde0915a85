"""Feedback kept for learning: the owner-only store, and the running agent keeping what it heard."""

import json
import os
import stat

import numpy as np
import pytest
import soundfile

from agent.learning.feedback import FeedbackStore
from agent.paths import DEMO_AUDIO
from agent.settings import LearningSettings
from dsp.constants import SAMPLE_RATE_HZ
from tests.conftest import run_earshot
from tests.daemon_harness import RunningAgent, write_config

SR = SAMPLE_RATE_HZ
LSB = 1 / 32768


def store_in(tmp_path, **limits) -> FeedbackStore:
    return FeedbackStore(LearningSettings(enabled=True, directory=str(tmp_path / "fb"), **limits))


def test_clips_are_owner_only_and_hold_the_audio(tmp_path):
    store = store_in(tmp_path)
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, SR).astype(np.float32)
    clip = store.keep("false-alarm", "computer", audio, score=0.97)
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    for path in (clip.audio_path, clip.info_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    kept, rate = soundfile.read(clip.audio_path, dtype="float32")
    assert rate == SR and np.max(np.abs(kept - audio)) <= LSB
    assert json.loads(clip.info_path.read_text())["score"] == 0.97
    [listed] = store.clips()
    assert (listed.kind, listed.wake_word, listed.seconds, listed.score) == (
        "false-alarm", "computer", 1.0, 0.97,
    )  # fmt: skip
    with pytest.raises(ValueError, match="kind: got 'maybe'"):
        store.keep("maybe", "computer", audio)  # type: ignore[arg-type]


def test_age_and_size_limits_delete_the_oldest_first(tmp_path):
    store = store_in(tmp_path, max_mb=1.0, max_age_days=1.0)
    second = np.zeros(SR // 2, np.float32)  # 16 kB of WAV per clip
    clips = [store.keep("missed", f"w{i}", second) for i in range(3)]
    assert [c.wake_word for c in store.clips()] == ["w0", "w1", "w2"]
    assert len(store.prune(now=clips[0].kept_at + 2 * 86400)) == 3
    assert store.clips() == []  # two days later: all past the age limit
    for i in range(70):  # 70 x 16 kB > 1 MB: the oldest go
        store.keep("missed", f"x{i:02d}", second)
    names = [c.wake_word for c in store.clips()]
    assert names[-1] == "x69" and "x00" not in names
    assert sum(c.size for c in store.clips()) <= 1_000_000


def test_clear_one_wake_word_or_all(tmp_path):
    store = store_in(tmp_path)
    for name in ("a", "b", "a"):
        store.keep("missed", name, np.zeros(1600, np.float32))
    assert store.clear("a") == 2
    assert [c.wake_word for c in store.clips()] == ["b"]
    assert store.clear() == 1 and list(store.directory.iterdir()) == []


@pytest.fixture
def wake_then_quiet(tmp_path):
    """The demo's first "computer" (9.6-10.2 s) with the talk before it, then 60 s of quiet."""
    demo, rate = soundfile.read(DEMO_AUDIO, dtype="float32")
    assert rate == SR
    audio = np.concatenate([demo[7 * SR : 12 * SR], np.zeros(60 * SR, np.float32)])
    path = tmp_path / "wake.wav"
    soundfile.write(path, audio, SR, subtype="PCM_16")
    return path, audio


def start_agent(tmp_path, agent_env, recording, *, learning: bool):
    folder = tmp_path / "feedback"
    config = write_config(
        tmp_path / "earshot.yaml",
        learning={"enabled": learning, "directory": str(folder), "missed_s": 2.5},
    )  # fmt: skip
    socket = tmp_path / "home" / "runtime" / "earshot" / "control.sock"
    agent = RunningAgent.start(
        "--file", str(recording), "--config", str(config), env=agent_env, socket=socket
    )
    return agent, config, folder


def test_the_agent_keeps_a_marked_false_alarm_and_a_miss(tmp_path, agent_env, wake_then_quiet):
    recording, audio = wake_then_quiet
    agent, config, folder = start_agent(tmp_path, agent_env, recording, learning=True)
    try:
        wake = agent.wait_for("wake", timeout_s=20)
        agent.wait_for("state", timeout_s=10, state="listening")  # the command's end: quiet
        marked = run_earshot("feedback", "false-alarm", "--config", str(config), env=agent_env)
        assert marked.returncode == 0, marked.stderr
        assert "as a false-alarm of computer" in marked.stdout
        again = run_earshot("feedback", "false-alarm", "--config", str(config), env=agent_env)
        assert again.returncode == 1 and "no wake word has fired" in again.stderr
        missed = run_earshot("feedback", "missed", "--config", str(config), env=agent_env)
        assert missed.returncode == 0, missed.stderr
        unknown = run_earshot(
            "feedback", "missed", "--wake-word", "jarvis", "--config", str(config), env=agent_env
        )
        assert unknown.returncode == 1 and "'jarvis' is not configured" in unknown.stderr
    finally:
        code, stderr, _ = agent.stop()
    assert code == 0, stderr
    false_alarm, miss = FeedbackStore(LearningSettings(directory=str(folder))).clips()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert (false_alarm.kind, false_alarm.wake_word) == ("false-alarm", "computer")
    assert false_alarm.score == pytest.approx(wake["score"], abs=1e-4)
    # exactly the stream from 3 s before the detection's decision to 0.5 s after it
    kept, _ = soundfile.read(false_alarm.audio_path, dtype="float32")
    start = round((wake["time_s"] - 3.0) * SR)
    assert kept.size == round(3.5 * SR)
    assert np.max(np.abs(kept - audio[start : start + kept.size])) <= LSB
    kept, _ = soundfile.read(miss.audio_path, dtype="float32")
    end = round(json.loads(miss.info_path.read_text())["stream_s"] * SR)
    assert kept.size == round(2.5 * SR)
    assert np.max(np.abs(kept - audio[end - kept.size : end])) <= LSB
    listed = run_earshot("feedback", "list", "--config", str(config), env=agent_env)
    assert "learning is on; 2 clip(s)" in listed.stdout and "false-alarm" in listed.stdout
    cleared = run_earshot("feedback", "clear", "--config", str(config), env=agent_env)
    assert "deleted 2 clip(s)" in cleared.stdout
    assert not any(folder.iterdir())


def test_with_learning_off_nothing_is_kept(tmp_path, agent_env, wake_then_quiet):
    recording, _ = wake_then_quiet
    agent, config, folder = start_agent(tmp_path, agent_env, recording, learning=False)
    try:
        agent.wait_for("wake", timeout_s=20)
        for kind in ("false-alarm", "missed"):
            done = run_earshot("feedback", kind, "--config", str(config), env=agent_env)
            assert done.returncode == 1
            assert "learning is off (learning.enabled: false" in done.stderr
            assert "nothing was kept" in done.stderr and "Traceback" not in done.stderr
    finally:
        agent.stop()
    assert not folder.exists()
    assert not os.path.exists(tmp_path / "home" / "data" / "earshot" / "feedback")
