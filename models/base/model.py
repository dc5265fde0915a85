"""The base recognizer: the embedding network plus its heads, trained, saved and loaded.

This module only loads, runs and saves models (numpy and the engine's layers), so the agent can
use it without the training machinery; `models.base.training` trains them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kernels.errors import ModelError
from kernels.network import Network, Softmax
from models.base.architecture import BaseConfig, build_base, build_head
from models.nn.checkpoint import Manifest, load_model, save_model
from models.nn.layers import Sequential, to_inference

ARCHITECTURE_NAME = "dscnn"
EMBED_BATCH = 512
COMMANDS_HEAD = "commands"


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
            self.base.forward(
                features[i : i + EMBED_BATCH, ..., None].astype(np.float32), training=False
            )
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
        """Write the base and its heads with a manifest (see `models.nn.checkpoint`)."""
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
