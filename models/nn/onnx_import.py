"""Import an ONNX graph as a `kernels.network.Network`, which numpy and the wgpu engine both run.

The graph must be a chain: one input, one output, and every node reads the tensor the node before
it wrote (plus constants). Nodes become layers or fold into the layer before them:

- ``Conv`` becomes `Conv2d` (any kernel, stride, dilation, padding, groups) or, when every
  channel is its own group, `DepthwiseConv2d`; ``MatMul`` and ``Gemm`` become `Dense`;
  ``MaxPool``, ``AveragePool``, ``GlobalAveragePool``, ``Sigmoid`` and ``Softmax`` their layers.
- ``BatchNormalization``, and ``Add``/``Sub``/``Mul``/``Div`` by a per-channel or scalar constant,
  fold into the weights of the layer before them.
- ``LeakyRelu`` sets the slope of that layer's activation; ``Relu`` and ``Max``/``Min``/``Clip``
  against constants set its bounds (`kernels.network.Activation`).
- ``Reshape``, ``Flatten``, ``Transpose``, ``Squeeze``, ``Unsqueeze`` and ``Identity`` move no
  value in the engine's layout (activations are NHWC where ONNX's are NCHW), or reorder the
  values a dense layer reads, and then fold into its weight rows.

Anything else is refused with an `ImportFailed` naming the node, its op and attributes, and
nothing is written. Reading the file needs the ``onnx`` package, which only this importer uses.

Example
-------
>>> imported = import_onnx(Path("embedding_model.onnx"))        # doctest: +SKIP
>>> imported.network.output_shape, imported.ops["Conv"]         # doctest: +SKIP
((1, 1, 96), 20)
"""

from __future__ import annotations

import collections
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from kernels.errors import ModelError
from kernels.network import (
    IDENTITY,
    Activation,
    AvgPool2d,
    Conv2d,
    Dense,
    DepthwiseConv2d,
    GlobalAvgPool,
    Layer,
    MaxPool2d,
    Network,
    PointwiseConv2d,
    Sigmoid,
    Softmax,
)
from kernels.ops.batch_norm import fold_batchnorm

SUPPORTED_OPS = (
    "Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "LeakyRelu", "Relu", "Max", "Min",
    "Clip", "Add", "Sub", "Mul", "Div", "BatchNormalization", "MatMul", "Gemm", "Reshape",
    "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Sigmoid", "Softmax", "Constant",
)  # fmt: skip
_COMMUTATIVE = frozenset({"Add", "Mul", "Max", "Min"})
"""Ops whose constant may come before the chain's tensor."""
MAX_FILE_BYTES = 512 << 20
"""Largest ONNX file read."""


class ImportFailed(ModelError):
    """The graph cannot be imported: the message names the node, its op and what is wrong."""


@dataclass
class Imported:
    """An imported graph: the network, and what the manifest records about its source."""

    network: Network
    source: dict[str, Any]
    """File name, sha256, producer, opset, the input's and output's names and ONNX shapes."""
    ops: dict[str, int]
    """How many nodes of each op the graph has."""
    output_nchw: bool = False
    """Whether the graph's output is an NCHW image, which the network gives as NHWC."""
    parameters: int = field(init=False)

    def __post_init__(self) -> None:
        self.parameters = sum(
            layer.weight.size + layer.bias.size
            for layer in self.network.layers
            if isinstance(layer, Conv2d | DepthwiseConv2d | PointwiseConv2d | Dense)
        )

    def as_graph_output(self, out: np.ndarray) -> np.ndarray:
        """The network's output [batch, ...] in the graph's layout and shape."""
        batch = out.shape[0]
        shape = tuple(int(d) for d in self.source["output"]["shape"][1:])
        if self.output_nchw:
            height, width, channels = shape[1], shape[2], shape[0]
            return out.reshape(batch, height, width, channels).transpose(0, 3, 1, 2)
        return out.reshape(batch, *shape)


