"""The DS-CNN-sized test network used by the parity tests and the engine benchmark.

Shape of a keyword-spotting DS-CNN (Zhang et al., "Hello Edge", 2017) on one 1 s window of
98 frames x 40 log-mel bands: a 10x4 stride-2 convolution to 64 channels, four depthwise-separable
blocks (3x3 depthwise + batch norm + ReLU, 1x1 pointwise 64 -> 64 + batch norm + ReLU), global
average pooling and a dense layer to 12 classes. Weights and batch-norm statistics are seeded
random values; batch norm is folded into the convolutions when the network is built.
"""

from __future__ import annotations

import numpy as np

from kernels.network import (
    RELU,
    Conv2d,
    Dense,
    DepthwiseConv2d,
    GlobalAvgPool,
    Layer,
    Network,
    PointwiseConv2d,
    Softmax,
)

FRAMES = 98
MEL_BANDS = 40
CHANNELS = 64
CLASSES = 12
BLOCKS = 4
FIRST_KERNEL = (10, 4)
FIRST_STRIDE = (2, 2)
FIRST_PADDING = (4, 1)  # 98 x 40 -> 49 x 20
DEPTHWISE_KERNEL = (3, 3)
DEPTHWISE_PADDING = (1, 1)


def random_batchnorm(rng: np.random.Generator, channels: int) -> dict[str, np.ndarray]:
    """Plausible batch-norm parameters (gamma, beta, running mean and variance).

    Parameters
    ----------
    rng : np.random.Generator
        Source of randomness.
    channels : int
        Number of channels.

    Returns
    -------
    dict[str, np.ndarray]
        Keyword arguments for `kernels.ops.batch_norm.fold_batchnorm`, each [shape=(channels,)].
    """
    return {
        "gamma": rng.uniform(0.5, 1.5, channels),
        "beta": rng.normal(0.0, 0.1, channels),
        "mean": rng.normal(0.0, 0.1, channels),
        "var": rng.uniform(0.5, 1.5, channels),
    }


def _he(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape).astype(np.float32)


def ds_cnn_test_network(seed: int = 0, *, softmax: bool = False) -> Network:
    """Build the DS-CNN-sized test network from seeded random weights.

    Parameters
    ----------
    seed : int
        Seed for the weights.
    softmax : bool
        Append a softmax (probabilities) instead of returning logits.

    Returns
    -------
    Network
        Input [shape=(98, 40, 1)] per window (frames, mel bands, 1 channel); output
        [shape=(12,)] per window.
    """
    rng = np.random.default_rng(seed)
    kh, kw = FIRST_KERNEL
    first = Conv2d(
        _he(rng, (kh, kw, 1, CHANNELS), kh * kw),
        rng.normal(0.0, 0.1, CHANNELS),
        stride=FIRST_STRIDE,
        padding=FIRST_PADDING,
        activation=RELU,
    )
    layers: list[Layer] = [first.with_batchnorm(**random_batchnorm(rng, CHANNELS))]
    dh, dw = DEPTHWISE_KERNEL
    for _ in range(BLOCKS):
        depthwise = DepthwiseConv2d(
            _he(rng, (dh, dw, CHANNELS), dh * dw),
            rng.normal(0.0, 0.1, CHANNELS),
            padding=DEPTHWISE_PADDING,
            activation=RELU,
        )
        pointwise = PointwiseConv2d(
            _he(rng, (CHANNELS, CHANNELS), CHANNELS),
            rng.normal(0.0, 0.1, CHANNELS),
            activation=RELU,
        )
        layers.append(depthwise.with_batchnorm(**random_batchnorm(rng, CHANNELS)))
        layers.append(pointwise.with_batchnorm(**random_batchnorm(rng, CHANNELS)))
    layers.append(GlobalAvgPool())
    layers.append(Dense(_he(rng, (CHANNELS, CLASSES), CHANNELS), rng.normal(0.0, 0.1, CLASSES)))
    if softmax:
        layers.append(Softmax())
    return Network(input_shape=(FRAMES, MEL_BANDS, 1), layers=tuple(layers))


def random_windows(batch: int, seed: int = 1) -> np.ndarray:
    """Seeded stand-in log-mel windows.

    Parameters
    ----------
    batch : int
        Number of windows.
    seed : int
        Seed.

    Returns
    -------
    np.ndarray [shape=(batch, 98, 40, 1)], float32
        Standard-normal values.
    """
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, FRAMES, MEL_BANDS, 1), dtype=np.float32)
