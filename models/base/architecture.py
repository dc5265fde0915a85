"""The base speech network (a DS-CNN) and the heads that sit on its embedding.

The base turns one 1 s window of log-mel features [97 frames, 40 mels, 1] into an embedding; heads
(dense layers) turn the embedding into class scores. Only the architecture's arguments are stored
with the weights (`models.nn.checkpoint`), so a model file rebuilds exactly the network it was
trained as.

Layout, for the default arguments (9.4 MFLOP per window, 24 k parameters)::

    conv 10x4 stride 2 -> 24 ch, BN, ReLU            48 x 20 x 24
    depthwise 3x3 stride 2, BN, ReLU; pointwise -> 64, BN, ReLU
                                                     24 x 10 x 64
    3 x [depthwise 3x3, BN, ReLU; pointwise 64, BN, ReLU]
    global average pool                              64
    dense -> 96, BN, ReLU                            96 (the embedding)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from dsp.constants import N_MELS, SAMPLE_RATE_HZ
from dsp.features import frame_count
from models.nn.layers import (
    BatchNorm,
    Conv2d,
    Dense,
    DepthwiseConv2d,
    Dropout,
    GlobalAvgPool,
    Layer,
    PointwiseConv2d,
    ReLU,
    Sequential,
)

WINDOW_FRAMES = frame_count(SAMPLE_RATE_HZ)
"""Feature frames in a 1 s window (97)."""


@dataclass(frozen=True)
class BaseConfig:
    """Arguments of the base network.

    Parameters
    ----------
    first_channels : int
        Channels of the first (10x4, stride 2) convolution.
    channels : int
        Channels of the depthwise-separable blocks.
    blocks : int
        Depthwise-separable blocks after the stride-2 transition block.
    embedding_dim : int
        Size of the embedding the heads read.
    """

    first_channels: int = 24
    channels: int = 64
    blocks: int = 3
    embedding_dim: int = 96

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One window: (frames, mels, 1)."""
        return (WINDOW_FRAMES, N_MELS, 1)

    def as_dict(self) -> dict[str, int]:
        """Arguments for the manifest."""
        return asdict(self)


SEPARABLE_LAYERS = 6
"""Layers of a depthwise-separable block: depthwise, BN, ReLU, pointwise, BN, ReLU."""
EMBEDDING_LAYERS = 4
"""Layers after the last block: global pooling, dense, BN, ReLU."""


def last_block_start(base: Sequential) -> int:
    """Index of the first layer of the base's last depthwise-separable block."""
    return len(base) - SEPARABLE_LAYERS - EMBEDDING_LAYERS


def _separable(c_in: int, c_out: int, stride: int, rng: np.random.Generator) -> list[Layer]:
    return [
        DepthwiseConv2d(c_in, (3, 3), stride=(stride, stride), padding=(1, 1), bias=False, rng=rng),
        BatchNorm(c_in),
        ReLU(),
        PointwiseConv2d(c_in, c_out, bias=False, rng=rng),
        BatchNorm(c_out),
        ReLU(),
    ]


def build_base(config: BaseConfig, rng: np.random.Generator) -> Sequential:
    """The base network, window -> embedding [shape=(batch, embedding_dim)], freshly initialised."""
    c1, c = config.first_channels, config.channels
    layers: list[Layer] = [
        Conv2d(1, c1, (10, 4), stride=(2, 2), padding=(4, 1), bias=False, rng=rng),
        BatchNorm(c1),
        ReLU(),
        *_separable(c1, c, 2, rng),
    ]
    for _ in range(config.blocks):
        layers += _separable(c, c, 1, rng)
    layers += [
        GlobalAvgPool(),
        Dense(c, config.embedding_dim, bias=False, rng=rng),
        BatchNorm(config.embedding_dim),
        ReLU(),
    ]
    return Sequential(layers)


def build_head(
    embedding_dim: int, n_classes: int, rng: np.random.Generator, *, dropout: float = 0.0
) -> Sequential:
    """A classification head: embedding -> class logits [shape=(batch, n_classes)]."""
    layers: list[Layer] = [Dropout(dropout, rng=rng)] if dropout > 0 else []
    layers.append(Dense(embedding_dim, n_classes, rng=rng, init="lecun"))
    return Sequential(layers)
