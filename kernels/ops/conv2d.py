"""2-D convolution: numpy references (forward, input and weight gradients) and kernel launches.

Kernels (``conv2d.wgsl``): ``conv2d_patch`` and ``conv2d_tiled`` for inference (padded vec4
layout, bias and the fused activation; the patch kernel when a position's input patch fits in
registers; any dilation and groups), ``conv2d_forward``, ``conv2d_input_grad`` and
``conv2d_weight_grad`` for training (unpadded, no dilation or groups).
"""

from __future__ import annotations

import math

import numpy as np

from kernels.launch import QUAD, Launch, Launches, Slice, pad4, read, write
from kernels.ops.activation import Activation, activation_overrides
from kernels.ops.column_sum import REDUCE_CHUNK, splits, sum_partials
from kernels.ops.layout import (
    PIXELS_PER_INVOCATION,
    PRELOAD_FLOATS,
    ConvShape,
    Padding,
    Pair,
    QuadParams,
    Shape,
    channel_groups,
    f32,
    pad_axes,
    scatter_windows,
    tile_constants,
    windows,
)

CONV_CHANNEL_TILE = 8
"""Output channels one invocation of conv2d_forward or conv2d_weight_grad accumulates."""


def conv2d_ref(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: Pair = (1, 1),
    padding: Padding = (0, 0),
    dilation: Pair = (1, 1),
    groups: int = 1,
) -> np.ndarray:
    """2-D convolution (cross-correlation, as in every deep learning framework) plus bias.

    Parameters
    ----------
    x : np.ndarray [shape=(batch, height, width, in_c)]
        Input activations, NHWC.
    weight : np.ndarray [shape=(kh, kw, in_c // groups, out_c)]
        Kernel, HWIO; output channel o reads the input channels of its group,
        ``o // (out_c // groups)``.
    bias : np.ndarray [shape=(out_c,)] or None
        Added to every output position; None adds nothing.
    stride : tuple[int, int]
        Step between windows along (height, width), each at least 1.
    padding : tuple[int, int] or tuple[int, int, int, int]
        Zeros added on both sides of (height, width), or (top, left, bottom, right).
    dilation : tuple[int, int]
        Distance between taps along (height, width), each at least 1.
    groups : int
        Channel groups, at least 1, dividing in_c and out_c.

    Returns
    -------
    np.ndarray [shape=(batch, out_h, out_w, out_c)], float32
        ``out_h = conv_output_size(height, kh, stride[0], (top, bottom), dilation[0])``,
        likewise ``out_w``.

    Raises
    ------
    ValueError
        ``groups`` does not match the channels of ``x`` and ``weight``.
    """
    kh, kw, group_in, out_c = weight.shape
    if x.shape[-1] != group_in * groups or out_c % groups:
        raise ValueError(
            f"groups: got {groups} for {x.shape[-1]} input channels and weight {weight.shape}, "
            "expected in_c == weight.shape[2] * groups and out_c divisible by groups"
        )
    view = windows(f32(x), (kh, kw), stride, padding, dilation)  # [b, oh, ow, c, kh, kw]
    batch, out_h, out_w = view.shape[:3]
    group_out = out_c // groups
    parts = []
    for g in range(groups):
        taps = view[:, :, :, g * group_in : (g + 1) * group_in].transpose(0, 1, 2, 4, 5, 3)
        columns = taps.reshape(batch * out_h * out_w, kh * kw * group_in)
        kernel = f32(weight[..., g * group_out : (g + 1) * group_out])
        parts.append(columns @ kernel.reshape(kh * kw * group_in, group_out))
    out = parts[0] if groups == 1 else np.concatenate(parts, axis=1)
    if bias is not None:
        out += f32(bias)
    return out.reshape(batch, out_h, out_w, out_c)


def conv2d_group_weight(weight: np.ndarray, groups: int) -> np.ndarray:
    """The dense weight of a grouped convolution: each group's block on the diagonal, zeros off it.

    A grouped convolution is the dense convolution with this weight (at ``groups`` times the
    multiply-adds); the inference kernels run it that way.

    Parameters
    ----------
    weight : np.ndarray [shape=(kh, kw, in_c // groups, out_c)]
        Grouped kernel, HWIO.
    groups : int
        Channel groups, dividing out_c.

    Returns
    -------
    np.ndarray [shape=(kh, kw, in_c, out_c)], float32
    """
    kh, kw, group_in, out_c = weight.shape
    if groups == 1:
        return f32(weight)
    group_out = out_c // groups
    dense = np.zeros((kh, kw, group_in * groups, out_c), np.float32)
    for g in range(groups):
        rows = slice(g * group_in, (g + 1) * group_in)
        cols = slice(g * group_out, (g + 1) * group_out)
        dense[:, :, rows, cols] = weight[..., cols]
    return dense


