"""A network description that both the numpy path and the wgpu engine run.

A `Network` is the per-window input shape plus a tuple of layer specs. Layer specs are frozen
dataclasses holding float32 weights in this package's layouts (see `kernels.reference`):
activations are NHWC, weights put output channels last. Batch norm is not a layer: fold it into
the preceding convolution or dense layer with `kernels.reference.fold_batchnorm` when the
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
from dataclasses import dataclass, field
from typing import Self

import numpy as np

from kernels import reference as ref
from kernels.errors import ModelError

Shape = tuple[int, ...]
Pair = tuple[int, int]


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


@dataclass(frozen=True, eq=False)
class Conv2d:
    """2-D convolution: weight [kh, kw, in_c, out_c] (HWIO), bias [out_c], optional ReLU."""

    weight: np.ndarray
    bias: np.ndarray
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    relu: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _array(self.weight, 4, "Conv2d.weight"))
        object.__setattr__(self, "bias", _check_bias(self.bias, self.weight.shape[3], "Conv2d"))

    def with_batchnorm(self, **batchnorm: np.ndarray | float) -> Self:
        """Return this layer with a following batch norm folded in (see `fold_batchnorm`)."""
        weight, bias = ref.fold_batchnorm(self.weight, self.bias, **batchnorm)  # type: ignore[arg-type]
        return type(self)(weight, bias, self.stride, self.padding, self.relu)

    def output_shape(self, shape: Shape) -> Shape:
        """Per-window output shape for per-window input shape (height, width, in_c)."""
        height, width, channels = _require_hwc(shape, "Conv2d")
        kh, kw, in_c, out_c = self.weight.shape
        if channels != in_c:
            raise ModelError(f"Conv2d: got {channels} input channels, weight expects {in_c}")
        out_h = ref.conv_output_size(height, kh, self.stride[0], self.padding[0])
        return out_h, ref.conv_output_size(width, kw, self.stride[1], self.padding[1]), out_c

    def flops(self, shape: Shape) -> int:
        """Multiply-adds x 2 per window."""
        kh, kw, in_c, _ = self.weight.shape
        return 2 * math.prod(self.output_shape(shape)) * kh * kw * in_c

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Numpy path: [batch, *input] -> [batch, *output]."""
        out = ref.conv2d_ref(x, self.weight, self.bias, self.stride, self.padding)
        return np.maximum(out, 0, out=out) if self.relu else out


