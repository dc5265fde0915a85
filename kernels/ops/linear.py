"""Matrix products over channels (pointwise and dense layers): references and kernel launches.

Kernels (``linear.wgsl``): ``pointwise_conv2d`` and ``dense`` for inference (padded vec4 layout,
bias and the fused activation; dense also serves pointwise layers too wide to hold a row in
registers), ``matmul`` for training (each layer's forward, input gradient and weight gradient,
through strides, on unpadded arrays).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kernels.launch import QUAD, Constant, Launch, Launches, Slice, pad4, read, write
from kernels.ops.activation import Activation, activation_overrides
from kernels.ops.column_sum import REDUCE_CHUNK, splits, sum_partials
from kernels.ops.layout import (
    PIXELS_PER_INVOCATION,
    PRELOAD_FLOATS,
    QuadParams,
    Shape,
    channel_groups,
    f32,
    pad_axes,
    tile_constants,
)

MATMUL_TILE_ROWS = 4
"""Rows of the register tile one matmul invocation accumulates."""
MATMUL_TILE_COLS = 16
"""Columns of that tile (the b loads, uniform across a workgroup, are the cheap ones)."""
PRELOAD_QUADS = PRELOAD_FLOATS // QUAD
"""Most input quads an invocation of pointwise_conv2d holds in registers."""


def matmul_ref(a: np.ndarray, b: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """Matrix product ``a @ b`` plus an optional bias row.

    The pointwise and dense layers are matrix products each way: forward ``x @ w + bias``, input
    gradient ``grad @ w.T``, weight gradient ``x.T @ grad`` (x and grad as [positions, channels]).

    Parameters
    ----------
    a : np.ndarray [shape=(..., k)]
        Left operand (any strides: a transposed view is fine).
    b : np.ndarray [shape=(k, n)]
        Right operand.
    bias : np.ndarray [shape=(n,)] or None
        Added to every row.

    Returns
    -------
    np.ndarray [shape=(..., n)], float32
    """
    out = f32(a) @ f32(b)
    if bias is not None:
        out += f32(bias)
    return out


def pointwise_conv2d_ref(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Pointwise (1x1) convolution: a matrix product over channels at every position, plus bias.

    Parameters
    ----------
    x : np.ndarray [shape=(batch, height, width, in_c)]
        Input activations, NHWC.
    weight : np.ndarray [shape=(in_c, out_c)]
        Channel mixing matrix.
    bias : np.ndarray [shape=(out_c,)]
        Added to every output position.

    Returns
    -------
    np.ndarray [shape=(batch, height, width, out_c)], float32
    """
    return matmul_ref(x, weight, bias)


