"""Whole-step parity: the same AdamW training steps in numpy and on the wgpu training engine.

A small version of the base network (`models.base.architecture`) plus a classifier head takes the
same steps (same batch, class weights, learning rates) with the numpy loop of
`models.nn.trainer.Trainer` and with `models.nn.gpu_training.GpuTrainingStep`; after every step the
loss, the correct count, every parameter, running statistic, gradient and Adam moment agree to
1e-4.

Batch-norm scales and shifts start from random values rather than (1, 0): at (1, 0), a batch norm
whose output reaches the next batch norm through ReLU and a bias-free layer has a gamma gradient
that is exactly zero (the loss is invariant to scaling gamma and beta together), so both engines
would compute rounding noise there, which Adam's normalisation turns into steps of +-lr.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from kernels.device import GpuDevice
from kernels.errors import ModelError
from models.base.architecture import BaseConfig, build_base, build_head
from models.nn.gpu_training import GpuTrainingStep
from models.nn.layers import BatchNorm, Sequential
from models.nn.losses import softmax_cross_entropy
from models.nn.optim import SGD, Adam

RTOL = ATOL = 1e-4
CONFIG = BaseConfig(first_channels=8, channels=16, blocks=1, embedding_dim=12)
CLASSES = 10
BATCH = 6
LEARNING_RATES = (1e-3, 2e-3, 5e-4)
WEIGHT_DECAY = 0.01


def _model(seed: int, dropout: float = 0.0) -> Sequential:
    rng = np.random.default_rng(seed)
    base = build_base(CONFIG, rng)
    head = build_head(CONFIG.embedding_dim, CLASSES, rng, dropout=dropout)
    model = Sequential([*base.layers, *head.layers])
    for layer in model.layers:
        if isinstance(layer, BatchNorm):
            layer.params["gamma"][...] = rng.uniform(0.5, 1.5, layer.c)
            layer.params["beta"][...] = rng.normal(0.0, 0.5, layer.c)
    return model


def _batch(seed: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(-4.0, 2.0, (size, *CONFIG.input_shape)).astype(np.float32)
    labels = rng.integers(0, CLASSES, size)
    weights = (0.5 + rng.random(CLASSES)).astype(np.float32)
    return x, labels, weights


def _numpy_step(model, optimizer, x, labels, weights, lr) -> tuple[float, int]:
    """The step of `models.nn.trainer.Trainer._epoch`."""
    logits = model.forward(x, training=True)
    loss, grad = softmax_cross_entropy(logits, labels, weights)
    model.backward_params(grad)
    optimizer.lr = lr
    optimizer.step()
    return loss, int(np.sum(np.argmax(logits, axis=1) == labels))


def _assert_same(numpy_model, numpy_opt, gpu_model, gpu_opt, step: int) -> None:
    expected, actual = numpy_model.state_dict(), gpu_model.state_dict()
    assert expected.keys() == actual.keys()
    for name, value in expected.items():
        np.testing.assert_allclose(
            actual[name], value, rtol=RTOL, atol=ATOL, err_msg=f"step {step}: {name}"
        )
    for (name, _, grad), (_, _, gpu_grad) in zip(
        numpy_model.parameters(), gpu_model.parameters(), strict=True
    ):
        scale = max(1.0, float(np.abs(grad).max()))
        np.testing.assert_allclose(
            gpu_grad, grad, rtol=RTOL, atol=ATOL * scale, err_msg=f"step {step}: grad {name}"
        )
    for slot in ("exp_avg", "exp_avg_sq"):
        for name, value in numpy_opt.state[slot].items():
            np.testing.assert_allclose(
                gpu_opt.state[slot][name], value, rtol=RTOL, atol=ATOL,
                err_msg=f"step {step}: {slot} {name}",
            )  # fmt: skip
    assert gpu_opt.steps == numpy_opt.steps == step


def _pair(dropout: float = 0.0):
    numpy_model, gpu_model = _model(0, dropout), _model(0, dropout)
    numpy_opt = Adam(numpy_model.parameters(), weight_decay=WEIGHT_DECAY)
    gpu_opt = Adam(gpu_model.parameters(), weight_decay=WEIGHT_DECAY)
    return numpy_model, numpy_opt, gpu_model, gpu_opt


def test_training_steps_match_numpy(gpu: GpuDevice) -> None:
    numpy_model, numpy_opt, gpu_model, gpu_opt = _pair()
    runner = GpuTrainingStep(gpu_model, gpu_opt, BATCH, input_shape=CONFIG.input_shape, gpu=gpu)
    x, labels, weights = _batch(1, BATCH)
    for step, lr in enumerate(LEARNING_RATES, start=1):
        expected_loss, expected_correct = _numpy_step(
            numpy_model, numpy_opt, x, labels, weights, lr
        )
        loss, correct = runner.step(x, labels, weights, lr)
        np.testing.assert_allclose(loss, expected_loss, rtol=RTOL)
        assert correct == expected_correct
        runner.sync_to_host()
        _assert_same(numpy_model, numpy_opt, gpu_model, gpu_opt, step)
        assert gpu_opt.lr == lr


def test_dropout_and_a_smaller_last_batch_match_numpy(gpu: GpuDevice) -> None:
    numpy_model, numpy_opt, gpu_model, gpu_opt = _pair(dropout=0.3)
    runner = GpuTrainingStep(gpu_model, gpu_opt, BATCH, gpu=gpu)  # input shape from the batch
    for step, size in enumerate((BATCH, BATCH - 1), start=1):
        x, labels, weights = _batch(10 + step, size)
        expected_loss, _ = _numpy_step(numpy_model, numpy_opt, x, labels, weights, 1e-3)
        loss, _ = runner.step(x, labels, weights, 1e-3)
        np.testing.assert_allclose(loss, expected_loss, rtol=RTOL)
        runner.sync_to_host()
        _assert_same(numpy_model, numpy_opt, gpu_model, gpu_opt, step)


def test_state_round_trips_through_the_host(gpu: GpuDevice) -> None:
    numpy_model, numpy_opt, gpu_model, gpu_opt = _pair()
    runner = GpuTrainingStep(gpu_model, gpu_opt, BATCH, input_shape=CONFIG.input_shape, gpu=gpu)
    x, labels, weights = _batch(2, BATCH)
    _numpy_step(numpy_model, numpy_opt, x, labels, weights, 1e-3)
    # A resumed run: the GPU model gets the numpy model's state and optimizer after one step.
    gpu_model.load_state_dict(numpy_model.state_dict())
    gpu_opt.load_state_dict(copy.deepcopy(numpy_opt.state_dict()))
    runner.sync_from_host()
    _numpy_step(numpy_model, numpy_opt, x, labels, weights, 2e-3)
    runner.step(x, labels, weights, 2e-3)
    runner.sync_to_host()
    _assert_same(numpy_model, numpy_opt, gpu_model, gpu_opt, 2)


def test_unsupported_optimizer_and_bad_labels_are_rejected(gpu: GpuDevice) -> None:
    model = _model(0)
    with pytest.raises(ModelError, match="Adam"):
        GpuTrainingStep(model, SGD(model.parameters(), lr=0.1), BATCH, gpu=gpu)  # type: ignore[arg-type]
    runner = GpuTrainingStep(
        model, Adam(model.parameters()), BATCH, input_shape=CONFIG.input_shape, gpu=gpu
    )
    x, labels, weights = _batch(3, BATCH)
    with pytest.raises(ModelError, match="labels"):
        runner.step(x, labels + CLASSES, weights, 1e-3)
    with pytest.raises(ModelError, match="windows"):
        runner.step(np.concatenate([x, x]), np.concatenate([labels, labels]), weights, 1e-3)


def test_training_benchmark_runs(gpu: GpuDevice) -> None:
    from agent.bench.train import bench_training, main

    timings = bench_training(steps=1, batch=2, classes=3)
    assert [t.engine.split()[0] for t in timings] == ["numpy", "wgpu"]
    assert all(t.median_ms > 0 and t.epoch_s > 0 for t in timings)
    assert main(["--steps", "1", "--batch", "2", "--classes", "3", "--engine", "numpy"]) == 0


def test_a_wake_head_fine_tunes_the_same_on_wgpu_as_on_numpy(gpu: GpuDevice) -> None:
    """Enrollment's fine-tuning (`fit_wake_head` from a trained head) on both engines."""
    from dataclasses import replace

    from models.wake.head_training import fit_wake_head
    from models.wake.recipe import SMALL_RECIPE

    rng = np.random.default_rng(3)
    positives = rng.standard_normal((300, 288)).astype(np.float32) + 0.5
    negatives = rng.standard_normal((900, 288)).astype(np.float32)
    recipe = replace(SMALL_RECIPE, epochs=3, hard_negative_copies=1)
    labels = ("_other_", "word")
    start, _ = fit_wake_head(positives, negatives, labels=labels, recipe=recipe)
    heads = {
        engine: fit_wake_head(
            positives, negatives, labels=labels, recipe=recipe, init=start, lr=1e-3,
            engine=engine,
        )[0]
        for engine in ("numpy", "wgpu")
    }  # fmt: skip
    assert not np.allclose(heads["numpy"].w1, start.w1)  # it did train
    for name in ("w1", "b1", "w2", "b2"):
        np.testing.assert_allclose(
            getattr(heads["wgpu"], name), getattr(heads["numpy"], name), rtol=1e-4, atol=1e-5
        )
    with pytest.raises(ModelError, match="engine"):  # the engine reaches the trainer
        fit_wake_head(positives, negatives, labels=labels, recipe=recipe, engine="cuda")  # type: ignore[arg-type]
