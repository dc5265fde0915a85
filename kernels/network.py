"""A network description that both the numpy path and the wgpu engine run.

A `Network` is the per-window input shape plus a tuple of layer specs. Layer specs are frozen
dataclasses holding float32 weights in this package's layouts (see `kernels.ops.layout`):
activations are NHWC, weights put output channels last. Batch norm is not a layer: fold it into
the preceding convolution or dense layer with `kernels.ops.batch_norm.fold_batchnorm` when the
network is built (``Conv2d.with_batchnorm`` and friends do that). An activation (`Activation`:
identity, ReLU, leaky ReLU, each optionally clamped) is a field of the layer that produces the
values, so the kernel applies it before writing.

Example
-------
>>> import numpy as np
>>> from kernels.network import RELU, Conv2d, Dense, GlobalAvgPool, Network, Softmax, run_numpy
>>> rng = np.random.default_rng(0)
>>> net = Network(
...     input_shape=(98, 40, 1),
...     layers=(
...         Conv2d(rng.normal(size=(10, 4, 1, 8)), np.zeros(8), stride=(2, 2), padding=(4, 1),
...                activation=RELU),
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
from typing import Any, Self

import numpy as np

from kernels.errors import ModelError
from kernels.ops.activation import IDENTITY, RELU, Activation, activation_ref, sigmoid_ref
from kernels.ops.batch_norm import fold_batchnorm
from kernels.ops.conv2d import conv2d_ref
from kernels.ops.depthwise_conv2d import depthwise_conv2d_ref
from kernels.ops.layout import PADDING_FORMS, Padding, Pads, Pair, Shape, conv_output_hw, pads4
from kernels.ops.linear import dense_ref, pointwise_conv2d_ref
from kernels.ops.pooling import avg_pool2d_ref, global_avg_pool_ref, max_pool2d_ref
from kernels.ops.softmax import softmax_ref

__all__ = [
    "IDENTITY",
    "RELU",
    "Activation",
    "AvgPool2d",
    "Conv2d",
    "Dense",
    "DepthwiseConv2d",
    "GlobalAvgPool",
    "Layer",
    "MaxPool2d",
    "Network",
    "PointwiseConv2d",
    "Shape",
    "Sigmoid",
    "Softmax",
    "run_numpy",
]

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


def _integers(value: Any, minimum: int) -> tuple[int, ...] | None:
    """``value`` as a tuple of ints, or None unless it is a sequence of integers >= minimum."""
    try:
        values = tuple(value)
        if all(int(v) == v and v >= minimum for v in values):
            return tuple(int(v) for v in values)
    except (TypeError, ValueError, OverflowError):
        pass
    return None


def _pair(value: Any, name: str, minimum: int) -> Pair:
    values = _integers(value, minimum)
    if values is None or len(values) != 2:
        raise ModelError(f"{name}: got {value!r}, expected two integers >= {minimum}")
    return values[0], values[1]


def _padding(value: Any, name: str) -> Padding:
    values = _integers(value, 0)
    if values is None or len(values) not in PADDING_FORMS:
        raise ModelError(
            f"{name}: got {value!r}, expected (rows, columns) or (top, left, bottom, right), "
            "integers >= 0"
        )
    if len(values) == PADDING_FORMS[0]:
        return values[0], values[1]
    return values[0], values[1], values[2], values[3]


def _check_activation(activation: Any, layer: str) -> None:
    if not isinstance(activation, Activation):
        raise ModelError(
            f"{layer}.activation: got {activation!r}, expected a kernels.network.Activation "
            "such as IDENTITY, RELU or Activation(slope=0.2, low=0.0)"
        )


def _output_hw(
    layer: str, shape: Shape, kernel: Pair, stride: Pair, padding: Padding, dilation: Pair
) -> Pair:
    """(out_h, out_w) of a window over (height, width), or ModelError naming ``layer``."""
    height, width, _ = _require_hwc(shape, layer)
    try:
        return conv_output_hw((height, width), kernel, stride, padding, dilation)
    except ValueError as exc:
        raise ModelError(f"{layer}: input shape {shape}: {exc}") from None


class _Weighted:
    """What the layers with weights share: the array checks, the activation, batch-norm folding."""

    weight: np.ndarray
    bias: np.ndarray
    activation: Activation
    WEIGHT_NDIM = 2
    """Axes of the weight (its last is the output channels)."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        object.__setattr__(self, "weight", _array(self.weight, self.WEIGHT_NDIM, f"{name}.weight"))
        object.__setattr__(self, "bias", _check_bias(self.bias, self.weight.shape[-1], name))
        _check_activation(self.activation, name)

    def with_batchnorm(self, **batchnorm: np.ndarray | float) -> Self:
        """Return this layer with a following batch norm folded in (see `fold_batchnorm`)."""
        weight, bias = fold_batchnorm(self.weight, self.bias, **batchnorm)  # type: ignore[arg-type]
        return replace(self, weight=weight, bias=bias)  # type: ignore[type-var]