@dataclass(frozen=True, eq=False)
class DepthwiseConv2d:
    """Depthwise 2-D convolution: weight [kh, kw, c], bias [c], optional ReLU."""

    weight: np.ndarray
    bias: np.ndarray
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    relu: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _array(self.weight, 3, "DepthwiseConv2d.weight"))
        bias = _check_bias(self.bias, self.weight.shape[2], "DepthwiseConv2d")
        object.__setattr__(self, "bias", bias)

    def with_batchnorm(self, **batchnorm: np.ndarray | float) -> Self:
        """Return this layer with a following batch norm folded in (see `fold_batchnorm`)."""
        weight, bias = ref.fold_batchnorm(self.weight, self.bias, **batchnorm)  # type: ignore[arg-type]
        return type(self)(weight, bias, self.stride, self.padding, self.relu)

    def output_shape(self, shape: Shape) -> Shape:
        """Per-window output shape for per-window input shape (height, width, c)."""
        height, width, channels = _require_hwc(shape, "DepthwiseConv2d")
        kh, kw, c = self.weight.shape
        if channels != c:
            raise ModelError(f"DepthwiseConv2d: got {channels} input channels, weight expects {c}")
        out_h = ref.conv_output_size(height, kh, self.stride[0], self.padding[0])
        return out_h, ref.conv_output_size(width, kw, self.stride[1], self.padding[1]), c

    def flops(self, shape: Shape) -> int:
        """Multiply-adds x 2 per window."""
        kh, kw, _ = self.weight.shape
        return 2 * math.prod(self.output_shape(shape)) * kh * kw

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Numpy path: [batch, *input] -> [batch, *output]."""
        out = ref.depthwise_conv2d_ref(x, self.weight, self.bias, self.stride, self.padding)
        return np.maximum(out, 0, out=out) if self.relu else out


@dataclass(frozen=True, eq=False)
class PointwiseConv2d:
    """Pointwise (1x1) convolution: weight [in_c, out_c], bias [out_c], optional ReLU."""

    weight: np.ndarray
    bias: np.ndarray
    relu: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _array(self.weight, 2, "PointwiseConv2d.weight"))
        bias = _check_bias(self.bias, self.weight.shape[1], "PointwiseConv2d")
        object.__setattr__(self, "bias", bias)

    def with_batchnorm(self, **batchnorm: np.ndarray | float) -> Self:
        """Return this layer with a following batch norm folded in (see `fold_batchnorm`)."""
        weight, bias = ref.fold_batchnorm(self.weight, self.bias, **batchnorm)  # type: ignore[arg-type]
        return type(self)(weight, bias, self.relu)

    def output_shape(self, shape: Shape) -> Shape:
        """Per-window output shape for per-window input shape (height, width, in_c)."""
        height, width, channels = _require_hwc(shape, "PointwiseConv2d")
        in_c, out_c = self.weight.shape
        if channels != in_c:
            raise ModelError(
                f"PointwiseConv2d: got {channels} input channels, weight expects {in_c}"
            )
        return height, width, out_c

    def flops(self, shape: Shape) -> int:
        """Multiply-adds x 2 per window."""
        return 2 * shape[0] * shape[1] * self.weight.size

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Numpy path: [batch, *input] -> [batch, *output]."""
        out = ref.pointwise_conv2d_ref(x, self.weight, self.bias)
        return np.maximum(out, 0, out=out) if self.relu else out


@dataclass(frozen=True, eq=False)
class Dense:
    """Fully connected layer on the flattened (height, width, channel) input: weight [in, out]."""

    weight: np.ndarray
    bias: np.ndarray
    relu: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _array(self.weight, 2, "Dense.weight"))
        object.__setattr__(self, "bias", _check_bias(self.bias, self.weight.shape[1], "Dense"))

    def with_batchnorm(self, **batchnorm: np.ndarray | float) -> Self:
        """Return this layer with a following batch norm folded in (see `fold_batchnorm`)."""
        weight, bias = ref.fold_batchnorm(self.weight, self.bias, **batchnorm)  # type: ignore[arg-type]
        return type(self)(weight, bias, self.relu)

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
        out = ref.dense_ref(x.reshape(x.shape[0], self.weight.shape[0]), self.weight, self.bias)
        return np.maximum(out, 0, out=out) if self.relu else out


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
        out_h = ref.conv_output_size(height, self.kernel[0], self.step[0], 0)
        return out_h, ref.conv_output_size(width, self.kernel[1], self.step[1], 0), channels

    def flops(self, shape: Shape) -> int:
        """One add per input read, per window."""
        return math.prod(self.output_shape(shape)) * self.kernel[0] * self.kernel[1]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Numpy path: [batch, *input] -> [batch, *output]."""
        out = ref.avg_pool2d_ref(x, self.kernel, self.step)
        return np.maximum(out, 0, out=out) if self.relu else out


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
        return ref.global_avg_pool_ref(x)


@dataclass(frozen=True)
class Softmax:
    """Softmax over the last axis."""

    def output_shape(self, shape: Shape) -> Shape:
        """Unchanged."""
        return shape

    def flops(self, shape: Shape) -> int:
        """About four operations per value."""
        return 4 * math.prod(shape)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Numpy path, shape unchanged."""
        return ref.softmax_ref(x)


@dataclass(frozen=True)
class Sigmoid:
    """Elementwise logistic function."""

    def output_shape(self, shape: Shape) -> Shape:
        """Unchanged."""
        return shape

    def flops(self, shape: Shape) -> int:
        """About four operations per value."""
        return 4 * math.prod(shape)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Numpy path, shape unchanged."""
        return ref.sigmoid_ref(x)


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
