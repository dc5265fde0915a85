"""The training loop: it learns, resumes bit-exactly, stops early, and weighs classes."""

import numpy as np
import pytest

from kernels.errors import ModelError
from models.nn.layers import BatchNorm, Conv2d, Dense, GlobalAvgPool, ReLU, Sequential
from models.nn.trainer import TrainConfig, Trainer, class_weights, evaluate, spec_augment
from models.speech.corpus import Corpus

FRAMES, MELS, CLASSES = 97, 40, 3
ARCH = {"name": "tiny", "args": {}}
LABELS = ["time_stripes", "freq_stripes", "plain"]


def texture_corpus(n: int, seed: int) -> Corpus:
    """Noise with stripes along time (class 0), along frequency (class 1), or none (class 2)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    features = rng.normal(-8, 1, (n, FRAMES, MELS))
    stripes = 2 * np.cos(np.pi * np.arange(max(FRAMES, MELS)) / 2)  # period 4
    features[labels == 0] += stripes[:MELS][None, None, :]
    features[labels == 1] += stripes[:FRAMES][None, :, None]
    return Corpus(features.astype(np.float16), labels.astype(np.int16), tuple(LABELS))


def tiny_model(seed: int = 0) -> Sequential:
    rng = np.random.default_rng(seed)
    return Sequential([
        Conv2d(1, 6, (5, 5), stride=(3, 3), bias=False, rng=rng), BatchNorm(6), ReLU(),
        GlobalAvgPool(), Dense(6, CLASSES, rng=rng, init="lecun"),
    ])  # fmt: skip


CONFIG = TrainConfig(epochs=4, batch_size=16, lr=1e-2, warmup_epochs=0.5, patience=10, seed=3)
TRAIN, VALIDATION = texture_corpus(160, 1), texture_corpus(60, 2)


def train(config=CONFIG, checkpoint=None, model=None):
    trainer = Trainer(
        model or tiny_model(), config, architecture=ARCH, labels=LABELS, checkpoint=checkpoint
    )
    return trainer, trainer.fit(TRAIN, VALIDATION)


def test_training_learns_a_separable_task():
    before = evaluate(tiny_model(), VALIDATION)[1]
    trainer, history = train()
    assert len(history) == CONFIG.epochs
    assert history[-1].train_loss < history[0].train_loss
    assert max(r.val_accuracy for r in history) > 0.9 > before
    # the model is left holding its best epoch's weights
    assert evaluate(trainer.model, VALIDATION)[1] == max(r.val_accuracy for r in history)


def test_interrupted_training_resumes_bit_exactly(tmp_path):
    reference, reference_history = train()
    checkpoint = tmp_path / "train.npz"

    def interrupt_after_two(record):
        if record.epoch == 2:
            raise KeyboardInterrupt  # as Ctrl-C or the end of a session would

    trainer = Trainer(tiny_model(), CONFIG, architecture=ARCH, labels=LABELS, checkpoint=checkpoint)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(TRAIN, VALIDATION, on_epoch=interrupt_after_two)
    # a fresh process: another initialisation, restored from the checkpoint
    resumed = Trainer(
        tiny_model(seed=99), CONFIG, architecture=ARCH, labels=LABELS, checkpoint=checkpoint
    )
    assert resumed.state.epoch == 2
    history = resumed.fit(TRAIN, VALIDATION)
    assert [r.val_accuracy for r in history] == [r.val_accuracy for r in reference_history]
    assert [r.train_loss for r in history] == [r.train_loss for r in reference_history]
    for name, value in reference.model.state_dict().items():
        np.testing.assert_array_equal(resumed.model.state_dict()[name], value)


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path):
    checkpoint = tmp_path / "train.npz"
    train(TrainConfig(**{**CONFIG.__dict__, "epochs": 1}), checkpoint)
    with pytest.raises(ModelError, match="another training config"):
        Trainer(tiny_model(), CONFIG, architecture=ARCH, labels=LABELS, checkpoint=checkpoint)
    config_one = TrainConfig(**{**CONFIG.__dict__, "epochs": 1})
    with pytest.raises(ModelError, match="other classes"):
        Trainer(
            tiny_model(),
            config_one,
            architecture=ARCH,
            labels=["a", "b", "c"],
            checkpoint=checkpoint,
        )


def test_early_stopping_when_validation_stops_improving():
    frozen = TrainConfig(**{**CONFIG.__dict__, "epochs": 30, "lr": 1e-12, "patience": 2})
    _, history = train(frozen)
    accuracies = [r.val_accuracy for r in history]
    best_epoch = accuracies.index(max(accuracies)) + 1
    assert len(history) < frozen.epochs
    assert len(history) == best_epoch + frozen.patience


def test_class_weights_balance_the_classes():
    labels = np.array([0, 0, 0, 1, 2, 2])
    weights = class_weights(labels, 4)
    np.testing.assert_allclose(weights[:3], [6 / 9, 6 / 3, 6 / 6])
    assert weights[3] == 0
    np.testing.assert_allclose(np.bincount(labels, minlength=4) * weights, [2, 2, 2, 0])


def test_spec_augment_masks_bands_with_the_window_mean():
    config = TrainConfig(time_masks=1, max_time_mask=10, freq_masks=1, max_freq_mask=5)
    batch = np.random.default_rng(0).normal(size=(8, FRAMES, MELS, 1)).astype(np.float32)
    means = batch.mean(axis=(1, 2, 3))
    masked = spec_augment(batch.copy(), config, np.random.default_rng(1))
    again = spec_augment(batch.copy(), config, np.random.default_rng(1))
    np.testing.assert_array_equal(masked, again)
    changed = masked != batch
    assert changed.any()
    for i in range(8):
        np.testing.assert_allclose(masked[i][changed[i]], means[i])
        assert changed[i].sum() <= 10 * MELS + 5 * FRAMES


def test_training_on_wgpu_follows_the_numpy_engine(gpu):
    config = TrainConfig(**{**CONFIG.__dict__, "epochs": 2})
    numpy_run = Trainer(tiny_model(), config, architecture=ARCH, labels=LABELS, engine="numpy")
    wgpu_run = Trainer(tiny_model(), config, architecture=ARCH, labels=LABELS, engine="wgpu")
    numpy_history = numpy_run.fit(TRAIN, VALIDATION)
    wgpu_history = wgpu_run.fit(TRAIN, VALIDATION)
    for a, b in zip(numpy_history, wgpu_history, strict=True):
        assert b.train_loss == pytest.approx(a.train_loss, rel=1e-3)
        assert b.val_loss == pytest.approx(a.val_loss, rel=1e-3)
    for name, value in numpy_run.model.state_dict().items():
        np.testing.assert_allclose(wgpu_run.model.state_dict()[name], value, rtol=1e-3, atol=1e-3)


def test_unknown_engine_is_refused():
    with pytest.raises(ModelError, match="engine: got 'cuda'"):
        Trainer(tiny_model(), CONFIG, architecture=ARCH, labels=LABELS, engine="cuda")
