"""Array geometry the ops share: windows of a convolution, their adjoint, device layouts.

Conventions: activations are channels-last (NHWC): ``[batch, height, width, channels]``; for
earshot's speech models height is time (frames) and width is frequency (mel bands). Weights put
the output channels last: conv ``[kh, kw, in_c, out_c]`` (HWIO), depthwise ``[kh, kw, c]``,
pointwise ``[in_c, out_c]``, dense ``[in_features, out_features]``. Zero padding is given either
as ``(rows, columns)`` added on both sides or as ``(top, left, bottom, right)`` (`Padding`);
`pads4` turns either into the second form. A dilation ``(dh, dw)`` spaces a kernel's taps
``dh`` rows and ``dw`` columns apart.

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
Pads = tuple[int, int, int, int]
"""Zero padding (top, left, bottom, right)."""
Padding = Pair | Pads
"""Zero padding as (rows, columns) on both sides, or (top, left, bottom, right)."""
PADDING_FORMS = (2, 4)
"""Lengths a `Padding` may have."""

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


def pads4(padding: Padding) -> Pads:
    """``padding`` as (top, left, bottom, right).

    Parameters
    ----------
    padding : tuple[int, int] or tuple[int, int, int, int]
        (rows, columns) added on both sides, or (top, left, bottom, right).

    Returns
    -------
    tuple[int, int, int, int]

    Raises
    ------
    ValueError
        ``padding`` has neither 2 nor 4 entries.
    """
    values = tuple(int(p) for p in padding)
    if len(values) not in PADDING_FORMS:
        raise ValueError(
            f"padding: got {padding!r}, expected (rows, columns) or (top, left, bottom, right)"
        )
    if len(values) == PADDING_FORMS[0]:
        return values[0], values[1], values[0], values[1]
    return values[0], values[1], values[2], values[3]


def conv_output_size(
    size: int, kernel: int, stride: int, padding: int | Pair, dilation: int = 1
) -> int:
    """Length of a convolution's output along one axis.

    Parameters
    ----------
    size : int
        Input length (samples, frames or bins), at least 1.
    kernel : int
        Kernel length (taps), at least 1.
    stride : int
        Step between windows, at least 1.
    padding : int or tuple[int, int]
        Zeros added on each side, or (before, after); at least 0.
    dilation : int
        Distance between taps, at least 1; a window spans ``dilation * (kernel - 1) + 1``.

    Returns
    -------
    int
        ``(size + before + after - span) // stride + 1``.

    Raises
    ------
    ValueError
        The padded input is shorter than the window.
    """
    before, after = (padding, padding) if isinstance(padding, int) else padding
    padded = size + before + after
    span = dilation * (kernel - 1) + 1
    if padded < span:
        raise ValueError(
            f"kernel: got {kernel} taps spanning {span}, expected at most the padded input "
            f"size {padded}"
        )
    return (padded - span) // stride + 1


def conv_output_hw(
    hw: Pair, kernel: Pair, stride: Pair, padding: Padding, dilation: Pair = (1, 1)
) -> Pair:
    """(out_h, out_w) of a window over (height, width); see `conv_output_size`."""
    top, left, bottom, right = pads4(padding)
    return (
        conv_output_size(hw[0], kernel[0], stride[0], (top, bottom), dilation[0]),
        conv_output_size(hw[1], kernel[1], stride[1], (left, right), dilation[1]),
    )


def windows(
    x: np.ndarray, kernel: Pair, stride: Pair, padding: Padding, dilation: Pair = (1, 1)
) -> np.ndarray:
    """Strided view of every kernel window.

    Parameters
    ----------
    x : np.ndarray [shape=(batch, height, width, c)]
        Activations.
    kernel, stride : tuple[int, int]
        Window size (taps) and step along (height, width).
    padding : tuple[int, int] or tuple[int, int, int, int]
        Zero padding, (rows, columns) on both sides or (top, left, bottom, right).
    dilation : tuple[int, int]
        Distance between taps along (height, width).

    Returns
    -------
    np.ndarray [shape=(batch, out_h, out_w, c, kh, kw)]
        A view of ``x`` (a padded copy when ``padding`` is not zero).
    """
    top, left, bottom, right = pads4(padding)
    if top or left or bottom or right:
        batch, height, width, channels = x.shape
        padded = np.zeros((batch, top + height + bottom, left + width + right, channels), x.dtype)
        padded[:, top : top + height, left : left + width] = x  # np.pad is slower
        x = padded
    span = (dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1)
    view = sliding_window_view(x, span, axis=(1, 2))
    return view[:, :: stride[0], :: stride[1], :, :: dilation[0], :: dilation[1]]


def scatter_windows(
    taps: np.ndarray, input_shape: Shape, stride: Pair, padding: Padding
) -> np.ndarray:
    """The adjoint of `windows` (without dilation): add every window's values back where it read.

    Parameters
    ----------
    taps : np.ndarray [shape=(batch, out_h, out_w, kh, kw, c)]
        One value per window, tap and channel.
    input_shape : tuple[int, int, int, int]
        (batch, height, width, c) of the windowed input.
    stride : tuple[int, int]
        That of the windows.
    padding : tuple[int, int] or tuple[int, int, int, int]
        That of the windows.

    Returns
    -------
    np.ndarray [shape=input_shape], float32
        Sums over taps, the padding cropped.
    """
    batch, height, width, channels = input_shape
    out_h, out_w, kh, kw = taps.shape[1:5]
    top, left, bottom, right = pads4(padding)
    padded = np.zeros((batch, top + height + bottom, left + width + right, channels), np.float32)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + stride[0] * (out_h - 1) + 1, stride[0])
            cols = slice(j, j + stride[1] * (out_w - 1) + 1, stride[1])
            padded[:, rows, cols] += taps[:, :, :, i, j]
    return padded[:, top : top + height, left : left + width]


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
    kernel, stride : tuple[int, int]
        Kernel size (taps) and step along (height, width).
    padding : tuple[int, int, int, int]
        Zero padding (top, left, bottom, right); (rows, columns) on both sides is accepted and
        stored in this form.
    dilation : tuple[int, int]
        Distance between taps along (height, width).
    """

    batch: int
    height: int
    width: int
    in_c: int
    out_c: int
    kernel: Pair
    stride: Pair = (1, 1)
    padding: Padding = (0, 0)
    dilation: Pair = (1, 1)

    def __post_init__(self) -> None:
        object.__setattr__(self, "padding", pads4(self.padding))

    @property
    def out_hw(self) -> Pair:
        """(out_h, out_w)."""
        return conv_output_hw(
            (self.height, self.width), self.kernel, self.stride, self.padding, self.dilation
        )

    @property
    def positions(self) -> int:
        """Output positions: batch * out_h * out_w."""
        return self.batch * self.out_hw[0] * self.out_hw[1]

    def constants(self) -> dict[str, Constant]:
        """Template constants of the window geometry (the ``window`` fragment) and channels.

        ``PH`` and ``PW`` are the zeros before the first row and column (top, left); the bottom
        and right padding only set ``OH`` and ``OW``.
        """
        top, left = self.padding[0], self.padding[1]
        return dict(
            H=self.height, W=self.width, CI=self.in_c, CO=self.out_c,
            OH=self.out_hw[0], OW=self.out_hw[1], KH=self.kernel[0], KW=self.kernel[1],
            SH=self.stride[0], SW=self.stride[1], PH=top, PW=left,
            DH=self.dilation[0], DW=self.dilation[1],
        )  # fmt: skip
