"""The imported base: Google's speech_embedding network on earshot's 32-band front end.

The network (`models.paths.SHIPPED_EMBEDDING`, imported from ONNX by `earshot model import`, see
`models/data/NOTICE`) reads 76 frames x 32 bands of `dsp.embedding_features` log-mel and gives a
96-value embedding. Its time stride (8 frames, 80 ms) is its hop: a stream is embedded every 80 ms,
and `EmbeddingStream` computes only the newest columns of every layer on each hop
(`kernels.streaming`), so the always-on cost is about a ninth of running the whole window::

    base = SpeechEmbedding.load()
    stream = base.stream()
    for chunk in chunks:                          # 16 kHz mono float, any sizes
        for embedding in stream.push(chunk):      # [96] every 80 ms
            ...
    base.embed_audio(recording)                   # [hops, 96], the same values in one batch
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dsp.constants import FrontEndSettings
from dsp.embedding_features import (
    EMBEDDING_DB_DIVISOR,
    EMBEDDING_FRONT_END,
    EMBEDDING_OUTPUT_FLOOR,
    EmbeddingMelStream,
    embedding_log_mel,
)
from kernels.errors import ModelError
from kernels.network import Network
from kernels.runtime import Backend, Engine, create_engine
from kernels.streaming import StreamingNetwork
from models.base.geometry import Geometry
from models.nn.checkpoint import Manifest, load_model
from models.nn.network_file import network_from
from models.paths import SHIPPED_EMBEDDING

HOP_FRAMES = 8
"""Frames between embeddings (80 ms): the network's time stride."""
EMBED_BATCH = 256
"""Windows per engine call when embedding many at once."""
WINDOW_FRAMES = 76
"""Frames one embedding reads (0.775 s)."""
EMBEDDING_GEOMETRY = Geometry(
    EMBEDDING_FRONT_END, window_frames=WINDOW_FRAMES, hop_frames=HOP_FRAMES, context_windows=16,
    context_stride_hops=1, db_per_unit=EMBEDDING_DB_DIVISOR,
)  # fmt: skip
"""A head joins the 16 embeddings of the last 1.98 s, every hop, as openWakeWord's heads do."""
BASE_NAME = "speech_embedding"


