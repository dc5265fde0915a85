"""A `kernels.network.Network` as a model file: its layers in the manifest, its weights as arrays.

Imported networks (`models.nn.onnx_import`) are stored this way: the manifest's architecture is
``{"name": "network", "input_shape": [...], "layers": [...]}``, one JSON record per layer with its
type and settings, and layer ``i``'s weights are the arrays ``layer/i/weight`` and ``layer/i/bias``.
The records are checked against `NETWORK_SCHEMA` and the weights against the records before a
network is built, so an edited file fails with a message naming the field::

    base.npz: manifest architecture.layers[3].stride: got list of 3 items, expected a list of 2
    items, each an integer in [1, 64]
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from kernels.errors import ModelError
from kernels.network import (
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
from models.nn.manifest import (
    Exactly,
    ListOf,
    Nullable,
    Number,
    Record,
    Tagged,
    validate_manifest,
)

ARCHITECTURE_NAME = "network"
MAX_LAYERS = 256
MAX_DIM = 4096
"""Largest input dimension, kernel extent, stride or dilation a file may ask for."""

_DIM = Number(1, MAX_DIM, integer=True)
_PAIR = ListOf(_DIM, 2, min_items=2)
_PADDING = ListOf(Number(0, MAX_DIM, integer=True), 4, min_items=4)
_ACTIVATION = Record(
    {
        "slope": Number(-1e6, 1e6),
        "low": Nullable(Number(-3e38, 3e38)),
        "high": Nullable(Number(-3e38, 3e38)),
    }
)
_CONV = {"stride": _PAIR, "padding": _PADDING, "dilation": _PAIR, "activation": _ACTIVATION}
_LAYER = Tagged(
    "type",
    {
        "Conv2d": Record({**_CONV, "groups": _DIM}),
        "DepthwiseConv2d": Record(_CONV),
        "PointwiseConv2d": Record({"activation": _ACTIVATION}),
        "Dense": Record({"activation": _ACTIVATION}),
        "AvgPool2d": Record({"kernel": _PAIR, "stride": _PAIR, "activation": _ACTIVATION}),
        "MaxPool2d": Record({"kernel": _PAIR, "stride": _PAIR}),
        "GlobalAvgPool": Record({}),
        "Softmax": Record({}),
        "Sigmoid": Record({}),
    },
)
NETWORK_SCHEMA = Record(
    {
        "architecture": Record(
            {
                "name": Exactly(ARCHITECTURE_NAME),
                "input_shape": ListOf(_DIM, 4, min_items=1),
                "layers": ListOf(_LAYER, MAX_LAYERS, min_items=1),
            }
        )
    },
    open=True,
)
"""The manifest fields `network_from_file` builds from, with their bounds."""


def _activation_record(activation: Activation) -> dict[str, float | None]:
    def bound(value: float) -> float | None:
        return None if math.isinf(value) else float(value)

    return {"slope": float(activation.slope), "low": bound(activation.low),
            "high": bound(activation.high)}  # fmt: skip


def _activation(record: dict[str, Any]) -> Activation:
    low, high = record["low"], record["high"]
    return Activation(
        slope=float(record["slope"]),
        low=-math.inf if low is None else float(low),
        high=math.inf if high is None else float(high),
    )


def layer_record(layer: Layer) -> dict[str, Any]:
    """The manifest record of one layer: its type and settings (its weights are arrays)."""
    record: dict[str, Any] = {"type": type(layer).__name__}
    if isinstance(layer, Conv2d | DepthwiseConv2d):
        record |= {"stride": list(layer.stride), "padding": list(layer.pads),
                   "dilation": list(layer.dilation)}  # fmt: skip
        if isinstance(layer, Conv2d):
            record["groups"] = layer.groups
    if isinstance(layer, AvgPool2d | MaxPool2d):
        record |= {"kernel": list(layer.kernel), "stride": list(layer.step)}
    if isinstance(layer, Conv2d | DepthwiseConv2d | PointwiseConv2d | Dense | AvgPool2d):
        record["activation"] = _activation_record(layer.activation)
    return record


def network_arrays(network: Network) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The manifest architecture and the weight arrays of ``network``."""
    arrays: dict[str, np.ndarray] = {}
    for i, layer in enumerate(network.layers):
        if isinstance(layer, Conv2d | DepthwiseConv2d | PointwiseConv2d | Dense):
            arrays[f"layer/{i}/weight"] = layer.weight
            arrays[f"layer/{i}/bias"] = layer.bias
    architecture = {
        "name": ARCHITECTURE_NAME,
        "input_shape": list(network.input_shape),
        "layers": [layer_record(layer) for layer in network.layers],
    }
    return architecture, arrays


def _layer(record: dict[str, Any], arrays: dict[str, np.ndarray], index: int) -> Layer:
    kind = record["type"]
    if kind == "GlobalAvgPool":
        return GlobalAvgPool()
    if kind in ("Softmax", "Sigmoid"):
        return Softmax() if kind == "Softmax" else Sigmoid()
    if kind == "MaxPool2d":
        return MaxPool2d(tuple(record["kernel"]), tuple(record["stride"]))
    activation = _activation(record["activation"])
    if kind == "AvgPool2d":
        return AvgPool2d(tuple(record["kernel"]), tuple(record["stride"]), activation=activation)
    try:
        weight, bias = arrays[f"layer/{index}/weight"], arrays[f"layer/{index}/bias"]
    except KeyError as err:
        raise ModelError(f"layer {index} ({kind}): no array {err.args[0]!r}") from None
    if kind == "Conv2d":
        return Conv2d(
            weight, bias, stride=tuple(record["stride"]), padding=tuple(record["padding"]),
            dilation=tuple(record["dilation"]), groups=record["groups"], activation=activation,
        )  # fmt: skip
    if kind == "DepthwiseConv2d":
        return DepthwiseConv2d(
            weight, bias, stride=tuple(record["stride"]), padding=tuple(record["padding"]),
            dilation=tuple(record["dilation"]), activation=activation,
        )  # fmt: skip
    if kind == "PointwiseConv2d":
        return PointwiseConv2d(weight, bias, activation=activation)
    return Dense(weight, bias, activation=activation)


def network_from(
    path: str | Path, architecture: dict[str, Any], arrays: dict[str, np.ndarray]
) -> Network:
    """Build the network a model file describes, checking the manifest and the weights.

    Raises
    ------
    ModelError
        A field that breaks `NETWORK_SCHEMA`, a missing or unexpected array, weights whose shape
        does not fit the layers, or layers whose shapes do not chain; the message names the file.
    """
    validate_manifest(path, {"architecture": architecture}, NETWORK_SCHEMA)
    expected = {
        f"layer/{i}/{part}"
        for i, record in enumerate(architecture["layers"])
        if record["type"] in ("Conv2d", "DepthwiseConv2d", "PointwiseConv2d", "Dense")
        for part in ("weight", "bias")
    }
    unexpected = sorted(set(arrays) - expected)
    if unexpected:
        raise ModelError(f"{path}: arrays {unexpected[:3]} belong to no layer of the manifest")
    try:
        layers = tuple(_layer(record, arrays, i) for i, record in enumerate(architecture["layers"]))
        return Network(tuple(architecture["input_shape"]), layers)
    except ModelError as err:
        raise ModelError(f"{path}: the weights do not fit the manifest's layers: {err}") from err
