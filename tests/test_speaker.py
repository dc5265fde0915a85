from __future__ import annotations

import io

import numpy as np
import pytest

from dsp.features import log_mel
from kernels.errors import ModelError
from models.speech.synth import Rendition, SpeechCache, Voice
from models.wake.speaker import (
    IMPOSTOR_QUANTILE,
    THRESHOLD_POSITION,
    SpeakerProfile,
    alignment_distance,
    calibrated_threshold,
    cepstra,
    similarity,
)
from tests.conftest import FSDD_DIR, fsdd_files, require

PHRASE = "hey computer"
USER = Voice("espeak-ng", "en-us+m3")
OTHER_VOICES = [
    Voice("espeak-ng", name)
    for name in ("en-gb+f2", "en-us+f4", "en-gb-scotland+f3", "en-029+f1", "en-gb-x-rp+f5")
]
IMPOSTOR_VOICES = [
    Voice("espeak-ng", name)
    for name in ("en-us+m1", "en-gb+m5", "en-us+f3", "en-gb-x-rp+m2", "en-029+m4", "en-us+f1")
]


def _speak(voice: Voice, rates: list[float], pitch: int = 50) -> list[np.ndarray]:
    import shutil

    require(shutil.which("espeak-ng") is not None, "espeak-ng is not installed")
    renditions = [Rendition(PHRASE, voice, rate=r, pitch=pitch) for r in rates]
    return [log_mel(a) for a in SpeechCache().get_many(renditions)]


@pytest.fixture(scope="module")
def material() -> dict[str, list[np.ndarray]]:
    rates = [0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2, 0.88, 0.97, 1.03, 1.12]
    return {
        "takes": _speak(USER, rates[:5]),
        "held_out": _speak(USER, rates[5:]),
        "others": [f for v in OTHER_VOICES for f in _speak(v, [0.9, 1.0, 1.1])],
        "impostors": [f for v in IMPOSTOR_VOICES for f in _speak(v, [0.9, 1.1], pitch=40)],
    }


@pytest.fixture(scope="module")
def profile(material: dict[str, list[np.ndarray]]) -> SpeakerProfile:
    return SpeakerProfile.enroll(material["takes"], material["impostors"])


def test_distance_is_symmetric_non_negative_and_zero_on_itself() -> None:
    rng = np.random.default_rng(0)
    for n, m in [(7, 7), (12, 5), (3, 20), (1, 1)]:
        a, b = rng.normal(size=(n, 19)), rng.normal(size=(m, 19))
        assert alignment_distance(a, b) == pytest.approx(alignment_distance(b, a), rel=1e-12)
        assert alignment_distance(a, b) > 0.0
        assert alignment_distance(a, a) == 0.0


def test_similarity_is_bounded_and_halves_at_the_scale() -> None:
    assert similarity(0.0, 3.0) == 1.0
    assert similarity(3.0, 3.0) == pytest.approx(0.5)
    assert 0.0 < similarity(1e3, 3.0) < 1e-9


def test_cepstra_ignore_gain_and_drop_silence() -> None:
    rng = np.random.default_rng(1)
    envelope = 0.3 + 0.2 * np.sin(np.linspace(0, 6, 16000))  # within 10 dB: all speech
    audio = (rng.normal(size=16000) * envelope).astype(np.float32) * 0.3
    loud, quiet = cepstra(log_mel(audio)), cepstra(log_mel(audio * 0.25))
    assert loud.shape == quiet.shape == (log_mel(audio).shape[0], 19)
    np.testing.assert_allclose(loud, quiet, atol=0.05)  # up to the log floor
    padded = np.concatenate((np.zeros(8000, np.float32), audio, np.zeros(8000, np.float32)))
    assert cepstra(log_mel(padded)).shape[0] <= log_mel(audio).shape[0] + 10  # not 100 more


