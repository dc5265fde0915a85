"""Average and max pooling over windows, global average pooling: references and launches.

Kernels (``pooling.wgsl``): ``avg_pool2d`` (inference, padded vec4 layout, fused activation),
``max_pool2d`` (inference, padded vec4 layout), ``global_avg_pool`` (inference and training
alike) and ``global_avg_pool_grad`` (training).
"""

from __future__ import annotations

import numpy as np

from kernels.launch import QUAD, Launch, Slice, channel_vectors, f32_literal, pad4, read, write
from kernels.ops.activation import Activation, activation_overrides
from kernels.ops.layout import ConvShape, Pair, Shape, f32, windows


def avg_pool2d_ref(x: np.ndarray, kernel: Pair, stride: Pair | None = None) -> np.ndarray:
    """Average over ``kernel`` windows with no padding (every window lies inside the input).

    Parameters
    ----------
    x : np.ndarray [shape=(batch, height, width, c)]
        Input activations, NHWC.
    kernel : tuple[int, int]
        Window size along (height, width).
    stride : tuple[int, int] or None
        Step between windows; None means ``kernel`` (non-overlapping windows).

    Returns
    -------
    np.ndarray [shape=(batch, out_h, out_w, c)], float32
        ``out_h = (height - kernel[0]) // stride[0] + 1``, likewise ``out_w``.
    """
    stride = kernel if stride is None else stride
    view = windows(f32(x), kernel, stride, (0, 0))  # [b, oh, ow, c, kh, kw]
    return view.mean(axis=(4, 5), dtype=np.float32)


def max_pool2d_ref(x: np.ndarray, kernel: Pair, stride: Pair | None = None) -> np.ndarray:
    """Maximum over ``kernel`` windows with no padding (every window lies inside the input).

    Parameters
    ----------
    x : np.ndarray [shape=(batch, height, width, c)]
        Input activations, NHWC.
    kernel : tuple[int, int]
        Window size along (height, width).
    stride : tuple[int, int] or None
        Step between windows; None means ``kernel`` (non-overlapping windows).

    Returns
    -------
    np.ndarray [shape=(batch, out_h, out_w, c)], float32
        ``out_h = (height - kernel[0]) // stride[0] + 1``, likewise ``out_w``; input rows and
        columns past the last whole window are not read.
    """
    stride = kernel if stride is None else stride
    view = windows(f32(x), kernel, stride, (0, 0))  # [b, oh, ow, c, kh, kw]
    return view.max(axis=(4, 5))


def global_avg_pool_ref(x: np.ndarray) -> np.ndarray:
    """Mean over all positions of each image and channel.

    Parameters
    ----------
    x : np.ndarray [shape=(batch, height, width, c)]
        Input activations, NHWC.

    Returns
    -------
    np.ndarray [shape=(batch, c)], float32
    """
    return f32(x).mean(axis=(1, 2), dtype=np.float32)


def global_avg_pool_grad_ref(grad_out: np.ndarray, input_shape: Shape) -> np.ndarray:
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
    _, height, width, _ = input_shape
    scaled = f32(grad_out) * np.float32(1.0 / (height * width))
    return np.broadcast_to(scaled[:, None, None, :], input_shape).astype(np.float32)


def avg_pool2d_launch(shape: ConvShape, x: Slice, y: Slice, *, activation: Activation) -> Launch:
    """Inference average pooling on the padded layout (``shape.padding`` must be zero)."""
    constants = dict(shape.constants(), CIN_QUADS=pad4(shape.in_c) // QUAD)
    return Launch(
        "avg_pool2d", constants, (read(x), write(y)), shape.positions,
        rolled=frozenset({"ky", "kx"}), overrides=activation_overrides(activation),
    )  # fmt: skip


def max_pool2d_launch(shape: ConvShape, x: Slice, y: Slice) -> Launch:
    """Inference max pooling on the padded layout (``shape.padding`` must be zero).

    Parameters
    ----------
    shape : ConvShape
        Window geometry for the batch of one launch (in_c == out_c, no padding or dilation).
    x, y : Slice
        Input and output activations, channels padded to a multiple of 4.

    Returns
    -------
    Launch
        One max_pool2d launch, an invocation per output position.
    """
    constants = dict(shape.constants(), CIN_QUADS=pad4(shape.in_c) // QUAD)
    return Launch(
        "max_pool2d", constants, (read(x), write(y)), shape.positions,
        rolled=frozenset({"ky", "kx"}),
    )  # fmt: skip


def _pool_constants(positions: int, c: int, rows: int) -> tuple[int, dict[str, int | str]]:
    count, vectors = channel_vectors(rows, c)
    scale = np.float32(1.0) / np.float32(positions)
    return count, dict(vectors, POSITIONS=positions, SCALE=f32_literal(float(scale)))


def global_avg_pool(x: Slice, y: Slice, *, batch: int, positions: int, c: int) -> Launch:
    """Mean over positions: x [batch, positions, c] -> y [batch, c] (c padded for inference)."""
    count, constants = _pool_constants(positions, c, batch)
    return Launch("global_avg_pool", constants, (read(x), write(y)), count)


def global_avg_pool_grad(g: Slice, dx: Slice, *, batch: int, positions: int, c: int) -> Launch:
    """Gradient of the mean over positions: g [batch, c] -> dx [batch, positions, c]."""
    count, constants = _pool_constants(positions, c, batch * positions)
    return Launch("global_avg_pool_grad", constants, (read(g), write(dx)), count)
