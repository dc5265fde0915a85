"""Convolution kernels for training in numpy: padding, im2col and its adjoint, depthwise taps.

Pure functions on NHWC arrays ``[batch, height, width, channels]`` with the conventions of
`kernels.ops` (weights with output channels last, symmetric zero padding ``(rows,
columns)`` per side); the layers of `models.nn.linear_layers` are built on them. Loops run over
kernel taps and batch chunks only; every step inside is one vectorised numpy operation.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from kernels.ops.layout import conv_output_size

Pair = tuple[int, int]

CHUNK_VALUES = 1 << 18
"""Output values per batch chunk of a depthwise convolution (1 MiB of float32), so that a
chunk's input, output and scratch stay in cache while every kernel tap passes over them."""


def pad_hw(x: np.ndarray, padding: Pair) -> np.ndarray:
    """Zero-pad the height and width axes of [N, H, W, C] (a new array; ``np.pad`` is slower)."""
    pad_h, pad_w = padding
    if not (pad_h or pad_w):
        return x
    batch, height, width, channels = x.shape
    out = np.zeros((batch, height + 2 * pad_h, width + 2 * pad_w, channels), x.dtype)
    out[:, pad_h : pad_h + height, pad_w : pad_w + width] = x
    return out


def unpad_hw(x: np.ndarray, padding: Pair) -> np.ndarray:
    """Inverse of `pad_hw`: the interior of [N, H + 2 ph, W + 2 pw, C]."""
    pad_h, pad_w = padding
    return x[:, pad_h : x.shape[1] - pad_h, pad_w : x.shape[2] - pad_w]


def output_hw(x_shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair) -> Pair:
    """(OH, OW) of a convolution of [N, H, W, C] (see `kernels.ops.layout.conv_output_size`)."""
    out_h = conv_output_size(x_shape[1], kernel[0], stride[0], padding[0])
    return out_h, conv_output_size(x_shape[2], kernel[1], stride[1], padding[1])


def tap(x: np.ndarray, i: int, j: int, stride: Pair, out_hw: Pair) -> np.ndarray:
    """View of the padded input that kernel tap (i, j) reads at each output: [N, OH, OW, C]."""
    rows = slice(i, i + stride[0] * (out_hw[0] - 1) + 1, stride[0])
    columns = slice(j, j + stride[1] * (out_hw[1] - 1) + 1, stride[1])
    return x[:, rows, columns]


def im2col(xp: np.ndarray, kernel: Pair, stride: Pair, out_hw: Pair) -> np.ndarray:
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


