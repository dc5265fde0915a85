"""Learning from kept feedback: `earshot train --feedback`, the no-worse check, and its use.

The wake word ``seven`` (trained from text with the small recipe, `tests.test_wake_cli`) is
given misses (a voice it was not trained on saying "seven" in a room) and false alarms (other
words it scores highest on), kept as `earshot feedback` keeps them.
"""

import stat

import numpy as np
import pytest
import yaml

from agent.daemon.detectors import load_detector_model
from agent.learning.feedback import FeedbackStore, learned_models_dir
from agent.settings import load_settings
from models.enroll.feedback_check import feedback_score, peak
from models.speech.synth import Rendition, SpeechCache, Voice
from models.wake.model import WakeHead, WakeWordModel, model_path
from tests.conftest import run_earshot
from tests.test_enroll_cli import voice_clip, xdg_env
from tests.test_wake_cli import default_base, place, trained_seven

USER = Voice("espeak-ng", "en-gb-scotland+caleb")
MISSES = [(0.9, 40), (1.0, 45), (1.1, 50)]
CONFUSABLES = ["heaven", "seventy", "kevin", "several", "eleven", "weaving", "seventh", "devon"]
THRESHOLD = 0.5


@pytest.fixture(scope="module")
def base():
    return default_base()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, base):
    """A config with learning on, its text-only model, and the clips kept for ``seven``."""
    seven = trained_seven(tmp_path_factory)
    root = tmp_path_factory.mktemp("learning")
    config = root / "earshot.yaml"
    config.write_text(yaml.safe_dump({
        "wake_words": [{"name": "seven", "phrase": "seven", "threshold": THRESHOLD}],
        "detection": {"backend": "numpy"},
        "models": {"directory": str(seven.parent / "models")},
        "learning": {"enabled": True, "directory": str(root / "feedback")},
    }))  # fmt: skip
    settings = load_settings(config)
    text = WakeWordModel.load(model_path(seven.parent / "models", "seven"))
    store = FeedbackStore(settings.learning)
    misses = [place([(1.0, voice_clip(USER, r, p))], 3.0, seed=i) for i, (r, p) in
              enumerate(MISSES)]  # fmt: skip
    others = [place([(0.8, _said(w))], 3.5, seed=10 + i) for i, w in enumerate(CONFUSABLES)]
    ranked = sorted(others, key=lambda a: -peak(base, text.head, a, 2))
    false_alarms = ranked[:3]  # what "seven" would most likely fire on
    for clip in misses:
        store.keep("missed", "seven", clip)
    for clip in false_alarms:
        store.keep("false-alarm", "seven", clip, score=0.9)
    return config, settings, text, misses, false_alarms, xdg_env(root)


def _said(word: str) -> np.ndarray:
    clip = SpeechCache().get(Rendition(word, Voice("espeak-ng", "en-us+m3")))
    return clip * (0.1 / np.sqrt(np.mean(np.square(clip))))


def test_train_feedback_learns_from_the_clips_and_is_used(setup, base):
    config, settings, text, misses, false_alarms, env = setup
    done = run_earshot("train", "--feedback", "--config", str(config), env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "seven: before hears" in done.stdout and "accepted, written to" in done.stdout
    folder = learned_models_dir(settings.learning)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in folder.iterdir())
    learned = load_detector_model(
        settings.wake_word("seven"), base.sha256, settings.models.resolved_directory(), folder
    )
    assert learned.extra["false_alarms"] == len(false_alarms)
    assert learned.extra["text_model_sha256"] == text.manifest.sha256
    # the learned head scores the user's misses higher and the marked false alarms lower
    for clip in misses:
        assert peak(base, learned.head, clip, 2) > peak(base, text.head, clip, 2)
    for clip in false_alarms:
        assert peak(base, learned.head, clip, 2) < peak(base, text.head, clip, 2)
    before = feedback_score(base, text.head, THRESHOLD, phrases=misses,
                            false_alarms=false_alarms, smoothing_hops=2)  # fmt: skip
    after = feedback_score(base, learned.head, THRESHOLD, phrases=misses,
                           false_alarms=false_alarms, smoothing_hops=2)  # fmt: skip
    assert after.no_worse_than(before)
    # without learning enabled the agent keeps to the detector it had
    plain = load_detector_model(
        settings.wake_word("seven"), base.sha256, settings.models.resolved_directory()
    )
    assert plain.manifest.sha256 == text.manifest.sha256
    cleared = run_earshot("feedback", "clear", "--config", str(config), env=env)
    assert "deleted 6 clip(s)" in cleared.stdout and not any(folder.iterdir())


def test_a_worse_head_is_refused_by_the_check(setup, base):
    _, _, text, misses, false_alarms, _ = setup
    state = text.head.state()
    deaf = state | {"2.bias": np.array([20.0, -20.0], np.float32)}  # "other" always wins
    worse = WakeHead.from_state(deaf)
    kwargs = {"phrases": misses, "false_alarms": false_alarms, "smoothing_hops": 2}
    current = feedback_score(base, text.head, THRESHOLD, **kwargs)
    bad = feedback_score(base, worse, THRESHOLD, **kwargs)
    assert current.heard > 0  # the text model hears some of the user's "seven"s
    assert bad.heard == 0 and bad.fired == 0
    assert not bad.no_worse_than(current)  # fewer false alarms do not make up for deafness
    assert current.no_worse_than(current)


def test_train_feedback_needs_learning_on(setup):
    config, *_, env = setup
    off = config.parent / "off.yaml"
    off.write_text(config.read_text().replace("enabled: true", "enabled: false"))
    done = run_earshot("train", "--feedback", "--config", str(off), env=env)
    assert done.returncode == 2
    assert "learning.enabled: false" in done.stderr and "Traceback" not in done.stderr
