"""Translate each layer of a `Network` into kernel dispatches for a given batch size.

A `Dispatch` says which template to render with which constants, which parameters (weights and
bias) to upload, and how many workgroups to launch. It holds no wgpu objects, so plans can be
built and checked (for example against a device's dispatch limits) without a device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from kernels.network import (
    AvgPool2d,
    Conv2d,
    Dense,
    DepthwiseConv2d,
    GlobalAvgPool,
    Layer,
    PointwiseConv2d,
    Shape,
    Sigmoid,
    Softmax,
)

WORKGROUP = 64
"""Invocations per workgroup (1-D) for large launches; see `workgroup_size`."""
MIN_WORKGROUP_SIZE = 8
"""Smallest workgroup: llvmpipe runs 8 invocations per 256-bit SIMD instruction."""
MIN_WORKGROUPS = 8
"""Workgroups a launch should have at least, for load balance across CPU cores."""
MAX_CHANNEL_TILE = 64
"""Most output channels one invocation accumulates; wider layers are dispatched per group."""
PIXELS_PER_INVOCATION = 8
"""Output positions per invocation in conv2d, and at most in conv2d_patch and pointwise_conv2d."""
DEPTHWISE_TILE = (4, 4)
"""Output rows and columns per invocation in the depthwise kernel."""
ROWS_PER_DENSE_INVOCATION = 1
"""Rows per invocation of a Dense layer (one row per window, so batches are small)."""
QUAD = 4
"""Floats per vec4: channel axes are padded to a multiple of this on the device."""
PRELOAD_FLOATS = 512
"""Most input values an invocation of conv2d_patch or pointwise_conv2d holds in registers
(positions x patch size); larger layers run on conv2d or dense, which stream their inputs."""
PRELOAD_QUADS = PRELOAD_FLOATS // QUAD


def pad4(channels: int) -> int:
    """``channels`` rounded up to a multiple of 4 (the device's channel stride)."""
    return math.ceil(channels / QUAD) * QUAD


def padded_size(shape: Shape) -> int:
    """Floats one window of ``shape`` takes on the device (last axis padded to a multiple of 4)."""
    return math.prod(shape[:-1]) * pad4(shape[-1])


@dataclass(frozen=True, eq=False)
class Dispatch:
    """One kernel launch of a compiled network.

    Attributes
    ----------
    stem : str
        Kernel name (``kernels/wgsl/<stem>.wgsl``).
    constants : Mapping[str, int | str]
        Template constants.
    rolled : frozenset[str]
        Template loops emitted as WGSL loops instead of unrolled code.
    overrides : dict[str, float]
        Pipeline-overridable constants (``RELU``, ``OC_0``/``C_0``).
    params : tuple[np.ndarray, ...]
        Weight and bias, each flattened, float32, zero-padded to the device layout; empty for ops
        without parameters.
    invocations : int
        Invocations to launch along x (see `workgroup_size` and `workgroups`).
    param_space : str
        ``"uniform"`` or ``"storage, read"``: where the parameters live.
    """

    stem: str
    constants: Mapping[str, int | str]
    rolled: frozenset[str]
    overrides: dict[str, float]
    params: tuple[np.ndarray, ...] = ()
    invocations: int = 1
    param_space: str = field(default="uniform")

    @property
    def workgroup_size(self) -> int:
        """Invocations per workgroup."""
        return workgroup_size(self.invocations)

    @property
    def workgroups(self) -> int:
        """Workgroups to launch along x."""
        return max(1, math.ceil(self.invocations / self.workgroup_size))

    @property
    def source_constants(self) -> dict[str, int | str]:
        """Template constants including the workgroup size."""
        return {**self.constants, "WORKGROUP": self.workgroup_size}


def _pad_axes(array: np.ndarray, axes: dict[int, int]) -> np.ndarray:
    """Zero-pad the given axes of ``array`` to the given lengths."""
    widths = [(0, axes.get(axis, n) - n) for axis, n in enumerate(array.shape)]
    return np.pad(np.asarray(array, dtype=np.float32), widths)


def _groups(channels: int) -> list[tuple[int, int]]:
    """(first channel, count) for each channel tile of a padded channel axis."""
    return [
        (c0, min(MAX_CHANNEL_TILE, channels - c0)) for c0 in range(0, channels, MAX_CHANNEL_TILE)
    ]


def workgroup_size(invocations: int) -> int:
    """Invocations per workgroup for a launch of ``invocations``.

    WORKGROUP, halved (down to MIN_WORKGROUP_SIZE) while that leaves fewer than MIN_WORKGROUPS
    workgroups, so a small launch still spreads over several cores of a CPU adapter (llvmpipe runs
    each workgroup on one thread).

    Parameters
    ----------
    invocations : int
        Invocations the launch needs.

    Returns
    -------
    int
        A power of two in [MIN_WORKGROUP_SIZE, WORKGROUP].
    """
    size = WORKGROUP
    while size > MIN_WORKGROUP_SIZE and math.ceil(invocations / size) < MIN_WORKGROUPS:
        size //= 2
    return size


def _param_constants(weight: np.ndarray, bias: np.ndarray, uniform_limit: int) -> tuple:
    """Flattened parameters, their address space and the template constants describing them."""
    params = (np.ascontiguousarray(weight, np.float32).ravel(), np.ascontiguousarray(bias).ravel())
    fits = max(p.nbytes for p in params) <= uniform_limit
    space = "uniform" if fits else "storage, read"
    constants = {
        "PARAM_SPACE": space,
        "W_VEC4": params[0].size // QUAD,
        "B_VEC4": params[1].size // QUAD,
    }
    return params, space, constants


def _tile_constants(pix: int, cn: int) -> dict[str, int]:
    return {
        "OC_N": cn,
        "OC_QUADS": cn // QUAD,
        "PIX": pix,
        "ACC_N": pix * cn,
    }


def _conv(layer: Conv2d, shape: Shape, out: Shape, batch: int, uniform_limit: int) -> list:
    """conv2d_patch when a position's input patch fits in registers, else conv2d per tile."""
    kh, kw, in_c, out_c = layer.weight.shape
    cin4, cout4 = pad4(in_c), pad4(out_c)
    wcin = cin4 if in_c >= QUAD else in_c
    weight = _pad_axes(layer.weight, {2: wcin, 3: cout4})
    bias = _pad_axes(layer.bias, {0: cout4})
    params, space, pconst = _param_constants(weight, bias, uniform_limit)
    n_pos = batch * out[0] * out[1]
    geometry = dict(
        pconst,
        N_POS=n_pos,
        H=shape[0],
        W=shape[1],
        CIN4=cin4,
        WCIN=wcin,
        CIN_QUADS=cin4 // QUAD,
        KN=min(in_c, QUAD),
        OH=out[0],
        OW=out[1],
        COUT4=cout4,
        KH=kh,
        KW=kw,
        SH=layer.stride[0],
        SW=layer.stride[1],
        PH=layer.padding[0],
        PW=layer.padding[1],
    )
    taps = kh * kw * wcin
    if taps <= PRELOAD_FLOATS:
        pix = max(1, min(PIXELS_PER_INVOCATION, PRELOAD_FLOATS // taps))
        constants = dict(geometry, TAPS=taps, PIX=pix, XS_N=pix * taps, OC_QUADS=cout4 // QUAD)
        invocations = math.ceil(n_pos / pix)
        overrides = {"RELU": float(layer.relu)}
        rolled = frozenset({"ob"})
        return [Dispatch("conv2d_patch", constants, rolled, overrides, params, invocations, space)]
    pix = PIXELS_PER_INVOCATION
    plans = []
    for c0, cn in _groups(cout4):
        constants = dict(geometry, **_tile_constants(pix, cn))
        overrides = {"RELU": float(layer.relu), "OC_0": float(c0)}
        invocations = math.ceil(n_pos / pix)
        rolled = frozenset({"ky", "kx", "ci4"})
        plans.append(Dispatch("conv2d", constants, rolled, overrides, params, invocations, space))
    return plans


def _depthwise(layer: DepthwiseConv2d, shape: Shape, out: Shape, batch: int, ulimit: int) -> list:
    kh, kw, channels = layer.weight.shape
    c4 = pad4(channels)
    weight = _pad_axes(layer.weight, {2: c4})
    params, space, pconst = _param_constants(weight, _pad_axes(layer.bias, {0: c4}), ulimit)
    rows, cols = min(DEPTHWISE_TILE[0], out[0]), min(DEPTHWISE_TILE[1], out[1])
    tiles_y, tiles_x = math.ceil(out[0] / rows), math.ceil(out[1] / cols)
    patch_rows = (rows - 1) * layer.stride[0] + kh
    patch_cols = (cols - 1) * layer.stride[1] + kw
    constants = dict(
        pconst,
        N_TILES=batch * tiles_y * tiles_x,
        TILES_X=tiles_x,
        TILES_Y=tiles_y,
        H=shape[0],
        W=shape[1],
        C4=c4,
        OH=out[0],
        OW=out[1],
        KH=kh,
        KW=kw,
        SH=layer.stride[0],
        SW=layer.stride[1],
        PH=layer.padding[0],
        PW=layer.padding[1],
        C_QUADS=c4 // QUAD,
        TR=rows,
        TC=cols,
        PR=patch_rows,
        PC=patch_cols,
        XS_N=patch_rows * patch_cols,
    )
    overrides = {"RELU": float(layer.relu)}
    invocations = batch * tiles_y * tiles_x
    rolled = frozenset({"c4"})
    return [Dispatch("depthwise_conv2d", constants, rolled, overrides, params, invocations, space)]


def _dense_weight(layer: Dense, shape: Shape) -> np.ndarray:
    """Dense weights with rows laid out like the padded flattened input, columns padded."""
    out_c = layer.weight.shape[1]
    rows = layer.weight.reshape(*shape, out_c)
    return _pad_axes(rows, {len(shape) - 1: pad4(shape[-1]), len(shape): pad4(out_c)}).reshape(
        -1, pad4(out_c)
    )


def _dense_plans(
    layer: PointwiseConv2d | Dense, weight: np.ndarray, rows: int, pix: int, ulimit: int
):
    """Dense-kernel dispatches for ``rows`` rows of a [FIN4, FOUT4] device-layout weight."""
    fin4, cout4 = weight.shape
    params, space, pconst = _param_constants(weight, _pad_axes(layer.bias, {0: cout4}), ulimit)
    sizes = {"ROWS": rows, "FIN4": fin4, "FOUT4": cout4, "FIN_QUADS": fin4 // QUAD}
    plans = []
    for c0, cn in _groups(cout4):
        constants = dict(pconst, **sizes, **_tile_constants(pix, cn))
        overrides = {"RELU": float(layer.relu), "OC_0": float(c0)}
        invocations = math.ceil(rows / pix)
        plans.append(
            Dispatch("dense", constants, frozenset({"i4"}), overrides, params, invocations, space)
        )
    return plans


def _pointwise(layer: PointwiseConv2d, shape: Shape, batch: int, ulimit: int) -> list:
    """One pointwise-kernel dispatch, or dense-kernel ones when the input rows are too wide."""
    cin4, cout4 = pad4(shape[-1]), pad4(layer.weight.shape[1])
    weight = _pad_axes(layer.weight, {0: cin4, 1: cout4})
    n_pos = batch * shape[0] * shape[1]
    in_quads = cin4 // QUAD
    if in_quads > PRELOAD_QUADS:
        return _dense_plans(layer, weight, n_pos, PIXELS_PER_INVOCATION, ulimit)
    pix = max(1, min(PIXELS_PER_INVOCATION, PRELOAD_QUADS // in_quads))
    params, space, pconst = _param_constants(weight, _pad_axes(layer.bias, {0: cout4}), ulimit)
    constants = dict(
        pconst,
        N_POS=n_pos,
        CIN4=cin4,
        COUT4=cout4,
        CIN_QUADS=in_quads,
        OC_QUADS=cout4 // QUAD,
        PIX=pix,
        XS_N=pix * in_quads,
    )
    invocations = math.ceil(n_pos / pix)
    overrides = {"RELU": float(layer.relu)}
    return [
        Dispatch(
            "pointwise_conv2d", constants, frozenset({"ob"}), overrides, params, invocations, space
        )
    ]


def _avg_pool(layer: AvgPool2d, shape: Shape, out: Shape, batch: int) -> list:
    n_pos = batch * out[0] * out[1]
    c4 = pad4(shape[2])
    constants = dict(
        N_POS=n_pos,
        H=shape[0],
        W=shape[1],
        C4=c4,
        C_QUADS=c4 // QUAD,
        OH=out[0],
        OW=out[1],
        KH=layer.kernel[0],
        KW=layer.kernel[1],
        SH=layer.step[0],
        SW=layer.step[1],
    )
    overrides = {"RELU": float(layer.relu)}
    return [Dispatch("avg_pool2d", constants, frozenset({"ky", "kx"}), overrides, (), n_pos)]


def _global_pool(shape: Shape, batch: int) -> list:
    c4 = pad4(shape[2])
    constants = dict(BATCH=batch, N_POS=shape[0] * shape[1], C4=c4)
    invocations = batch * c4 // QUAD
    return [Dispatch("global_avg_pool", constants, frozenset(), {}, (), invocations)]


def plan_layer(layer: Layer, shape: Shape, out: Shape, batch: int, uniform_limit: int) -> list:
    """Dispatches that compute ``layer`` for ``batch`` windows.

    Parameters
    ----------
    layer : Layer
        The layer spec.
    shape : tuple[int, ...]
        Per-window input shape.
    out : tuple[int, ...]
        Per-window output shape.
    batch : int
        Windows per launch, at least 1.
    uniform_limit : int
        Largest uniform buffer binding in bytes; larger parameters go to storage buffers.

    Returns
    -------
    list[Dispatch]
        One per output-channel group (one for most layers).
    """
    if isinstance(layer, Conv2d):
        return _conv(layer, shape, out, batch, uniform_limit)
    if isinstance(layer, DepthwiseConv2d):
        return _depthwise(layer, shape, out, batch, uniform_limit)
    if isinstance(layer, PointwiseConv2d):
        return _pointwise(layer, shape, batch, uniform_limit)
    if isinstance(layer, Dense):
        weight = _dense_weight(layer, shape)
        return _dense_plans(layer, weight, batch, ROWS_PER_DENSE_INVOCATION, uniform_limit)
    if isinstance(layer, AvgPool2d):
        return _avg_pool(layer, shape, out, batch)
    if isinstance(layer, GlobalAvgPool):
        return _global_pool(shape, batch)
    if isinstance(layer, Softmax):
        rows = batch * math.prod(shape[:-1])
        constants = dict(ROWS=rows, N=shape[-1], N4=pad4(shape[-1]))
        return [Dispatch("softmax", constants, frozenset(), {}, (), rows)]
    if isinstance(layer, Sigmoid):
        count4 = batch * padded_size(shape)
        constants = dict(COUNT4=count4)
        return [Dispatch("sigmoid", constants, frozenset(), {}, (), count4 // QUAD)]
    raise TypeError(
        f"layer: got {type(layer).__name__}, expected one of the kernels.network layers"
    )
