"""Enrollment take checks on synthesized takes (real speech: tests/test_take_similarity.py)."""

from pathlib import Path

import numpy as np
import pytest

from dsp.constants import SAMPLE_RATE_HZ
from dsp.vad import noise_floor_dbfs
from models.base.model import BaseModel
from models.enroll.takes import (
    MIN_SIMILARITY,
    TakeChecker,
    TakeSet,
    similarity,
)
from models.speech.augment import apply_gain
from models.speech.dataset import trim_silence
from models.speech.synth import Rendition, SpeechCache, Voice
from tests.conftest import tone

SR = SAMPLE_RATE_HZ
BASE_MODEL = Path("models/data/base.npz")
PHRASE = "hey computer"
ROOM_DBFS = -65.0


@pytest.fixture(scope="module")
def base() -> BaseModel:
    return BaseModel.load(BASE_MODEL)


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> dict[str, list[np.ndarray]]:
    """The phrase at four speaking rates and pitches, and other utterances, by one voice."""
    cache = SpeechCache(tmp_path_factory.mktemp("speech"))
    voice = Voice("espeak-ng", "en-us")
    takes = [
        Rendition(PHRASE, voice, rate=r, pitch=p) for r, p in [(0.9, 45), (1.0, 50), (1.1, 55)]
    ]
    others = [Rendition(t, voice) for t in ["hey"]]
    audio = cache.get_many(takes + others)
    return {"phrase": audio[:3], "hey": audio[3:]}


@pytest.fixture(scope="module")
def checker(base, speech) -> TakeChecker:
    duration = float(np.median([trim_silence(a).size / SR for a in speech["phrase"]]))
    return TakeChecker(base, duration)


def in_room(clip: np.ndarray, *, seed: int, level_dbfs: float | None = -22.0) -> np.ndarray:
    """The clip at ``level_dbfs`` RMS, with 0.5 s of room noise before and 0.7 s after."""
    rng = np.random.default_rng(seed)
    clip = trim_silence(clip)
    if level_dbfs is not None:
        clip = apply_gain(clip, level_dbfs - 10 * np.log10(np.mean(np.square(clip))))
    pad = np.zeros(int(0.5 * SR), np.float32)
    audio = np.concatenate((pad, clip, pad, pad[: int(0.2 * SR)]))
    return audio + apply_gain(rng.standard_normal(audio.size).astype(np.float32), ROOM_DBFS)


def test_good_takes_are_accepted_and_trimmed(checker, speech):
    takes = TakeSet(checker)
    for i, clip in enumerate(speech["phrase"]):
        verdict = takes.offer(in_room(clip, seed=i))
        assert verdict.ok, verdict.reason
        assert verdict.reason is None
        speech_s = trim_silence(clip).size / SR
        assert verdict.speech_s == pytest.approx(speech_s, abs=0.05)
        assert verdict.speech.size / SR == pytest.approx(speech_s + 0.2, abs=0.06)
        assert verdict.speech_dbfs == pytest.approx(-22.0, abs=2.0)
        assert verdict.peak_dbfs < 0
        assert verdict.clipped_share == 0
        assert verdict.snr_db is None  # no room measured
        if i > 0:
            assert verdict.similarity is not None and verdict.similarity >= takes.min_similarity
    assert len(takes) == 3
    assert [t.size for t in takes.takes] == [v.speech.size for v in takes.accepted]


def test_clipped_take_is_rejected(checker, speech):
    loud = np.clip(in_room(speech["phrase"][1], seed=3, level_dbfs=None) * 6, -1, 1)
    verdict = checker.check(loud)
    assert not verdict.ok
    assert verdict.reason.startswith("clipped: ")
    assert f"{100 * verdict.clipped_share:.1f}%" in verdict.reason
    assert verdict.clipped_share > 0.01
    assert "allowed 0.1%" in verdict.reason


def test_quiet_take_is_rejected_in_absolute_terms(checker, speech):
    quiet = in_room(speech["phrase"][0], seed=4, level_dbfs=-58.0)
    verdict = checker.check(quiet)
    assert not verdict.ok
    assert verdict.reason.startswith("too quiet: speech at -")
    assert verdict.speech_dbfs < -50
    assert "need at least -50 dBFS" in verdict.reason