def test_score_is_in_unit_interval_and_zero_without_speech(
    profile: SpeakerProfile, material: dict[str, list[np.ndarray]]
) -> None:
    scores = [profile.score(f) for f in material["held_out"] + material["others"]]
    assert all(0.0 < s <= 1.0 for s in scores)
    assert profile.score(np.zeros((3, 40), np.float32)) == 0.0
    assert not profile.accepts(np.zeros((0, 40), np.float32))


def test_state_round_trip(profile: SpeakerProfile, material: dict[str, list[np.ndarray]]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **{f"speaker/{k}": v for k, v in profile.state().items()})
    buffer.seek(0)
    with np.load(buffer) as data:
        state = {k.removeprefix("speaker/"): data[k] for k in data.files}
    loaded = SpeakerProfile.from_state(state)
    assert loaded.threshold == profile.threshold and loaded.scale == profile.scale
    for frames in material["held_out"] + material["others"][:3]:
        assert loaded.score(frames) == profile.score(frames)


def test_from_state_refuses_other_feature_settings(profile: SpeakerProfile) -> None:
    state = profile.state() | {"settings": np.array([40, 19, 30.0])}
    with pytest.raises(ModelError, match="feature settings"):
        SpeakerProfile.from_state(state)


def test_enroll_needs_three_to_ten_takes(material: dict[str, list[np.ndarray]]) -> None:
    with pytest.raises(ModelError, match="got 2 takes"):
        SpeakerProfile.enroll(material["takes"][:2], material["impostors"])


def test_accepts_the_enrolled_voice_more_than_other_voices(
    profile: SpeakerProfile, material: dict[str, list[np.ndarray]]
) -> None:
    own = np.mean([profile.accepts(f) for f in material["held_out"]])
    others = np.mean([profile.accepts(f) for f in material["others"]])
    assert own >= 0.6
    assert own - others >= 0.4
    own_scores = [profile.score(f) for f in material["held_out"]]
    other_scores = [profile.score(f) for f in material["others"]]
    assert np.median(own_scores) > np.median(other_scores)


def test_threshold_follows_the_documented_rule(
    profile: SpeakerProfile, material: dict[str, list[np.ndarray]]
) -> None:
    templates = profile.templates
    loo = np.array(
        [
            similarity(
                np.mean([alignment_distance(o, t) for j, o in enumerate(templates) if j != i]),
                profile.scale,
            )
            for i, t in enumerate(templates)
        ]
    )
    fakes = np.array([profile.score(f) for f in material["impostors"]])
    top = np.quantile(fakes, IMPOSTOR_QUANTILE)
    expected = min(top + THRESHOLD_POSITION * (loo.min() - top), loo.min())
    assert profile.threshold == pytest.approx(expected, abs=1e-9)
    assert profile.threshold <= loo.min()  # every take passes the profile built from the others
    assert profile.impostor_accept == pytest.approx(np.mean(fakes >= profile.threshold))
    assert np.median(fakes) == pytest.approx(0.5, abs=0.05)  # the scale is the impostors' median


def test_calibrated_threshold_never_rejects_a_take() -> None:
    loo = np.array([0.7, 0.72, 0.75])
    assert calibrated_threshold(loo, np.array([0.4, 0.5, 0.6])) < 0.7
    assert calibrated_threshold(loo, np.array([0.8, 0.9])) == 0.7  # impostors score higher


def test_fsdd_small_check_separates_two_speakers() -> None:
    fsdd_files("1_jackson_*.wav")
    fsdd_files("1_theo_*.wav")
    from models.enroll.speaker_eval import fsdd_speaker_check

    result = fsdd_speaker_check(
        FSDD_DIR, speakers=("jackson", "theo"), digits=(1,), impostors_per_digit=12
    )
    assert set(result["per_speaker"]) == {"jackson", "theo"}
    assert result["trials"] == {"user": 90, "other_speakers": 100}
    mean = result["mean"]
    assert mean["eer"] <= 0.2  # measured 0.07
    assert mean["frr"] + mean["far"] <= 0.7  # measured 0.34; chance is 1
