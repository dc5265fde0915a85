"""Training loop: minibatches, SpecAugment, class weighting, early stopping, resumable checkpoints.

`Trainer` trains a `models.nn.layers.Sequential` classifier on `models.speech.corpus.Corpus`
features. It is seeded (shuffling, masks, initialisation come from one generator) and saves a
checkpoint after every epoch holding the weights, the optimiser state, the best weights so far, the
generator state and the history, so an interrupted run resumes exactly where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from kernels.errors import ModelError
from models.nn.checkpoint import Manifest, load_model, save_model
from models.nn.layers import Sequential
from models.nn.losses import softmax_cross_entropy
from models.nn.optim import SGD, Adam, cosine_with_warmup
from models.speech.corpus import Corpus

EVAL_BATCH = 256
TrainingEngine = Literal["numpy", "wgpu", "auto"]


def resolve_training_engine(engine: TrainingEngine) -> Literal["numpy", "wgpu"]:
    """``auto`` trains on wgpu where a real GPU exists, on numpy where only a CPU adapter does."""
    if engine not in ("numpy", "wgpu", "auto"):
        raise ModelError(f"engine: got {engine!r}, expected one of numpy, wgpu, auto")
    if engine != "auto":
        return engine
    from kernels.runtime import resolve_backend

    return resolve_backend("auto")


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Parameters
    ----------
    epochs : int
        Most epochs to run.
    batch_size : int
        Windows per step.
    optimizer : {"adam", "sgd"}
        Adam (decoupled weight decay) or SGD with momentum.
    lr : float
        Peak learning rate, reached after ``warmup_epochs`` and decayed by a cosine to 0.
    momentum : float
        SGD momentum.
    weight_decay : float
        Decay of weight matrices (not biases or batch-norm parameters).
    warmup_epochs : float
        Linear warm-up length, in epochs.
    patience : int
        Stop after this many epochs without a better validation accuracy.
    balance_classes : bool
        Weight the loss so every class counts equally, whatever its number of windows.
    time_masks, max_time_mask, freq_masks, max_freq_mask : int
        SpecAugment: masks per window and their largest widths, in frames and mel bands.
    seed : int
        Seeds shuffling and masks.
    """

    epochs: int = 25
    batch_size: int = 64
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 3e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    patience: int = 5
    balance_classes: bool = True
    time_masks: int = 2
    max_time_mask: int = 10
    freq_masks: int = 2
    max_freq_mask: int = 5
    seed: int = 0


@dataclass
class EpochRecord:
    """Figures of one epoch."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    lr: float
    seconds: float


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Weights ``n / (k * count_c)`` so each present class weighs the same; 0 for absent ones."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights.astype(np.float32)


def spec_augment(batch: np.ndarray, config: TrainConfig, rng: np.random.Generator) -> np.ndarray:
    """Mask random time and frequency bands of each window with the window's mean, in place.

    ``batch`` is [shape=(n, frames, mels, 1)]; returns it. Embeddings (2-D) pass unchanged.
    """
    if batch.ndim != 4:
        return batch
    n, frames, mels, _ = batch.shape
    means = batch.mean(axis=(1, 2, 3))
    for i in range(n):
        for _ in range(config.time_masks):
            width = int(rng.integers(0, config.max_time_mask + 1))
            start = int(rng.integers(0, frames - width + 1))
            batch[i, start : start + width] = means[i]
        for _ in range(config.freq_masks):
            width = int(rng.integers(0, config.max_freq_mask + 1))
            start = int(rng.integers(0, mels - width + 1))
            batch[i, :, start : start + width] = means[i]
    return batch


def windows(features: np.ndarray, index: np.ndarray | slice) -> np.ndarray:
    """Corpus rows as float32 network input.

    Log-mel windows [n, frames, mels] gain a channel axis; embeddings [n, dim] pass as they are.
    """
    rows = features[index].astype(np.float32)
    return rows[..., None] if rows.ndim == 3 else rows


def evaluate(
    model: Sequential, corpus: Corpus, weights: np.ndarray | None = None
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` (inference mode) on ``corpus``."""
    losses, correct = 0.0, 0
    n = corpus.labels.size
    for start in range(0, n, EVAL_BATCH):
        logits = model.forward(
            windows(corpus.features, slice(start, start + EVAL_BATCH)), training=False
        )
        labels = corpus.labels[start : start + EVAL_BATCH].astype(np.int64)
        loss, _ = softmax_cross_entropy(logits, labels, weights)
        losses += loss * labels.size
        correct += int(np.sum(np.argmax(logits, axis=1) == labels))
    return losses / max(n, 1), correct / max(n, 1)


