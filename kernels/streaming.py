"""Run a network over a stream of frames one hop at a time, computing only the new columns.

A network whose leading layers are convolutions and pools along its first input axis (time)
gives, for windows that start ``hop`` frames apart, layer outputs that overlap: when the window
moves on by one hop, layer ``i``'s output gains ``hop / S`` new columns, where ``S`` is the time
stride of the layers up to it, and keeps the rest. `StreamingNetwork` keeps, for every such layer,
the last columns of its input that its new output columns read, and on each hop runs each layer
on just those; the layers after the time axis (dense layers, global pools, activations) run on the
last window's output of the time layers. The result equals running the whole network on each
window (the numpy references on fewer columns) for any way the frames are split into chunks::

    stream = StreamingNetwork(network, hop=8)
    for frames in chunks:                       # [n, *network.input_shape[1:]], any n
        for out in stream.push(frames):         # one output per window, oldest first
            ...

The first output comes once a whole window (``network.input_shape[0]`` frames) has arrived; the
windows start at frames 0, hop, 2 hop, ... of the stream. The hop must be a multiple of the time
stride of every time layer, and those layers must not pad along time (a padded border would move
with the window).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.errors import ModelError
from kernels.network import (
    AvgPool2d,
    Conv2d,
    DepthwiseConv2d,
    Layer,
    MaxPool2d,
    Network,
    PointwiseConv2d,
)
from kernels.ops.activation import activation_ref


@dataclass(frozen=True)
class _TimeGeometry:
    """How one time layer reads along time: kernel extent (dilated) and stride."""

    span: int
    stride: int


def _time_geometry(layer: Layer) -> _TimeGeometry | None:
    """The layer's reach along time, or None for a layer that is not local in time."""
    if isinstance(layer, Conv2d | DepthwiseConv2d):
        top, _, bottom, _ = layer.pads
        if top or bottom:
            raise ModelError(
                f"{type(layer).__name__}: pads {top} and {bottom} along time; a streamed layer "
                "must not pad along time"
            )
        span = (layer.weight.shape[0] - 1) * layer.dilation[0] + 1
        return _TimeGeometry(span, layer.stride[0])
    if isinstance(layer, MaxPool2d | AvgPool2d):
        return _TimeGeometry(layer.kernel[0], layer.step[0])
    if isinstance(layer, PointwiseConv2d):
        return _TimeGeometry(1, 1)
    return None


class _ConvColumns:
    """A convolution (groups 1) on a few columns: one gather of its taps and one matrix product.

    The kept columns are stored padded along width, so a hop pads only its new columns. This is
    `kernels.ops.conv2d.conv2d_ref` with the per-call set-up done once, because a hop runs every
    layer on one to eight columns and the set-up, not the arithmetic, would dominate.
    """

    def __init__(self, layer: Conv2d, new: int, width: int) -> None:
        kh, kw, in_c, out_c = layer.weight.shape
        _, self.left, _, self.right = layer.pads
        self.matrix = np.ascontiguousarray(layer.weight.reshape(kh * kw * in_c, out_c))
        self.bias, self.activation = layer.bias, layer.activation
        (s_h, s_w), (d_h, d_w) = layer.stride, layer.dilation
        out_w = (width + self.left + self.right - (kw - 1) * d_w - 1) // s_w + 1
        self.taps = [
            (slice(a * d_h, a * d_h + (new - 1) * s_h + 1, s_h),
             slice(b * d_w, b * d_w + (out_w - 1) * s_w + 1, s_w))
            for a in range(kh) for b in range(kw)
        ]  # fmt: skip
        self.rows = new * out_w
        self.out_shape = (new, out_w, out_c)

    def pad(self, x: np.ndarray) -> np.ndarray:
        """Columns [n, width, c] as the layer reads them: zero-padded along width."""
        if not (self.left or self.right):
            return x
        padded = np.zeros((x.shape[0], x.shape[1] + self.left + self.right, x.shape[2]), x.dtype)
        padded[:, self.left : self.left + x.shape[1]] = x
        return padded

    def __call__(self, cache: np.ndarray) -> np.ndarray:
        taps = [cache[rows, cols] for rows, cols in self.taps]
        columns = taps[0] if len(taps) == 1 else np.concatenate(taps, axis=2)
        out = columns.reshape(self.rows, -1) @ self.matrix
        out += self.bias
        return activation_ref(out, self.activation, inplace=True).reshape(self.out_shape)


class _MaxColumns:
    """Max pooling on a few columns: the maximum of its strided taps."""

    def __init__(self, layer: MaxPool2d, new: int, width: int) -> None:
        (kh, kw), (s_h, s_w) = layer.kernel, layer.step
        out_w = (width - kw) // s_w + 1
        self.taps = [
            (slice(a, a + (new - 1) * s_h + 1, s_h), slice(b, b + (out_w - 1) * s_w + 1, s_w))
            for a in range(kh) for b in range(kw)
        ]  # fmt: skip

    def pad(self, x: np.ndarray) -> np.ndarray:
        return x

    def __call__(self, cache: np.ndarray) -> np.ndarray:
        rows, cols = self.taps[0]
        out = cache[rows, cols].copy()
        for rows, cols in self.taps[1:]:
            np.maximum(out, cache[rows, cols], out=out)
        return out


