"""A network description that both the numpy path and the wgpu engine run.

A `Network` is the per-window input shape plus a tuple of layer specs. Layer specs are frozen
dataclasses holding float32 weights in this package's layouts (see `kernels.ops.layout`):
activations are NHWC, weights put output channels last. Batch norm is not a layer: fold it into
the preceding convolution or dense layer with `kernels.ops.batch_norm.fold_batchnorm` when the
network is built (``Conv2d.with_batchnorm`` and friends do that). ReLU is a flag on the layer
that produces the activation, so the kernel applies it before writing.

Example
-------
>>> import numpy as np
>>> from kernels.network import Conv2d, Dense, GlobalAvgPool, Network, Softmax, run_numpy
>>> rng = np.random.default_rng(0)
>>> net = Network(
...     input_shape=(98, 40, 1),
...     layers=(
...         Conv2d(rng.normal(size=(10, 4, 1, 8)), np.zeros(8), stride=(2, 2), padding=(4, 1),
...                relu=True),
...         GlobalAvgPool(),
...         Dense(rng.normal(size=(8, 12)), np.zeros(12)),
...         Softmax(),
...     ),
... )
>>> net.output_shape
(12,)
>>> run_numpy(net, np.zeros((2, 98, 40, 1), np.float32)).shape
(2, 12)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Self

import numpy as np

from kernels.errors import ModelError
from kernels.ops.activation import sigmoid_ref
from kernels.ops.batch_norm import fold_batchnorm
from kernels.ops.conv2d import conv2d_ref
from kernels.ops.depthwise_conv2d import depthwise_conv2d_ref
from kernels.ops.layout import Pair, Shape, conv_output_hw
from kernels.ops.linear import dense_ref, pointwise_conv2d_ref
from kernels.ops.pooling import avg_pool2d_ref, global_avg_pool_ref
from kernels.ops.softmax import softmax_ref

FLOPS_PER_ACTIVATION = 4
"""Operations per value counted for softmax and sigmoid."""


def _array(value: np.ndarray, ndim: int, name: str) -> np.ndarray:
    array = np.ascontiguousarray(value, dtype=np.float32)
    if array.ndim != ndim:
        raise ModelError(f"{name}: got shape {array.shape}, expected {ndim} dimensions")
    return array


def _check_bias(bias: np.ndarray, out_c: int, layer: str) -> np.ndarray:
    bias = _array(bias, 1, f"{layer}.bias")
    if bias.shape != (out_c,):
        raise ModelError(f"{layer}.bias: got shape {bias.shape}, expected ({out_c},)")
    return bias


def _require_hwc(shape: Shape, layer: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ModelError(f"{layer}: got input shape {shape}, expected (height, width, channels)")
    return shape[0], shape[1], shape[2]


def _check_channels(channels: int, expected: int, layer: str) -> None:
    if channels != expected:
        raise ModelError(f"{layer}: got {channels} input channels, weight expects {expected}")


def _relu(out: np.ndarray, relu: bool) -> np.ndarray:
    return np.maximum(out, 0, out=out) if relu else out


class _Weighted:
    """What the layers with weights share: the array checks, batch-norm folding."""

    weight: np.ndarray
    bias: np.ndarray
    WEIGHT_NDIM = 2
    """Axes of the weight (its last is the output channels)."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        object.__setattr__(self, "weight", _array(self.weight, self.WEIGHT_NDIM, f"{name}.weight"))
        object.__setattr__(self, "bias", _check_bias(self.bias, self.weight.shape[-1], name))

    def with_batchnorm(self, **batchnorm: np.ndarray | float) -> Self:
        """Return this layer with a following batch norm folded in (see `fold_batchnorm`)."""
        weight, bias = fold_batchnorm(self.weight, self.bias, **batchnorm)  # type: ignore[arg-type]
        return replace(self, weight=weight, bias=bias)  # type: ignore[type-var]