@dataclass
class _State:
    epoch: int = 0
    step: int = 0
    best_accuracy: float = -1.0
    best_epoch: int = 0
    history: list[EpochRecord] = field(default_factory=list)


class Trainer:
    """Trains ``model`` with ``config``, checkpointing to ``checkpoint`` after every epoch.

    Parameters
    ----------
    model : Sequential
        A classifier: windows [n, frames, mels, 1] -> logits [n, classes].
    config : TrainConfig
        How to train.
    architecture : dict
        Stored in checkpoints and compared on resume (`models.nn.checkpoint.Manifest.architecture`).
    labels : sequence of str
        Class names, stored in checkpoints.
    checkpoint : Path, optional
        Where to save after each epoch; an existing checkpoint made with the same config and
        architecture is resumed.
    engine : {"numpy", "wgpu", "auto"}
        Where training steps run: earshot's numpy engine, the wgpu training engine
        (`models.nn.gpu_training`, Adam only), or wgpu where a real GPU exists and numpy otherwise.
        Checkpoints are the same either way, so a run may resume on the other engine.
    """

    def __init__(
        self,
        model: Sequential,
        config: TrainConfig,
        *,
        architecture: dict[str, Any],
        labels: list[str],
        checkpoint: Path | None = None,
        engine: TrainingEngine = "numpy",
    ):
        self.model, self.config = model, config
        self.engine = resolve_training_engine(engine)
        self._gpu: Any = None  # a models.nn.gpu_training.GpuTrainingStep once compiled
        self.architecture, self.labels, self.checkpoint = architecture, labels, checkpoint
        self.rng = np.random.default_rng(config.seed)
        optimizer_class = {"adam": Adam, "sgd": SGD}[config.optimizer]
        extra = {"momentum": config.momentum} if config.optimizer == "sgd" else {}
        self.optimizer = optimizer_class(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay, **extra
        )
        self.state = _State()
        self.best_weights = model.state_dict()
        if checkpoint is not None and checkpoint.is_file():
            self._resume(checkpoint)

    def fit(
        self,
        train: Corpus,
        validation: Corpus,
        *,
        progress: Callable[[str, int, int], None] | None = None,
        on_epoch: Callable[[EpochRecord], None] | None = None,
    ) -> list[EpochRecord]:
        """Train until ``epochs`` or early stopping; leave the best weights in the model."""
        c = self.config
        weights = class_weights(train.labels, len(self.labels)) if c.balance_classes else None
        steps_per_epoch = -(-train.labels.size // c.batch_size)
        total_steps = c.epochs * steps_per_epoch
        while self.state.epoch < c.epochs and not self._patience_exhausted():
            record = self._epoch(train, validation, weights, steps_per_epoch, total_steps, progress)
            if on_epoch is not None:
                on_epoch(record)
        self.model.load_state_dict(self.best_weights)
        return self.state.history

    def _patience_exhausted(self) -> bool:
        return self.state.epoch - self.state.best_epoch >= self.config.patience

    def _epoch(
        self,
        train: Corpus,
        validation: Corpus,
        weights: np.ndarray | None,
        steps_per_epoch: int,
        total_steps: int,
        progress: Callable[[str, int, int], None] | None,
    ) -> EpochRecord:
        c, s = self.config, self.state
        start_time = time.monotonic()
        order = self.rng.permutation(train.labels.size)
        loss_sum, correct, seen = 0.0, 0, 0
        stage = f"epoch {s.epoch + 1}/{c.epochs}"
        for batch_index in range(steps_per_epoch):
            index = np.sort(order[batch_index * c.batch_size : (batch_index + 1) * c.batch_size])
            x = spec_augment(windows(train.features, index), c, self.rng)
            labels = train.labels[index].astype(np.int64)
            lr = cosine_with_warmup(
                s.step, total_steps=total_steps, peak_lr=c.lr,
                warmup_steps=round(c.warmup_epochs * steps_per_epoch),
            )  # fmt: skip
            loss, batch_correct = self._step(x, labels, weights, lr)
            s.step += 1
            loss_sum += loss * labels.size
            correct += batch_correct
            seen += labels.size
            if progress is not None:
                progress(stage, batch_index + 1, steps_per_epoch)
        if self._gpu is not None:
            self._gpu.sync_to_host()  # evaluation and checkpoints read the host copies
        val_loss, val_accuracy = evaluate(self.model, validation, weights)
        s.epoch += 1
        record = EpochRecord(
            s.epoch, loss_sum / seen, correct / seen, val_loss, val_accuracy,
            float(self.optimizer.lr), time.monotonic() - start_time,
        )  # fmt: skip
        s.history.append(record)
        if val_accuracy > s.best_accuracy:
            s.best_accuracy, s.best_epoch = val_accuracy, s.epoch
            self.best_weights = self.model.state_dict()
        if self.checkpoint is not None:
            self._save(self.checkpoint)
        return record

    def _step(
        self, x: np.ndarray, labels: np.ndarray, weights: np.ndarray | None, lr: float
    ) -> tuple[float, int]:
        """One optimiser step on a batch; returns (mean loss, correct predictions)."""
        if self.engine == "wgpu":
            if self._gpu is None:  # compiled once, after any resume has loaded the state
                from models.nn.gpu_training import GpuTrainingStep

                self._gpu = GpuTrainingStep(self.model, self.optimizer, self.config.batch_size)
            return self._gpu.step(x, labels, weights, lr)
        logits = self.model.forward(x, training=True)
        loss, grad = softmax_cross_entropy(logits, labels, weights)
        self.model.backward_params(grad)
        self.optimizer.lr = lr
        self.optimizer.step()
        return loss, int(np.sum(np.argmax(logits, axis=1) == labels))

    def _save(self, path: Path) -> None:
        arrays = {f"model/{k}": v for k, v in self.model.state_dict().items()}
        arrays |= {f"best/{k}": v for k, v in self.best_weights.items()}
        arrays |= {f"optimizer/{k}": v for k, v in self.optimizer.state_dict().items()}
        s = self.state
        extra = {
            "train_config": asdict(self.config),
            "epoch": s.epoch,
            "step": s.step,
            "best_accuracy": s.best_accuracy,
            "best_epoch": s.best_epoch,
            "history": [asdict(r) for r in s.history],
            "rng": self.rng.bit_generator.state,
        }
        save_model(
            path, arrays, Manifest("training", self.architecture, list(self.labels), extra=extra)
        )

    def _resume(self, path: Path) -> None:
        arrays, manifest = load_model(path, kind="training")
        saved_config = TrainConfig(**manifest.extra["train_config"])
        if saved_config != self.config or manifest.architecture != self.architecture:
            raise ModelError(
                f"{path}: checkpoint was made with another training config or architecture; "
                "delete it to start afresh"
            )
        if manifest.labels != list(self.labels):
            raise ModelError(
                f"{path}: checkpoint was made for other classes; delete it to start afresh"
            )

        def part(prefix: str) -> dict[str, np.ndarray]:
            return {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}

        self.model.load_state_dict(part("model/"))
        self.optimizer.load_state_dict(part("optimizer/"))
        self.best_weights = part("best/")
        extra = manifest.extra
        self.rng.bit_generator.state = extra["rng"]
        history = [EpochRecord(**r) for r in extra["history"]]
        self.state = _State(
            extra["epoch"], extra["step"], extra["best_accuracy"], extra["best_epoch"], history
        )
