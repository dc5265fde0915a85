"""Trainable linear layers: convolution, depthwise, pointwise and dense, forward and backward.

Layouts are those of `kernels` so export is a copy: activations NHWC ``[batch, height, width,
channels]`` (height is time, width is mel bands), weights with output channels last (conv
``[kh, kw, in_c, out_c]``, depthwise ``[kh, kw, c]``, pointwise ``[in_c, out_c]``, dense
``[in_features, out_features]``), symmetric zero padding ``(rows, columns)`` per side.
A convolution is im2col plus one BLAS matrix product each way; a depthwise convolution loops
over its kernel taps only, every tap one vectorised multiply-add over the whole batch.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from kernels.reference import conv_output_size
from models.layer_base import (
    Init,
    Layer,
    Pair,
    check_input,
    check_pair,
    check_positive,
    init_weight,
)

CHUNK_VALUES = 1 << 18
"""Output values per batch chunk of a depthwise convolution (1 MiB of float32), so that a
chunk's input, output and scratch stay in cache while every kernel tap passes over them."""


def _pad(x: np.ndarray, padding: Pair) -> np.ndarray:
    """Zero-pad the height and width axes of [N, H, W, C] (a new array; ``np.pad`` is slower)."""
    pad_h, pad_w = padding
    if not (pad_h or pad_w):
        return x
    batch, height, width, channels = x.shape
    out = np.zeros((batch, height + 2 * pad_h, width + 2 * pad_w, channels), x.dtype)
    out[:, pad_h : pad_h + height, pad_w : pad_w + width] = x
    return out


def _unpad(x: np.ndarray, padding: Pair) -> np.ndarray:
    """Inverse of `_pad`: the interior of [N, H + 2 ph, W + 2 pw, C]."""
    pad_h, pad_w = padding
    return x[:, pad_h : x.shape[1] - pad_h, pad_w : x.shape[2] - pad_w]


def _output_hw(x_shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair) -> Pair:
    out_h = conv_output_size(x_shape[1], kernel[0], stride[0], padding[0])
    return out_h, conv_output_size(x_shape[2], kernel[1], stride[1], padding[1])


def _tap(x: np.ndarray, i: int, j: int, stride: Pair, out_hw: Pair) -> np.ndarray:
    """View of the padded input that kernel tap (i, j) reads at each output: [N, OH, OW, C]."""
    rows = slice(i, i + stride[0] * (out_hw[0] - 1) + 1, stride[0])
    columns = slice(j, j + stride[1] * (out_hw[1] - 1) + 1, stride[1])
    return x[:, rows, columns]


def _im2col(xp: np.ndarray, kernel: Pair, stride: Pair, out_hw: Pair) -> np.ndarray:
    """Every kernel window of the padded input as a row: [N * OH * OW, kh * kw * C] (a copy)."""
    batch, _, _, channels = xp.shape
    s_n, s_h, s_w, s_c = xp.strides
    windows = as_strided(
        xp,
        shape=(batch, *out_hw, *kernel, channels),
        strides=(s_n, s_h * stride[0], s_w * stride[1], s_h, s_w, s_c),
        writeable=False,
    )
    return windows.reshape(batch * out_hw[0] * out_hw[1], kernel[0] * kernel[1] * channels)


