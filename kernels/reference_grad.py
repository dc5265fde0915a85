"""numpy references for the training kernels: backward passes, batch statistics, loss, Adam.

The source of truth for the training kernels in ``kernels/wgsl/`` (``conv2d_input_grad_ref`` and
``wgsl/conv2d_input_grad.wgsl``), in float32, with the conventions of `kernels.reference`:
activations NHWC ``[batch, height, width, channels]``, weights with output channels last (conv
``[kh, kw, in_c, out_c]``, depthwise ``[kh, kw, c]``, pointwise and dense ``[in, out]``),
symmetric zero padding ``(rows, columns)`` per side. Each backward reference is the adjoint of the
matching forward one; the tests check each against the models' numpy layers (which are
gradient-checked in float64) and by adjoint identities. The references of the batch-norm, loss
and Adam kernels live in `kernels.reference_norm_loss` and are re-exported here, so this module
names every training reference.
"""

from __future__ import annotations

import math

import numpy as np

from kernels.reference import _windows, conv2d_ref, depthwise_conv2d_ref
from kernels.reference_norm_loss import (
    adam_ref,
    batch_norm_backward_ref,
    batch_norm_forward_ref,
    softmax_cross_entropy_ref,
)

__all__ = [
    "adam_ref",
    "batch_norm_backward_ref",
    "batch_norm_forward_ref",
    "column_sum_ref",
    "conv2d_forward_ref",
    "conv2d_input_grad_ref",
    "conv2d_weight_grad_ref",
    "depthwise_forward_ref",
    "depthwise_input_grad_ref",
    "depthwise_weight_grad_ref",
    "dropout_ref",
    "global_avg_pool_forward_ref",
    "global_avg_pool_grad_ref",
    "matmul_ref",
    "relu_backward_ref",
    "softmax_cross_entropy_ref",
]

Pair = tuple[int, int]


def _f32(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float32)


def conv2d_forward_ref(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
) -> np.ndarray:
    """2-D convolution with an optional bias and no activation (training forward).

    Parameters
    ----------
    x : np.ndarray [shape=(batch, height, width, in_c)]
        Input activations.
    weight : np.ndarray [shape=(kh, kw, in_c, out_c)]
        Kernel, HWIO.
    bias : np.ndarray [shape=(out_c,)] or None
        Added to every output position; None adds nothing.
    stride, padding : tuple[int, int]
        As in `kernels.reference.conv2d_ref`.

    Returns
    -------
    np.ndarray [shape=(batch, out_h, out_w, out_c)], float32
    """
    zeros = np.zeros(weight.shape[-1], np.float32)
    return conv2d_ref(x, weight, zeros if bias is None else bias, stride, padding)


def conv2d_input_grad_ref(
    grad_out: np.ndarray,
    weight: np.ndarray,
    input_shape: tuple[int, ...],
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
) -> np.ndarray:
    """Gradient of a convolution with respect to its input (a transposed convolution).

    Parameters
    ----------
    grad_out : np.ndarray [shape=(batch, out_h, out_w, out_c)]
        Gradient with respect to the convolution's output.
    weight : np.ndarray [shape=(kh, kw, in_c, out_c)]
        Kernel, HWIO.
    input_shape : tuple[int, int, int, int]
        (batch, height, width, in_c) of the forward input.
    stride, padding : tuple[int, int]
        Those of the forward convolution.

    Returns
    -------
    np.ndarray [shape=input_shape], float32
    """
    kh, kw, in_c, out_c = weight.shape
    batch, height, width, _ = input_shape
    out_h, out_w = grad_out.shape[1:3]
    columns = _f32(grad_out).reshape(-1, out_c) @ _f32(weight).reshape(-1, out_c).T
    columns = columns.reshape(batch, out_h, out_w, kh, kw, in_c)
    padded = np.zeros((batch, height + 2 * padding[0], width + 2 * padding[1], in_c), np.float32)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + stride[0] * (out_h - 1) + 1, stride[0])
            cols = slice(j, j + stride[1] * (out_w - 1) + 1, stride[1])
            padded[:, rows, cols] += columns[:, :, :, i, j]
    return padded[:, padding[0] : padding[0] + height, padding[1] : padding[1] + width]


