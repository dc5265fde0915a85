"""How a base reads a stream, and what every head on it needs from the base.

A base embeds windows of `window_frames` log-mel frames, one every `hop_frames` frames (a hop).
A wake-word head scores a hop from the embeddings of `context_windows` windows spaced
`context_stride_hops` hops apart, the last one ending at the hop, so it hears about 2 s while all
heads share one embedding per hop::

    frames  |------------------------ context_frames ------------------------|
    window  |--- window_frames ---|
    window            ... |--- window_frames ---|
    window                            ... |--- window_frames ---|  <- ends at the hop

Training examples are `context_samples` long, exactly `context_frames` frames, so a trained head
sees the same windows as the streaming detector. The two bases differ in all of these numbers:

================  ============  ===========  =====  ==================  ===========
base              window        hop          bands  context             head inputs
================  ============  ===========  =====  ==================  ===========
speech_embedding  76 (0.775 s)  8 (80 ms)    32     16 windows, 1.98 s  16 x 96
dscnn             97 (0.992 s)  10 (100 ms)  40     3 windows, 1.99 s   3 x 96
================  ============  ===========  =====  ==================  ===========

`Embedder` is what wake words, commands and enrollment use of a base; both
`models.base.speech_embedding.SpeechEmbedding` and `models.base.model.BaseModel` are one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from dsp.constants import FrontEndSettings
from kernels.runtime import Backend, Engine


@dataclass(frozen=True)
class Geometry:
    """Where a base's windows and a head's contexts lie in a stream of frames.

    Attributes
    ----------
    front_end : FrontEndSettings
        The frames' front end (hop and FFT size give the timing, bands the width).
    db_per_unit : float
        Decibels per unit of the frames' values.
    window_frames, hop_frames : int
        Frames of one embedded window, and between the windows of a stream.
    context_windows, context_stride_hops : int
        Windows a head's context joins, and hops between them.
    """

    front_end: FrontEndSettings
    window_frames: int
    hop_frames: int
    context_windows: int
    context_stride_hops: int
    db_per_unit: float
    """Decibels of power per unit of a frame's values (10 / ln 10 for natural-log mel power,
    10 for tenths of decibels): how loud a difference of frame values is."""

    @property
    def hop_s(self) -> float:
        """Seconds between hops."""
        return self.hop_frames * self.front_end.hop_samples / self.front_end.sample_rate_hz

    @property
    def frame_s(self) -> float:
        """Seconds between frames."""
        return self.front_end.hop_samples / self.front_end.sample_rate_hz

    @property
    def context_hops(self) -> int:
        """Hops between a context's first and last window."""
        return (self.context_windows - 1) * self.context_stride_hops

    @property
    def context_frames(self) -> int:
        """Frames one context reads."""
        return self.window_frames + self.context_hops * self.hop_frames

    @property
    def context_samples(self) -> int:
        """Samples of audio that make exactly `context_frames` frames."""
        return (self.context_frames - 1) * self.front_end.hop_samples + self.front_end.n_fft

    @property
    def context_s(self) -> float:
        """Seconds of audio one context hears."""
        return self.context_samples / self.front_end.sample_rate_hz

    def as_dict(self) -> dict[str, int]:
        """The numbers a head's manifest records (front end aside)."""
        return {
            "window_frames": self.window_frames,
            "hop_frames": self.hop_frames,
            "windows": self.context_windows,
            "stride_hops": self.context_stride_hops,
            "bands": self.front_end.n_mels,
        }

    def frame_end_s(self, n_frames: int) -> float:
        """Stream time (s) at which frame ``n_frames - 1`` is complete: the end of its samples."""
        fe = self.front_end
        return ((n_frames - 1) * fe.hop_samples + fe.n_fft) / fe.sample_rate_hz

    def hop_windows(self, features: np.ndarray) -> np.ndarray:
        """Windows ending at every hop: features [frames, bands] -> [hops, window_frames, bands].

        Hop ``k`` is the window of frames ``[k * hop_frames, k * hop_frames + window_frames)``.
        The result is a read-only view, not a copy.
        """
        if features.shape[0] < self.window_frames:
            return np.zeros((0, self.window_frames, features.shape[1]), features.dtype)
        view = np.lib.stride_tricks.sliding_window_view(features, self.window_frames, axis=0)
        return view[:: self.hop_frames].transpose(0, 2, 1)

    def hop_count(self, n_frames: int) -> int:
        """Hops (whole windows) in ``n_frames`` frames."""
        if n_frames < self.window_frames:
            return 0
        return 1 + (n_frames - self.window_frames) // self.hop_frames

    def hop_end_s(self, hops: np.ndarray | int) -> np.ndarray:
        """Stream time (s) at which hop ``k``'s window ends (`hop_windows` numbering)."""
        fe = self.front_end
        last = np.asarray(hops) * self.hop_frames + self.window_frames - 1
        return (last * fe.hop_samples + fe.n_fft) / fe.sample_rate_hz

    def context_vectors(self, embeddings: np.ndarray) -> np.ndarray:
        """Head inputs of the hops with a full context: [hops, dim] -> [hops - H, k * dim].

        ``H`` is `context_hops`. Row ``i`` belongs to hop ``i + H`` and joins the embeddings of
        hops ``i, i + context_stride_hops, ..., i + H`` (oldest first).
        """
        n = embeddings.shape[0] - self.context_hops
        if n <= 0:
            return np.zeros((0, self.context_windows * embeddings.shape[1]), embeddings.dtype)
        starts = range(0, self.context_hops + 1, self.context_stride_hops)
        return np.concatenate([embeddings[s : s + n] for s in starts], axis=1)

    def example_windows(self, features: np.ndarray) -> np.ndarray:
        """The context's windows of examples [n, context_frames, bands] -> [n * k, window, bands].

        Windows of one example are consecutive rows, oldest first, so ``embed(...).reshape(n,
        -1)`` gives the same head inputs as `context_vectors` on a stream.
        """
        starts = range(0, self.context_hops * self.hop_frames + 1,
                       self.context_stride_hops * self.hop_frames)  # fmt: skip
        stacked = np.stack([features[:, s : s + self.window_frames] for s in starts], axis=1)
        return stacked.reshape(-1, self.window_frames, features.shape[2])