@dataclass
class _Tensor:
    """The activation as it flows: its ONNX shape (batch left out) and how the engine holds it.

    ``nchw``: a 4-D ONNX tensor [c, h, w] that the engine holds as [h, w, c]; otherwise the engine
    holds the values in ONNX's order. ``shape`` is the engine's shape of the layers so far, which
    may differ from the layout's only where the values lie in the same order.
    """

    name: str
    onnx_shape: tuple[int, ...]
    nchw: bool
    shape: tuple[int, ...]
    gather: np.ndarray | None = None
    """Pending reorder: the engine's flat values, gathered by this, are the tensor's."""


def _engine_order(onnx_shape: tuple[int, ...], nchw: bool) -> tuple[int, ...]:
    return (onnx_shape[1], onnx_shape[2], onnx_shape[0]) if nchw else onnx_shape


def _to_onnx(values: np.ndarray, onnx_shape: tuple[int, ...], nchw: bool) -> np.ndarray:
    """The engine's flat values as the ONNX tensor they stand for."""
    held = values.reshape(_engine_order(onnx_shape, nchw))
    return held.transpose(2, 0, 1) if nchw else held


def _from_onnx(tensor: np.ndarray, nchw: bool) -> np.ndarray:
    """An ONNX tensor (batch left out) as the engine's flat values."""
    return (tensor.transpose(1, 2, 0) if nchw else tensor).reshape(-1)


