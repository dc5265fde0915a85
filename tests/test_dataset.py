"""Data-set recipe: vocabulary, voice split, rendition sampling, clip windows."""

import collections

import numpy as np
import pytest

from models.speech.dataset import (
    COMMAND_WORDS,
    DIGIT_WORDS,
    SPEECH_COMMANDS_LABELS,
    balanced_voices,
    fit_to_window,
    load_vocabulary,
    sample_renditions,
    speaker_of,
    split_voices,
    trim_silence,
)
from models.speech.synth import ESPEAK_ACCENTS, FESTIVAL_VOICES, FLITE_VOICES, Voice

VOICES = sorted(
    [
        Voice("espeak-ng", f"{a}+{v}")
        for a in ESPEAK_ACCENTS
        for v in ("m1", "m2", "f1", "f2", "klatt", "Alex")
    ]
    + [Voice("espeak-ng", a) for a in ESPEAK_ACCENTS]
    + [Voice("flite", v) for v in FLITE_VOICES]
    + [Voice("festival", v) for v in FESTIVAL_VOICES]
)


def test_vocabulary_is_broad_and_holds_every_target_word():
    words = load_vocabulary()
    assert len(words) >= 500
    assert len(set(words)) == len(words)
    assert set(COMMAND_WORDS) | set(DIGIT_WORDS) <= set(words)
    assert all(w == w.strip().lower() and w for w in words)
    assert len(SPEECH_COMMANDS_LABELS) == 12


def test_voice_split_keeps_speakers_apart_and_covers_every_engine():
    split = split_voices(VOICES, seed=1)
    parts = [split.train, split.validation, split.test]
    speakers = [{speaker_of(v) for v in part} for part in parts]
    assert not (speakers[0] & speakers[1] or speakers[0] & speakers[2] or speakers[1] & speakers[2])
    assert sorted(split.train + split.validation + split.test) == VOICES
    for part in parts:
        assert {v.engine for v in part} == {"espeak-ng", "flite", "festival"}
    # an espeak-ng variant goes wholly to one part, in every accent
    held_out = next(v for v in split.test if v.engine == "espeak-ng")
    assert all(v in split.test for v in VOICES if speaker_of(v) == speaker_of(held_out))
    assert split_voices(VOICES, seed=1) == split
    assert split_voices(VOICES, seed=2) != split


def test_balanced_voices_share_engines_equally():
    picks = balanced_voices(VOICES, 3000, np.random.default_rng(0))
    shares = collections.Counter(v.engine for v in picks)
    for engine in ("espeak-ng", "flite", "festival"):
        assert shares[engine] == pytest.approx(1000, abs=100)


def test_sample_renditions_is_seeded_and_varied():
    a = sample_renditions(["yes", "no"], VOICES, per_word=50, rng=np.random.default_rng(3))
    b = sample_renditions(["yes", "no"], VOICES, per_word=50, rng=np.random.default_rng(3))
    assert a == b
    assert len(a) == 100
    assert collections.Counter(r.text for r in a) == {"yes": 50, "no": 50}
    assert len({r.rate for r in a}) > 10
    assert {r.pitch for r in a if r.voice.engine != "espeak-ng"} == {50}
    assert len({r.pitch for r in a if r.voice.engine == "espeak-ng"}) > 5


def test_trim_silence_keeps_the_loud_part():
    x = np.zeros(16000, np.float32)
    x[4000:8000] = 0.5 * np.sin(np.arange(4000) / 3)
    trimmed = trim_silence(x)
    assert 3800 <= trimmed.size <= 4200
    assert trim_silence(np.zeros(1000, np.float32)).size == 0


def test_fit_to_window_places_short_clips_and_crops_long_ones():
    rng = np.random.default_rng(4)
    short = np.ones(300, np.float32)
    offsets = set()
    for _ in range(20):
        out = fit_to_window(short, length=1000, rng=rng)
        assert out.size == 1000 and out.sum() == 300
        offsets.add(int(np.argmax(out)))
    assert len(offsets) > 5
    long = np.arange(2000, dtype=np.float32)
    cropped = fit_to_window(long, length=1000, rng=rng)
    assert np.all(np.diff(cropped) == 1)