class FrameStream(Protocol):
    """A streaming front end: audio chunks in, the frames they complete out."""

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Feed audio (16 kHz mono float, any length); return the frames it completes."""
        ...

    def reset(self) -> None:
        """Start a new stream."""
        ...


class HopEmbedder(Protocol):
    """Frames in (any number at a time), one embedding per completed hop out."""

    def push(self, frames: np.ndarray) -> list[np.ndarray]:
        """Feed frames [k, bands]; return the embeddings of the hops they complete."""
        ...

    def reset(self) -> None:
        """Start a new stream."""
        ...


class Embedder(Protocol):
    """A base as the heads use it: its front end, its geometry and its embedding."""

    name: str
    """``speech_embedding`` or ``dscnn``: the kind of base, for messages and manifests."""

    @property
    def sha256(self) -> str:
        """Checksum of the base's model file: heads record it and refuse another base."""
        ...

    @property
    def geometry(self) -> Geometry:
        """Windows, hops and contexts of this base."""
        ...

    @property
    def dim(self) -> int:
        """Values of one embedding."""
        ...

    def features(self, audio: np.ndarray) -> np.ndarray:
        """The base's log-mel frames of a recording (16 kHz mono float) [frames, bands]."""
        ...

    def frame_stream(self) -> FrameStream:
        """A streaming front end giving the same frames as `features` for any chunking."""
        ...

    def silence_frames(self, n: int) -> np.ndarray:
        """``n`` frames of digital silence [n, bands]: the detector's history before a stream."""
        ...

    def embed(self, windows: np.ndarray) -> np.ndarray:
        """Embeddings of windows [n, window_frames, bands] -> float32 [n, dim]."""
        ...

    def hop_embedder(self, backend: Backend = "auto") -> HopEmbedder:
        """A streaming embedder for the detector, on ``backend`` where the base supports it."""
        ...

    def embed_frames(self, features: np.ndarray) -> np.ndarray:
        """Every hop's embedding of a stream's frames [frames, bands] -> float32 [hops, dim]."""
        ...

    def embed_examples(self, features: np.ndarray) -> np.ndarray:
        """Head inputs of examples [n, context_frames, bands] -> float32 [n, k * dim].

        Each row is the example's context ending at its last frame, joined as
        `Geometry.context_vectors` joins a stream's.
        """
        ...


class WordsHead(Protocol):
    """A speech-commands head on a base: built-in command words for the daemon."""

    @property
    def labels(self) -> list[str]:
        """The classes, in the order of `probabilities`."""
        ...

    @property
    def base_sha256(self) -> str:
        """Checksum of the base the head reads."""
        ...

    def probabilities(self, base: Any, audio: np.ndarray) -> np.ndarray:
        """Highest probability of every label over an utterance (16 kHz mono) [labels]."""
        ...


class WindowEmbedder:
    """A `HopEmbedder` that runs the whole window through an engine on every hop."""

    def __init__(self, engine: Engine, geometry: Geometry) -> None:
        self.engine, self.geometry = engine, geometry
        self.reset()

    def reset(self) -> None:
        """Start a new stream."""
        self._frames = np.zeros((0, self.geometry.front_end.n_mels), np.float32)

    def push(self, frames: np.ndarray) -> list[np.ndarray]:
        """Feed frames [k, bands]; return the embeddings of the windows they complete."""
        g = self.geometry
        self._frames = np.concatenate((self._frames, np.asarray(frames, np.float32)))
        out = []
        while self._frames.shape[0] >= g.window_frames:
            window = self._frames[None, : g.window_frames, :, None]
            out.append(np.asarray(self.engine.run(window), np.float32).reshape(-1))
            self._frames = self._frames[g.hop_frames :]
        return out
