"""Array geometry the ops share: windows of a convolution, their adjoint, device layouts.

Conventions: activations are channels-last (NHWC): ``[batch, height, width, channels]``; for
earshot's speech models height is time (frames) and width is frequency (mel bands). Weights put
the output channels last: conv ``[kh, kw, in_c, out_c]`` (HWIO), depthwise ``[kh, kw, c]``,
pointwise ``[in_c, out_c]``, dense ``[in_features, out_features]``. Padding is symmetric zero
padding given as ``(rows, columns)`` added on each side.

The inference engine stores every activation with its channel axis zero-padded to a multiple of
4 and reads it as ``vec4<f32>`` (`padded_size`, `QuadParams`); the training engine reads and
writes unpadded float32 arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from kernels.launch import QUAD, Binding, Constant, pad4, read, uniform, whole

Pair = tuple[int, int]
Shape = tuple[int, ...]

MAX_CHANNEL_TILE = 64
"""Most output channels one invocation of an inference kernel accumulates; wider layers are
dispatched once per group of channels."""
PIXELS_PER_INVOCATION = 8
"""Output positions per invocation of the inference kernels that tile positions (at most)."""
PRELOAD_FLOATS = 512
"""Most input values an invocation of conv2d_patch or pointwise_conv2d holds in registers
(positions x patch size); larger layers run on conv2d_tiled or dense, which stream their inputs."""


def f32(array: np.ndarray) -> np.ndarray:
    """``array`` as float32 (no copy when it already is)."""
    return np.asarray(array, dtype=np.float32)


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Length of a convolution's output along one axis.

    Parameters
    ----------
    size : int
        Input length (samples, frames or bins), at least 1.
    kernel : int
        Kernel length, at least 1.
    stride : int
        Step between windows, at least 1.
    padding : int
        Zeros added on each side, at least 0.

    Returns
    -------
    int
        ``(size + 2 * padding - kernel) // stride + 1``.

    Raises
    ------
    ValueError
        The padded input is shorter than the kernel.
    """
    padded = size + 2 * padding
    if padded < kernel:
        raise ValueError(f"kernel: got {kernel}, expected at most the padded input size {padded}")
    return (padded - kernel) // stride + 1


def conv_output_hw(hw: Pair, kernel: Pair, stride: Pair, padding: Pair) -> Pair:
    """(out_h, out_w) of a window over (height, width); see `conv_output_size`."""
    return (
        conv_output_size(hw[0], kernel[0], stride[0], padding[0]),
        conv_output_size(hw[1], kernel[1], stride[1], padding[1]),
    )


def windows(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair) -> np.ndarray:
    """Strided view of every kernel window.

    Parameters
    ----------
    x : np.ndarray [shape=(batch, height, width, c)]
        Activations.
    kernel, stride, padding : tuple[int, int]
        Window size, step and symmetric zero padding along (height, width).

    Returns
    -------
    np.ndarray [shape=(batch, out_h, out_w, c, kh, kw)]
        A view of ``x`` (a padded copy when ``padding`` is not zero).
    """
    pad_h, pad_w = padding
    if pad_h or pad_w:
        batch, height, width, channels = x.shape
        padded = np.zeros((batch, height + 2 * pad_h, width + 2 * pad_w, channels), x.dtype)
        padded[:, pad_h : pad_h + height, pad_w : pad_w + width] = x  # np.pad is slower
        x = padded
    view = sliding_window_view(x, kernel, axis=(1, 2))
    return view[:, :: stride[0], :: stride[1]]


def scatter_windows(
    taps: np.ndarray, input_shape: Shape, stride: Pair, padding: Pair
) -> np.ndarray:
    """The adjoint of `windows`: add every window's values back where the window read them.

    Parameters
    ----------
    taps : np.ndarray [shape=(batch, out_h, out_w, kh, kw, c)]
        One value per window, tap and channel.
    input_shape : tuple[int, int, int, int]
        (batch, height, width, c) of the windowed input.
    stride, padding : tuple[int, int]
        Those of the windows.

    Returns
    -------
    np.ndarray [shape=input_shape], float32
        Sums over taps, the padding cropped.
    """
    batch, height, width, channels = input_shape
    out_h, out_w, kh, kw = taps.shape[1:5]
    padded = np.zeros(
        (batch, height + 2 * padding[0], width + 2 * padding[1], channels), np.float32
    )
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + stride[0] * (out_h - 1) + 1, stride[0])
            cols = slice(j, j + stride[1] * (out_w - 1) + 1, stride[1])
            padded[:, rows, cols] += taps[:, :, :, i, j]
    return padded[:, padding[0] : padding[0] + height, padding[1] : padding[1] + width]


