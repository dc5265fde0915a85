"""A `Network` compiled for a wgpu device: the inference engine.

Each layer becomes launches of its op's inference kernels (`plan_layer`, built by the modules of
`kernels.ops`) over named buffers: the input, two ping-pong activation buffers sized for the
largest activation, and each layer's parameters. A `kernels.gpu_program.GpuProgram` compiles
them once (identical layers share a pipeline), the parameters are uploaded, and one warm-up
inference runs so that driver-side shader compilation does not land on the first real call. One
call to `WgpuNetwork.run` per chunk of windows then does: one write of the input, one command
buffer that encodes every layer's launches and the copy to a staging buffer, one submit, and one
readback by mapping the staging buffer (mapping is also how completion is awaited).

Batches larger than the compiled chunk are split into chunks; the chunk size is chosen so that no
binding exceeds the device's storage-binding and buffer-size limits and no dispatch exceeds its
workgroup-count limit.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from kernels.device import GpuDevice
from kernels.errors import DeviceError
from kernels.gpu_program import GpuProgram
from kernels.launch import Launches, Slice, pad4, whole
from kernels.network import (
    AvgPool2d,
    Conv2d,
    Dense,
    DepthwiseConv2d,
    GlobalAvgPool,
    Layer,
    MaxPool2d,
    Network,
    PointwiseConv2d,
    Shape,
    Sigmoid,
    Softmax,
)
from kernels.ops.activation import elementwise
from kernels.ops.conv2d import conv2d_launches
from kernels.ops.depthwise_conv2d import depthwise_conv2d_launches
from kernels.ops.layout import ConvShape, padded_size
from kernels.ops.linear import dense_launches, dense_weight_layout, pointwise_conv2d_launches
from kernels.ops.pooling import avg_pool2d_launch, global_avg_pool, max_pool2d_launch
from kernels.ops.softmax import softmax_launch

_LOGGER = logging.getLogger(__name__)

BYTES_PER_FLOAT = 4
ROWS_PER_DENSE_INVOCATION = 1
"""Rows per invocation of a Dense layer (one row per window, so batches are small)."""
INPUT = "input"
ACTIVATIONS = ("act0", "act1")
"""The ping-pong activation buffers: layer i writes ``ACTIVATIONS[i % 2]``."""


def _conv_shape(layer: Conv2d | DepthwiseConv2d, shape: Shape, out: Shape, batch: int) -> ConvShape:
    kernel = (layer.weight.shape[0], layer.weight.shape[1])
    return ConvShape(
        batch, shape[0], shape[1], shape[2], out[2], kernel, layer.stride, layer.pads,
        layer.dilation,
    )  # fmt: skip


def _is_depthwise(layer: Conv2d) -> bool:
    """Whether a grouped convolution is a depthwise one (a group per channel, one output each)."""
    return layer.groups > 1 and layer.weight.shape[2] == 1 and layer.weight.shape[3] == layer.groups


def plan_layer(
    layer: Layer, shape: Shape, out: Shape, batch: int, uniform_limit: int, *,
    x: Slice | None = None, y: Slice | None = None, name: str = "layer",
) -> Launches:  # fmt: skip
    """The launches that compute ``layer`` for ``batch`` windows, and the parameters they read.

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
    x, y : Slice or None
        Input and output activations (channels padded to a multiple of 4); None binds buffers
        named ``x`` and ``y`` of the layer's sizes.
    name : str
        Prefix of the parameter buffers (``<name>.weight``, ``<name>.bias``).

    Returns
    -------
    Launches
        One launch per output-channel group (one for most layers) and the parameter uploads.
    """
    x = x or whole("x", batch * padded_size(shape))
    y = y or whole("y", batch * padded_size(out))
    if isinstance(layer, Conv2d) and _is_depthwise(layer):
        conv = _conv_shape(layer, shape, out, batch)
        return depthwise_conv2d_launches(
            layer.weight[:, :, 0, :], layer.bias, conv, x, y, name=name,
            activation=layer.activation, uniform_limit=uniform_limit,
        )  # fmt: skip
    if isinstance(layer, Conv2d):
        return conv2d_launches(
            layer.weight, layer.bias, _conv_shape(layer, shape, out, batch), x, y, name=name,
            activation=layer.activation, uniform_limit=uniform_limit, groups=layer.groups,
        )  # fmt: skip
    if isinstance(layer, DepthwiseConv2d):
        return depthwise_conv2d_launches(
            layer.weight, layer.bias, _conv_shape(layer, shape, out, batch), x, y, name=name,
            activation=layer.activation, uniform_limit=uniform_limit,
        )  # fmt: skip
    if isinstance(layer, PointwiseConv2d):
        return pointwise_conv2d_launches(
            layer.weight, layer.bias, x, y, positions=batch * shape[0] * shape[1], name=name,
            activation=layer.activation, uniform_limit=uniform_limit,
        )  # fmt: skip
    if isinstance(layer, Dense):
        return dense_launches(
            dense_weight_layout(layer.weight, shape), layer.bias, x, y, rows=batch,
            pix=ROWS_PER_DENSE_INVOCATION, name=name, activation=layer.activation,
            uniform_limit=uniform_limit,
        )  # fmt: skip
    if isinstance(layer, AvgPool2d | MaxPool2d):
        pool = ConvShape(batch, shape[0], shape[1], shape[2], shape[2], layer.kernel, layer.step)
        if isinstance(layer, MaxPool2d):
            return Launches([max_pool2d_launch(pool, x, y)])
        return Launches([avg_pool2d_launch(pool, x, y, activation=layer.activation)])
    if isinstance(layer, GlobalAvgPool):
        positions = shape[0] * shape[1]
        return Launches([global_avg_pool(x, y, batch=batch, positions=positions, c=pad4(out[0]))])
    if isinstance(layer, Softmax):
        rows = batch * math.prod(shape[:-1])
        return Launches([softmax_launch(x, y, rows=rows, n=shape[-1])])
    if isinstance(layer, Sigmoid):
        return Launches([elementwise("sigmoid", (x,), y, batch * padded_size(shape))])
    raise TypeError(
        f"layer: got {type(layer).__name__}, expected one of the kernels.network layers"
    )


def _plans(network: Network, batch: int, uniform_limit: int) -> list[Launches]:
    """Every layer's launches, reading the input or the last activation buffer, in order."""
    act_words = batch * max(padded_size(s) for s in network.shapes[1:])
    source = whole(INPUT, batch * padded_size(network.input_shape))
    plans = []
    steps = zip(network.layers, network.shapes, network.shapes[1:], strict=False)
    for index, (layer, shape, out) in enumerate(steps):
        target = whole(ACTIVATIONS[index % 2], act_words)
        plans.append(
            plan_layer(
                layer, shape, out, batch, uniform_limit, x=source, y=target, name=str(index)
            )  # fmt: skip
        )
        source = target
    return plans


