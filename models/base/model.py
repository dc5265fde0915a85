"""The base recognizer: the embedding network plus its heads, trained, saved and loaded.

This module only loads, runs and saves models (numpy and the engine's layers), so the agent can
use it without the training machinery; `models.base.training` trains them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dsp.constants import LIVE_FRONT_END, LOG_FLOOR
from dsp.features import LogMelStream, log_mel
from kernels.errors import ModelError
from kernels.network import Network, Softmax
from kernels.runtime import Backend, create_engine
from models.base.architecture import WINDOW_FRAMES, BaseConfig, build_base, build_head
from models.base.geometry import Geometry, WindowEmbedder
from models.nn.checkpoint import Manifest, load_model, save_model
from models.nn.layers import Sequential, to_inference
from models.nn.manifest import ListOf, MapOf, Number, Record, Text, validate_manifest

ARCHITECTURE_NAME = "dscnn"
DSCNN_GEOMETRY = Geometry(
    LIVE_FRONT_END, window_frames=WINDOW_FRAMES, hop_frames=10, context_windows=3,
    context_stride_hops=5, db_per_unit=10 / np.log(10),
)  # fmt: skip
"""1 s windows every 100 ms; a head joins 3 of them 0.5 s apart (about 2 s)."""
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
    name = ARCHITECTURE_NAME
    geometry = DSCNN_GEOMETRY

    @property
    def sha256(self) -> str:
        """The model file's checksum ("unsaved" before it is saved or loaded)."""
        return self.manifest.sha256 if self.manifest is not None else "unsaved"

    @property
    def dim(self) -> int:
        """Values of one embedding."""
        return self.config.embedding_dim

    def features(self, audio: np.ndarray) -> np.ndarray:
        """40-band log-mel frames (`dsp.features.log_mel`)."""
        return log_mel(audio)

    def frame_stream(self) -> LogMelStream:
        """The streaming 40-band front end."""
        return LogMelStream()

    def silence_frames(self, n: int) -> np.ndarray:
        """Frames of digital silence."""
        return np.full((n, LIVE_FRONT_END.n_mels), np.log(LOG_FLOOR), np.float32)

    def hop_embedder(self, backend: Backend = "auto") -> WindowEmbedder:
        """The whole 1 s window through the network (numpy or wgpu) on every hop."""
        engine = create_engine(self.inference_network(), backend=backend)
        return WindowEmbedder(engine, self.geometry)

    def embed_frames(self, features: np.ndarray) -> np.ndarray:
        """Every hop's embedding of a stream's frames [frames, 40] -> [hops, dim]."""
        return self.embed(self.geometry.hop_windows(features))

    def embed_examples(self, features: np.ndarray) -> np.ndarray:
        """Head inputs of examples [n, context_frames, 40] -> [n, 3 * dim]."""
        if features.shape[0] == 0:
            return np.zeros((0, self.geometry.context_windows * self.dim), np.float32)
        windows = self.geometry.example_windows(features)
        return self.embed(windows).reshape(features.shape[0], -1)

    def commands_head(self) -> DscnnCommands | None:
        """The built-in speech-commands head, None when this model has none."""
        if COMMANDS_HEAD not in self.heads:
            return None
        return DscnnCommands(self.head_labels[COMMANDS_HEAD], self.heads[COMMANDS_HEAD],
                             self.sha256)  # fmt: skip

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


@dataclass(frozen=True)
class DscnnCommands:
    """The DS-CNN's speech-commands head, as the daemon's built-in command words use it."""

    labels: list[str]
    head: Sequential
    base_sha256: str

    def probabilities(self, base: BaseModel, audio: np.ndarray) -> np.ndarray:
        """Highest probability of every class over the audio's 1 s windows [labels]."""
        windows = base.geometry.hop_windows(base.features(audio))
        if windows.shape[0] == 0:
            return np.zeros(len(self.labels), np.float32)
        logits = self.head.forward(base.embed(windows), training=False)
        logits = logits - logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        return probabilities.max(axis=0)


def _part(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}
