"""The base recognizer: the embedding network plus its heads, trained, saved and loaded.

Training happens in two stages. The base network learns to tell every vocabulary word apart
(with silence and running speech as two more classes) through a temporary word head; that task
is what makes its embedding useful for words it has never been told about. Then each shipped
head (the 12 Speech Commands classes) is trained on the frozen embeddings. The saved file holds
the base and the heads, not the word head.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kernels.errors import ModelError
from kernels.network import Network, Softmax
from models.architecture import BaseConfig, build_base, build_head
from models.checkpoint import Manifest, load_model, save_model
from models.corpus import SILENCE, Corpus, CorpusRecipe
from models.dataset import COMMAND_WORDS, SILENCE_LABEL, SPEECH_COMMANDS_LABELS, UNKNOWN_LABEL
from models.layers import Sequential, to_inference
from models.trainer import EpochRecord, TrainConfig, Trainer, TrainingEngine, windows

ARCHITECTURE_NAME = "dscnn"
EMBED_BATCH = 512
COMMANDS_HEAD = "commands"
HEAD_TRAIN_CONFIG = TrainConfig(epochs=40, batch_size=256, lr=3e-3, warmup_epochs=0, patience=8)
"""Heads on frozen embeddings train in seconds: more epochs, bigger batches, no SpecAugment."""


def command_labels(corpus: Corpus) -> np.ndarray:
    """Map a word corpus's labels to the 12 Speech Commands classes (other words -> unknown)."""
    target = {word: SPEECH_COMMANDS_LABELS.index(word) for word in COMMAND_WORDS}
    target[SILENCE] = SPEECH_COMMANDS_LABELS.index(SILENCE_LABEL)
    unknown = SPEECH_COMMANDS_LABELS.index(UNKNOWN_LABEL)
    mapping = np.array([target.get(name, unknown) for name in corpus.label_names], dtype=np.int16)
    return mapping[corpus.labels]


@dataclass
class BaseModel:
    """A base network and named heads on its embedding."""

    config: BaseConfig
    base: Sequential
    heads: dict[str, Sequential] = field(default_factory=dict)
    head_labels: dict[str, list[str]] = field(default_factory=dict)
    manifest: Manifest | None = None

    def embed(self, features: np.ndarray) -> np.ndarray:
        """Embeddings of log-mel windows [n, frames, mels] (float16 or 32) -> float32 [n, dim]."""
        out = [
            self.base.forward(windows(features, slice(i, i + EMBED_BATCH)), training=False)
            for i in range(0, features.shape[0], EMBED_BATCH)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.config.embedding_dim), np.float32)

    def inference_network(self, head: str | None = None) -> Network:
        """The base (and a head, ending in softmax) as a `kernels.network.Network`."""
        if head is None:
            return to_inference(self.base, self.config.input_shape)
        if head not in self.heads:
            raise ModelError(f"head {head!r}: this model has heads {sorted(self.heads)}")
        combined = Sequential([*self.base.layers, *self.heads[head].layers])
        network = to_inference(combined, self.config.input_shape)
        return Network(network.input_shape, (*network.layers, Softmax()))

    def save(self, path: Path, *, recipe: dict[str, Any], metrics: dict[str, Any]) -> Manifest:
        """Write the base and its heads with a manifest (see `models.checkpoint`)."""
        arrays = {f"base/{k}": v for k, v in self.base.state_dict().items()}
        for name, head in self.heads.items():
            arrays |= {f"head/{name}/{k}": v for k, v in head.state_dict().items()}
        architecture = {
            "name": ARCHITECTURE_NAME,
            "args": self.config.as_dict(),
            "heads": {name: len(labels) for name, labels in self.head_labels.items()},
        }
        manifest = Manifest(
            "base", architecture, list(self.head_labels.get(COMMANDS_HEAD, [])),
            recipe=recipe, metrics=metrics, extra={"head_labels": self.head_labels},
        )  # fmt: skip
        self.manifest = save_model(path, arrays, manifest)
        return self.manifest

    @classmethod
    def load(cls, path: Path) -> BaseModel:
        """Read a base model file, checking checksum, front end and architecture."""
        arrays, manifest = load_model(path, kind="base")
        if manifest.architecture.get("name") != ARCHITECTURE_NAME:
            raise ModelError(
                f"{path}: architecture {manifest.architecture.get('name')!r} is unknown"
            )
        config = BaseConfig(**manifest.architecture["args"])
        rng = np.random.default_rng(0)  # weights are overwritten by the file's
        model = cls(config, build_base(config, rng), manifest=manifest)
        model.base.load_state_dict(_part(arrays, "base/"))
        for name, labels in manifest.extra["head_labels"].items():
            head = build_head(config.embedding_dim, len(labels), rng)
            head.load_state_dict(_part(arrays, f"head/{name}/"))
            model.heads[name], model.head_labels[name] = head, list(labels)
        return model


def _part(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}


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
