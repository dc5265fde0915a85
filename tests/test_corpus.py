"""Corpus building: synthesized words become reproducible, labelled log-mel windows."""

import shutil

import numpy as np
import pytest

from dsp.constants import N_MELS
from dsp.features import frame_count
from models.speech.corpus import (
    SILENCE,
    SPEECH,
    CorpusRecipe,
    build_split,
    load_or_build,
    sentence_texts,
)
from models.speech.synth import FESTIVAL_VOICES, FLITE_VOICES, SpeechCache, Voice
from tests.conftest import require

WORDS = ("yes", "no", "stop")
RECIPE = CorpusRecipe(
    words=WORDS, renditions_per_word={"train": 6, "validation": 2, "test": 2}, seed=5
)
VOICES = (
    [Voice("espeak-ng", f"en-us+{v}") for v in ("m1", "m2", "m3", "f1", "f2", "f3", "klatt")]
    + [Voice("flite", v) for v in FLITE_VOICES]
    + [Voice("festival", v) for v in FESTIVAL_VOICES]
)


@pytest.fixture(scope="module")
def speech_cache(tmp_path_factory):
    for binary in ("espeak-ng", "flite", "text2wave"):
        require(shutil.which(binary) is not None, f"{binary} is not installed")
    return SpeechCache(tmp_path_factory.mktemp("speech"))


def test_train_split_holds_every_word_copy_and_the_negatives(speech_cache):
    stages = set()
    corpus = build_split(
        RECIPE, "train", voices=VOICES, speech_cache=speech_cache, workers=2,
        progress=lambda stage, done, total: stages.add((stage, done == total)),
    )  # fmt: skip
    word_clips = len(WORDS) * 6 * RECIPE.augmented_copies
    assert corpus.label_names == (*WORDS, SILENCE, SPEECH)
    assert corpus.features.shape == (corpus.labels.size, frame_count(16_000), N_MELS)
    assert corpus.features.dtype == np.float16
    counts = np.bincount(corpus.labels, minlength=len(corpus.label_names))
    assert list(counts[: len(WORDS)]) == [6 * RECIPE.augmented_copies] * len(WORDS)
    assert counts[-2] == round(RECIPE.silence_share * word_clips)
    assert counts[-1] == round(RECIPE.speech_share * word_clips)
    assert np.isfinite(corpus.features.astype(np.float32)).all()
    assert {("synthesis", True), ("augmentation", True)} <= stages
    # speech is louder than the silence class in every window
    speech_level = corpus.features[corpus.labels < len(WORDS)].astype(np.float32).max(axis=(1, 2))
    silence_level = corpus.features[corpus.labels == len(WORDS)].astype(np.float32).max(axis=(1, 2))
    assert np.median(speech_level) > np.median(silence_level)


def test_building_is_reproducible_and_seeded(speech_cache):
    a = build_split(RECIPE, "validation", voices=VOICES, speech_cache=speech_cache, workers=2)
    b = build_split(RECIPE, "validation", voices=VOICES, speech_cache=speech_cache, workers=1)
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.labels, b.labels)
    other_seed = CorpusRecipe(words=WORDS, renditions_per_word=RECIPE.renditions_per_word, seed=6)
    c = build_split(other_seed, "validation", voices=VOICES, speech_cache=speech_cache, workers=2)
    assert not np.array_equal(a.features, c.features)


def test_load_or_build_caches_by_recipe(speech_cache, tmp_path):
    first = load_or_build(
        RECIPE, "test", directory=tmp_path, voices=VOICES, speech_cache=speech_cache
    )
    cached = tmp_path / RECIPE.key() / "test.npz"
    assert cached.is_file()
    again = load_or_build(RECIPE, "test", directory=tmp_path)  # no voices needed: read from disk
    np.testing.assert_array_equal(first.features, again.features)
    assert again.label_names == first.label_names


def test_recipe_key_tracks_content():
    assert (
        RECIPE.key()
        == CorpusRecipe(
            words=WORDS, renditions_per_word={"train": 6, "validation": 2, "test": 2}, seed=5
        ).key()
    )
    assert RECIPE.key() != CorpusRecipe(words=WORDS, seed=5).key()


def test_sentences_are_vocabulary_words():
    rng = np.random.default_rng(0)
    sentences = sentence_texts(WORDS, 20, rng)
    assert len(sentences) == 20
    assert all(4 <= len(s.split()) <= 9 and set(s.split()) <= set(WORDS) for s in sentences)


def test_data_build_command_builds_then_reuses_the_cache(speech_cache, tmp_path):
    import json
    import os

    from tests.conftest import run_earshot

    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    args = ["data", "build", "--words", "3", "--renditions", "2,1,1", "--copies", "1", "--json"]
    first = run_earshot(*args, env=env)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["train"]["clips"] >= 6 and summary["train"]["classes"] == 5
    for split in ("train", "validation", "test"):
        assert (tmp_path / "earshot" / "corpora" / summary["recipe"] / f"{split}.npz").is_file()
    again = json.loads(run_earshot(*args, env=env).stdout)
    assert again["train"]["clips"] == summary["train"]["clips"]
    assert again["train"]["seconds"] < 1.0
    bad = run_earshot("data", "build", "--copies", "0", env=env)
    assert bad.returncode == 2
    assert "--copies: got 0" in bad.stderr