class _Convolution(_Weighted):
    """What Conv2d and DepthwiseConv2d share: stride, padding and dilation, checked."""

    stride: Pair
    padding: Padding
    dilation: Pair

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        object.__setattr__(self, "stride", _pair(self.stride, f"{name}.stride", 1))
        object.__setattr__(self, "padding", _padding(self.padding, f"{name}.padding"))
        object.__setattr__(self, "dilation", _pair(self.dilation, f"{name}.dilation", 1))

    @property
    def pads(self) -> Pads:
        """The padding as (top, left, bottom, right)."""
        return pads4(self.padding)

    def _out_hw(self, shape: Shape) -> Pair:
        kernel = (self.weight.shape[0], self.weight.shape[1])
        name = type(self).__name__
        return _output_hw(name, shape, kernel, self.stride, self.padding, self.dilation)


@dataclass(frozen=True, eq=False)
class Conv2d(_Convolution):
    """2-D convolution: weight [kh, kw, in_c // groups, out_c] (HWIO), bias [out_c].

    ``padding`` is (rows, columns) on both sides or (top, left, bottom, right); ``dilation``
    spaces the taps; with ``groups`` > 1, output channel o reads only the input channels of its
    group ``o // (out_c // groups)``. ``activation`` is applied to every output value.
    """

    weight: np.ndarray
    bias: np.ndarray
    stride: Pair = (1, 1)
    padding: Padding = (0, 0)
    activation: Activation = IDENTITY
    dilation: Pair = (1, 1)
    groups: int = 1
    WEIGHT_NDIM = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        out_c = self.weight.shape[3]
        groups = _integers((self.groups,), 1)
        if groups is None or out_c % groups[0]:
            raise ModelError(
                f"Conv2d.groups: got {self.groups!r}, expected an integer >= 1 that divides the "
                f"{out_c} output channels"
            )
        object.__setattr__(self, "groups", groups[0])

    def output_shape(self, shape: Shape) -> Shape:
        """Per-window output shape for per-window input shape (height, width, in_c)."""
        _, _, channels = _require_hwc(shape, "Conv2d")
        group_in, out_c = self.weight.shape[2], self.weight.shape[3]
        if channels != group_in * self.groups:
            raise ModelError(
                f"Conv2d: got {channels} input channels, weight expects {group_in * self.groups} "
                f"({self.groups} groups of {group_in})"
            )
        return (*self._out_hw(shape), out_c)

    def flops(self, shape: Shape) -> int:
        """Multiply-adds x 2 per window."""
        kh, kw, group_in, _ = self.weight.shape
        return 2 * math.prod(self.output_shape(shape)) * kh * kw * group_in

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Numpy path: [batch, *input] -> [batch, *output]."""
        out = conv2d_ref(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )
        return activation_ref(out, self.activation, inplace=True)


@dataclass(frozen=True, eq=False)
class DepthwiseConv2d(_Convolution):
    """Depthwise 2-D convolution: weight [kh, kw, c], bias [c], an activation.

    ``padding`` and ``dilation`` as in `Conv2d`.
    """

    weight: np.ndarray
    bias: np.ndarray
    stride: Pair = (1, 1)
    padding: Padding = (0, 0)
    activation: Activation = IDENTITY
    dilation: Pair = (1, 1)
    WEIGHT_NDIM = 3

    def output_shape(self, shape: Shape) -> Shape:
        """Per-window output shape for per-window input shape (height, width, c)."""
        _, _, channels = _require_hwc(shape, "DepthwiseConv2d")
        c = self.weight.shape[2]
        _check_channels(channels, c, "DepthwiseConv2d")
        return (*self._out_hw(shape), c)

    def flops(self, shape: Shape) -> int:
        """Multiply-adds x 2 per window."""
        kh, kw, _ = self.weight.shape
        return 2 * math.prod(self.output_shape(shape)) * kh * kw

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Numpy path: [batch, *input] -> [batch, *output]."""
        out = depthwise_conv2d_ref(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation
        )
        return activation_ref(out, self.activation, inplace=True)