def _col2im(
    columns: np.ndarray, padded_shape: tuple[int, ...], kernel: Pair, stride: Pair, out_hw: Pair
) -> np.ndarray:
    """Adjoint of `_im2col`: add each window row back onto the padded input grid."""
    batch, channels = padded_shape[0], padded_shape[3]
    windows = columns.reshape(batch, *out_hw, *kernel, channels)
    out = np.zeros(padded_shape, columns.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            _tap(out, i, j, stride, out_hw)[...] += windows[:, :, :, i, j]
    return out


def _batch_chunks(batch: int, values_per_item: int) -> list[slice]:
    """Split a batch into slices of about `CHUNK_VALUES` values each (at least one item)."""
    step = max(1, CHUNK_VALUES // max(1, values_per_item))
    return [slice(start, min(start + step, batch)) for start in range(0, batch, step)]


def _weight_rows(weight: np.ndarray, out_w: int) -> np.ndarray:
    """Depthwise weights [kh, kw, C] repeated along an output row: [kh, kw, OW, C].

    Multiplying a tap [N, OH, OW, C] by a [OW, C] array lets numpy run its inner loop over a
    whole row (OW * C values) instead of over C channels at a time.
    """
    shape = (*weight.shape[:2], out_w, weight.shape[2])
    return np.ascontiguousarray(np.broadcast_to(weight[:, :, None, :], shape))


def _depthwise_forward(
    xp: np.ndarray, weight: np.ndarray, stride: Pair, out_hw: Pair
) -> np.ndarray:
    """Depthwise correlation of padded [N, Hp, Wp, C] with [kh, kw, C]: [N, OH, OW, C], no bias."""
    batch, channels = xp.shape[0], xp.shape[3]
    out = np.empty((batch, *out_hw, channels), xp.dtype)
    chunks = _batch_chunks(batch, out[0].size)
    scratch = np.empty((chunks[0].stop, *out_hw, channels), xp.dtype) if chunks else out
    weight_rows = _weight_rows(weight, out_hw[1])
    for chunk in chunks:
        x_c, out_c = xp[chunk], out[chunk]
        scratch_c = scratch[: out_c.shape[0]]
        np.multiply(_tap(x_c, 0, 0, stride, out_hw), weight_rows[0, 0], out=out_c)
        for i in range(weight.shape[0]):
            for j in range(weight.shape[1]):
                if i or j:
                    np.multiply(_tap(x_c, i, j, stride, out_hw), weight_rows[i, j], out=scratch_c)
                    out_c += scratch_c
    return out


def _depthwise_backward(
    xp: np.ndarray, weight: np.ndarray, grad_out: np.ndarray, stride: Pair, grad_weight: np.ndarray
) -> np.ndarray:
    """Backward of `_depthwise_forward`: returns the padded input gradient, sets ``grad_weight``."""
    out_hw = grad_out.shape[1], grad_out.shape[2]
    channels = xp.shape[3]
    grad_xp = np.zeros_like(xp)
    grad_weight[...] = 0
    chunks = _batch_chunks(xp.shape[0], grad_out[0].size)
    scratch = np.empty((chunks[0].stop, *out_hw, channels), xp.dtype) if chunks else grad_xp
    ones = np.ones(scratch[:, :, :, 0].size, xp.dtype)
    partial = np.empty(channels, xp.dtype)
    weight_rows = _weight_rows(weight, out_hw[1])
    for chunk in chunks:
        x_c, grad_c, grad_x_c = xp[chunk], grad_out[chunk], grad_xp[chunk]
        scratch_c = scratch[: grad_c.shape[0]]
        ones_c = ones[: scratch_c.size // channels]
        for i in range(weight.shape[0]):
            for j in range(weight.shape[1]):
                np.multiply(_tap(x_c, i, j, stride, out_hw), grad_c, out=scratch_c)
                grad_weight[i, j] += np.matmul(ones_c, scratch_c.reshape(-1, channels), out=partial)
                np.multiply(grad_c, weight_rows[i, j], out=scratch_c)
                _tap(grad_x_c, i, j, stride, out_hw)[...] += scratch_c
    return grad_xp


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
        Weight initialisation (see `models.layer_base.Init`); biases start at zero.

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
        xp = _pad(x, self.padding)
        out_hw = _output_hw(x.shape, self.kernel, self.stride, self.padding)
        columns = _im2col(xp, self.kernel, self.stride, out_hw)
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
        grad_xp = _col2im(grad_columns, self._padded_shape, self.kernel, self.stride, out_hw)
        return _unpad(grad_xp, self.padding)

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
        xp = _pad(x, self.padding)
        out_hw = _output_hw(x.shape, self.kernel, self.stride, self.padding)
        out = _depthwise_forward(xp, self.params["weight"], self.stride, out_hw)
        if "bias" in self.params:
            out += self.params["bias"]
        if training:
            self._padded = xp
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """[N, OH, OW, c] -> [N, H, W, c]; sets ``weight`` and ``bias`` gradients."""
        xp = self._cached(self._padded, "padded input")
        grad_xp = _depthwise_backward(
            xp, self.params["weight"], grad_out, self.stride, self.grads["weight"]
        )
        if "bias" in self.params:
            np.sum(grad_out.reshape(-1, self.c), axis=0, out=self.grads["bias"])
        return _unpad(grad_xp, self.padding)


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