class _Graph:
    """The walk over one graph's nodes, building layers."""

    def __init__(self, model: Any, path: Path) -> None:
        from onnx import numpy_helper

        self.path = path
        self.numpy_helper = numpy_helper
        graph = model.graph
        self.constants: dict[str, np.ndarray] = {
            init.name: numpy_helper.to_array(init) for init in graph.initializer
        }
        inputs = [i for i in graph.input if i.name not in self.constants]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise ImportFailed(
                f"{path}: the graph has {len(inputs)} inputs and {len(graph.output)} outputs; "
                "only graphs with one of each can be imported"
            )
        dims = [d.dim_value if d.HasField("dim_value") else None
                for d in inputs[0].type.tensor_type.shape.dim]  # fmt: skip
        if len(dims) < 2 or any(d is None or d < 1 for d in dims[1:]):
            raise ImportFailed(
                f"{path}: input {inputs[0].name!r} has shape {dims}; expected a batch axis "
                "followed by fixed sizes"
            )
        shape = tuple(int(d) for d in dims[1:] if d is not None)
        self.input_name, self.output_name = inputs[0].name, graph.output[0].name
        self.input_shape = self.onnx_input_shape = shape
        self.input_transposed = False
        """Whether the network reads the graph's NCHW input as NHWC."""
        self.tensor = _Tensor(inputs[0].name, shape, nchw=False, shape=shape)
        self.layers: list[Layer] = []
        self.nodes = list(graph.node)

    # --- helpers ---------------------------------------------------------------------------

    def fail(self, node: Any, problem: str) -> ImportFailed:
        from onnx import helper

        attributes = {a.name: _shown(helper.get_attribute_value(a)) for a in node.attribute}
        return ImportFailed(
            f"{self.path}: node {node.name or '(unnamed)'!r} ({node.op_type}, attributes "
            f"{attributes}): {problem}; nothing was written"
        )

    def attributes(self, node: Any) -> dict[str, Any]:
        from onnx import helper

        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def constant(self, node: Any, name: str) -> np.ndarray:
        if name not in self.constants:
            raise self.fail(node, f"input {name!r} must be a constant")
        return self.constants[name]

    def activation_input(self, node: Any) -> list[str]:
        """The node's constant inputs, after checking its one activation input is the chain's."""
        live = [name for name in node.input if name and name not in self.constants]
        first = node.input[0] == self.tensor.name or node.op_type in _COMMUTATIVE
        if live != [self.tensor.name] or not first:
            raise self.fail(
                node,
                f"reads {live or 'only constants'} but the graph's chain is at "
                f"{self.tensor.name!r}: only chains (no branches or joins) can be imported",
            )
        return [name for name in node.input if name and name != self.tensor.name]

    def image(self, node: Any) -> tuple[int, int, int]:
        """The chain as an image [c, h, w], in the engine's NHWC layout."""
        tensor = self.tensor
        if len(tensor.onnx_shape) != 3:
            raise self.fail(node, f"input shape {('N', *tensor.onnx_shape)}; expected N, C, H, W")
        if not tensor.nchw and tensor.name == self.input_name:
            # A graph that starts on NCHW images: the network reads them as NHWC.
            c, h, w = tensor.onnx_shape
            self.tensor = _Tensor(tensor.name, tensor.onnx_shape, True, (h, w, c))
            self.input_shape, self.input_transposed = (h, w, c), c > 1
        elif not tensor.nchw:
            self.relayout(node, tensor.onnx_shape, nchw=True)
        c, h, w = self.tensor.onnx_shape
        if self.tensor.gather is not None or self.tensor.shape != (h, w, c):
            raise self.fail(node, "its input's values are not in the engine's NHWC order")
        return c, h, w

    def relayout(self, node: Any, onnx_shape: tuple[int, ...], nchw: bool,
                 move: Callable[[np.ndarray], np.ndarray] | None = None) -> None:  # fmt: skip
        """Go on with the chain's values as ``onnx_shape`` after ``move`` (a layout-only op)."""
        tensor = self.tensor
        count = math.prod(tensor.onnx_shape)
        if math.prod(onnx_shape) != count:
            raise self.fail(node, f"{count} values cannot become shape {onnx_shape}")
        index = np.arange(count)
        if tensor.gather is not None:
            index = index[tensor.gather]
        moved = _to_onnx(index, tensor.onnx_shape, tensor.nchw)
        moved = (move(moved) if move is not None else moved).reshape(onnx_shape)
        gather = _from_onnx(moved, nchw)
        identity = bool(np.array_equal(gather, np.arange(count)))
        self.tensor = _Tensor(tensor.name, onnx_shape, nchw, tensor.shape,
                              None if identity else gather)  # fmt: skip

    def append(self, node: Any, layer: Layer, onnx_shape: tuple[int, ...], nchw: bool) -> None:
        if self.tensor.gather is not None and not isinstance(layer, Dense):
            raise self.fail(node, "its input's values are reordered, which only a dense layer "
                                  "that follows can absorb")  # fmt: skip
        try:
            shape = layer.output_shape(self.tensor.shape)
        except ModelError as err:
            raise self.fail(node, str(err)) from None
        self.layers.append(layer)
        self.tensor = _Tensor(node.output[0], onnx_shape, nchw, tuple(shape))

    def last_weighted(self, node: Any, what: str) -> Conv2d | DepthwiseConv2d | Dense:
        layer = self.layers[-1] if self.layers else None
        if not isinstance(layer, Conv2d | DepthwiseConv2d | Dense) or layer.activation != IDENTITY:
            raise self.fail(
                node, f"{what} folds only into a convolution or dense layer right before it, "
                      "with no activation in between"
            )  # fmt: skip
        return layer

    def channel_vector(self, node: Any, value: np.ndarray, channels: int) -> np.ndarray:
        """A constant that broadcasts per channel (or is a scalar) as a [channels] vector."""
        tensor = self.tensor
        value = np.asarray(value, np.float32)
        if value.size == 1:
            return np.full(channels, value.reshape(()), np.float32)
        rank = len(tensor.onnx_shape)
        squeezed = value.reshape(value.shape[value.ndim - rank :]) if value.ndim > rank else value
        if tensor.nchw and squeezed.ndim == 3 and squeezed.shape == (channels, 1, 1):
            return squeezed.reshape(channels)
        if not tensor.nchw and squeezed.shape[-1:] == (channels,) and squeezed.size == channels:
            return squeezed.reshape(channels)
        raise self.fail(node, f"constant of shape {value.shape} is not per channel ({channels})")

    # --- ops -------------------------------------------------------------------------------

    def conv(self, node: Any) -> None:
        constants = self.activation_input(node)
        a = self.attributes(node)
        weight = self.constant(node, constants[0]).astype(np.float32)
        bias = (self.constant(node, constants[1]) if len(constants) > 1
                else np.zeros(weight.shape[0], np.float32))  # fmt: skip
        if weight.ndim != 4:
            raise self.fail(node, f"weight of shape {weight.shape}; only 2-D convolutions")
        c, h, w = self.image(node)
        groups = int(a.get("group", 1))
        out_c, kh, kw = weight.shape[0], weight.shape[2], weight.shape[3]
        stride = tuple(a.get("strides", (1, 1)))
        dilation = tuple(a.get("dilations", (1, 1)))
        pads = _pads(self, node, a, (h, w), (kh, kw), stride, dilation)
        if groups == c == out_c and weight.shape[1] == 1:
            layer: Layer = DepthwiseConv2d(
                weight[:, 0].transpose(1, 2, 0), bias, stride=stride, padding=pads,
                dilation=dilation,
            )  # fmt: skip
        else:
            layer = Conv2d(
                weight.transpose(2, 3, 1, 0), bias, stride=stride, padding=pads,
                dilation=dilation, groups=groups,
            )  # fmt: skip
        oh, ow, _ = _checked_shape(self, node, layer, (h, w, c))
        self.append(node, layer, (out_c, oh, ow), nchw=True)

    def pool(self, node: Any) -> None:
        self.activation_input(node)
        a = self.attributes(node)
        c, h, w = self.image(node)
        kernel = tuple(a["kernel_shape"])
        stride = tuple(a.get("strides", kernel))
        unsupported = {k: a[k] for k in ("ceil_mode", "storage_order") if a.get(k, 0)}
        if any(a.get("pads", (0,))) or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID"):
            unsupported["pads"] = a.get("pads", a.get("auto_pad"))
        if any(d != 1 for d in a.get("dilations", (1, 1))):
            unsupported["dilations"] = a["dilations"]
        if unsupported or len(kernel) != 2:
            raise self.fail(node, f"unsupported settings {unsupported or {'kernel': kernel}}")
        layer: Layer = (MaxPool2d(kernel, stride) if node.op_type == "MaxPool"
                        else AvgPool2d(kernel, stride))  # fmt: skip
        oh, ow, _ = _checked_shape(self, node, layer, (h, w, c))
        self.append(node, layer, (c, oh, ow), nchw=True)

    def global_pool(self, node: Any) -> None:
        self.activation_input(node)
        c, _, _ = self.image(node)
        self.append(node, GlobalAvgPool(), (c, 1, 1), nchw=True)

    def dense(self, node: Any) -> None:
        constants = self.activation_input(node)
        a = self.attributes(node)
        if len(self.tensor.onnx_shape) != 1:
            raise self.fail(node, f"input shape {('N', *self.tensor.onnx_shape)}; a dense layer "
                                  "reads [N, features] (flatten it first)")  # fmt: skip
        weight = self.constant(node, constants[0]).astype(np.float32)
        if node.op_type == "Gemm":
            if a.get("transA", 0):
                raise self.fail(node, "transA=1 is not supported")
            weight = weight.T if a.get("transB", 0) else weight
            weight = weight * np.float32(a.get("alpha", 1.0))
        if weight.ndim != 2 or weight.shape[0] != self.tensor.onnx_shape[0]:
            raise self.fail(node, f"weight of shape {weight.shape} does not fit "
                                  f"{self.tensor.onnx_shape[0]} features")  # fmt: skip
        bias = np.zeros(weight.shape[1], np.float32)
        if node.op_type == "Gemm" and len(constants) > 1:
            c = np.asarray(self.constant(node, constants[1]), np.float32)
            if c.size not in (1, weight.shape[1]):
                raise self.fail(node, f"C of shape {c.shape} is not per output ({weight.shape[1]})")
            bias = bias + np.float32(a.get("beta", 1.0)) * c.reshape(-1)
        if self.tensor.gather is not None:  # rows in the engine's order of the values
            reordered = np.empty_like(weight)
            reordered[self.tensor.gather] = weight
            weight = reordered
            self.tensor = replace(self.tensor, gather=None)
        self.append(node, Dense(weight, bias), (weight.shape[1],), nchw=False)

    def affine(self, node: Any) -> None:
        """Add/Sub/Mul/Div by a constant, and BatchNormalization, folded into the layer before."""
        constants = self.activation_input(node)
        layer = self.last_weighted(node, node.op_type)
        if self.tensor.gather is not None:
            raise self.fail(node, "its input's values are reordered since the layer it folds into")
        channels = layer.weight.shape[-1]
        scale, shift = np.ones(channels, np.float32), np.zeros(channels, np.float32)
        if node.op_type == "BatchNormalization":
            gamma, beta, mean, var = (self.constant(node, n) for n in constants[:4])
            eps = float(self.attributes(node).get("epsilon", 1e-5))
            weight, bias = fold_batchnorm(layer.weight, layer.bias, gamma=gamma, beta=beta,
                                          mean=mean, var=var, eps=eps)  # fmt: skip
            self.layers[-1] = replace(layer, weight=weight, bias=bias)
            self.tensor = replace(self.tensor, name=node.output[0])
            return
        value = self.channel_vector(node, self.constant(node, constants[0]), channels)
        if node.op_type == "Add":
            shift = value
        elif node.op_type == "Sub":
            shift = -value
        elif node.op_type == "Mul":
            scale = value
        else:
            scale = (np.float32(1.0) / value).astype(np.float32)
        self.layers[-1] = replace(
            layer, weight=layer.weight * scale, bias=layer.bias * scale + shift
        )
        self.tensor = replace(self.tensor, name=node.output[0])

    def activation(self, node: Any) -> None:
        constants = self.activation_input(node)
        layer = self.layers[-1] if self.layers else None
        if not isinstance(layer, Conv2d | DepthwiseConv2d | PointwiseConv2d | Dense | AvgPool2d):
            raise self.fail(node, "an activation folds only into the layer right before it "
                                  "(a convolution, dense layer or average pool)")  # fmt: skip
        act = layer.activation
        if node.op_type == "LeakyRelu":
            if act != IDENTITY:
                raise self.fail(node, f"follows another activation ({act}) of the same layer")
            act = Activation(slope=float(self.attributes(node).get("alpha", 0.01)))
        elif node.op_type == "Relu":
            act = replace(act, low=max(act.low, 0.0), high=max(act.high, 0.0))
        else:
            low, high = self.bounds(node, constants)
            act = replace(act, low=min(max(act.low, low), high), high=max(min(act.high, high), low))
        self.layers[-1] = replace(layer, activation=act)
        self.tensor = replace(self.tensor, name=node.output[0])

    def bounds(self, node: Any, constants: list[str]) -> tuple[float, float]:
        """The clamp a Max, Min or Clip node applies."""

        def scalar(name: str) -> float:
            value = self.constant(node, name)
            if value.size != 1:
                raise self.fail(node, f"{name!r} has shape {value.shape}; only scalar bounds")
            return float(value.reshape(()))

        if node.op_type == "Max":
            return max(scalar(n) for n in constants), math.inf
        if node.op_type == "Min":
            return -math.inf, min(scalar(n) for n in constants)
        a = self.attributes(node)  # Clip: bounds as inputs (opset 11+) or attributes
        low = scalar(node.input[1]) if len(node.input) > 1 and node.input[1] else a.get("min")
        high = scalar(node.input[2]) if len(node.input) > 2 and node.input[2] else a.get("max")
        return (-math.inf if low is None else float(low)), (math.inf if high is None else
                                                             float(high))  # fmt: skip

    def elementwise_layer(self, node: Any) -> None:
        self.activation_input(node)
        tensor = self.tensor
        if node.op_type == "Softmax":
            axis = int(self.attributes(node).get("axis", -1))
            if axis not in (-1, len(tensor.onnx_shape)) or tensor.nchw or tensor.gather is not None:
                raise self.fail(node, "only a softmax over the last axis of [N, features]")
        self.append(node, Softmax() if node.op_type == "Softmax" else Sigmoid(),
                    tensor.onnx_shape, tensor.nchw)  # fmt: skip

    def layout(self, node: Any) -> None:
        constants = self.activation_input(node)
        a = self.attributes(node)
        shape = self.tensor.onnx_shape
        full = (1, *shape)  # with a batch of one
        probe = np.zeros(full, np.int8)
        op = node.op_type
        move: Callable[[np.ndarray], np.ndarray] | None = None
        if op == "Reshape":
            target = [int(d) for d in self.constant(node, constants[0])]
            if target and target[0] not in (0, -1, 1):
                raise self.fail(node, f"shape {target} changes the batch axis")
            target = [full[i] if d == 0 and not a.get("allowzero", 0) else d
                      for i, d in enumerate(target)]  # fmt: skip
            target[0] = 1
            try:
                new = np.reshape(probe, target).shape
            except ValueError:
                raise self.fail(node, f"shape {target} does not fit {full}") from None
        elif op == "Flatten":
            axis = int(a.get("axis", 1))
            if axis != 1:
                raise self.fail(node, f"axis={axis}; only flattening after the batch axis")
            new = (1, math.prod(shape))
        elif op == "Transpose":
            perm = list(a.get("perm", range(len(full))[::-1]))
            if perm[0] != 0:
                raise self.fail(node, f"perm {perm} moves the batch axis")
            new = tuple(full[p] for p in perm)
            inner = [p - 1 for p in perm[1:]]

            def move(values: np.ndarray) -> np.ndarray:
                return values.transpose(inner)
        elif op in ("Squeeze", "Unsqueeze"):
            axes = a.get("axes")
            if axes is None and len(constants) > 0:
                axes = [int(x) for x in self.constant(node, constants[0])]
            if op == "Squeeze":
                rank = len(full)
                axes = [x % rank for x in (axes if axes is not None else
                        [i for i, d in enumerate(full) if d == 1])]  # fmt: skip
                if 0 in axes:
                    raise self.fail(node, "squeezes the batch axis")
                new = tuple(d for i, d in enumerate(full) if i not in axes)
            else:
                if axes is None:
                    raise self.fail(node, "no axes")
                rank = len(full) + len(axes)
                axes = sorted(x % rank for x in axes)
                if 0 in axes:
                    raise self.fail(node, "inserts an axis before the batch axis")
                dims = iter(full)
                new = tuple(1 if i in axes else next(dims) for i in range(rank))
        else:  # Identity
            new = full
        new_shape = tuple(int(d) for d in new[1:])
        self.relayout(node, new_shape, nchw=len(new_shape) == 3, move=move)
        self.tensor = replace(self.tensor, name=node.output[0])

    def run(self) -> Network:
        handlers: dict[str, Callable[[Any], None]] = {
            "Conv": self.conv, "MaxPool": self.pool, "AveragePool": self.pool,
            "GlobalAveragePool": self.global_pool, "MatMul": self.dense, "Gemm": self.dense,
            "BatchNormalization": self.affine, "Add": self.affine, "Sub": self.affine,
            "Mul": self.affine, "Div": self.affine, "LeakyRelu": self.activation,
            "Relu": self.activation, "Max": self.activation, "Min": self.activation,
            "Clip": self.activation, "Sigmoid": self.elementwise_layer,
            "Softmax": self.elementwise_layer, "Reshape": self.layout, "Flatten": self.layout,
            "Transpose": self.layout, "Squeeze": self.layout, "Unsqueeze": self.layout,
            "Identity": self.layout,
        }  # fmt: skip
        for node in self.nodes:
            if node.domain not in ("", "ai.onnx"):
                raise self.fail(node, f"op domain {node.domain!r} is not supported")
            if node.op_type == "Constant":
                self.constants[node.output[0]] = self._constant_value(node)
                continue
            handler = handlers.get(node.op_type)
            if handler is None:
                raise self.fail(node, f"op {node.op_type} is not supported (supported: "
                                      f"{', '.join(SUPPORTED_OPS)})")  # fmt: skip
            if len(node.output) != 1:
                raise self.fail(node, f"{len(node.output)} outputs; only one")
            handler(node)
        if self.tensor.name != self.output_name:
            raise ImportFailed(
                f"{self.path}: the graph's output {self.output_name!r} is not the end of its "
                f"chain ({self.tensor.name!r})"
            )
        if self.tensor.gather is not None:
            raise ImportFailed(f"{self.path}: the output's values end reordered "
                               "(a transpose with no dense layer after it)")  # fmt: skip
        if not self.layers:
            raise ImportFailed(f"{self.path}: the graph has no layers")
        return Network(self.input_shape, tuple(self.layers))

    def _constant_value(self, node: Any) -> np.ndarray:
        a = {x.name: x for x in node.attribute}
        if "value" not in a:
            raise self.fail(node, "only tensor constants (the 'value' attribute)")
        return np.asarray(self.numpy_helper.to_array(a["value"].t))


