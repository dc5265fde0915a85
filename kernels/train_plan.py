"""One training step of a `TrainNetwork` as kernel launches over named buffers (no wgpu objects).

The plan lays every parameter out in one flat buffer (weights, the arrays Adam decays, first;
each array at a 256-byte aligned offset), with gradients and both Adam moments in three more
buffers of the same layout, so the whole update is two launches. Batch-norm running statistics
share a flat buffer too; each layer's output keeps a buffer of its own (the backward pass reads
it), and gradients flow through two ping-pong buffers. The launches are: forward of every layer,
the loss and the gradient of the logits, backward of every layer (the first layer's input
gradient is skipped: the data needs none), and the AdamW update.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from kernels.errors import ModelError
from kernels.launch import Launch, Slice, align, whole
from kernels.ops import conv2d, depthwise_conv2d
from kernels.ops.activation import elementwise
from kernels.ops.adam import HYPER_WORDS, adam
from kernels.ops.batch_norm import (
    BN_STATS_ROWS,
    BatchNormSlices,
    batch_norm_backward,
    batch_norm_forward,
)
from kernels.ops.column_sum import reduce_rows, splits
from kernels.ops.layout import ConvShape
from kernels.ops.linear import linear_forward, linear_input_grad, linear_weight_grad
from kernels.ops.pooling import global_avg_pool, global_avg_pool_grad
from kernels.ops.softmax import LOSS_COLUMNS, RESULT_WORDS, LossSlices, softmax_cross_entropy
from kernels.train_network import (
    TrainBatchNorm,
    TrainConv2d,
    TrainDense,
    TrainDepthwiseConv2d,
    TrainDropout,
    TrainGlobalAvgPool,
    TrainLayer,
    TrainNetwork,
    TrainPointwiseConv2d,
    TrainReLU,
)

INPUT, LABELS, CLASS_WEIGHTS = "input", "labels", "class_weights"
PARAMS, GRADS, EXP_AVG, EXP_AVG_SQ = "params", "grads", "exp_avg", "exp_avg_sq"
RUNNING, STATS, HYPER = "running", "stats", "hyper"
GRAD_PING, GRAD_PONG, SCRATCH = "grad_ping", "grad_pong", "scratch"
LOSS_ROWS, TOTALS, RESULT = "loss_rows", "totals", "result"
STATE_BUFFERS = (PARAMS, GRADS, EXP_AVG, EXP_AVG_SQ, RUNNING, HYPER)
"""Buffers whose contents outlive a step (programs for other batch sizes share them)."""
DECAYED_MIN_NDIM = 2
"""Arrays with at least this many axes are weights, and Adam decays them."""
MIN_BATCH_NORM_VALUES = 2
"""Values per channel a training batch norm needs (the unbiased variance divides by M - 1)."""


_CONV_OPS = {
    TrainConv2d: (conv2d.conv2d_forward, conv2d.conv2d_input_grad, conv2d.conv2d_weight_grad),
    TrainDepthwiseConv2d: (
        depthwise_conv2d.depthwise_forward,
        depthwise_conv2d.depthwise_input_grad,
        depthwise_conv2d.depthwise_weight_grad,
    ),
}
"""Forward, input-gradient and weight-gradient launch builders of each convolution layer."""


@dataclass(frozen=True)
class FlatLayout:
    """Named arrays packed into one flat float32 buffer, each at an aligned offset.

    Attributes
    ----------
    slots : dict[str, tuple[int, tuple[int, ...]]]
        Offset (words) and shape of each array.
    words : int
        Buffer size in words.
    decayed_words : int
        Words ``[0, decayed_words)`` hold the arrays with ndim >= 2; the rest follow.
    """

    slots: dict[str, tuple[int, tuple[int, ...]]]
    words: int
    decayed_words: int

    @classmethod
    def of(cls, arrays: Mapping[str, np.ndarray]) -> FlatLayout:
        """Lay out ``arrays``: those with ndim >= 2 first, each group in the given order."""
        slots, offset = {}, 0
        decayed = [n for n, a in arrays.items() if a.ndim >= DECAYED_MIN_NDIM]
        for group in (decayed, [n for n in arrays if n not in decayed]):
            for name in group:
                slots[name] = (offset, tuple(arrays[name].shape))
                offset = align(offset + max(1, arrays[name].size))
            if group is decayed:
                decayed_words = offset
        return cls(slots, max(offset, 1), decayed_words)

    def slice(self, buffer: str, name: str) -> Slice:
        """Where array ``name`` lives in ``buffer``."""
        offset, shape = self.slots[name]
        return Slice(buffer, offset, max(1, math.prod(shape)))

    def pack(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """One flat float32 array holding ``arrays`` (exactly the layout's names and shapes)."""
        flat = np.zeros(self.words, np.float32)
        for name, (offset, shape) in self.slots.items():
            value = np.asarray(arrays[name], np.float32)
            if value.shape != shape:
                raise ValueError(f"{name}: got shape {value.shape}, expected {shape}")
            flat[offset : offset + value.size] = value.ravel()
        return flat

    def unpack(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """The named arrays (copies) of a flat buffer's contents."""
        return {
            name: flat[offset : offset + math.prod(shape)].reshape(shape).copy()
            for name, (offset, shape) in self.slots.items()
        }


def _scratch_words(layer: TrainLayer, shape: tuple[int, ...], batch: int) -> int:
    """Words of scratch the layer's backward (or forward) reductions need."""
    rows = batch * math.prod(shape[:-1])
    if isinstance(layer, TrainConv2d | TrainDepthwiseConv2d):
        out_shape = layer.output_shape(shape)
        positions = batch * out_shape[0] * out_shape[1]
        return splits(positions) * max(layer.weight.size, out_shape[-1])
    if isinstance(layer, TrainPointwiseConv2d | TrainDense):
        rows = batch if isinstance(layer, TrainDense) else rows
        return splits(rows) * layer.weight.size
    if isinstance(layer, TrainBatchNorm):
        return splits(rows) * 2 * shape[-1]
    return 0


@dataclass(frozen=True)
class TrainPlan:
    """Buffers and launches of one training step of a network for a batch size.

    Attributes
    ----------
    batch : int
        Windows per step.
    params, running : FlatLayout
        Layout of the parameters (also of their gradients and Adam moments) and of the batch-norm
        running statistics.
    buffers : dict[str, int]
        Every buffer's size in words.
    ops : list[Launch]
        Forward, loss, backward and update launches, in order.
    masks : dict[int, str]
        Dropout layer index -> the buffer its mask is written to.
    result : Slice
        The two words a step reads back: weighted mean loss and correct count.
    """

    batch: int
    params: FlatLayout
    running: FlatLayout
    buffers: dict[str, int]
    ops: list[Launch]
    masks: dict[int, str]
    result: Slice


class _Builder:
    """Builds the launches of a plan layer by layer."""

    def __init__(self, network: TrainNetwork, batch: int) -> None:
        self.net, self.batch = network, batch
        self.params = FlatLayout.of(network.params())
        self.running = FlatLayout.of(network.buffers())
        norms = {str(i): np.zeros((BN_STATS_ROWS, layer.gamma.size)) for i, layer in
                 enumerate(network.layers) if isinstance(layer, TrainBatchNorm)}  # fmt: skip
        self.stats = FlatLayout.of(norms)
        sizes = [batch * math.prod(shape) for shape in network.shapes]
        scratch = max(
            [_scratch_words(layer, shape, batch) for layer, shape in zip(
                network.layers, network.shapes, strict=False)]
            + [LOSS_COLUMNS * splits(batch), 1]
        )  # fmt: skip
        self.buffers = {
            INPUT: sizes[0], LABELS: batch, CLASS_WEIGHTS: network.classes,
            PARAMS: self.params.words, GRADS: self.params.words, EXP_AVG: self.params.words,
            EXP_AVG_SQ: self.params.words, RUNNING: self.running.words, STATS: self.stats.words,
            HYPER: HYPER_WORDS, GRAD_PING: max(sizes[1:]), GRAD_PONG: max(sizes[1:]),
            SCRATCH: scratch, LOSS_ROWS: LOSS_COLUMNS * batch, TOTALS: LOSS_COLUMNS,
            RESULT: RESULT_WORDS,
        }  # fmt: skip
        self.acts = [whole(INPUT, sizes[0])]
        for index, size in enumerate(sizes[1:]):
            self.buffers[f"act{index}"] = size
            self.acts.append(whole(f"act{index}", size))
        self.scratch = whole(SCRATCH, scratch)
        self.masks: dict[int, str] = {}
        self.ops: list[Launch] = []

    def param(self, index: int, key: str, buffer: str = PARAMS) -> Slice | None:
        name = f"{index}.{key}"
        return self.params.slice(buffer, name) if name in self.params.slots else None

    def bn(self, index: int) -> BatchNormSlices:
        def p(key: str, buffer: str = PARAMS) -> Slice:
            found = self.param(index, key, buffer)
            assert found is not None
            return found

        return BatchNormSlices(
            gamma=p("gamma"), beta=p("beta"),
            running_mean=self.running.slice(RUNNING, f"{index}.running_mean"),
            running_var=self.running.slice(RUNNING, f"{index}.running_var"),
            stats=self.stats.slice(STATS, str(index)),
            grad_gamma=p("gamma", GRADS), grad_beta=p("beta", GRADS),
        )  # fmt: skip

    def conv_shape(self, index: int) -> ConvShape:
        layer = self.net.layers[index]
        assert isinstance(layer, TrainConv2d | TrainDepthwiseConv2d)
        height, width, in_c = self.net.shapes[index]
        out_c = self.net.shapes[index + 1][-1]
        kernel = (layer.weight.shape[0], layer.weight.shape[1])
        return ConvShape(
            self.batch, height, width, in_c, out_c, kernel, layer.stride, layer.padding
        )

    def rows(self, index: int) -> int:
        """Rows of the layer's input viewed as [rows, channels]."""
        return self.batch * math.prod(self.net.shapes[index][:-1])

    def forward(self, index: int, layer: TrainLayer) -> None:
        x, y = self.acts[index], self.acts[index + 1]
        shape = self.net.shapes[index]
        if isinstance(layer, TrainConv2d | TrainDepthwiseConv2d):
            forward = _CONV_OPS[type(layer)][0]
            weight, bias = self.param(index, "weight"), self.param(index, "bias")
            assert weight is not None
            self.ops.append(forward(self.conv_shape(index), x, weight, bias, y))
        elif isinstance(layer, TrainPointwiseConv2d | TrainDense):
            weight, bias = self.param(index, "weight"), self.param(index, "bias")
            assert weight is not None
            rows = self.batch if isinstance(layer, TrainDense) else self.rows(index)
            fin, fout = layer.weight.shape
            self.ops.append(linear_forward(x, weight, bias, y, rows=rows, fin=fin, fout=fout))
        elif isinstance(layer, TrainBatchNorm):
            self.ops += batch_norm_forward(
                x, y, self.bn(index), self.scratch, rows=self.rows(index), c=shape[-1],
                momentum=layer.momentum, eps=layer.eps,
            )  # fmt: skip
        elif isinstance(layer, TrainReLU):
            self.ops.append(elementwise("relu", (x,), y, y.size))
        elif isinstance(layer, TrainGlobalAvgPool):
            positions = shape[0] * shape[1]
            self.ops.append(
                global_avg_pool(x, y, batch=self.batch, positions=positions, c=shape[2])
            )
        elif isinstance(layer, TrainDropout):
            self.masks[index] = f"mask{index}"
            self.buffers[f"mask{index}"] = y.size
            self.ops.append(elementwise("dropout", (x, whole(f"mask{index}", y.size)), y, y.size))

    def backward(self, index: int, layer: TrainLayer, g: Slice, dx: Slice | None) -> None:
        """Launches setting the layer's parameter gradients and, unless None, ``dx``."""
        x, y = self.acts[index], self.acts[index + 1]
        shape = self.net.shapes[index]
        if isinstance(
            layer, TrainConv2d | TrainDepthwiseConv2d | TrainPointwiseConv2d | TrainDense
        ):
            self.linear_backward(index, layer, x, g, dx)
        elif isinstance(layer, TrainBatchNorm):
            self.ops += batch_norm_backward(
                g, x, dx, self.bn(index), self.scratch, rows=self.rows(index), c=shape[-1]
            )
        elif dx is None:
            return
        elif isinstance(layer, TrainReLU):
            self.ops.append(elementwise("relu_backward", (g, y), dx, dx.size))
        elif isinstance(layer, TrainGlobalAvgPool):
            positions = shape[0] * shape[1]
            self.ops.append(
                global_avg_pool_grad(g, dx, batch=self.batch, positions=positions, c=shape[2])
            )
        elif isinstance(layer, TrainDropout):
            mask = whole(self.masks[index], dx.size)
            self.ops.append(elementwise("dropout", (g, mask), dx, dx.size))

    def linear_backward(
        self, index: int, layer: TrainLayer, x: Slice, g: Slice, dx: Slice | None
    ) -> None:
        weight, grad_weight = self.param(index, "weight"), self.param(index, "weight", GRADS)
        grad_bias = self.param(index, "bias", GRADS)
        assert weight is not None and grad_weight is not None
        out_c = self.net.shapes[index + 1][-1]
        if isinstance(layer, TrainConv2d | TrainDepthwiseConv2d):
            conv = self.conv_shape(index)
            _, input_grad, weight_grad = _CONV_OPS[type(layer)]
            self.ops += weight_grad(conv, x, g, grad_weight, self.scratch)
            out_rows = conv.positions
            if dx is not None:
                self.ops.append(input_grad(conv, g, weight, dx))
        else:
            assert isinstance(layer, TrainPointwiseConv2d | TrainDense)
            out_rows = self.batch if isinstance(layer, TrainDense) else self.rows(index)
            fin, fout = layer.weight.shape
            dims = dict(rows=out_rows, fin=fin, fout=fout)
            self.ops += linear_weight_grad(x, g, grad_weight, self.scratch, **dims)
            if dx is not None:
                self.ops.append(linear_input_grad(g, weight, dx, **dims))
        if grad_bias is not None:
            self.ops += reduce_rows(g, out_rows, out_c, grad_bias, self.scratch)

    def loss(self, grad: Slice) -> None:
        batch = self.batch
        slices = LossSlices(
            labels=whole(LABELS, batch), class_weights=whole(CLASS_WEIGHTS, self.net.classes),
            rows=whole(LOSS_ROWS, LOSS_COLUMNS * batch), totals=whole(TOTALS, LOSS_COLUMNS),
            result=whole(RESULT, RESULT_WORDS),
        )  # fmt: skip
        self.ops += softmax_cross_entropy(
            self.acts[-1], grad, slices, self.scratch, batch=batch, classes=self.net.classes
        )

    def update(self) -> None:
        hyper = whole(HYPER, HYPER_WORDS)
        ranges = [
            (0, self.params.decayed_words, True),
            (self.params.decayed_words, self.params.words, False),
        ]
        for start, stop, decay in ranges:
            if stop > start:
                p, g, m, v = (
                    Slice(name, start, stop - start)
                    for name in (PARAMS, GRADS, EXP_AVG, EXP_AVG_SQ)
                )
                self.ops.append(adam(p, g, m, v, hyper, decay=decay))


def plan_training(network: TrainNetwork, batch: int) -> TrainPlan:
    """Plan one training step of ``network`` for ``batch`` windows.

    Parameters
    ----------
    network : TrainNetwork
        The network; its arrays give the layouts (their values are uploaded separately).
    batch : int
        Windows per step; at least 2 when the network has a batch norm.

    Returns
    -------
    TrainPlan
    """
    if batch < 1:
        raise ModelError(f"batch: got {batch}, expected an integer >= 1")
    for index, layer in enumerate(network.layers):
        values = batch * math.prod(network.shapes[index][:-1])
        if isinstance(layer, TrainBatchNorm) and values < MIN_BATCH_NORM_VALUES:
            raise ModelError(
                f"batch: got {batch}, but layers[{index}] (batch norm) needs at least "
                f"{MIN_BATCH_NORM_VALUES} values per channel when training"
            )
    builder = _Builder(network, batch)
    for index, layer in enumerate(network.layers):
        builder.forward(index, layer)
    grad = Slice(GRAD_PING, 0, builder.acts[-1].size)
    builder.loss(grad)
    for index in range(len(network.layers) - 1, -1, -1):
        target = GRAD_PONG if grad.buffer == GRAD_PING else GRAD_PING
        dx = Slice(target, 0, builder.acts[index].size) if index > 0 else None
        builder.backward(index, network.layers[index], grad, dx)
        if dx is not None:
            grad = dx
    builder.update()
    return TrainPlan(
        batch, builder.params, builder.running, builder.buffers, builder.ops, builder.masks,
        whole(RESULT, RESULT_WORDS),
    )  # fmt: skip