@dataclass
class SpeechEmbedding:
    """An imported embedding network and what it reads.

    Attributes
    ----------
    network : Network
        Input [frames, bands, 1], output [1, 1, dim] (or any shape of ``dim`` values).
    front_end : FrontEndSettings
        The front end its input comes from.
    manifest : Manifest or None
        The model file's manifest (source, licence, op list).
    """

    network: Network
    front_end: FrontEndSettings = EMBEDDING_FRONT_END
    manifest: Manifest | None = None
    backend: Backend = "numpy"
    _engine: Engine | None = field(default=None, init=False, repr=False)
    name = BASE_NAME
    geometry = EMBEDDING_GEOMETRY

    @classmethod
    def load(cls, path: Path = SHIPPED_EMBEDDING, *, backend: Backend = "numpy") -> SpeechEmbedding:
        """Read an imported network file (checksum, manifest, front end and layers checked).

        Raises
        ------
        ModelError
            The file is missing or corrupt, is not a network, or was imported for another
            front end.
        """
        arrays, manifest = load_model(path, kind="base", front_end=EMBEDDING_FRONT_END)
        network = network_from(path, manifest.architecture, arrays)
        if len(network.input_shape) != 3 or network.input_shape[1:] != (
            EMBEDDING_FRONT_END.n_mels, 1,
        ):  # fmt: skip
            raise ModelError(
                f"{path}: input shape {network.input_shape}; expected (frames, "
                f"{EMBEDDING_FRONT_END.n_mels}, 1)"
            )
        if network.input_shape[0] != WINDOW_FRAMES:
            raise ModelError(
                f"{path}: input shape {network.input_shape}; expected ({WINDOW_FRAMES}, "
                f"{EMBEDDING_FRONT_END.n_mels}, 1), the geometry wake words are trained for"
            )
        return cls(network, manifest=manifest, backend=backend)

    @property
    def sha256(self) -> str:
        """The model file's checksum ("unsaved" for a network not read from a file)."""
        return self.manifest.sha256 if self.manifest is not None else "unsaved"

    def features(self, audio: np.ndarray) -> np.ndarray:
        """32-band log-mel frames (`dsp.embedding_features.embedding_log_mel`)."""
        return embedding_log_mel(audio)

    def frame_stream(self) -> EmbeddingMelStream:
        """The streaming 32-band front end."""
        return EmbeddingMelStream()

    def silence_frames(self, n: int) -> np.ndarray:
        """Frames of digital silence (the front end's floor)."""
        return np.full((n, self.front_end.n_mels), EMBEDDING_OUTPUT_FLOOR, np.float32)

    def hop_embedder(self, backend: Backend = "auto") -> HopStream:
        """New columns only, on numpy: a hop costs about a ninth of a window on any engine."""
        return HopStream(self)

    def embed_frames(self, features: np.ndarray) -> np.ndarray:
        """Every hop's embedding of a stream's frames [frames, 32] -> [hops, 96], streamed.

        On one BLAS thread whatever the caller's limit: a hop multiplies matrices of a few
        columns, which more threads only slow down (2.4x on 2 cores).
        """
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            out = HopStream(self).push(features)
        return np.stack(out) if out else np.zeros((0, self.dim), np.float32)

    def embed_examples(self, features: np.ndarray) -> np.ndarray:
        """Head inputs of examples [n, context_frames, 32] -> [n, 16 * 96], each streamed.

        Streaming an example computes its 16 windows for about twice the cost of one.
        """
        rows = [self.embed_frames(f).reshape(-1) for f in features]
        return np.stack(rows) if rows else np.zeros((0, self.geometry.context_windows * self.dim),
                                                    np.float32)  # fmt: skip

    @property
    def window_frames(self) -> int:
        """Frames one embedding reads (76, 0.775 s)."""
        return self.network.input_shape[0]

    @property
    def hop_frames(self) -> int:
        """Frames between embeddings of a stream."""
        return HOP_FRAMES

    @property
    def dim(self) -> int:
        """Values of one embedding."""
        return int(np.prod(self.network.output_shape))

    @property
    def engine(self) -> Engine:
        """Where whole windows run (numpy, or wgpu when asked for)."""
        if self._engine is None:
            self._engine = create_engine(self.network, backend=self.backend)
        return self._engine

    def embed(self, windows: np.ndarray) -> np.ndarray:
        """Embeddings of log-mel windows [n, frames, bands] -> float32 [n, dim]."""
        out = [
            self.engine.run(
                np.ascontiguousarray(windows[i : i + EMBED_BATCH, ..., None], np.float32)
            ).reshape(-1, self.dim)  # fmt: skip
            for i in range(0, windows.shape[0], EMBED_BATCH)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def hop_windows(self, features: np.ndarray) -> np.ndarray:
        """The windows of a stream's frames [frames, bands] -> [hops, window_frames, bands].

        Window ``k`` holds frames ``[k * hop_frames, k * hop_frames + window_frames)``; a view.
        """
        if features.shape[0] < self.window_frames:
            return np.zeros((0, self.window_frames, features.shape[1]), np.float32)
        view = np.lib.stride_tricks.sliding_window_view(features, self.window_frames, axis=0)
        return view[:: self.hop_frames].transpose(0, 2, 1)

    def embed_audio(self, audio: np.ndarray) -> np.ndarray:
        """Every hop's embedding of a recording [samples] -> [hops, dim], in batches."""
        return self.embed(self.hop_windows(embedding_log_mel(audio)))

    def stream(self) -> EmbeddingStream:
        """A streaming embedder for one audio stream (numpy, new columns only)."""
        return EmbeddingStream(self)


class HopStream:
    """Frames in, one embedding per hop out: the network's new columns only (numpy)."""

    def __init__(self, base: SpeechEmbedding) -> None:
        self._network = StreamingNetwork(base.network, base.hop_frames)

    def reset(self) -> None:
        """Start a new stream."""
        self._network.reset()

    def push(self, frames: np.ndarray) -> list[np.ndarray]:
        """Feed frames [k, 32]; return the embeddings of the hops they complete."""
        if frames.shape[0] == 0:
            return []
        frames = np.asarray(frames, np.float32)[..., None]
        return [out.reshape(-1) for out in self._network.push(frames)]


class EmbeddingStream:
    """Audio chunks in, one embedding per hop out, computing only each layer's new columns."""

    def __init__(self, base: SpeechEmbedding) -> None:
        self.base = base
        self._network = HopStream(base)
        self._features = EmbeddingMelStream()

    def reset(self) -> None:
        """Start a new stream."""
        self._network.reset()
        self._features.reset()

    def push(self, chunk: np.ndarray) -> list[np.ndarray]:
        """Feed audio (16 kHz mono float, any length); return the embeddings it completes."""
        return self._network.push(self._features.push(chunk))