def _pads(graph: _Graph, node: Any, a: dict[str, Any], hw: tuple[int, int],
          kernel: tuple[int, int], stride: tuple[int, ...],
          dilation: tuple[int, ...]) -> tuple[int, int, int, int]:  # fmt: skip
    """(top, left, bottom, right) from ONNX ``pads`` [h0, w0, h1, w1] or ``auto_pad``."""
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("NOTSET", "VALID"):
        h0, w0, h1, w1 = (
            (int(p) for p in a.get("pads", (0, 0, 0, 0))) if auto == "NOTSET" else (0, 0, 0, 0)
        )
        return h0, w0, h1, w1
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise graph.fail(node, f"auto_pad {auto!r} is not supported")
    pads = []
    for size, k, s, d in zip(hw, kernel, stride, dilation, strict=True):
        total = max(0, (math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        pads.append((small, large) if auto == "SAME_UPPER" else (large, small))
    return pads[0][0], pads[1][0], pads[0][1], pads[1][1]


def _checked_shape(graph: _Graph, node: Any, layer: Layer, shape: tuple[int, ...]) -> Any:
    try:
        return layer.output_shape(shape)
    except ModelError as err:
        raise graph.fail(node, str(err)) from None


def _shown(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, list | tuple) and len(value) > 8:
        return f"[{len(value)} values]"
    if hasattr(value, "dims"):  # a tensor attribute
        return f"tensor{list(value.dims)}"
    return value


def file_sha256(path: Path) -> str:
    """sha256 of a file, in lowercase hex."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_onnx(path: Path) -> Imported:
    """Read an ONNX file and build the network it describes.

    Raises
    ------
    ImportFailed
        The file is missing, not ONNX, truncated or invalid, or its graph has an op, a setting
        or a shape the engine cannot run (the message names the node, op and attributes).
    """
    import onnx
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

    path = Path(path)
    if not path.is_file():
        raise ImportFailed(f"{path}: no such file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ImportFailed(f"{path}: {size} bytes; at most {MAX_FILE_BYTES} are read")
    try:
        model = onnx.load_from_string(path.read_bytes())
        onnx.checker.check_model(model)
    except (DecodeError, onnx.checker.ValidationError, ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ImportFailed(f"{path}: not a valid ONNX model ({first[:200]})") from None
    graph = _Graph(model, path)
    network = graph.run()
    output = model.graph.output[0]
    source = {
        "file": path.name,
        "sha256": file_sha256(path),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "opset": {o.domain or "ai.onnx": int(o.version) for o in model.opset_import},
        "input": {
            "name": graph.input_name,
            "shape": ["N", *graph.onnx_input_shape],
            "layout": "NHWC (the graph's NCHW, transposed)"
            if graph.input_transposed
            else "the graph's",
        },
        "output": {
            "name": output.name,
            "shape": ["N", *(d.dim_value for d in output.type.tensor_type.shape.dim[1:])],
        },
    }
    ops = dict(sorted(collections.Counter(n.op_type for n in model.graph.node).items()))
    return Imported(network, source, ops, output_nchw=graph.tensor.nchw)