@dataclass(frozen=True, eq=False)
class PointwiseConv2d(_Weighted):
    """Pointwise (1x1) convolution: weight [in_c, out_c], bias [out_c], an activation."""

    weight: np.ndarray
    bias: np.ndarray
    activation: Activation = IDENTITY

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
        out = pointwise_conv2d_ref(x, self.weight, self.bias)
        return activation_ref(out, self.activation, inplace=True)


@dataclass(frozen=True, eq=False)
class Dense(_Weighted):
    """Fully connected layer on the flattened (height, width, channel) input: weight [in, out]."""

    weight: np.ndarray
    bias: np.ndarray
    activation: Activation = IDENTITY

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
        return activation_ref(
            dense_ref(rows, self.weight, self.bias), self.activation, inplace=True
        )


class _Pool:
    """What the pooling layers share: ``kernel`` windows with no padding, stride None = kernel."""

    kernel: Pair
    stride: Pair | None

    def __post_init__(self) -> None:
        name = type(self).__name__
        object.__setattr__(self, "kernel", _pair(self.kernel, f"{name}.kernel", 1))
        if self.stride is not None:
            object.__setattr__(self, "stride", _pair(self.stride, f"{name}.stride", 1))

    @property
    def step(self) -> Pair:
        """The stride actually used."""
        return self.kernel if self.stride is None else self.stride

    def output_shape(self, shape: Shape) -> Shape:
        """Per-window output shape for per-window input shape (height, width, c)."""
        name = type(self).__name__
        out_hw = _output_hw(name, shape, self.kernel, self.step, (0, 0), (1, 1))
        return (*out_hw, shape[2])

    def flops(self, shape: Shape) -> int:
        """One operation per input read, per window."""
        return math.prod(self.output_shape(shape)) * self.kernel[0] * self.kernel[1]


@dataclass(frozen=True)
class AvgPool2d(_Pool):
    """Average pooling over ``kernel`` windows, no padding; stride None means ``kernel``."""

    kernel: Pair
    stride: Pair | None = None
    activation: Activation = IDENTITY

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_activation(self.activation, "AvgPool2d")

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Numpy path: [batch, *input] -> [batch, *output]."""
        out = avg_pool2d_ref(x, self.kernel, self.step)
        return activation_ref(out, self.activation, inplace=True)


@dataclass(frozen=True)
class MaxPool2d(_Pool):
    """Max pooling over ``kernel`` windows, no padding; stride None means ``kernel``.

    Input rows and columns past the last whole window are dropped (ONNX's ``ceil_mode=0``).
    """

    kernel: Pair
    stride: Pair | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Numpy path: [batch, *input] -> [batch, *output]."""
        return max_pool2d_ref(x, self.kernel, self.step)


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
    | MaxPool2d
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