@dataclass(frozen=True, eq=False)
class Conv2d(_Weighted):
    """2-D convolution: weight [kh, kw, in_c, out_c] (HWIO), bias [out_c], optional ReLU."""

    weight: np.ndarray
    bias: np.ndarray
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    relu: bool = False
    WEIGHT_NDIM = 4

    def output_shape(self, shape: Shape) -> Shape:
        """Per-window output shape for per-window input shape (height, width, in_c)."""
        height, width, channels = _require_hwc(shape, "Conv2d")
        kh, kw, in_c, out_c = self.weight.shape
        _check_channels(channels, in_c, "Conv2d")
        return (*conv_output_hw((height, width), (kh, kw), self.stride, self.padding), out_c)

    def flops(self, shape: Shape) -> int:
        """Multiply-adds x 2 per window."""
        kh, kw, in_c, _ = self.weight.shape
        return 2 * math.prod(self.output_shape(shape)) * kh * kw * in_c

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Numpy path: [batch, *input] -> [batch, *output]."""
        return _relu(conv2d_ref(x, self.weight, self.bias, self.stride, self.padding), self.relu)


@dataclass(frozen=True, eq=False)
class DepthwiseConv2d(_Weighted):
    """Depthwise 2-D convolution: weight [kh, kw, c], bias [c], optional ReLU."""

    weight: np.ndarray
    bias: np.ndarray
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    relu: bool = False
    WEIGHT_NDIM = 3

    def output_shape(self, shape: Shape) -> Shape:
        """Per-window output shape for per-window input shape (height, width, c)."""
        height, width, channels = _require_hwc(shape, "DepthwiseConv2d")
        kh, kw, c = self.weight.shape
        _check_channels(channels, c, "DepthwiseConv2d")
        return (*conv_output_hw((height, width), (kh, kw), self.stride, self.padding), c)

    def flops(self, shape: Shape) -> int:
        """Multiply-adds x 2 per window."""
        kh, kw, _ = self.weight.shape
        return 2 * math.prod(self.output_shape(shape)) * kh * kw

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Numpy path: [batch, *input] -> [batch, *output]."""
        out = depthwise_conv2d_ref(x, self.weight, self.bias, self.stride, self.padding)
        return _relu(out, self.relu)


@dataclass(frozen=True, eq=False)
class PointwiseConv2d(_Weighted):
    """Pointwise (1x1) convolution: weight [in_c, out_c], bias [out_c], optional ReLU."""

    weight: np.ndarray
    bias: np.ndarray
    relu: bool = False

    def output_shape(self, shape: Shape) -> Shape:
        """Per-window output shape for per-window input shape (height, width, in_c)."""
        height, width, channels = _require_hwc(shape, "PointwiseConv2d")
        _check_channels(channels, self.weight.shape[0], "PointwiseConv2d")
        return height, width, self.weight.shape[1]

    def flops(self, shape: Shape) -> int:
        """Multiply-adds x 2 per window."""
        return 2 * shape[0] * shape[1] * self.weight.size

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Numpy path: [batch, *input] -> [batch, *output]."""
        return _relu(pointwise_conv2d_ref(x, self.weight, self.bias), self.relu)


@dataclass(frozen=True, eq=False)
class Dense(_Weighted):
    """Fully connected layer on the flattened (height, width, channel) input: weight [in, out]."""

    weight: np.ndarray
    bias: np.ndarray
    relu: bool = False

    def output_shape(self, shape: Shape) -> Shape:
        """Per-window output shape (out,) for any per-window input shape of in_features values."""
        in_features, out_features = self.weight.shape
        if math.prod(shape) != in_features:
            raise ModelError(f"Dense: got input shape {shape}, weight expects {in_features} values")
        return (out_features,)

    def flops(self, shape: Shape) -> int:
        """Multiply-adds x 2 per window."""
        return 2 * self.weight.size

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Numpy path: [batch, *input] -> [batch, out]."""
        rows = x.reshape(x.shape[0], self.weight.shape[0])
        return _relu(dense_ref(rows, self.weight, self.bias), self.relu)


