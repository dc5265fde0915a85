"""2-D convolution: numpy references (forward, input and weight gradients) and kernel launches.

Kernels (``conv2d.wgsl``): ``conv2d_patch`` and ``conv2d_tiled`` for inference (padded vec4
layout, bias and fused ReLU; the patch kernel when a position's input patch fits in registers),
``conv2d_forward``, ``conv2d_input_grad`` and ``conv2d_weight_grad`` for training (unpadded).
"""

from __future__ import annotations

import math

import numpy as np

from kernels.launch import QUAD, Launch, Launches, Slice, pad4, read, write
from kernels.ops.column_sum import REDUCE_CHUNK, splits, sum_partials
from kernels.ops.layout import (
    PIXELS_PER_INVOCATION,
    PRELOAD_FLOATS,
    ConvShape,
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
    padding: Pair = (0, 0),
) -> np.ndarray:
    """2-D convolution (cross-correlation, as in every deep learning framework) plus bias.

    Parameters
    ----------
    x : np.ndarray [shape=(batch, height, width, in_c)]
        Input activations, NHWC.
    weight : np.ndarray [shape=(kh, kw, in_c, out_c)]
        Kernel, HWIO.
    bias : np.ndarray [shape=(out_c,)] or None
        Added to every output position; None adds nothing.
    stride : tuple[int, int]
        Step between windows along (height, width), each at least 1.
    padding : tuple[int, int]
        Zeros added on both sides of (height, width).

    Returns
    -------
    np.ndarray [shape=(batch, out_h, out_w, out_c)], float32
        ``out_h = conv_output_size(height, kh, stride[0], padding[0])``, likewise ``out_w``.
    """
    kh, kw, in_c, out_c = weight.shape
    view = windows(f32(x), (kh, kw), stride, padding)  # [b, oh, ow, c, kh, kw]
    batch, out_h, out_w = view.shape[:3]
    columns = view.transpose(0, 1, 2, 4, 5, 3).reshape(batch * out_h * out_w, kh * kw * in_c)
    out = columns @ f32(weight).reshape(kh * kw * in_c, out_c)
    if bias is not None:
        out += f32(bias)
    return out.reshape(batch, out_h, out_w, out_c)


def conv2d_input_grad_ref(
    grad_out: np.ndarray,
    weight: np.ndarray,
    input_shape: Shape,
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
    batch, out_h, out_w = grad_out.shape[:3]
    columns = f32(grad_out).reshape(-1, out_c) @ f32(weight).reshape(-1, out_c).T
    taps = columns.reshape(batch, out_h, out_w, kh, kw, in_c)
    return scatter_windows(taps, input_shape, stride, padding)


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
    view = windows(f32(x), kernel, stride, padding)  # [b, oh, ow, c, kh, kw]
    return np.einsum("bhwckl,bhwo->klco", view, f32(grad_out), optimize=True).astype(np.float32)


def conv2d_launches(
    weight: np.ndarray, bias: np.ndarray, shape: ConvShape, x: Slice, y: Slice, *, name: str,
    relu: bool, uniform_limit: int,
) -> Launches:  # fmt: skip
    """Inference forward on the padded layout: conv2d_patch, or conv2d_tiled per channel tile.

    Parameters
    ----------
    weight : np.ndarray [shape=(kh, kw, in_c, out_c)]
        Kernel, HWIO.
    bias : np.ndarray [shape=(out_c,)]
        Bias.
    shape : ConvShape
        Geometry for the batch of one launch.
    x, y : Slice
        Input and output activations, channels padded to a multiple of 4.
    name : str
        Prefix of the parameter buffers (``<name>.weight``, ``<name>.bias``).
    relu : bool
        Apply ReLU to the output.
    uniform_limit : int
        Largest uniform buffer binding in bytes; larger parameters go to storage buffers.

    Returns
    -------
    Launches
        conv2d_patch when a position's input patch (kh x kw x channels) fits in registers;
        otherwise conv2d_tiled once per tile of output channels.
    """
    kh, kw, in_c, out_c = weight.shape
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
            rolled=frozenset({"ob"}), overrides={"RELU": float(relu)},
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
            overrides={"RELU": float(relu), "OC_0": float(c0)},
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