def conv2d_input_grad_ref(
    grad_out: np.ndarray,
    weight: np.ndarray,
    input_shape: Shape,
    stride: Pair = (1, 1),
    padding: Padding = (0, 0),
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
    batch, out_h, out_w = grad_out.shape[:3]
    columns = f32(grad_out).reshape(-1, out_c) @ f32(weight).reshape(-1, out_c).T
    taps = columns.reshape(batch, out_h, out_w, kh, kw, in_c)
    return scatter_windows(taps, input_shape, stride, padding)


def conv2d_weight_grad_ref(
    x: np.ndarray,
    grad_out: np.ndarray,
    kernel: Pair,
    stride: Pair = (1, 1),
    padding: Padding = (0, 0),
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
    view = windows(f32(x), kernel, stride, padding)  # [b, oh, ow, c, kh, kw]
    return np.einsum("bhwckl,bhwo->klco", view, f32(grad_out), optimize=True).astype(np.float32)


def conv2d_launches(
    weight: np.ndarray, bias: np.ndarray, shape: ConvShape, x: Slice, y: Slice, *, name: str,
    activation: Activation, uniform_limit: int, groups: int = 1,
) -> Launches:  # fmt: skip
    """Inference forward on the padded layout: conv2d_patch, or conv2d_tiled per channel tile.

    Parameters
    ----------
    weight : np.ndarray [shape=(kh, kw, in_c // groups, out_c)]
        Kernel, HWIO.
    bias : np.ndarray [shape=(out_c,)]
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
    groups : int
        Channel groups; the kernels run the block-diagonal dense weight (`conv2d_group_weight`).

    Returns
    -------
    Launches
        conv2d_patch when a position's input patch (kh x kw x channels) fits in registers;
        otherwise conv2d_tiled once per tile of output channels.
    """
    weight = conv2d_group_weight(weight, groups)
    kh, kw, in_c, out_c = weight.shape
    overrides = activation_overrides(activation)
    cin4, cout4 = pad4(in_c), pad4(out_c)
    wcin = cin4 if in_c >= QUAD else in_c
    params = QuadParams.of(
        name, pad_axes(weight, {2: wcin, 3: cout4}), pad_axes(bias, {0: cout4}), uniform_limit
    )
    geometry = dict(
        shape.constants(), **params.constants, N_POS=shape.positions, CIN4=cin4, WCIN=wcin,
        CIN_QUADS=cin4 // QUAD, KN=min(in_c, QUAD), COUT4=cout4,
    )  # fmt: skip
    bindings = (read(x), *params.bindings, write(y))
    taps = kh * kw * wcin
    if taps <= PRELOAD_FLOATS:
        pix = max(1, min(PIXELS_PER_INVOCATION, PRELOAD_FLOATS // taps))
        constants = dict(geometry, TAPS=taps, PIX=pix, XS_N=pix * taps, OC_QUADS=cout4 // QUAD)
        launch = Launch(
            "conv2d_patch", constants, bindings, math.ceil(shape.positions / pix),
            rolled=frozenset({"ob"}), overrides=overrides,
        )  # fmt: skip
        return Launches([launch], params.uploads)
    pix = PIXELS_PER_INVOCATION
    launches = [
        Launch(
            "conv2d_tiled",
            dict(geometry, **tile_constants(pix, cn)),
            bindings,
            math.ceil(shape.positions / pix),
            rolled=frozenset({"ky", "kx", "ci4"}),
            overrides={**overrides, "OC_0": float(c0)},
        )  # fmt: skip
        for c0, cn in channel_groups(cout4)
    ]
    return Launches(launches, params.uploads)


def conv2d_forward(
    shape: ConvShape, x: Slice, weight: Slice, bias: Slice | None, y: Slice
) -> Launch:
    """Training forward ``y = conv2d_ref(x, weight, bias)`` on unpadded arrays."""
    tile = min(CONV_CHANNEL_TILE, shape.out_c)
    constants = dict(shape.constants(), TN=tile, HAS_BIAS="true" if bias else "false")
    bindings = (read(x), read(weight), read(bias or weight), write(y))
    tiles = math.ceil(shape.out_c / tile)
    return Launch("conv2d_forward", constants, bindings, shape.positions, rows=tiles)


def conv2d_input_grad(shape: ConvShape, grad_out: Slice, weight: Slice, grad_in: Slice) -> Launch:
    """``grad_in = conv2d_input_grad_ref(grad_out, weight, ...)`` on unpadded arrays."""
    count = shape.batch * shape.height * shape.width * shape.in_c
    bindings = (read(grad_out), read(weight), write(grad_in))
    return Launch("conv2d_input_grad", shape.constants(), bindings, count)


def conv2d_weight_grad(
    shape: ConvShape, x: Slice, grad_out: Slice, grad_weight: Slice, scratch: Slice
) -> list[Launch]:
    """Weight gradient: partial sums over chunks of positions, then their sum.

    ``scratch`` needs ``splits(shape.positions) * weights`` words.
    """
    taps = shape.kernel[0] * shape.kernel[1] * shape.in_c
    parts = splits(shape.positions)
    tile = min(CONV_CHANNEL_TILE, shape.out_c)
    tiles = math.ceil(shape.out_c / tile)
    constants = dict(
        shape.constants(), POSITIONS=shape.positions, CHUNK=REDUCE_CHUNK, TN=tile, CO_TILES=tiles
    )

    def first(target: Slice) -> Launch:
        bindings = (read(x), read(grad_out), write(target))
        return Launch("conv2d_weight_grad", constants, bindings, taps, rows=parts * tiles)

    return sum_partials(first, parts, taps * shape.out_c, grad_weight, scratch)
