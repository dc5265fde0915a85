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
from models.nn.manifest import ListOf, MapOf, Number, Record, Text, validate_manifest

ARCHITECTURE_NAME = "dscnn"
EMBED_BATCH = 512
COMMANDS_HEAD = "commands"
MAX_HEADS = 8
"""Most heads a base model file may carry."""
MAX_CLASSES = 4096
"""Most classes of one head."""

_LABELS = ListOf(Text(), MAX_CLASSES, min_items=1)
BASE_SCHEMA = Record(
    {
        "architecture": Record(
            {
                "name": Text(),
                "args": Record(
                    {
                        "first_channels": Number(1, 256, integer=True),
                        "channels": Number(1, 512, integer=True),
                        "blocks": Number(0, 16, integer=True),
                        "embedding_dim": Number(1, 1024, integer=True),
                    }
                ),
                "heads": MapOf(Number(1, MAX_CLASSES, integer=True), MAX_HEADS),
            }
        ),
        "extra": Record({"head_labels": MapOf(_LABELS, MAX_HEADS)}, open=True),
    },
    open=True,
)
"""The fields of a base model's manifest that `BaseModel.load` builds from, with their bounds
(generous multiples of the shipped model's `BaseConfig`, so memory stays bounded whatever a file
says)."""


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
        """Read a base model file, checking checksum, front end, architecture and manifest.

        Raises
        ------
        ModelError
            The file is missing, corrupt or for another front end (see
            `models.nn.checkpoint.load_model`), its architecture is unknown, its manifest breaks
            `BASE_SCHEMA` or contradicts itself, or its weights do not fit the architecture.
        """
        arrays, manifest = load_model(path, kind="base")
        if manifest.architecture.get("name") != ARCHITECTURE_NAME:
            raise ModelError(
                f"{path}: architecture {manifest.architecture.get('name')!r} is unknown"
            )
        validate_manifest(path, manifest.__dict__, BASE_SCHEMA)
        head_labels: dict[str, list[str]] = manifest.extra["head_labels"]
        counts = {name: len(labels) for name, labels in head_labels.items()}
        if manifest.architecture["heads"] != counts:
            raise ModelError(
                f"{path}: manifest architecture.heads: got {manifest.architecture['heads']}, "
                f"expected {counts} (the sizes of extra.head_labels)"
            )
        config = BaseConfig(**manifest.architecture["args"])
        rng = np.random.default_rng(0)  # weights are overwritten by the file's
        model = cls(config, build_base(config, rng), manifest=manifest)
        try:
            model.base.load_state_dict(_part(arrays, "base/"))
            for name, labels in head_labels.items():
                head = build_head(config.embedding_dim, len(labels), rng)
                head.load_state_dict(_part(arrays, f"head/{name}/"))
                model.heads[name], model.head_labels[name] = head, list(labels)
        except ModelError as err:
            raise ModelError(
                f"{path}: weights do not fit the manifest's architecture: {err}"
            ) from err
        return model


def _part(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}
