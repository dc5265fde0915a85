"""Training the base recognizer: the embedding network and its shipped heads.

Training happens in two stages. The base network learns to tell every vocabulary word apart
(with silence and running speech as two more classes) through a temporary word head; that task
is what makes its embedding useful for words it has never been told about. Then each shipped
head (the 12 Speech Commands classes) is trained on the frozen embeddings. The saved file holds
the base and the heads, not the word head.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from models.base.architecture import BaseConfig, build_base, build_head
from models.base.model import ARCHITECTURE_NAME, COMMANDS_HEAD, BaseModel
from models.nn.layers import Sequential
from models.nn.trainer import EpochRecord, TrainConfig, Trainer, TrainingEngine
from models.speech.corpus import SILENCE, Corpus, CorpusRecipe
from models.speech.dataset import (
    COMMAND_WORDS,
    SILENCE_LABEL,
    SPEECH_COMMANDS_LABELS,
    UNKNOWN_LABEL,
)

HEAD_TRAIN_CONFIG = TrainConfig(epochs=40, batch_size=256, lr=3e-3, warmup_epochs=0, patience=8)
"""Heads on frozen embeddings train in seconds: more epochs, bigger batches, no SpecAugment."""


def command_labels(corpus: Corpus) -> np.ndarray:
    """Map a word corpus's labels to the 12 Speech Commands classes (other words -> unknown)."""
    target = {word: SPEECH_COMMANDS_LABELS.index(word) for word in COMMAND_WORDS}
    target[SILENCE] = SPEECH_COMMANDS_LABELS.index(SILENCE_LABEL)
    unknown = SPEECH_COMMANDS_LABELS.index(UNKNOWN_LABEL)
    mapping = np.array([target.get(name, unknown) for name in corpus.label_names], dtype=np.int16)
    return mapping[corpus.labels]


def train_head(
    embeddings: Corpus, validation: Corpus, config: TrainConfig = HEAD_TRAIN_CONFIG
) -> tuple[Sequential, list[EpochRecord]]:
    """Train a dense head on embedding corpora (features [n, dim]); returns it and its history."""
    dim, n_classes = embeddings.features.shape[1], len(embeddings.label_names)
    head = build_head(dim, n_classes, np.random.default_rng(config.seed))
    trainer = Trainer(
        head,
        config,
        architecture={"name": "head", "args": {"dim": dim}},
        labels=list(embeddings.label_names),
    )
    return head, trainer.fit(embeddings, validation)


def train_base_model(
    recipe: CorpusRecipe,
    corpora: dict[str, Corpus],
    *,
    config: BaseConfig | None = None,
    train_config: TrainConfig | None = None,
    checkpoint: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    engine: TrainingEngine = "numpy",
) -> tuple[BaseModel, dict[str, Any]]:
    """Train the base on the word task, then the commands head; returns the model and metrics."""
    config, train_config = config or BaseConfig(), train_config or TrainConfig()
    rng = np.random.default_rng(train_config.seed)
    base = build_base(config, rng)
    word_head = build_head(config.embedding_dim, len(recipe.labels), rng)
    classifier = Sequential([*base.layers, *word_head.layers])
    architecture = {"name": ARCHITECTURE_NAME, "args": config.as_dict(), "recipe": recipe.key()}
    trainer = Trainer(
        classifier,
        train_config,
        architecture=architecture,
        labels=list(recipe.labels),
        checkpoint=checkpoint,
        engine=engine,
    )
    history = trainer.fit(
        corpora["train"], corpora["validation"], progress=progress, on_epoch=on_epoch
    )
    model = BaseModel(config, base)
    embedded = {
        split: Corpus(model.embed(c.features), command_labels(c), SPEECH_COMMANDS_LABELS)
        for split, c in corpora.items()
    }
    head, head_history = train_head(embedded["train"], embedded["validation"])
    model.heads[COMMANDS_HEAD], model.head_labels[COMMANDS_HEAD] = (
        head,
        list(SPEECH_COMMANDS_LABELS),
    )
    metrics = {
        "word_validation_accuracy": max(r.val_accuracy for r in history),
        "epochs": len(history),
        "commands_validation_accuracy": max(r.val_accuracy for r in head_history),
        "history": [asdict(r) for r in history],
    }
    return model, metrics