def test_take_too_close_to_the_room_noise_is_rejected(checker, speech):
    room = apply_gain(np.random.default_rng(5).standard_normal(3 * SR).astype(np.float32), -45)
    clip = trim_silence(speech["phrase"][2])
    clip = apply_gain(clip, -38 - 10 * np.log10(np.mean(np.square(clip))))
    take = room.copy()
    take[SR // 2 : SR // 2 + clip.size] += clip
    floor = noise_floor_dbfs(room)
    verdict = checker.with_noise_floor(floor).check(take)
    assert not verdict.ok, verdict
    assert verdict.reason.startswith("too quiet for this room: speech only ")
    assert verdict.snr_db is not None and verdict.snr_db < 12
    assert "need at least 12 dB" in verdict.reason
    louder = room.copy()
    louder[SR // 2 : SR // 2 + clip.size] += clip * 8  # 18 dB more
    verdict = checker.with_noise_floor(floor).check(louder)
    assert verdict.ok, verdict.reason
    assert verdict.snr_db > 12


def test_noise_alone_is_no_speech(checker):
    rng = np.random.default_rng(6)
    noise = apply_gain(rng.standard_normal(2 * SR).astype(np.float32), ROOM_DBFS)
    verdict = checker.check(noise)
    assert not verdict.ok
    assert verdict.reason == "no speech heard"
    assert verdict.speech.size == 0
    assert checker.check(np.zeros(SR, np.float32)).reason == "no speech heard"


def test_long_and_short_takes_are_rejected(checker, speech):
    clip = trim_silence(speech["phrase"][0])
    gap = np.zeros(int(0.15 * SR), np.float32)
    rambling = np.concatenate([clip, gap] * 3 + [clip])
    verdict = checker.check(in_room(rambling, seed=7))
    shortest, longest = checker.allowed_s
    assert not verdict.ok
    assert verdict.speech_s > longest
    assert verdict.reason.startswith(f"too long: {verdict.speech_s:.1f} s of speech")
    assert f"allowed up to {longest:.1f} s" in verdict.reason
    blip = tone(600, 0.15, SR, amplitude=0.1)
    short = checker.check(in_room(blip, seed=8))
    assert not short.ok
    assert short.reason.startswith("too short: 0.1")
    assert f"need at least {shortest:.2f} s" in short.reason


def test_a_take_that_does_not_match_is_rejected(checker, speech):
    takes = TakeSet(checker)
    for i, clip in enumerate(speech["phrase"][:2]):
        assert takes.offer(in_room(clip, seed=10 + i)).ok
    odd = takes.offer(in_room(speech["hey"][0], seed=12))
    assert not odd.ok
    assert takes.min_similarity == MIN_SIMILARITY["dscnn"]
    assert odd.similarity is not None and odd.similarity < takes.min_similarity
    assert odd.reason.startswith(
        f"does not sound like the other takes (similarity {odd.similarity:.2f}"
    )
    assert len(takes) == 2


def test_an_odd_first_take_is_dropped_when_later_takes_agree(checker, speech):
    takes = TakeSet(checker)
    assert takes.offer(in_room(speech["hey"][0], seed=20)).ok  # nothing to compare with yet
    second = takes.offer(in_room(speech["phrase"][0], seed=21))
    assert not second.ok and second.reason.startswith("does not sound like")
    third = takes.offer(in_room(speech["phrase"][1], seed=22))
    assert third.ok
    assert third.note is not None and third.note.startswith("dropped the earlier take")
    assert len(takes) == 2
    assert takes.accepted[0].speech_s == pytest.approx(second.speech_s)
    fourth = takes.offer(in_room(speech["phrase"][2], seed=23))
    assert fourth.ok and fourth.note is None
    assert len(takes) == 3


def test_similarity_is_a_cosine():
    a, b = np.array([1.0, 0.0]), np.array([1.0, 1.0])
    assert similarity(a, a) == pytest.approx(1.0)
    assert similarity(a, b) == pytest.approx(np.sqrt(0.5))
    assert similarity(a, np.zeros(2)) == 0.0
