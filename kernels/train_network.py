"""A trainable sequential network as the training engine sees it: layer kinds, shapes, arrays.

Unlike `kernels.network.Network` (inference: batch norm folded, ReLU fused), a `TrainNetwork`
keeps every training layer separate, because the backward pass needs each one's own input and
statistics. Layer specs are small frozen dataclasses holding float32 arrays in the layouts of
`kernels.ops.layout` (NHWC activations; weights with output channels last). Parameter and buffer
names are ``"<layer index>.<key>"`` with the keys ``weight``, ``bias``, ``gamma``, ``beta``
(parameters) and ``running_mean``, ``running_var`` (buffers), as a models ``Sequential`` names
them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kernels.errors import ModelError
from kernels.ops.layout import Pair, Shape, conv_output_hw

SPATIAL_DIMS = 3
"""A per-window spatial shape is (height, width, channels)."""


def _spatial(shape: Shape, layer: str) -> tuple[int, int, int]:
    if len(shape) != SPATIAL_DIMS:
        raise ModelError(f"{layer}: got input shape {shape}, expected (height, width, channels)")
    return shape[0], shape[1], shape[2]


def _expect_channels(shape: Shape, channels: int, layer: str) -> None:
    if shape[-1] != channels:
        raise ModelError(f"{layer}: got input shape {shape}, expected {channels} channels last")


def _window_shape(
    shape: Shape, layer: TrainConv2d | TrainDepthwiseConv2d, kernel: Pair, in_c: int, out_c: int
) -> Shape:
    """Per-window output shape of a convolution layer for a per-window input shape."""
    name = type(layer).__name__
    height, width, _ = _spatial(shape, name)
    _expect_channels(shape, in_c, name)
    return (*conv_output_hw((height, width), kernel, layer.stride, layer.padding), out_c)


@dataclass(frozen=True, eq=False)
class TrainConv2d:
    """Convolution: ``weight`` [kh, kw, in_c, out_c], optional ``bias`` [out_c]."""

    weight: np.ndarray
    bias: np.ndarray | None = None
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)

    def output_shape(self, shape: Shape) -> Shape:
        """Per-window output shape for a per-window input shape."""
        kh, kw, in_c, out_c = self.weight.shape
        return _window_shape(shape, self, (kh, kw), in_c, out_c)


@dataclass(frozen=True, eq=False)
class TrainDepthwiseConv2d:
    """Depthwise convolution: ``weight`` [kh, kw, c], optional ``bias`` [c]."""

    weight: np.ndarray
    bias: np.ndarray | None = None
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)

    def output_shape(self, shape: Shape) -> Shape:
        """Per-window output shape for a per-window input shape."""
        kh, kw, channels = self.weight.shape
        return _window_shape(shape, self, (kh, kw), channels, channels)


@dataclass(frozen=True, eq=False)
class TrainPointwiseConv2d:
    """1x1 convolution: ``weight`` [in_c, out_c], optional ``bias`` [out_c]."""

    weight: np.ndarray
    bias: np.ndarray | None = None

    def output_shape(self, shape: Shape) -> Shape:
        """Per-window output shape for a per-window input shape."""
        _spatial(shape, "TrainPointwiseConv2d")
        _expect_channels(shape, self.weight.shape[0], "TrainPointwiseConv2d")
        return (*shape[:-1], self.weight.shape[1])


@dataclass(frozen=True, eq=False)
class TrainDense:
    """Dense layer on the NHWC-flattened input: ``weight`` [in_f, out_f], optional ``bias``."""

    weight: np.ndarray
    bias: np.ndarray | None = None

    def output_shape(self, shape: Shape) -> Shape:
        """Per-window output shape for a per-window input shape."""
        if math.prod(shape) != self.weight.shape[0]:
            raise ModelError(
                f"TrainDense: got input shape {shape}, expected {self.weight.shape[0]} features"
            )
        return (self.weight.shape[1],)


@dataclass(frozen=True, eq=False)
class TrainBatchNorm:
    """Batch norm over every axis but the last, with batch statistics when training.

    Attributes
    ----------
    gamma, beta : np.ndarray [shape=(c,)]
        Scale and shift (parameters).
    running_mean, running_var : np.ndarray [shape=(c,)]
        Running statistics (buffers), updated as ``(1 - momentum) * old + momentum * batch``.
    momentum : float
        In (0, 1].
    eps : float
        Added to the variance, > 0.
    """

    gamma: np.ndarray
    beta: np.ndarray
    running_mean: np.ndarray
    running_var: np.ndarray
    momentum: float = 0.1
    eps: float = 1e-5

    def output_shape(self, shape: Shape) -> Shape:
        """Per-window output shape (the input shape)."""
        _expect_channels(shape, self.gamma.shape[0], "TrainBatchNorm")
        return shape


@dataclass(frozen=True)
class TrainReLU:
    """Elementwise ``max(x, 0)``."""

    def output_shape(self, shape: Shape) -> Shape:
        """Per-window output shape (the input shape)."""
        return shape


@dataclass(frozen=True)
class TrainGlobalAvgPool:
    """Mean over positions: (height, width, c) -> (c,)."""

    def output_shape(self, shape: Shape) -> Shape:
        """Per-window output shape."""
        return (_spatial(shape, "TrainGlobalAvgPool")[2],)


@dataclass(frozen=True)
class TrainDropout:
    """Inverted dropout with drop probability ``p`` in (0, 1); the masks come with each batch."""

    p: float

    def output_shape(self, shape: Shape) -> Shape:
        """Per-window output shape (the input shape)."""
        return shape


TrainLayer = (
    TrainConv2d
    | TrainDepthwiseConv2d
    | TrainPointwiseConv2d
    | TrainDense
    | TrainBatchNorm
    | TrainReLU
    | TrainGlobalAvgPool
    | TrainDropout
)
_LINEAR = (TrainConv2d, TrainDepthwiseConv2d, TrainPointwiseConv2d, TrainDense)


def layer_params(layer: TrainLayer) -> dict[str, np.ndarray]:
    """The trainable arrays of a layer by key (``weight``, ``bias``, ``gamma``, ``beta``)."""
    if isinstance(layer, _LINEAR):
        found = {"weight": layer.weight}
        return found if layer.bias is None else found | {"bias": layer.bias}
    if isinstance(layer, TrainBatchNorm):
        return {"gamma": layer.gamma, "beta": layer.beta}
    return {}


def layer_buffers(layer: TrainLayer) -> dict[str, np.ndarray]:
    """The non-trainable arrays of a layer by key (batch-norm running statistics)."""
    if isinstance(layer, TrainBatchNorm):
        return {"running_mean": layer.running_mean, "running_var": layer.running_var}
    return {}


@dataclass(frozen=True, eq=False)
class TrainNetwork:
    """Per-window input shape and training layers, first to last; the last gives class logits.

    Parameters
    ----------
    input_shape : tuple[int, ...]
        One window without the batch axis, e.g. (97, 40, 1).
    layers : tuple[TrainLayer, ...]
        At least one layer; the output must be (classes,) with classes >= 1.

    Raises
    ------
    ModelError
        Shapes do not chain, or the output is not a vector of class scores.
    """

    input_shape: Shape
    layers: tuple[TrainLayer, ...]
    shapes: tuple[Shape, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not self.layers:
            raise ModelError("TrainNetwork.layers: got none, expected at least one layer")
        shapes = [tuple(int(n) for n in self.input_shape)]
        for layer in self.layers:
            shapes.append(layer.output_shape(shapes[-1]))
        if len(shapes[-1]) != 1:
            raise ModelError(f"TrainNetwork: got output shape {shapes[-1]}, expected (classes,)")
        object.__setattr__(self, "shapes", tuple(shapes))

    @property
    def classes(self) -> int:
        """Length of the output (class scores)."""
        return self.shapes[-1][0]

    def params(self) -> dict[str, np.ndarray]:
        """Every parameter by name (``"0.weight"``), float32, in layer order."""
        return {
            f"{index}.{key}": np.ascontiguousarray(value, np.float32)
            for index, layer in enumerate(self.layers)
            for key, value in layer_params(layer).items()
        }

    def buffers(self) -> dict[str, np.ndarray]:
        """Every buffer by name (``"1.running_mean"``), float32, in layer order."""
        return {
            f"{index}.{key}": np.ascontiguousarray(value, np.float32)
            for index, layer in enumerate(self.layers)
            for key, value in layer_buffers(layer).items()
        }