class _Forward:
    """Any other time layer: its numpy reference on the kept columns."""

    def __init__(self, layer: Layer) -> None:
        self.layer = layer

    def pad(self, x: np.ndarray) -> np.ndarray:
        return x

    def __call__(self, cache: np.ndarray) -> np.ndarray:
        return self.layer.forward(cache[None])[0]


def _columns(layer: Layer, new: int, width: int) -> _ConvColumns | _MaxColumns | _Forward:
    if isinstance(layer, Conv2d) and layer.groups == 1:
        return _ConvColumns(layer, new, width)
    if isinstance(layer, MaxPool2d):
        return _MaxColumns(layer, new, width)
    return _Forward(layer)


class StreamingNetwork:
    """A network run hop by hop over a stream, each hop computing only new columns.

    Parameters
    ----------
    network : Network
        Its input is one window [frames, ...] along time first; its leading layers are
        convolutions, depthwise or pointwise convolutions and pools (the time layers).
    hop : int
        Frames between consecutive windows; a multiple of the time layers' total stride.

    Raises
    ------
    ModelError
        No time layer leads the network, a time layer pads along time, or ``hop`` is not a
        multiple of the time stride before some layer.
    """

    def __init__(self, network: Network, hop: int) -> None:
        self.network, self.hop = network, int(hop)
        self.window = network.input_shape[0]
        geometry: list[_TimeGeometry] = []
        for layer in network.layers:
            g = _time_geometry(layer)
            if g is None:
                break
            geometry.append(g)
        if not geometry:
            raise ModelError("streaming: the network starts with no convolution or pool")
        self._time_layers = network.layers[: len(geometry)]
        self._tail = network.layers[len(geometry) :]
        stride = 1
        self._new: list[int] = []  # new output columns per hop, per time layer
        self._keep: list[int] = []  # input columns a time layer keeps
        self._skip: list[int] = []  # trailing input columns the window's last output leaves out
        for i, g in enumerate(geometry):
            stride *= g.stride
            if self.hop % stride:
                raise ModelError(
                    f"streaming: hop {self.hop} is not a multiple of the time stride {stride} "
                    f"after layer {i} ({type(network.layers[i]).__name__})"
                )
            new = self.hop // stride
            length = network.shapes[i][0]
            skip = (length - g.span) % g.stride
            self._new.append(new)
            self._skip.append(skip)
            self._keep.append((new - 1) * g.stride + g.span + skip)
        self._tail_columns = network.shapes[len(geometry)][0]
        self._steps = [
            _columns(layer, new, network.shapes[i][1])
            for i, (layer, new) in enumerate(zip(self._time_layers, self._new, strict=True))
        ]
        self.reset()

    def __repr__(self) -> str:
        return f"StreamingNetwork(window={self.window}, hop={self.hop}, windows={self.windows})"

    def reset(self) -> None:
        """Start a new stream."""
        self._pending = np.zeros((0, *self.network.input_shape[1:]), np.float32)
        self._caches: list[np.ndarray] | None = None
        self._last: np.ndarray | None = None  # the time layers' output of the latest window
        self.windows = 0
        """Outputs produced since the stream started."""

    def push(self, frames: np.ndarray) -> list[np.ndarray]:
        """Add frames [n, *input_shape[1:]]; return the outputs of the windows they complete."""
        frames = np.asarray(frames, np.float32)
        if frames.shape[1:] != self.network.input_shape[1:]:
            raise ModelError(
                f"streaming input: got frames of shape {frames.shape[1:]}, expected "
                f"{self.network.input_shape[1:]}"
            )
        self._pending = np.concatenate((self._pending, frames))
        outputs: list[np.ndarray] = []
        if self._caches is None:
            if self._pending.shape[0] < self.window:
                return outputs
            outputs.append(self._first(self._pending[: self.window]))
            self._pending = self._pending[self.window :]
        while self._pending.shape[0] >= self.hop:
            outputs.append(self._step(self._pending[: self.hop]))
            self._pending = self._pending[self.hop :]
        return outputs

    def _first(self, window: np.ndarray) -> np.ndarray:
        """Run the whole first window, keeping each time layer's input tail."""
        x = window[None]
        caches = []
        for layer, keep, step in zip(self._time_layers, self._keep, self._steps, strict=True):
            caches.append(step.pad(x[0, -keep:]))
            x = layer.forward(x)
        self._caches, self._last = caches, x[0]
        return self._finish()

    def _step(self, frames: np.ndarray) -> np.ndarray:
        """One hop: each time layer on its kept columns plus the new ones."""
        assert self._caches is not None and self._last is not None
        x = frames
        for i, step in enumerate(self._steps):
            x = step.pad(x)
            keep = self._keep[i]
            cache = x if x.shape[0] >= keep else np.concatenate((self._caches[i], x))[-keep:]
            self._caches[i] = cache
            x = step(cache[: cache.shape[0] - self._skip[i]])
        self._last = np.concatenate((self._last, x))[-self._tail_columns :]
        return self._finish()

    def _finish(self) -> np.ndarray:
        assert self._last is not None
        out = self._last[None]
        for layer in self._tail:
            out = layer.forward(out)
        self.windows += 1
        return out[0]