def conv2d_weight_grad_ref(
    x: np.ndarray,
    grad_out: np.ndarray,
    kernel: Pair,
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
) -> np.ndarray:
    """Gradient of a convolution with respect to its weight: a sum over every output position.

    Parameters
    ----------
    x : np.ndarray [shape=(batch, height, width, in_c)]
        The forward input.
    grad_out : np.ndarray [shape=(batch, out_h, out_w, out_c)]
        Gradient with respect to the output.
    kernel : tuple[int, int]
        (kh, kw).
    stride, padding : tuple[int, int]
        Those of the forward convolution.

    Returns
    -------
    np.ndarray [shape=(kh, kw, in_c, out_c)], float32
    """
    windows = _windows(_f32(x), kernel, stride, padding)  # [b, oh, ow, c, kh, kw]
    return np.einsum("bhwckl,bhwo->klco", windows, _f32(grad_out), optimize=True).astype(np.float32)


def depthwise_forward_ref(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
) -> np.ndarray:
    """Depthwise convolution with an optional bias and no activation (training forward).

    Parameters
    ----------
    x : np.ndarray [shape=(batch, height, width, c)]
        Input activations.
    weight : np.ndarray [shape=(kh, kw, c)]
        One kernel per channel.
    bias : np.ndarray [shape=(c,)] or None
        Added to every output position; None adds nothing.
    stride, padding : tuple[int, int]
        As in `kernels.reference.depthwise_conv2d_ref`.

    Returns
    -------
    np.ndarray [shape=(batch, out_h, out_w, c)], float32
    """
    zeros = np.zeros(weight.shape[-1], np.float32)
    return depthwise_conv2d_ref(x, weight, zeros if bias is None else bias, stride, padding)


def depthwise_input_grad_ref(
    grad_out: np.ndarray,
    weight: np.ndarray,
    input_shape: tuple[int, ...],
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
) -> np.ndarray:
    """Gradient of a depthwise convolution with respect to its input.

    Parameters
    ----------
    grad_out : np.ndarray [shape=(batch, out_h, out_w, c)]
        Gradient with respect to the output.
    weight : np.ndarray [shape=(kh, kw, c)]
        One kernel per channel.
    input_shape : tuple[int, int, int, int]
        (batch, height, width, c) of the forward input.
    stride, padding : tuple[int, int]
        Those of the forward convolution.

    Returns
    -------
    np.ndarray [shape=input_shape], float32
    """
    kh, kw, channels = weight.shape
    batch, height, width, _ = input_shape
    out_h, out_w = grad_out.shape[1:3]
    padded = np.zeros(
        (batch, height + 2 * padding[0], width + 2 * padding[1], channels), np.float32
    )
    grad = _f32(grad_out)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + stride[0] * (out_h - 1) + 1, stride[0])
            cols = slice(j, j + stride[1] * (out_w - 1) + 1, stride[1])
            padded[:, rows, cols] += grad * _f32(weight[i, j])
    return padded[:, padding[0] : padding[0] + height, padding[1] : padding[1] + width]


def depthwise_weight_grad_ref(
    x: np.ndarray,
    grad_out: np.ndarray,
    kernel: Pair,
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
) -> np.ndarray:
    """Gradient of a depthwise convolution with respect to its weight.

    Parameters
    ----------
    x : np.ndarray [shape=(batch, height, width, c)]
        The forward input.
    grad_out : np.ndarray [shape=(batch, out_h, out_w, c)]
        Gradient with respect to the output.
    kernel : tuple[int, int]
        (kh, kw).
    stride, padding : tuple[int, int]
        Those of the forward convolution.

    Returns
    -------
    np.ndarray [shape=(kh, kw, c)], float32
    """
    windows = _windows(_f32(x), kernel, stride, padding)  # [b, oh, ow, c, kh, kw]
    return np.einsum("bhwckl,bhwc->klc", windows, _f32(grad_out), optimize=True).astype(np.float32)


