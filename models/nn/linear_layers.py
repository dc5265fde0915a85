"""Trainable linear layers: convolution, depthwise, pointwise and dense, forward and backward.

Layouts are those of `kernels` so export is a copy: activations NHWC ``[batch, height, width,
channels]`` (height is time, width is mel bands), weights with output channels last (conv
``[kh, kw, in_c, out_c]``, depthwise ``[kh, kw, c]``, pointwise ``[in_c, out_c]``, dense
``[in_features, out_features]``), symmetric zero padding ``(rows, columns)`` per side.
A convolution is im2col plus one BLAS matrix product each way; a depthwise convolution loops
over its kernel taps only (see `models.nn.conv_ops`).
"""

from __future__ import annotations

import math

import numpy as np

from models.nn.conv_ops import (
    col2im,
    depthwise_forward,
    depthwise_input_grad,
    depthwise_weight_grad,
    im2col,
    output_hw,
    pad_hw,
    unpad_hw,
)
from models.nn.layer_base import (
    Init,
    Layer,
    Pair,
    check_input,
    check_pair,
    check_positive,
    init_weight,
)


class Conv2d(Layer):
    """2-D convolution (cross-correlation) with an HWIO weight, im2col plus BLAS.

    Parameters
    ----------
    in_c, out_c : int
        Input and output channels, at least 1.
    kernel : tuple[int, int]
        Kernel size (kh, kw) along (time, frequency), each at least 1.
    stride : tuple[int, int]
        Step between windows, each at least 1.
    padding : tuple[int, int]
        Zeros added on each side of (height, width), each at least 0.
    bias : bool
        Whether the layer has a bias (a following batch norm makes one redundant).
    rng : np.random.Generator
        Draws the initial weights.
    init : {"he", "lecun"}
        Weight initialisation (see `models.nn.layer_base.Init`); biases start at zero.

    Attributes
    ----------
    params : dict
        ``weight`` [shape=(kh, kw, in_c, out_c)] and, with ``bias``, ``bias`` [shape=(out_c,)].
    """

    def __init__(
        self,
        in_c: int,
        out_c: int,
        kernel: Pair,
        stride: Pair = (1, 1),
        padding: Pair = (0, 0),
        bias: bool = True,
        *,
        rng: np.random.Generator,
        init: Init = "he",
    ) -> None:
        super().__init__()
        self.in_c = check_positive(in_c, "Conv2d.in_c")
        self.out_c = check_positive(out_c, "Conv2d.out_c")
        self.kernel = check_pair(kernel, "Conv2d.kernel", 1)
        self.stride = check_pair(stride, "Conv2d.stride", 1)
        self.padding = check_pair(padding, "Conv2d.padding", 0)
        fan_in = self.kernel[0] * self.kernel[1] * self.in_c
        self.add_param("weight", init_weight((*self.kernel, in_c, out_c), fan_in, init, rng))
        if bias:
            self.add_param("bias", np.zeros(out_c))
        self._columns: np.ndarray | None = None
        self._padded_shape: tuple[int, ...] = ()

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """[N, H, W, in_c] -> [N, OH, OW, out_c]; caches the im2col rows when training."""
        check_input(x, 4, self.in_c, "Conv2d")
        xp = pad_hw(x, self.padding)
        out_hw = output_hw(x.shape, self.kernel, self.stride, self.padding)
        columns = im2col(xp, self.kernel, self.stride, out_hw)
        out = columns @ self.params["weight"].reshape(columns.shape[1], self.out_c)
        if "bias" in self.params:
            out += self.params["bias"]
        if training:
            self._columns, self._padded_shape = columns, xp.shape
        return out.reshape(x.shape[0], *out_hw, self.out_c)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """[N, OH, OW, out_c] -> [N, H, W, in_c]; sets ``weight`` and ``bias`` gradients."""
        self.backward_params(grad_out)
        grad2d = grad_out.reshape(-1, self.out_c)
        grad_columns = grad2d @ self.params["weight"].reshape(-1, self.out_c).T
        out_hw = grad_out.shape[1], grad_out.shape[2]
        grad_xp = col2im(grad_columns, self._padded_shape, self.kernel, self.stride, out_hw)
        return unpad_hw(grad_xp, self.padding)

    def backward_params(self, grad_out: np.ndarray) -> None:
        """Set the ``weight`` and ``bias`` gradients without the input gradient."""
        columns = self._cached(self._columns, "im2col rows")
        grad2d = grad_out.reshape(-1, self.out_c)
        grad_weight = self.grads["weight"].reshape(columns.shape[1], self.out_c)
        np.matmul(columns.T, grad2d, out=grad_weight)
        if "bias" in self.params:
            np.sum(grad2d, axis=0, out=self.grads["bias"])


