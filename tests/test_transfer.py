"""Transfer learning: new words from a few examples on the base model's embedding."""

import numpy as np
import pytest

from dsp.features import log_mel
from kernels.errors import ModelError
from models.base.architecture import BaseConfig, build_base, build_head
from models.base.model import BaseModel
from models.base.transfer import BACKGROUND, TransferRecognizer, example_window
from models.nn.layers import Sequential
from models.nn.trainer import TrainConfig, Trainer
from models.speech.augment import AugmentConfig, Augmenter, colored_noise
from models.speech.corpus import Corpus
from tests.conftest import tone

SR = 16_000
SMALL = BaseConfig(first_channels=8, channels=16, blocks=1, embedding_dim=16)


def pretext_corpus(n: int, seed: int) -> Corpus:
    """Sounds the base learns on: tones at pitches the recognizer never uses, and noise, augmented
    as the real base's training data is, so its embedding is robust to level, noise and rooms."""
    rng = np.random.default_rng(seed)
    augmenter = Augmenter(AugmentConfig(pitch_prob=0.0))  # pitch is what tells these classes apart
    pitches = (500.0, 1000.0, 1600.0, 6000.0)
    labels = rng.integers(0, len(pitches) + 1, n)
    clips = []
    for label in labels:
        if label == len(pitches):
            clips.append(0.05 * rng.standard_normal(SR // 2).astype(np.float32))
        else:
            pitch = pitches[label] * rng.uniform(0.9, 1.1)
            clips.append(augmenter(tone(pitch, rng.uniform(0.2, 0.5), SR, amplitude=0.4), rng))
    features = np.stack([log_mel(example_window(c)) for c in clips]).astype(np.float16)
    return Corpus(
        features, labels.astype(np.int16), tuple(f"c{k}" for k in range(len(pitches) + 1))
    )


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A small base trained on other sounds: the recognizer's words are new to it."""
    rng = np.random.default_rng(0)
    model = BaseModel(SMALL, build_base(SMALL, rng))
    classifier = Sequential([*model.base.layers, *build_head(SMALL.embedding_dim, 5, rng).layers])
    config = TrainConfig(
        epochs=6, batch_size=16, lr=1e-2, warmup_epochs=0, patience=6, time_masks=0, freq_masks=0
    )
    Trainer(classifier, config, architecture={}, labels=[f"c{k}" for k in range(5)]).fit(
        pretext_corpus(400, 1), pretext_corpus(80, 2)
    )
    model.save(tmp_path_factory.mktemp("base") / "base.npz", recipe={}, metrics={})
    return model


def best(probabilities: dict[str, float]) -> str:
    return max(probabilities, key=probabilities.get)


def low_word(rng):  # a 0.4 s low hum at a random level and pitch
    return tone(rng.uniform(180, 260), 0.4, SR, amplitude=rng.uniform(0.2, 0.6))


def high_word(rng):  # a 0.3 s high whistle
    return tone(rng.uniform(2500, 3500), 0.3, SR, amplitude=rng.uniform(0.2, 0.6))


def trained(base, *, fine_tune=False, examples=4, seed=0):
    rng = np.random.default_rng(seed)
    recognizer = TransferRecognizer(base, "test")
    for _ in range(examples):
        recognizer.add_example("hum", low_word(rng))
        recognizer.add_example("whistle", high_word(rng))
    recognizer.train(fine_tune_last_block=fine_tune, seed=seed)
    return recognizer


def test_learns_new_words_from_a_few_examples(base):
    recognizer = trained(base)
    assert recognizer.words == ["hum", "whistle", BACKGROUND]
    assert recognizer.count_examples() == {"hum": 4, "whistle": 4}
    rng = np.random.default_rng(42)
    hits = sum(best(recognizer.predict(low_word(rng))) == "hum" for _ in range(10))
    hits += sum(best(recognizer.predict(high_word(rng))) == "whistle" for _ in range(10))
    assert hits >= 16  # chance is 10 of 20; seeds 0-5 score 17-20
    quiet = 0.01 * colored_noise(SR, exponent=1.0, rng=np.random.default_rng(1))  # a quiet room
    assert best(recognizer.predict(quiet)) == BACKGROUND
    assert sum(recognizer.predict(low_word(rng)).values()) == pytest.approx(1.0)


def test_save_and_load_give_the_same_predictions(base, tmp_path):
    recognizer = trained(base, seed=1)
    recognizer.save(tmp_path / "head.npz")
    loaded = TransferRecognizer.load(tmp_path / "head.npz", base)
    clip = low_word(np.random.default_rng(5))
    assert loaded.words == recognizer.words
    assert loaded.predict(clip) == pytest.approx(recognizer.predict(clip), abs=1e-6)


def test_a_head_refuses_another_base(base, tmp_path):
    trained(base, seed=2).save(tmp_path / "head.npz")
    other = BaseModel(SMALL, build_base(SMALL, np.random.default_rng(9)))
    other.save(tmp_path / "other.npz", recipe={}, metrics={})
    with pytest.raises(ModelError, match="another base model"):
        TransferRecognizer.load(tmp_path / "head.npz", other)


def test_fine_tuning_adapts_a_copy_of_the_last_block(base, tmp_path):
    before = {k: v.copy() for k, v in base.base.state_dict().items()}
    recognizer = trained(base, fine_tune=True, seed=3)
    for name, value in base.base.state_dict().items():
        np.testing.assert_array_equal(value, before[name])  # the shared base is untouched
    assert recognizer.tuned_block is not None
    recognizer.save(tmp_path / "tuned.npz")
    loaded = TransferRecognizer.load(tmp_path / "tuned.npz", base)
    clip = high_word(np.random.default_rng(6))
    assert loaded.predict(clip) == pytest.approx(recognizer.predict(clip), abs=1e-6)
    assert best(loaded.predict(clip)) == "whistle"


def test_clear_errors(base):
    recognizer = TransferRecognizer(base, "test", background=False)
    recognizer.add_example("only", tone(300, 0.3, SR))
    with pytest.raises(ModelError, match="at least two words"):
        recognizer.train()
    with pytest.raises(ModelError, match="train the recognizer"):
        recognizer.predict(tone(300, 0.3, SR))
    with pytest.raises(ModelError, match="no sound"):
        recognizer.add_example("silent", np.zeros(8000, np.float32))
    with pytest.raises(ModelError, match="word"):
        recognizer.add_example(BACKGROUND, tone(300, 0.3, SR))


def test_example_window_centres_speech():
    clip = np.concatenate([np.zeros(4000), tone(500, 0.25, SR), np.zeros(9000)]).astype(np.float32)
    window = example_window(clip)
    loud = np.flatnonzero(np.abs(window) > 0.01)
    assert window.size == SR
    assert abs((loud[0] + loud[-1]) / 2 - SR / 2) < 200


def test_few_shot_evaluation_trains_one_recognizer_per_speaker(base, tmp_path):
    import soundfile

    from models.base.evaluation import few_shot_digits_head, fsdd_recordings

    rng = np.random.default_rng(11)
    for speaker, shift in (("ann", 0.95), ("bob", 1.05)):  # two "voices": whistles a little apart
        for take in range(9):
            soundfile.write(tmp_path / f"0_{speaker}_{take}.wav", low_word(rng), SR)
            whistle = tone(3000 * shift, 0.3, SR, amplitude=rng.uniform(0.2, 0.6))
            soundfile.write(tmp_path / f"1_{speaker}_{take}.wav", whistle, SR)
    accuracy = few_shot_digits_head(base, fsdd_recordings(tmp_path), shots=5)
    assert set(accuracy) == {"ann", "bob"}
    assert all(a >= 0.75 for a in accuracy.values())
