"""The time geometry every wake-word detector shares: hops, windows and the context of a hop.

The base network embeds 1 s windows (`WINDOW_FRAMES` log-mel frames). A stream is embedded once
per hop (`HOP_FRAMES` frames, 100 ms), and a wake-word head scores a hop from the embeddings of
`CONTEXT_WINDOWS` windows spaced `CONTEXT_STRIDE_HOPS` hops apart, the last one ending at the
hop. So a head hears about 2 s, enough for phrases like "hey smart mirror", while all heads share
one embedding per hop::

    frames  |--------------------------- CONTEXT_FRAMES (197) ---------------------------|
    window  |------ 97 ------|
    window                   ...  |------ 97 ------|
    window                                         ...  |------ 97 ------|  <- ends at the hop

Training examples are `CONTEXT_SAMPLES` long, which is exactly `CONTEXT_FRAMES` frames, so a
trained head sees the same windows as the streaming detector.
"""

from __future__ import annotations

import numpy as np

from dsp.constants import HOP_SAMPLES, N_FFT, SAMPLE_RATE_HZ
from models.base.architecture import WINDOW_FRAMES

HOP_FRAMES = 10
HOP_S = HOP_FRAMES * HOP_SAMPLES / SAMPLE_RATE_HZ
CONTEXT_WINDOWS = 3
CONTEXT_STRIDE_HOPS = 5
CONTEXT_HOPS = (CONTEXT_WINDOWS - 1) * CONTEXT_STRIDE_HOPS
"""Hops between the context's first and last window."""
CONTEXT_FRAMES = WINDOW_FRAMES + CONTEXT_HOPS * HOP_FRAMES
CONTEXT_SAMPLES = (CONTEXT_FRAMES - 1) * HOP_SAMPLES + N_FFT
CONTEXT_S = CONTEXT_SAMPLES / SAMPLE_RATE_HZ


def frame_end_s(n_frames: int) -> float:
    """Stream time (s) at which frame ``n_frames - 1`` is complete: the end of its samples."""
    return ((n_frames - 1) * HOP_SAMPLES + N_FFT) / SAMPLE_RATE_HZ


def hop_windows(features: np.ndarray) -> np.ndarray:
    """Windows ending at every hop: features [frames, mels] -> [hops, WINDOW_FRAMES, mels].

    Hop ``k`` is the window of frames ``[k * HOP_FRAMES, k * HOP_FRAMES + WINDOW_FRAMES)``. The
    result is a read-only view, not a copy.
    """
    if features.shape[0] < WINDOW_FRAMES:
        return np.zeros((0, WINDOW_FRAMES, features.shape[1]), features.dtype)
    view = np.lib.stride_tricks.sliding_window_view(features, WINDOW_FRAMES, axis=0)
    return view[::HOP_FRAMES].transpose(0, 2, 1)


def hop_end_s(hops: np.ndarray | int) -> np.ndarray:
    """Stream time (s) at which hop ``k``'s window ends (`hop_windows` numbering)."""
    return ((np.asarray(hops) * HOP_FRAMES + WINDOW_FRAMES - 1) * HOP_SAMPLES + N_FFT) / (
        SAMPLE_RATE_HZ
    )


def context_vectors(embeddings: np.ndarray) -> np.ndarray:
    """Head inputs of the hops with a full context: [hops, dim] -> [hops - CONTEXT_HOPS, k*dim].

    Row ``i`` belongs to hop ``i + CONTEXT_HOPS``, and joins the embeddings of hops
    ``i, i + CONTEXT_STRIDE_HOPS, ..., i + CONTEXT_HOPS`` (oldest first).
    """
    n = embeddings.shape[0] - CONTEXT_HOPS
    if n <= 0:
        return np.zeros((0, CONTEXT_WINDOWS * embeddings.shape[1]), embeddings.dtype)
    starts = [k * CONTEXT_STRIDE_HOPS for k in range(CONTEXT_WINDOWS)]
    parts = [embeddings[s : s + n] for s in starts]
    return np.concatenate(parts, axis=1)


def example_windows(features: np.ndarray) -> np.ndarray:
    """The context's windows of training examples [n, CONTEXT_FRAMES, mels] -> [n*k, 97, mels].

    Windows of one example are consecutive rows, oldest first, so ``embed(...).reshape(n, -1)``
    gives the same head inputs as `context_vectors` on a stream.
    """
    starts = [k * CONTEXT_STRIDE_HOPS * HOP_FRAMES for k in range(CONTEXT_WINDOWS)]
    stacked = np.stack([features[:, s : s + WINDOW_FRAMES] for s in starts], axis=1)
    return stacked.reshape(-1, WINDOW_FRAMES, features.shape[2])
