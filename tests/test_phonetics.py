"""Phonemes from espeak-ng, phoneme distance, and confusable negatives for a wake phrase."""

import shutil
import statistics
import time

import pytest

from kernels.errors import ConfigError, ModelError
from models.speech import phonetics
from models.speech.dataset import load_vocabulary
from models.speech.phonetics import (
    confusable_texts,
    is_vowel,
    nearest_words,
    phoneme_distance,
    phonemes,
)
from tests.conftest import require


@pytest.fixture(autouse=True)
def _espeak_installed() -> None:
    require(shutil.which("espeak-ng") is not None, "espeak-ng is not installed")


@pytest.fixture(scope="module")
def vocab() -> tuple[str, ...]:
    return load_vocabulary()


def test_phonemes_are_whole_mnemonics_without_stress_or_boundaries():
    (mirror,) = phonemes(["hey smart mirror"])
    assert mirror == ("h", "eI", "s", "m", "A@", "t", "m", "I", "r", "3")
    (church,) = phonemes(["church"])
    assert "tS" in church
    for p in mirror + church:
        assert p and not set(p) & set(" _',%=")


def test_phonemes_are_non_empty_and_equal_for_identical_words(vocab):
    result = phonemes([*vocab[:50], "seven", "Seven", "  seven "])
    assert len(result) == 53
    assert all(result)
    assert result[-3] == result[-2] == result[-1]
    assert phonemes(["seven"]) == [result[-1]]


def test_batch_gives_one_result_per_text_with_punctuation_and_line_breaks():
    texts = [
        "seven, eleven!",
        "",
        "!!!",
        "Don't\nstop.",
        "hash",
        "#",
        "hash, hash; hash",
        "3.5",
        "computer " * 100,
        "yes",
    ]
    result = phonemes(texts)
    assert len(result) == len(texts)
    seven, eleven = phonemes(["seven"])[0], phonemes(["eleven"])[0]
    assert result[0][: len(seven)] == seven and len(result[0]) == len(seven) + len(eleven)
    assert result[1] == () and result[2] == ()
    assert result[3] == phonemes(["don't stop"])[0]
    assert result[4] == result[5] == phonemes(["hash"])[0]
    assert result[6] == result[4] * 3
    assert len(result[8]) == 100 * len(phonemes(["computer"])[0])
    assert result[9] == phonemes(["yes"])[0]


def test_vocabulary_phonemes_are_fast_from_cold(vocab, monkeypatch):
    monkeypatch.setattr(phonetics, "_cache", {})
    start = time.perf_counter()
    result = phonemes(vocab)
    assert time.perf_counter() - start < 2.0
    assert len(result) == len(vocab) and all(result)


def test_cached_texts_need_no_espeak_and_missing_espeak_is_a_model_error(monkeypatch, tmp_path):
    (known,) = phonemes(["mirror"])
    monkeypatch.setenv("PATH", str(tmp_path))
    assert phonemes(["mirror"]) == [known]
    with pytest.raises(ModelError, match="espeak-ng"):
        phonemes(["a text nobody asked for before"])


def test_vowel_classes():
    assert all(is_vowel(p) for p in ("a", "eI", "A@", "3:", "@", "@L", "0", "V", "u:", "I2"))
    assert not any(is_vowel(p) for p in ("t", "tS", "dZ", "N", "D", "T", "j", "w", "r"))


def test_distance_properties(vocab):
    words = ["seven", "eleven", "yes", "mirror", "computer", "a"]
    seqs = phonemes(words)
    for a in seqs:
        assert phoneme_distance(a, a) == 0.0
        for b in seqs:
            d = phoneme_distance(a, b)
            assert 0.0 <= d <= 1.0
            assert d == phoneme_distance(b, a)
    assert phoneme_distance((), ()) == 0.0
    assert phoneme_distance(("s",), ()) == 1.0
    assert phoneme_distance(("s", "E"), ("t", "E")) == 0.25  # consonant for consonant
    assert phoneme_distance(("s", "E"), ("a", "E")) == 0.5  # vowel for consonant
    seven, eleven, yes = seqs[:3]
    assert phoneme_distance(seven, eleven) < phoneme_distance(seven, yes)
    heaven = phonemes(["heaven"])[0]
    assert phoneme_distance(seven, heaven) < phoneme_distance(seven, yes)


def test_nearest_words_leave_out_the_word_and_homophones(vocab):
    near = nearest_words("two", vocab, 10)
    assert len(near) == 10
    assert "two" not in near and "to" not in near and "too" not in near
    two = phonemes(["two"])[0]
    distances = [phoneme_distance(two, p) for p in phonemes(near)]
    assert all(d > 0 for d in distances) and distances == sorted(distances)


def test_multi_word_phrase_has_parts_repetitions_and_close_variants(vocab):
    texts = confusable_texts("hey smart mirror", vocab)
    assert texts[:7] == [
        "hey",
        "smart",
        "mirror",
        "hey smart",
        "smart mirror",
        "hey hey",
        "mirror mirror",
    ]
    assert "hey smart mirror" not in texts
    assert len(texts) == len(set(texts))
    own = phonemes(["hey smart mirror"])[0]
    assert own not in phonemes(texts)
    for word in ("hey", "smart", "mirror"):
        near = nearest_words(word, vocab, 6)
        assert len(near) == 6 and set(near) <= set(texts)
    variants = [t for t in texts[7:] if len(t.split()) == 3]
    assert len(variants) == 18
    assert all(
        sum(a != b for a, b in zip(t.split(), ("hey", "smart", "mirror"), strict=True)) == 1
        for t in variants
    )


def test_phrase_words_ignore_case_and_punctuation(vocab):
    assert confusable_texts("Hey, Smart Mirror!", vocab) == confusable_texts(
        "hey smart mirror", vocab
    )


def test_one_word_phrase_gives_close_words_only(vocab):
    texts = confusable_texts("seven", vocab)
    assert len(texts) == 6
    assert "seven" not in texts and "seven seven" not in texts
    assert all(len(t.split()) == 1 for t in texts)
    seven = phonemes(["seven"])[0]
    median = statistics.median(phoneme_distance(seven, p) for p in phonemes(vocab))
    assert all(0 < phoneme_distance(seven, p) < median for p in phonemes(texts))
    assert "eleven" in texts


def test_close_word_count_is_honoured(vocab):
    assert len(confusable_texts("computer", vocab, close_words=3)) == 3
    assert confusable_texts("computer", vocab, close_words=0) == []
    two_words = confusable_texts("hey computer", vocab, close_words=0)
    assert two_words == ["hey", "computer", "hey hey", "computer computer"]


def test_confusable_texts_are_deterministic(vocab, monkeypatch):
    first = confusable_texts("hey jarvis", vocab)
    monkeypatch.setattr(phonetics, "_cache", {})
    assert confusable_texts("hey jarvis", vocab) == first
    assert confusable_texts("hey jarvis", list(reversed(vocab))) == first


def test_a_phrase_without_words_is_a_config_error(vocab):
    with pytest.raises(ConfigError, match="no words"):
        confusable_texts(" ?! ", vocab)