@dataclass(frozen=True)
class AvgPool2d:
    """Average pooling over ``kernel`` windows, no padding; stride None means ``kernel``."""

    kernel: Pair
    stride: Pair | None = None
    relu: bool = False

    @property
    def step(self) -> Pair:
        """The stride actually used."""
        return self.kernel if self.stride is None else self.stride

    def output_shape(self, shape: Shape) -> Shape:
        """Per-window output shape for per-window input shape (height, width, c)."""
        height, width, channels = _require_hwc(shape, "AvgPool2d")
        return (*conv_output_hw((height, width), self.kernel, self.step, (0, 0)), channels)

    def flops(self, shape: Shape) -> int:
        """One add per input read, per window."""
        return math.prod(self.output_shape(shape)) * self.kernel[0] * self.kernel[1]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Numpy path: [batch, *input] -> [batch, *output]."""
        return _relu(avg_pool2d_ref(x, self.kernel, self.step), self.relu)


@dataclass(frozen=True)
class GlobalAvgPool:
    """Mean over all positions: (height, width, c) -> (c,)."""

    def output_shape(self, shape: Shape) -> Shape:
        """Per-window output shape (c,)."""
        return (_require_hwc(shape, "GlobalAvgPool")[2],)

    def flops(self, shape: Shape) -> int:
        """One add per input value, per window."""
        return math.prod(shape)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Numpy path: [batch, h, w, c] -> [batch, c]."""
        return global_avg_pool_ref(x)


class _Activation:
    """What softmax and sigmoid share: the shape is unchanged, a few operations per value."""

    def output_shape(self, shape: Shape) -> Shape:
        """Unchanged."""
        return shape

    def flops(self, shape: Shape) -> int:
        """About four operations per value."""
        return FLOPS_PER_ACTIVATION * math.prod(shape)


@dataclass(frozen=True)
class Softmax(_Activation):
    """Softmax over the last axis."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Numpy path, shape unchanged."""
        return softmax_ref(x)


@dataclass(frozen=True)
class Sigmoid(_Activation):
    """Elementwise logistic function."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Numpy path, shape unchanged."""
        return sigmoid_ref(x)


Layer = (
    Conv2d
    | DepthwiseConv2d
    | PointwiseConv2d
    | Dense
    | AvgPool2d
    | GlobalAvgPool
    | Softmax
    | Sigmoid
)


@dataclass(frozen=True)
class Network:
    """A feed-forward network: per-window input shape plus layers, run first to last.

    Parameters
    ----------
    input_shape : tuple[int, ...]
        Shape of one window, without the batch axis; (height, width, channels) for a CNN.
    layers : tuple[Layer, ...]
        Layer specs. Shapes are checked when the network is built.
    """

    input_shape: Shape
    layers: tuple[Layer, ...]
    shapes: tuple[Shape, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ModelError("network.layers: got no layers, expected at least one")
        shapes = [self.input_shape]
        for layer in self.layers:
            shapes.append(tuple(layer.output_shape(shapes[-1])))
        object.__setattr__(self, "shapes", tuple(shapes))

    @property
    def output_shape(self) -> Shape:
        """Shape of one window's output, without the batch axis."""
        return self.shapes[-1]

    def flops(self) -> int:
        """Floating-point operations per window (a multiply-add counts as 2)."""
        return sum(
            layer.flops(shape) for layer, shape in zip(self.layers, self.shapes, strict=False)
        )

    def check_input(self, x: np.ndarray) -> np.ndarray:
        """Return ``x`` as contiguous float32 after checking it is [batch, *input_shape]."""
        if tuple(x.shape[1:]) != self.input_shape or x.ndim != len(self.input_shape) + 1:
            expected = ("batch", *self.input_shape)
            raise ModelError(f"network input: got shape {x.shape}, expected {expected}")
        return np.ascontiguousarray(x, dtype=np.float32)


def run_numpy(network: Network, x: np.ndarray) -> np.ndarray:
    """Run the network with the numpy references (the reference result, and the numpy path).

    Parameters
    ----------
    network : Network
        What to run.
    x : np.ndarray [shape=(batch, *network.input_shape)]
        Input windows.

    Returns
    -------
    np.ndarray [shape=(batch, *network.output_shape)], float32
    """
    out = network.check_input(x)
    for layer in network.layers:
        out = layer.forward(out)
    return out