def max_chunk(network: Network, limits: dict[str, int], wanted: int) -> int:
    """Largest number of windows per launch, at most ``wanted``, that fits the device limits.

    Parameters
    ----------
    network : Network
        The network.
    limits : dict[str, int]
        Device limits (``max-storage-buffer-binding-size``, ``max-buffer-size``,
        ``max-compute-workgroups-per-dimension``, ``max-uniform-buffer-binding-size``).
    wanted : int
        Requested windows per launch, at least 1.

    Returns
    -------
    int
        Windows per launch.

    Raises
    ------
    DeviceError
        Not even one window fits.
    """
    binding = min(limits["max-storage-buffer-binding-size"], limits["max-buffer-size"])
    largest = max(padded_size(shape) for shape in network.shapes) * BYTES_PER_FLOAT
    chunk = min(wanted, binding // largest)
    max_groups = limits["max-compute-workgroups-per-dimension"]
    while chunk >= 1:
        plans = _plans(network, chunk, limits["max-uniform-buffer-binding-size"])
        worst = max(launch.workgroups for plan in plans for launch in plan.launches)
        if worst <= max_groups:
            return chunk
        chunk = min(chunk - 1, chunk * max_groups // worst)
    raise DeviceError(
        f"network: one window needs {largest} bytes per activation and more workgroups than the "
        f"device allows ({binding} bytes per binding, {max_groups} workgroups per dimension)"
    )


class WgpuNetwork:
    """A network compiled for one device and a fixed number of windows per launch.

    Parameters
    ----------
    network : Network
        What to run.
    gpu : GpuDevice
        The device (see `kernels.device.open_device`).
    batch_size : int
        Windows per launch; reduced if the device limits require it (see `chunk`).
    max_binding_bytes : int or None
        Lower the storage-binding limit below the device's, e.g. to exercise chunking.

    Raises
    ------
    DeviceError
        A kernel fails to compile or validate (the message names it), or nothing fits the limits.
    """

    def __init__(
        self,
        network: Network,
        gpu: GpuDevice,
        batch_size: int = 1,
        max_binding_bytes: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: got {batch_size}, expected an integer >= 1")
        self.network = network
        self.gpu = gpu
        limits = dict(gpu.limits)
        if max_binding_bytes is not None:
            limits["max-storage-buffer-binding-size"] = max_binding_bytes
        self.chunk = max_chunk(network, limits, batch_size)
        plans = _plans(network, self.chunk, limits["max-uniform-buffer-binding-size"])
        launches = [launch for plan in plans for launch in plan.launches]
        buffers = {piece.buffer: piece.size for launch in launches for piece, _ in launch.bindings}
        self._program = GpuProgram(gpu, buffers, launches)
        for plan in plans:
            for name, data in plan.uploads.items():
                self._program.write(name, data)
        last = len(network.layers) - 1
        self._result = whole(ACTIVATIONS[last % 2], self.chunk * padded_size(network.shapes[-1]))
        self._run_chunk(np.zeros((self.chunk, *network.input_shape), np.float32))
        _LOGGER.info(
            "compiled %d dispatches for %d windows per launch on %s",
            len(launches),
            self.chunk,
            gpu.adapter,
        )

    @property
    def description(self) -> str:
        """The adapter this network runs on, in words."""
        return f"wgpu {self.gpu.adapter}"

    def _device_layout(self, x: np.ndarray) -> np.ndarray:
        """``x`` with its channel axis zero-padded to a multiple of 4, as the kernels read it."""
        channels = x.shape[-1]
        if channels == pad4(channels):
            return x
        padded = np.zeros((*x.shape[:-1], pad4(channels)), np.float32)
        padded[..., :channels] = x
        return padded

    def _run_chunk(self, x: np.ndarray) -> np.ndarray:
        """One launch: write ``x`` ([chunk, *input_shape]), encode, submit, read back."""
        self._program.write(INPUT, self._device_layout(x).ravel())
        out = self._program.run(self._result)
        assert out is not None
        out_shape = self.network.output_shape
        out = out.reshape(self.chunk, *out_shape[:-1], pad4(out_shape[-1]))
        return out[..., : out_shape[-1]] if out.shape[-1] != out_shape[-1] else out

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run the network on any number of windows.

        Parameters
        ----------
        x : np.ndarray [shape=(batch, *network.input_shape)]
            Input windows; batches larger than `chunk` run as several launches, and the last
            launch is zero-padded to `chunk` windows.

        Returns
        -------
        np.ndarray [shape=(batch, *network.output_shape)], float32
        """
        x = self.network.check_input(x)
        outputs = []
        for start in range(0, x.shape[0], self.chunk):
            part = x[start : start + self.chunk]
            if part.shape[0] < self.chunk:
                padded = np.zeros((self.chunk, *self.network.input_shape), np.float32)
                padded[: part.shape[0]] = part
                outputs.append(self._run_chunk(padded)[: part.shape[0]])
            else:
                outputs.append(self._run_chunk(part))
        if not outputs:
            return np.zeros((0, *self.network.output_shape), np.float32)
        return np.concatenate(outputs) if len(outputs) > 1 else outputs[0]