def padded_size(shape: Shape) -> int:
    """Floats one window of ``shape`` takes on the device (last axis padded to a multiple of 4)."""
    return math.prod(shape[:-1]) * pad4(shape[-1])


def pad_axes(array: np.ndarray, axes: dict[int, int]) -> np.ndarray:
    """Zero-pad the given axes of ``array`` to the given lengths (float32)."""
    widths = [(0, axes.get(axis, n) - n) for axis, n in enumerate(array.shape)]
    return np.pad(np.asarray(array, dtype=np.float32), widths)


def channel_groups(channels: int) -> list[tuple[int, int]]:
    """(first channel, count) for each channel tile of a padded channel axis."""
    return [
        (c0, min(MAX_CHANNEL_TILE, channels - c0)) for c0 in range(0, channels, MAX_CHANNEL_TILE)
    ]


def tile_constants(pix: int, channels: int) -> dict[str, Constant]:
    """Template constants of a PIX positions x ``channels`` register tile."""
    return {"OC_N": channels, "OC_QUADS": channels // QUAD, "PIX": pix, "ACC_N": pix * channels}


@dataclass(frozen=True, eq=False)
class QuadParams:
    """Weight and bias of an inference kernel, flattened in the device layout.

    Attributes
    ----------
    bindings : tuple[Binding, Binding]
        The weight and bias bindings: uniform when both fit a uniform binding, else storage.
    uploads : dict[str, np.ndarray]
        Buffer name -> flat float32 contents.
    constants : dict[str, int | str]
        ``PARAM_SPACE``, ``W_VEC4`` and ``B_VEC4`` for the kernel template.
    """

    bindings: tuple[Binding, Binding]
    uploads: dict[str, np.ndarray]
    constants: dict[str, Constant]

    @classmethod
    def of(cls, name: str, weight: np.ndarray, bias: np.ndarray, uniform_limit: int) -> QuadParams:
        """Weight and bias (already padded) as buffers ``<name>.weight`` and ``<name>.bias``."""
        flat = tuple(np.ascontiguousarray(a, np.float32).ravel() for a in (weight, bias))
        fits = max(p.nbytes for p in flat) <= uniform_limit
        bind = uniform if fits else read
        names = (f"{name}.weight", f"{name}.bias")
        constants: dict[str, Constant] = {
            "PARAM_SPACE": "uniform" if fits else "storage, read",
            "W_VEC4": flat[0].size // QUAD,
            "B_VEC4": flat[1].size // QUAD,
        }
        bindings = (bind(whole(names[0], flat[0].size)), bind(whole(names[1], flat[1].size)))
        return cls(bindings, dict(zip(names, flat, strict=True)), constants)


@dataclass(frozen=True)
class ConvShape:
    """Geometry of a convolution (regular or depthwise) or pooling window for a batch.

    Attributes
    ----------
    batch, height, width, in_c, out_c : int
        Input [batch, height, width, in_c]; output channels (in_c for a depthwise one).
    kernel, stride, padding : tuple[int, int]
        Kernel size, step and symmetric zero padding along (height, width).
    """

    batch: int
    height: int
    width: int
    in_c: int
    out_c: int
    kernel: Pair
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)

    @property
    def out_hw(self) -> Pair:
        """(out_h, out_w)."""
        return conv_output_hw((self.height, self.width), self.kernel, self.stride, self.padding)

    @property
    def positions(self) -> int:
        """Output positions: batch * out_h * out_w."""
        return self.batch * self.out_hw[0] * self.out_hw[1]

    def constants(self) -> dict[str, Constant]:
        """Template constants of the window geometry (the ``window`` fragment) and channels."""
        return dict(
            H=self.height, W=self.width, CI=self.in_c, CO=self.out_c,
            OH=self.out_hw[0], OW=self.out_hw[1], KH=self.kernel[0], KW=self.kernel[1],
            SH=self.stride[0], SW=self.stride[1], PH=self.padding[0], PW=self.padding[1],
        )  # fmt: skip
