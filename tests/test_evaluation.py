"""Evaluation helpers: FSDD parsing, windows, confusion counts, few-shot prototypes."""

import numpy as np
import pytest
import soundfile

from kernels.errors import AudioError
from models.base.evaluation import (
    Recording,
    centered_window,
    confusion,
    features_of,
    few_shot_digits,
    fsdd_recordings,
)
from tests.conftest import fsdd_files, tone


def test_fsdd_names_are_parsed_and_others_ignored(tmp_path):
    for name in ("3_jackson_12.wav", "0_theo_0.wav", "readme.wav", "x_y_z.wav"):
        soundfile.write(tmp_path / name, tone(300, 0.1, 8000), 8000)
    found = fsdd_recordings(tmp_path)
    assert [(r.digit, r.speaker, r.take) for r in found] == [(0, "theo", 0), (3, "jackson", 12)]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AudioError, match="no FSDD recordings"):
        fsdd_recordings(empty)


def test_centered_window_pads_and_crops():
    short = np.ones(400, np.float32)
    out = centered_window(short, length=1000)
    assert out.size == 1000 and out[300:700].all() and not out[:300].any() and not out[700:].any()
    long = np.arange(3000, dtype=np.float32)
    np.testing.assert_array_equal(centered_window(long, length=1000), long[1000:2000])


def test_confusion_counts_pairs():
    matrix = confusion(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [0, 1, 0]])


def synthetic_speakers(noise: float, seed: int = 0, speaker_offset: float = 0.5):
    """Embeddings: one direction per digit, shifted per speaker, plus noise."""
    rng = np.random.default_rng(seed)
    digit_dirs = rng.normal(size=(10, 16))
    recordings, rows = [], []
    for speaker in ("ann", "bob"):
        offset = rng.normal(size=16) * speaker_offset
        for digit in range(10):
            for take in range(12):
                recordings.append(Recording(None, digit, speaker, take))
                rows.append(digit_dirs[digit] + offset + noise * rng.normal(size=16))
    return np.array(rows, np.float32), recordings


def test_few_shot_prototypes_separate_clusters_and_not_noise():
    clean, recordings = synthetic_speakers(noise=0.1)
    accuracy = few_shot_digits(clean, recordings, shots=5)
    assert accuracy == {"ann": 1.0, "bob": 1.0}
    rng = np.random.default_rng(1)
    noise = rng.normal(size=clean.shape).astype(np.float32)
    chance = few_shot_digits(noise, recordings, shots=5)
    assert all(a < 0.35 for a in chance.values())


def test_real_recordings_become_one_second_windows():
    files = fsdd_files("*_jackson_0.wav")[:3]
    recordings = [Recording(p, int(p.name[0]), "jackson", 0) for p in files]
    features = features_of(recordings)
    assert features.shape == (3, 97, 40)
    assert np.isfinite(features).all()


def test_centring_makes_prototypes_blind_to_a_per_speaker_shift():
    embeddings, recordings = synthetic_speakers(noise=1.0, seed=3)
    shift = np.zeros_like(embeddings)
    for i, r in enumerate(recordings):  # each speaker's embeddings moved by their own vector
        shift[i] = 5.0 * np.random.default_rng([ord(c) for c in r.speaker]).normal(
            size=embeddings.shape[1]
        )
    moved = embeddings + shift
    assert few_shot_digits(moved, recordings) == few_shot_digits(embeddings, recordings)
    assert few_shot_digits(moved, recordings, center=False) != few_shot_digits(
        embeddings, recordings, center=False
    )


def test_balanced_accuracy_is_mean_recall_over_present_classes():
    from models.base.evaluation import balanced_accuracy

    matrix = np.array([[8, 2, 0], [0, 1, 1], [0, 0, 0]])
    assert balanced_accuracy(matrix) == pytest.approx((0.8 + 0.5) / 2)


def test_evaluation_recipes_draw_on_the_base_recipe():
    from models.base.evaluation import commands_recipe, digit_recipe
    from models.speech.corpus import CorpusRecipe
    from models.speech.dataset import COMMAND_WORDS, DIGIT_WORDS, load_vocabulary

    base = CorpusRecipe(words=load_vocabulary(), seed=7)
    digits = digit_recipe(base)
    assert digits.words == DIGIT_WORDS and digits.seed == 7 and digits.speech_share == 0
    commands = commands_recipe(base)
    assert commands.words[:10] == COMMAND_WORDS
    unknown = commands.words[10:]
    assert len(unknown) == 10 and not set(unknown) & set(COMMAND_WORDS)
    assert set(unknown) <= set(base.words)
