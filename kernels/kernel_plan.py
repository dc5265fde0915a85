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
"""Invocations per workgroup for every kernel (1-D)."""
MAX_CHANNEL_TILE = 64
"""Most output channels one invocation accumulates; wider layers are dispatched per group."""
PIXELS_PER_INVOCATION = 8
"""Output positions per invocation in the conv2d and pointwise kernels (rows for dense)."""
DEPTHWISE_SEGMENT = 4
"""Adjacent output columns per invocation in the depthwise kernel."""
ROWS_PER_DENSE_INVOCATION = 1
QUAD = 4
"""Floats per vec4: channel axes are padded to a multiple of this on the device."""


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
    workgroups : int
        Workgroups to launch along x.
    param_space : str
        ``"uniform"`` or ``"storage, read"``: where the parameters live.
    """

    stem: str
    constants: Mapping[str, int | str]
    rolled: frozenset[str]
    overrides: dict[str, float]
    params: tuple[np.ndarray, ...] = ()
    workgroups: int = 1
    param_space: str = field(default="uniform")


def _pad_axes(array: np.ndarray, axes: dict[int, int]) -> np.ndarray:
    """Zero-pad the given axes of ``array`` to the given lengths."""
    widths = [(0, axes.get(axis, n) - n) for axis, n in enumerate(array.shape)]
    return np.pad(np.asarray(array, dtype=np.float32), widths)


def _groups(channels: int) -> list[tuple[int, int]]:
    """(first channel, count) for each channel tile of a padded channel axis."""
    return [
        (c0, min(MAX_CHANNEL_TILE, channels - c0)) for c0 in range(0, channels, MAX_CHANNEL_TILE)
    ]


def _workgroups(invocations: int) -> int:
    return max(1, math.ceil(invocations / WORKGROUP))


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
        "WORKGROUP": WORKGROUP,
    }


def _conv(layer: Conv2d, shape: Shape, out: Shape, batch: int, uniform_limit: int) -> list:
    kh, kw, in_c, out_c = layer.weight.shape
    cin4, cout4 = pad4(in_c), pad4(out_c)
    wcin = cin4 if in_c >= QUAD else in_c
    weight = _pad_axes(layer.weight, {2: wcin, 3: cout4})
    params, space, pconst = _param_constants(
        weight, _pad_axes(layer.bias, {0: cout4}), uniform_limit
    )
    n_pos = batch * out[0] * out[1]
    pix = PIXELS_PER_INVOCATION
    plans = []
    for c0, cn in _groups(cout4):
        constants = dict(
            pconst,
            **_tile_constants(pix, cn),
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
        overrides = {"RELU": float(layer.relu), "OC_0": float(c0)}
        plans.append(
            Dispatch(
                "conv2d",
                constants,
                frozenset({"ky", "kx", "ci4"}),
                overrides,
                params,
                _workgroups(math.ceil(n_pos / pix)),
                space,
            )
        )
    return plans


def _depthwise(layer: DepthwiseConv2d, shape: Shape, out: Shape, batch: int, ulimit: int) -> list:
    kh, kw, channels = layer.weight.shape
    c4 = pad4(channels)
    weight = _pad_axes(layer.weight, {2: c4})
    params, space, pconst = _param_constants(weight, _pad_axes(layer.bias, {0: c4}), ulimit)
    pix = min(DEPTHWISE_SEGMENT, out[1])
    seg_per_row = math.ceil(out[1] / pix)
    n_seg = batch * out[0] * seg_per_row
    plans = []
    for c0, cn in _groups(c4):
        constants = dict(
            pconst,
            N_SEG=n_seg,
            SEG_PER_ROW=seg_per_row,
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
            C_QUADS=cn // QUAD,
            PIX=pix,
            SEG=(pix - 1) * layer.stride[1] + kw,
            WORKGROUP=WORKGROUP,
        )
        overrides = {"RELU": float(layer.relu), "C_0": float(c0)}
        plans.append(
            Dispatch(
                "depthwise_conv2d",
                constants,
                frozenset({"c4"}),
                overrides,
                params,
                _workgroups(n_seg),
                space,
            )
        )
    return plans


def _dense_weight(layer: Dense, shape: Shape) -> np.ndarray:
    """Dense weights with rows laid out like the padded flattened input, columns padded."""
    out_c = layer.weight.shape[1]
    rows = layer.weight.reshape(*shape, out_c)
    return _pad_axes(rows, {len(shape) - 1: pad4(shape[-1]), len(shape): pad4(out_c)}).reshape(
        -1, pad4(out_c)
    )


def _matmul(layer: PointwiseConv2d | Dense, shape: Shape, batch: int, ulimit: int) -> list:
    out_c = layer.weight.shape[1]
    cout4 = pad4(out_c)
    if isinstance(layer, Dense):
        weight = _dense_weight(layer, shape)
        stem, pix, rows, loop = "dense", ROWS_PER_DENSE_INVOCATION, batch, "i4"
        sizes = {"ROWS": rows, "FIN4": weight.shape[0], "FOUT4": cout4}
        sizes["FIN_QUADS"] = weight.shape[0] // QUAD
    else:
        weight = _pad_axes(layer.weight, {0: pad4(shape[-1]), 1: cout4})
        stem, pix, rows, loop = (
            "pointwise_conv2d",
            PIXELS_PER_INVOCATION,
            batch * shape[0] * shape[1],
            "ci4",
        )
        sizes = {"N_POS": rows, "CIN4": weight.shape[0], "COUT4": cout4}
        sizes["CIN_QUADS"] = weight.shape[0] // QUAD
    params, space, pconst = _param_constants(weight, _pad_axes(layer.bias, {0: cout4}), ulimit)
    plans = []
    for c0, cn in _groups(cout4):
        constants = dict(pconst, **sizes, **_tile_constants(pix, cn))
        overrides = {"RELU": float(layer.relu), "OC_0": float(c0)}
        workgroups = _workgroups(math.ceil(rows / pix))
        plans.append(
            Dispatch(stem, constants, frozenset({loop}), overrides, params, workgroups, space)
        )
    return plans


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
        WORKGROUP=WORKGROUP,
    )
    overrides = {"RELU": float(layer.relu)}
    return [
        Dispatch(
            "avg_pool2d", constants, frozenset({"ky", "kx"}), overrides, (), _workgroups(n_pos)
        )
    ]


def _global_pool(shape: Shape, batch: int) -> list:
    c4 = pad4(shape[2])
    constants = dict(BATCH=batch, N_POS=shape[0] * shape[1], C4=c4, WORKGROUP=WORKGROUP)
    invocations = batch * c4 // QUAD
    return [Dispatch("global_avg_pool", constants, frozenset(), {}, (), _workgroups(invocations))]


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
    if isinstance(layer, PointwiseConv2d | Dense):
        return _matmul(layer, shape, batch, uniform_limit)
    if isinstance(layer, AvgPool2d):
        return _avg_pool(layer, shape, out, batch)
    if isinstance(layer, GlobalAvgPool):
        return _global_pool(shape, batch)
    if isinstance(layer, Softmax):
        rows = batch * math.prod(shape[:-1])
        constants = dict(ROWS=rows, N=shape[-1], N4=pad4(shape[-1]), WORKGROUP=WORKGROUP)
        return [Dispatch("softmax", constants, frozenset(), {}, (), _workgroups(rows))]
    if isinstance(layer, Sigmoid):
        count4 = batch * padded_size(shape)
        constants = dict(COUNT4=count4, WORKGROUP=WORKGROUP)
        return [Dispatch("sigmoid", constants, frozenset(), {}, (), _workgroups(count4 // QUAD))]
    raise TypeError(
        f"layer: got {type(layer).__name__}, expected one of the kernels.network layers"
    )