class DepthwiseConv2d(Layer):
    """Depthwise 2-D convolution: each channel convolved with its own [kh, kw] kernel.

    Parameters
    ----------
    c : int
        Channels (input and output), at least 1.
    kernel, stride, padding : tuple[int, int]
        As for `Conv2d`.
    bias : bool
        Whether the layer has a bias.
    rng : np.random.Generator
        Draws the initial weights.
    init : {"he", "lecun"}
        Weight initialisation with fan-in kh * kw; biases start at zero.

    Attributes
    ----------
    params : dict
        ``weight`` [shape=(kh, kw, c)] and, with ``bias``, ``bias`` [shape=(c,)].
    """

    def __init__(
        self,
        c: int,
        kernel: Pair,
        stride: Pair = (1, 1),
        padding: Pair = (0, 0),
        bias: bool = True,
        *,
        rng: np.random.Generator,
        init: Init = "he",
    ) -> None:
        super().__init__()
        self.c = check_positive(c, "DepthwiseConv2d.c")
        self.kernel = check_pair(kernel, "DepthwiseConv2d.kernel", 1)
        self.stride = check_pair(stride, "DepthwiseConv2d.stride", 1)
        self.padding = check_pair(padding, "DepthwiseConv2d.padding", 0)
        fan_in = self.kernel[0] * self.kernel[1]
        self.add_param("weight", init_weight((*self.kernel, c), fan_in, init, rng))
        if bias:
            self.add_param("bias", np.zeros(c))
        self._padded: np.ndarray | None = None

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """[N, H, W, c] -> [N, OH, OW, c]; caches the padded input when training."""
        check_input(x, 4, self.c, "DepthwiseConv2d")
        xp = pad_hw(x, self.padding)
        out_hw = output_hw(x.shape, self.kernel, self.stride, self.padding)
        out = depthwise_forward(xp, self.params["weight"], self.stride, out_hw)
        if "bias" in self.params:
            out += self.params["bias"]
        if training:
            self._padded = xp
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """[N, OH, OW, c] -> [N, H, W, c]; sets ``weight`` and ``bias`` gradients."""
        xp = self._cached(self._padded, "padded input")
        depthwise_weight_grad(xp, grad_out, self.stride, self.grads["weight"])
        if "bias" in self.params:
            np.sum(grad_out.reshape(-1, self.c), axis=0, out=self.grads["bias"])
        x_shape = unpad_hw(xp, self.padding).shape
        weight = self.params["weight"]
        return depthwise_input_grad(x_shape, weight, grad_out, self.stride, self.padding)


class PointwiseConv2d(Layer):
    """Pointwise (1x1) convolution: one matrix product over channels at every position.

    Parameters
    ----------
    in_c, out_c : int
        Input and output channels, at least 1.
    bias : bool
        Whether the layer has a bias.
    rng : np.random.Generator
        Draws the initial weights.
    init : {"he", "lecun"}
        Weight initialisation with fan-in ``in_c``; biases start at zero.

    Attributes
    ----------
    params : dict
        ``weight`` [shape=(in_c, out_c)] and, with ``bias``, ``bias`` [shape=(out_c,)].
    """

    def __init__(
        self,
        in_c: int,
        out_c: int,
        bias: bool = True,
        *,
        rng: np.random.Generator,
        init: Init = "he",
    ) -> None:
        super().__init__()
        self.in_c = check_positive(in_c, "PointwiseConv2d.in_c")
        self.out_c = check_positive(out_c, "PointwiseConv2d.out_c")
        self.add_param("weight", init_weight((in_c, out_c), in_c, init, rng))
        if bias:
            self.add_param("bias", np.zeros(out_c))
        self._input: np.ndarray | None = None

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """[N, H, W, in_c] -> [N, H, W, out_c]; caches the input when training."""
        check_input(x, 4, self.in_c, "PointwiseConv2d")
        if training:
            self._input = x
        out = x @ self.params["weight"]
        if "bias" in self.params:
            out += self.params["bias"]
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """[N, H, W, out_c] -> [N, H, W, in_c]; sets ``weight`` and ``bias`` gradients."""
        x = self._cached(self._input, "input")
        return _linear_backward(self, x.reshape(-1, self.in_c), grad_out).reshape(x.shape)


class Dense(Layer):
    """Fully connected layer on the flattened input (NHWC order, as `kernels.Dense` reads it).

    Parameters
    ----------
    in_f, out_f : int
        Input and output features, at least 1.
    bias : bool
        Whether the layer has a bias.
    rng : np.random.Generator
        Draws the initial weights.
    init : {"he", "lecun"}
        Weight initialisation with fan-in ``in_f``; ``"lecun"`` suits a classifier head.

    Attributes
    ----------
    params : dict
        ``weight`` [shape=(in_f, out_f)] and, with ``bias``, ``bias`` [shape=(out_f,)].
    """

    def __init__(
        self,
        in_f: int,
        out_f: int,
        bias: bool = True,
        *,
        rng: np.random.Generator,
        init: Init = "he",
    ) -> None:
        super().__init__()
        self.in_f = check_positive(in_f, "Dense.in_f")
        self.out_f = check_positive(out_f, "Dense.out_f")
        self.add_param("weight", init_weight((in_f, out_f), in_f, init, rng))
        if bias:
            self.add_param("bias", np.zeros(out_f))
        self._input: np.ndarray | None = None

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """[N, ...] with ``in_f`` values per row -> [N, out_f]; caches the input when training."""
        rows = x.reshape(x.shape[0], math.prod(x.shape[1:]))
        check_input(rows, 2, self.in_f, "Dense")
        if training:
            self._input = x
        out = rows @ self.params["weight"]
        if "bias" in self.params:
            out += self.params["bias"]
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """[N, out_f] -> input shape; sets ``weight`` and ``bias`` gradients."""
        x = self._cached(self._input, "input")
        return _linear_backward(self, x.reshape(-1, self.in_f), grad_out).reshape(x.shape)


def _linear_backward(layer: Layer, rows: np.ndarray, grad_out: np.ndarray) -> np.ndarray:
    """Backward of ``rows @ weight + bias`` [M, in] -> [M, out]; returns the [M, in] gradient."""
    weight = layer.params["weight"]
    grad2d = grad_out.reshape(-1, weight.shape[1])
    np.matmul(rows.T, grad2d, out=layer.grads["weight"])
    if "bias" in layer.params:
        np.sum(grad2d, axis=0, out=layer.grads["bias"])
    return grad2d @ weight.T
