"""The wake-word head: a two-layer network on the base's frozen embedding, and its fitting.

`fit_wake_head` trains the head (`models.nn.trainer`) on positive and negative head inputs,
then trains it again with its hardest negatives repeated: false alarms come from a few hard
cases. Inputs are standardized per feature while training (the imported embedding's values
reach +-90 with means far from zero; raw, they saturate the head at once), and the
standardization is folded into the first layer afterwards, so a head reads raw contexts. It
serves training from text (`models.wake.training`) and fine-tuning to a user's voice
(`models.enroll.finetune`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.nn.layers import Sequential
from models.nn.linear_layers import Dense
from models.nn.norm_layers import ReLU
from models.nn.trainer import EpochRecord, TrainConfig, Trainer, TrainingEngine
from models.speech.corpus import Corpus
from models.wake.examples import Progress
from models.wake.model import WakeHead
from models.wake.recipe import WakeRecipe


def _split(
    x: np.ndarray, y: np.ndarray, share: float, rng: np.random.Generator
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    order = rng.permutation(y.size)
    n_val = max(1, int(share * y.size))
    val, train = order[:n_val], order[n_val:]
    return (x[train], y[train]), (x[val], y[val])


@dataclass(frozen=True)
class Standardization:
    """Per-feature mean and scale of the training inputs."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> Standardization:
        """Of the rows of ``x`` [n, d]."""
        mean = x.mean(axis=0, dtype=np.float64)
        scale = x.std(axis=0, dtype=np.float64) + 1e-3
        return cls(mean.astype(np.float32), scale.astype(np.float32))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Standardized rows."""
        return ((x - self.mean) / self.scale).astype(np.float32)

    def fold(self, head: WakeHead) -> WakeHead:
        """The head on standardized inputs as one on raw inputs."""
        w1 = head.w1 / self.scale[:, None]
        return WakeHead(w1, head.b1 - self.mean @ w1, head.w2, head.b2)

    def unfold(self, head: WakeHead) -> WakeHead:
        """A head on raw inputs as one on standardized inputs (`fold`'s inverse)."""
        return WakeHead(
            head.w1 * self.scale[:, None], head.b1 + self.mean @ head.w1, head.w2, head.b2
        )


TEMPERATURES = np.geomspace(0.25, 64.0, 161)
"""Temperatures `fit_temperature` tries."""


def fit_temperature(head: WakeHead, x: np.ndarray, y: np.ndarray) -> float:
    """The temperature that makes the head's probabilities best match held-out labels.

    A head trained to separate thousands of examples ends far too sure of itself: its margins
    reach tens of logits, so the scores of real phrases and of false alarms all crowd into
    (0.9999, 1) and a threshold cannot tell them apart. Dividing the margin by the temperature
    with the least log-loss on the held-out rows keeps the order of scores and spreads them
    where the threshold has to choose (Guo et al. 2017, "On calibration of modern neural
    networks").
    """
    hidden = np.maximum(x @ head.w1 + head.b1, 0.0)
    logits = hidden @ head.w2 + head.b2
    margin = (logits[:, 1] - logits[:, 0]).astype(np.float64)
    sign = np.where(y == 1, 1.0, -1.0)
    losses = [float(np.mean(np.logaddexp(0.0, -sign * margin / t))) for t in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(losses))])


def _fit_once(
    x_train: np.ndarray,
    y_train: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray],
    labels: tuple[str, str],
    recipe: WakeRecipe,
    init: WakeHead | None,
    lr: float,
    engine: TrainingEngine,
    progress: Progress | None,
) -> tuple[WakeHead, list[EpochRecord]]:
    rng = np.random.default_rng(recipe.seed)
    hidden = init.w1.shape[1] if init is not None else recipe.hidden
    head = Sequential(
        [
            Dense(x_train.shape[1], hidden, rng=rng),
            ReLU(),
            Dense(hidden, 2, rng=rng, init="lecun"),
        ]
    )
    if init is not None:
        head.load_state_dict(init.state())
    config = TrainConfig(
        epochs=recipe.epochs, batch_size=256, lr=lr, warmup_epochs=0, patience=10,
        time_masks=0, freq_masks=0, seed=recipe.seed,
    )  # fmt: skip
    trainer = Trainer(
        head, config, architecture={"name": "wake-head", "args": {}}, labels=list(labels),
        engine=engine,
    )  # fmt: skip

    def on_epoch(record: EpochRecord) -> None:
        if progress is not None:
            progress("training", record.epoch, recipe.epochs)

    x_val, y_val = validation
    history = trainer.fit(
        Corpus(x_train, y_train, labels), Corpus(x_val, y_val, labels), on_epoch=on_epoch
    )
    return WakeHead.from_state(head.state_dict()), history


def fit_wake_head(
    positives: np.ndarray,
    negatives: np.ndarray,
    *,
    labels: tuple[str, str],
    recipe: WakeRecipe,
    init: WakeHead | None = None,
    lr: float = 3e-3,
    engine: TrainingEngine = "numpy",
    progress: Progress | None = None,
) -> tuple[WakeHead, dict[str, Any]]:
    """Train a head on positive and negative contexts, then again with the hard negatives.

    A tenth of the rows is held out for early stopping. ``init`` starts from a trained head
    (fine-tuning) instead of random weights; ``engine`` is where the steps run
    (`models.nn.trainer.Trainer`: ``"auto"`` is wgpu where a real GPU exists). Returns the head
    and training metrics.
    """
    rng = np.random.default_rng(recipe.seed)
    x = np.concatenate([positives, negatives]).astype(np.float32)
    y = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))]).astype(np.int16)
    standard = Standardization.of(x)
    x = standard.apply(x)
    init = standard.unfold(init) if init is not None else None
    (x_train, y_train), validation = _split(x, y, 0.1, rng)
    head, history = _fit_once(
        x_train, y_train, validation, labels, recipe, init, lr, engine, progress
    )
    if recipe.hard_negative_copies > 0:
        scores = head.scores(x_train)
        negative = np.flatnonzero(y_train == 0)
        hard = negative[np.argsort(scores[negative])[::-1]]
        hard = hard[: max(1, int(recipe.hard_negative_share * hard.size))]
        extra = np.tile(hard, recipe.hard_negative_copies)
        x_train = np.concatenate([x_train, x_train[extra]])
        y_train = np.concatenate([y_train, y_train[extra]])
        head, history = _fit_once(
            x_train, y_train, validation, labels, recipe, init, lr, engine, progress
        )
    x_val, y_val = validation
    temperature = fit_temperature(head, x_val, y_val)
    head = WakeHead(head.w1, head.b1, head.w2 / temperature, head.b2 / temperature)
    val_scores = head.scores(x_val)
    head = standard.fold(head)
    return head, {
        "temperature": round(temperature, 4),
        "validation_accuracy": max(r.val_accuracy for r in history),
        "validation_positive_recall_at_0.5": float(np.mean(val_scores[y_val == 1] >= 0.5)),
        "epochs": len(history),
    }