def dense_ref(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Fully connected layer ``x @ weight + bias``.

    Parameters
    ----------
    x : np.ndarray [shape=(batch, in_features)]
        Input rows.
    weight : np.ndarray [shape=(in_features, out_features)]
        Weight matrix.
    bias : np.ndarray [shape=(out_features,)]
        Added to every row.

    Returns
    -------
    np.ndarray [shape=(batch, out_features)], float32
    """
    return matmul_ref(x, weight, bias)


def dense_weight_layout(weight: np.ndarray, shape: Shape) -> np.ndarray:
    """Dense weights [in, out] with rows laid out like the padded flattened input, columns padded.

    Parameters
    ----------
    weight : np.ndarray [shape=(prod(shape), out)]
        Weights on the NHWC-flattened input of per-window shape ``shape``.
    shape : tuple[int, ...]
        Per-window input shape; its last axis is padded to a multiple of 4 on the device.

    Returns
    -------
    np.ndarray [shape=(prod(shape[:-1]) * pad4(shape[-1]), pad4(out))], float32
    """
    out_c = weight.shape[1]
    rows = weight.reshape(*shape, out_c)
    padded = pad_axes(rows, {len(shape) - 1: pad4(shape[-1]), len(shape): pad4(out_c)})
    return padded.reshape(-1, pad4(out_c))


def dense_launches(
    weight: np.ndarray, bias: np.ndarray, x: Slice, y: Slice, *, rows: int, pix: int, name: str,
    activation: Activation, uniform_limit: int,
) -> Launches:  # fmt: skip
    """Inference ``y = x @ weight + bias`` for ``rows`` rows, once per tile of output channels.

    Parameters
    ----------
    weight : np.ndarray [shape=(fin4, fout4)]
        Weights in the device layout (see `dense_weight_layout`), both axes multiples of 4.
    bias : np.ndarray [shape=(out,)]
        Bias (padded here).
    x, y : Slice
        Rows of fin4 and fout4 floats.
    rows : int
        Rows of the launch.
    pix : int
        Rows per invocation.
    name : str
        Prefix of the parameter buffers.
    activation : Activation
        Applied to every output value (see `kernels.ops.activation.activation_ref`).
    uniform_limit : int
        Largest uniform buffer binding in bytes; larger parameters go to storage buffers.

    Returns
    -------
    Launches
    """
    fin4, cout4 = weight.shape
    params = QuadParams.of(name, weight, pad_axes(bias, {0: cout4}), uniform_limit)
    sizes = {"N_POS": rows, "FIN4": fin4, "COUT4": cout4, "FIN_QUADS": fin4 // QUAD, "KN": QUAD}
    launches = [
        Launch(
            "dense",
            dict(params.constants, **sizes, **tile_constants(pix, cn)),
            (read(x), *params.bindings, write(y)),
            math.ceil(rows / pix),
            rolled=frozenset({"i4"}),
            overrides={**activation_overrides(activation), "OC_0": float(c0)},
        )  # fmt: skip
        for c0, cn in channel_groups(cout4)
    ]
    return Launches(launches, params.uploads)


def pointwise_conv2d_launches(
    weight: np.ndarray, bias: np.ndarray, x: Slice, y: Slice, *, positions: int, name: str,
    activation: Activation, uniform_limit: int,
) -> Launches:  # fmt: skip
    """Inference pointwise convolution: pointwise_conv2d, or dense when rows are too wide.

    Parameters
    ----------
    weight : np.ndarray [shape=(in_c, out_c)]
        Channel mixing matrix.
    bias : np.ndarray [shape=(out_c,)]
        Bias.
    x, y : Slice
        Input and output activations, channels padded to a multiple of 4.
    positions : int
        Positions of the launch (batch * height * width).
    name : str
        Prefix of the parameter buffers.
    activation : Activation
        Applied to every output value (see `kernels.ops.activation.activation_ref`).
    uniform_limit : int
        Largest uniform buffer binding in bytes; larger parameters go to storage buffers.

    Returns
    -------
    Launches
    """
    cin4, cout4 = pad4(weight.shape[0]), pad4(weight.shape[1])
    padded = pad_axes(weight, {0: cin4, 1: cout4})
    in_quads = cin4 // QUAD
    if in_quads > PRELOAD_QUADS:
        return dense_launches(
            padded, bias, x, y, rows=positions, pix=PIXELS_PER_INVOCATION, name=name,
            activation=activation, uniform_limit=uniform_limit,
        )  # fmt: skip
    pix = max(1, min(PIXELS_PER_INVOCATION, PRELOAD_QUADS // in_quads))
    params = QuadParams.of(name, padded, pad_axes(bias, {0: cout4}), uniform_limit)
    constants = dict(
        params.constants, N_POS=positions, COUT4=cout4, CIN_QUADS=in_quads,
        OC_QUADS=cout4 // QUAD, PIX=pix, XS_N=pix * in_quads,
    )  # fmt: skip
    launch = Launch(
        "pointwise_conv2d", constants, (read(x), *params.bindings, write(y)),
        math.ceil(positions / pix), rolled=frozenset({"ob"}),
        overrides=activation_overrides(activation),
    )  # fmt: skip
    return Launches([launch], params.uploads)


@dataclass(frozen=True)
class Operand:
    """A matrix operand of `matmul`: a slice and the strides (in floats) of its two axes."""

    data: Slice
    outer: int
    inner: int


def matmul(
    a: Operand, b: Operand, c: Slice, *, rows: int, cols: int, depth: int,
    bias: Slice | None = None, chunk: int | None = None,
) -> Launch:  # fmt: skip
    """``c[s] = a @ b`` over chunk s of the inner axis (one chunk unless ``chunk``), + ``bias``.

    ``a`` is [rows, depth] with strides (``a.outer``, ``a.inner``); ``b`` is [depth, cols] with
    strides (``b.inner`` along depth, ``b.outer`` along cols).
    """
    chunk = depth if chunk is None else chunk
    tm, tn = min(MATMUL_TILE_ROWS, rows), min(MATMUL_TILE_COLS, cols)
    tiles_m, tiles_n = math.ceil(rows / tm), math.ceil(cols / tn)
    constants: dict[str, Constant] = dict(
        ROWS=rows, COLS=cols, DEPTH=depth, CHUNK=chunk, TM=tm, TN=tn, TILES_N=tiles_n,
        ACC_N=tm * tn, A_ROW=a.outer, A_DEPTH=a.inner, B_DEPTH=b.inner, B_COL=b.outer,
        HAS_BIAS="true" if bias else "false",
    )  # fmt: skip
    bindings = (read(a.data), read(b.data), read(bias or b.data), write(c))
    return Launch("matmul", constants, bindings, tiles_m, rows=math.ceil(depth / chunk) * tiles_n)


def linear_forward(
    x: Slice, weight: Slice, bias: Slice | None, y: Slice, *, rows: int, fin: int, fout: int
) -> Launch:
    """``y = x @ weight + bias`` for x [rows, fin] and weight [fin, fout] (pointwise, dense)."""
    return matmul(
        Operand(x, fin, 1), Operand(weight, 1, fout), y,
        rows=rows, cols=fout, depth=fin, bias=bias,
    )  # fmt: skip


def linear_input_grad(
    grad_out: Slice, weight: Slice, grad_in: Slice, *, rows: int, fin: int, fout: int
) -> Launch:
    """``grad_in = grad_out @ weight.T`` for grad_out [rows, fout] and weight [fin, fout]."""
    return matmul(
        Operand(grad_out, fout, 1), Operand(weight, fout, 1), grad_in,
        rows=rows, cols=fin, depth=fout,
    )  # fmt: skip


def linear_weight_grad(
    x: Slice, grad_out: Slice, grad_weight: Slice, scratch: Slice, *, rows: int, fin: int,
    fout: int,
) -> list[Launch]:  # fmt: skip
    """``grad_weight = x.T @ grad_out``, split over the rows when there are many of them.

    ``scratch`` needs ``splits(rows) * fin * fout`` words when ``rows > REDUCE_CHUNK``.
    """

    def first(target: Slice) -> Launch:
        return matmul(
            Operand(x, 1, fin), Operand(grad_out, 1, fout), target,
            rows=fin, cols=fout, depth=rows, chunk=REDUCE_CHUNK,
        )  # fmt: skip

    return sum_partials(first, splits(rows), fin * fout, grad_weight, scratch)
