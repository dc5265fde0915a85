"""Depthwise 2-D convolution: numpy references (forward, gradients) and kernel launches.

Kernels (``depthwise_conv2d.wgsl``): ``depthwise_conv2d`` for inference (padded vec4 layout,
output tiles, bias and the fused activation, any dilation), ``depthwise_forward``,
``depthwise_input_grad`` and ``depthwise_weight_grad`` for training (unpadded, four channels per
invocation when they allow, no dilation).
"""

from __future__ import annotations

import math

import numpy as np

from kernels.launch import QUAD, Launch, Launches, Slice, channel_vectors, pad4, read, write
from kernels.ops.activation import Activation, activation_overrides
from kernels.ops.column_sum import REDUCE_CHUNK, splits, sum_partials
from kernels.ops.layout import (
    ConvShape,
    Padding,
    Pair,
    QuadParams,
    Shape,
    f32,
    pad_axes,
    scatter_windows,
    windows,
)

DEPTHWISE_TILE = (4, 4)
"""Output rows and columns per invocation of the inference kernel."""


def depthwise_conv2d_ref(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: Pair = (1, 1),
    padding: Padding = (0, 0),
    dilation: Pair = (1, 1),
) -> np.ndarray:
    """Depthwise 2-D convolution: each channel convolved with its own kernel, plus bias.

    Parameters
    ----------
    x : np.ndarray [shape=(batch, height, width, c)]
        Input activations, NHWC.
    weight : np.ndarray [shape=(kh, kw, c)]
        One kernel per channel.
    bias : np.ndarray [shape=(c,)] or None
        Added to every output position; None adds nothing.
    stride : tuple[int, int]
        Step between windows along (height, width), each at least 1.
    padding : tuple[int, int] or tuple[int, int, int, int]
        Zeros added on both sides of (height, width), or (top, left, bottom, right).
    dilation : tuple[int, int]
        Distance between taps along (height, width), each at least 1.

    Returns
    -------
    np.ndarray [shape=(batch, out_h, out_w, c)], float32
        Output sizes as in `kernels.ops.conv2d.conv2d_ref`.
    """
    kh, kw, _ = weight.shape
    view = windows(f32(x), (kh, kw), stride, padding, dilation)  # [b, oh, ow, c, kh, kw]
    out = np.einsum("bhwckl,klc->bhwc", view, f32(weight))
    if bias is not None:
        out += f32(bias)
    return out


def depthwise_input_grad_ref(
    grad_out: np.ndarray,
    weight: np.ndarray,
    input_shape: Shape,
    stride: Pair = (1, 1),
    padding: Padding = (0, 0),
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
    taps = f32(grad_out)[:, :, :, None, None, :] * f32(weight)  # [b, oh, ow, kh, kw, c]
    return scatter_windows(taps, input_shape, stride, padding)


def depthwise_weight_grad_ref(
    x: np.ndarray,
    grad_out: np.ndarray,
    kernel: Pair,
    stride: Pair = (1, 1),
    padding: Padding = (0, 0),
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
    view = windows(f32(x), kernel, stride, padding)  # [b, oh, ow, c, kh, kw]
    return np.einsum("bhwckl,bhwc->klc", view, f32(grad_out), optimize=True).astype(np.float32)


def depthwise_conv2d_launches(
    weight: np.ndarray, bias: np.ndarray, shape: ConvShape, x: Slice, y: Slice, *, name: str,
    activation: Activation, uniform_limit: int,
) -> Launches:  # fmt: skip
    """Inference forward on the padded layout: one invocation per tile of outputs.

    Parameters
    ----------
    weight : np.ndarray [shape=(kh, kw, c)]
        One kernel per channel.
    bias : np.ndarray [shape=(c,)]
        Bias.
    shape : ConvShape
        Geometry (padding, dilation) for the batch of one launch.
    x, y : Slice
        Input and output activations, channels padded to a multiple of 4.
    name : str
        Prefix of the parameter buffers (``<name>.weight``, ``<name>.bias``).
    activation : Activation
        Applied to every output value (see `kernels.ops.activation.activation_ref`).
    uniform_limit : int
        Largest uniform buffer binding in bytes; larger parameters go to storage buffers.

    Returns
    -------
    Launches
        One depthwise_conv2d launch.
    """
    kh, kw, channels = weight.shape
    c4 = pad4(channels)
    params = QuadParams.of(name, pad_axes(weight, {2: c4}), pad_axes(bias, {0: c4}), uniform_limit)
    out_h, out_w = shape.out_hw
    rows, cols = min(DEPTHWISE_TILE[0], out_h), min(DEPTHWISE_TILE[1], out_w)
    tiles_y, tiles_x = math.ceil(out_h / rows), math.ceil(out_w / cols)
    patch_rows = (rows - 1) * shape.stride[0] + (kh - 1) * shape.dilation[0] + 1
    patch_cols = (cols - 1) * shape.stride[1] + (kw - 1) * shape.dilation[1] + 1
    constants = dict(
        shape.constants(), **params.constants, TILES_X=tiles_x, TILES_Y=tiles_y,
        CIN_QUADS=c4 // QUAD, TR=rows, TC=cols, PR=patch_rows, PC=patch_cols,
        XS_N=patch_rows * patch_cols,
    )  # fmt: skip
    launch = Launch(
        "depthwise_conv2d", constants, (read(x), *params.bindings, write(y)),
        shape.batch * tiles_y * tiles_x, rolled=frozenset({"c4"}),
        overrides=activation_overrides(activation),
    )  # fmt: skip
    return Launches([launch], params.uploads)


def depthwise_forward(
    shape: ConvShape, x: Slice, weight: Slice, bias: Slice | None, y: Slice
) -> Launch:
    """Training forward ``y = depthwise_conv2d_ref(x, weight, bias)`` on unpadded arrays."""
    count, vectors = channel_vectors(shape.positions, shape.in_c)
    constants = dict(shape.constants(), **vectors, HAS_BIAS="true" if bias else "false")
    bindings = (read(x), read(weight), read(bias or weight), write(y))
    return Launch("depthwise_forward", constants, bindings, count)


def depthwise_input_grad(
    shape: ConvShape, grad_out: Slice, weight: Slice, grad_in: Slice
) -> Launch:
    """``grad_in = depthwise_input_grad_ref(grad_out, weight, ...)`` on unpadded arrays."""
    count, vectors = channel_vectors(shape.batch * shape.height * shape.width, shape.in_c)
    bindings = (read(grad_out), read(weight), write(grad_in))
    return Launch("depthwise_input_grad", dict(shape.constants(), **vectors), bindings, count)


def depthwise_weight_grad(
    shape: ConvShape, x: Slice, grad_out: Slice, grad_weight: Slice, scratch: Slice
) -> list[Launch]:
    """Weight gradient: partial sums over chunks of positions, then their sum.

    ``scratch`` needs ``splits(shape.positions) * weights`` words.
    """
    taps = shape.kernel[0] * shape.kernel[1]
    parts = splits(shape.positions)
    count, vectors = channel_vectors(parts, shape.in_c)
    constants = dict(
        shape.constants(), **vectors, POSITIONS=shape.positions, CHUNK=REDUCE_CHUNK, TAPS=taps
    )

    def first(target: Slice) -> Launch:
        bindings = (read(x), read(grad_out), write(target))
        return Launch("depthwise_weight_grad", constants, bindings, count)

    return sum_partials(first, parts, taps * shape.in_c, grad_weight, scratch)