def matmul_ref(a: np.ndarray, b: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """Matrix product ``a @ b`` plus an optional bias row.

    The pointwise and dense layers are matrix products each way: forward ``x @ w + bias``, input
    gradient ``grad @ w.T``, weight gradient ``x.T @ grad`` (x and grad as [positions, channels]).

    Parameters
    ----------
    a : np.ndarray [shape=(m, k)]
        Left operand (any strides: a transposed view is fine).
    b : np.ndarray [shape=(k, n)]
        Right operand.
    bias : np.ndarray [shape=(n,)] or None
        Added to every row.

    Returns
    -------
    np.ndarray [shape=(m, n)], float32
    """
    out = _f32(a) @ _f32(b)
    if bias is not None:
        out += _f32(bias)
    return out


def column_sum_ref(x: np.ndarray, chunk: int, scale: float = 1.0) -> np.ndarray:
    """Sums of consecutive chunks of rows: the first pass of a two-pass column reduction.

    Parameters
    ----------
    x : np.ndarray [shape=(m, n)]
        Rows to reduce, m >= 1.
    chunk : int
        Rows per partial sum, at least 1.
    scale : float
        Multiplies every sum.

    Returns
    -------
    np.ndarray [shape=(ceil(m / chunk), n)], float32
        Row s holds ``scale * x[s * chunk : (s + 1) * chunk].sum(axis=0)``.
    """
    x = _f32(x)
    parts = math.ceil(x.shape[0] / chunk)
    return np.stack(
        [x[s * chunk : (s + 1) * chunk].sum(axis=0) * np.float32(scale) for s in range(parts)]
    )


def relu_backward_ref(grad_out: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient of ReLU from its output: pass where ``y > 0``, zero elsewhere.

    Parameters
    ----------
    grad_out : np.ndarray [shape=(...)]
        Gradient with respect to the output.
    y : np.ndarray [shape=grad_out.shape]
        The forward output ``max(x, 0)`` (positive exactly where x is).

    Returns
    -------
    np.ndarray [shape=grad_out.shape], float32
    """
    return np.where(_f32(y) > 0, _f32(grad_out), np.float32(0.0))


def dropout_ref(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Inverted dropout forward and backward: elementwise ``x * mask``.

    Parameters
    ----------
    x : np.ndarray [shape=(...)]
        Activations (forward) or the output gradient (backward).
    mask : np.ndarray [shape=x.shape]
        0 for dropped values, ``1 / (1 - p)`` for kept ones.

    Returns
    -------
    np.ndarray [shape=x.shape], float32
    """
    return _f32(x) * _f32(mask)


def global_avg_pool_forward_ref(x: np.ndarray) -> np.ndarray:
    """Mean over all positions: [batch, height, width, c] -> [batch, c].

    Parameters
    ----------
    x : np.ndarray [shape=(batch, height, width, c)]
        Activations.

    Returns
    -------
    np.ndarray [shape=(batch, c)], float32
    """
    return _f32(x).mean(axis=(1, 2), dtype=np.float32)


def global_avg_pool_grad_ref(grad_out: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """Gradient of global average pooling: each position receives ``1 / (h * w)`` of it.

    Parameters
    ----------
    grad_out : np.ndarray [shape=(batch, c)]
        Gradient with respect to the pooled output.
    input_shape : tuple[int, int, int, int]
        (batch, height, width, c) of the forward input.

    Returns
    -------
    np.ndarray [shape=input_shape], float32
    """
    batch, height, width, channels = input_shape
    scaled = _f32(grad_out) * np.float32(1.0 / (height * width))
    return np.broadcast_to(scaled[:, None, None, :], input_shape).astype(np.float32)