def col2im(
    columns: np.ndarray, padded_shape: tuple[int, ...], kernel: Pair, stride: Pair, out_hw: Pair
) -> np.ndarray:
    """Adjoint of `im2col`: add each window row back onto the padded input grid."""
    batch, channels = padded_shape[0], padded_shape[3]
    windows = columns.reshape(batch, *out_hw, *kernel, channels)
    out = np.zeros(padded_shape, columns.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            tap(out, i, j, stride, out_hw)[...] += windows[:, :, :, i, j]
    return out


def batch_chunks(batch: int, values_per_item: int) -> list[slice]:
    """Split a batch into slices of about `CHUNK_VALUES` values each (at least one item)."""
    step = max(1, CHUNK_VALUES // max(1, values_per_item))
    return [slice(start, min(start + step, batch)) for start in range(0, batch, step)]


def repeat_over_row(weight: np.ndarray, out_w: int) -> np.ndarray:
    """Depthwise weights [kh, kw, C] repeated along an output row: [kh, kw, OW, C].

    Multiplying a tap [N, OH, OW, C] by a [OW, C] array lets numpy run its inner loop over a
    whole row (OW * C values) instead of over C channels at a time.
    """
    shape = (*weight.shape[:2], out_w, weight.shape[2])
    return np.ascontiguousarray(np.broadcast_to(weight[:, :, None, :], shape))


def depthwise_forward(xp: np.ndarray, weight: np.ndarray, stride: Pair, out_hw: Pair) -> np.ndarray:
    """Depthwise correlation of padded [N, Hp, Wp, C] with [kh, kw, C]: [N, OH, OW, C], no bias."""
    batch, channels = xp.shape[0], xp.shape[3]
    out = np.empty((batch, *out_hw, channels), xp.dtype)
    chunks = batch_chunks(batch, out[0].size)
    scratch = np.empty((chunks[0].stop, *out_hw, channels), xp.dtype) if chunks else out
    weight_rows = repeat_over_row(weight, out_hw[1])
    for chunk in chunks:
        x_c, out_c = xp[chunk], out[chunk]
        scratch_c = scratch[: out_c.shape[0]]
        np.multiply(tap(x_c, 0, 0, stride, out_hw), weight_rows[0, 0], out=out_c)
        for i in range(weight.shape[0]):
            for j in range(weight.shape[1]):
                if i or j:
                    np.multiply(tap(x_c, i, j, stride, out_hw), weight_rows[i, j], out=scratch_c)
                    out_c += scratch_c
    return out


def depthwise_weight_grad(
    xp: np.ndarray, grad_out: np.ndarray, stride: Pair, grad_weight: np.ndarray
) -> None:
    """Set ``grad_weight`` [kh, kw, C] of `depthwise_forward` from grad_out [N, OH, OW, C]."""
    out_hw = grad_out.shape[1], grad_out.shape[2]
    channels = xp.shape[3]
    grad_weight[...] = 0
    chunks = batch_chunks(xp.shape[0], grad_out[0].size)
    if not chunks:
        return
    scratch = np.empty((chunks[0].stop, *out_hw, channels), xp.dtype)
    ones = np.ones(scratch[:, :, :, 0].size, xp.dtype)
    partial = np.empty(channels, xp.dtype)
    for chunk in chunks:
        x_c, grad_c = xp[chunk], grad_out[chunk]
        scratch_c = scratch[: grad_c.shape[0]]
        rows_c = scratch_c.reshape(-1, channels)
        for i in range(grad_weight.shape[0]):
            for j in range(grad_weight.shape[1]):
                np.multiply(tap(x_c, i, j, stride, out_hw), grad_c, out=scratch_c)
                grad_weight[i, j] += np.matmul(ones[: rows_c.shape[0]], rows_c, out=partial)


def depthwise_input_grad(
    x_shape: tuple[int, ...], weight: np.ndarray, grad_out: np.ndarray, stride: Pair, padding: Pair
) -> np.ndarray:
    """Gradient [N, H, W, C] of `depthwise_forward` with respect to its unpadded input.

    With stride 1 and padding p <= k - 1 this is a forward correlation of the output gradient,
    padded by k - 1 - p, with the flipped kernel; otherwise each tap's products are added back
    onto the padded input grid.
    """
    kernel = weight.shape[0], weight.shape[1]
    full = kernel[0] - 1 - padding[0], kernel[1] - 1 - padding[1]
    if stride == (1, 1) and min(full) >= 0:
        flipped = weight[::-1, ::-1]
        in_hw = x_shape[1], x_shape[2]
        return depthwise_forward(pad_hw(grad_out, full), flipped, stride, in_hw)
    out_hw = grad_out.shape[1], grad_out.shape[2]
    padded_shape = (x_shape[0], x_shape[1] + 2 * padding[0], x_shape[2] + 2 * padding[1])
    grad_xp = np.zeros((*padded_shape, x_shape[3]), grad_out.dtype)
    scratch = np.empty_like(grad_out)
    for i, row in enumerate(repeat_over_row(weight, out_hw[1])):
        for j, tap_weight in enumerate(row):
            np.multiply(grad_out, tap_weight, out=scratch)
            tap(grad_xp, i, j, stride, out_hw)[...] += scratch
    return unpad_hw(grad_xp, padding)
