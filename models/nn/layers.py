"""Trainable numpy layers, the `Sequential` container, and export to the inference engine.

Every layer implements the `Layer` interface of `models.nn.layer_base`: ``params``, ``grads`` (same
keys, overwritten by ``backward``), ``buffers`` (non-trainable state), ``forward(x, training=)``
and ``backward(grad_out)``. The layers live in `models.nn.linear_layers` (`Conv2d`,
`DepthwiseConv2d`, `PointwiseConv2d`, `Dense`) and `models.nn.norm_layers` (`BatchNorm`, `ReLU`,
`GlobalAvgPool`, `Dropout`); this module re-exports them and adds `Sequential` and
`to_inference`, which turns a trained model into a `kernels.network.Network`.

Example
-------
>>> import numpy as np
>>> from models.nn.layers import BatchNorm, Conv2d, Dense, GlobalAvgPool, ReLU, Sequential
>>> rng = np.random.default_rng(0)
>>> model = Sequential([
...     Conv2d(1, 8, (10, 4), stride=(2, 2), padding=(4, 1), bias=False, rng=rng),
...     BatchNorm(8), ReLU(), GlobalAvgPool(), Dense(8, 12, rng=rng, init="lecun"),
... ])
>>> logits = model.forward(np.ones((2, 97, 40, 1), np.float32), training=True)
>>> model.backward(np.ones_like(logits)).shape
(2, 97, 40, 1)
>>> to_inference(model, (97, 40, 1)).output_shape
(12,)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from typing import Literal

import numpy as np

from kernels import network as kn
from kernels.errors import ModelError
from models.nn.layer_base import Layer
from models.nn.linear_layers import Conv2d, Dense, DepthwiseConv2d, PointwiseConv2d
from models.nn.norm_layers import BatchNorm, Dropout, GlobalAvgPool, ReLU

__all__ = [
    "BatchNorm",
    "Conv2d",
    "Dense",
    "DepthwiseConv2d",
    "Dropout",
    "GlobalAvgPool",
    "Layer",
    "PointwiseConv2d",
    "ReLU",
    "Sequential",
    "to_inference",
]

Output = Literal["logits", "softmax", "sigmoid"]
"""What an exported network ends with: the last layer's output, or one of the two heads."""


class Sequential:
    """Layers run first to last; backward runs them last to first.

    Parameters
    ----------
    layers : iterable of Layer
        The layers, in order. Names in `parameters` and `state_dict` are ``"<index>.<key>"``
        (``"0.weight"``, ``"1.running_mean"``), the index counting from 0 in this order.
    """

    def __init__(self, layers: Iterable[Layer]) -> None:
        self.layers: list[Layer] = list(layers)
        for index, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise ModelError(
                    f"Sequential.layers[{index}]: got {type(layer).__name__}, expected a Layer"
                )

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __getitem__(self, index: int) -> Layer:
        return self.layers[index]

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """Run every layer; when ``training``, each caches what its backward needs.

        Parameters
        ----------
        x : np.ndarray [shape=(N, H, W, C)]
            Input batch, in the dtype of the parameters.
        training : bool
            Batch statistics and dropout (True) or running statistics and identity (False).

        Returns
        -------
        np.ndarray
            The last layer's output, [shape=(N, K)] for a classifier.
        """
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """Back-propagate through every layer, setting every ``grads`` array.

        Parameters
        ----------
        grad_out : np.ndarray
            Gradient of the loss with respect to the output of the last training `forward`.

        Returns
        -------
        np.ndarray [shape=(N, H, W, C)]
            Gradient with respect to that forward's input.
        """
        for layer in reversed(self.layers):
            grad_out = layer.backward(grad_out)
        return grad_out

    def backward_params(self, grad_out: np.ndarray) -> None:
        """Set every ``grads`` array, skipping the gradient with respect to the input data.

        What a training step needs: the same parameter gradients as `backward`, without the
        first layer's input gradient (for a first `Conv2d`, a col2im as large as its input).

        Parameters
        ----------
        grad_out : np.ndarray
            Gradient of the loss with respect to the output of the last training `forward`.
        """
        for layer in reversed(self.layers[1:]):
            grad_out = layer.backward(grad_out)
        if self.layers:
            self.layers[0].backward_params(grad_out)

    def parameters(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Yield ``(name, param, grad)`` for every trainable array, in layer order.

        ``param`` and ``grad`` are the layer's own arrays: an optimizer updates ``param`` in
        place and reads ``grad`` after each `backward`.
        """
        for index, layer in enumerate(self.layers):
            for key, param in layer.params.items():
                yield f"{index}.{key}", param, layer.grads[key]

    def _arrays(self) -> dict[str, np.ndarray]:
        """Every parameter and buffer by qualified name (the live arrays)."""
        arrays = {}
        for index, layer in enumerate(self.layers):
            for store in (layer.params, layer.buffers):
                arrays.update({f"{index}.{key}": value for key, value in store.items()})
        return arrays

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and buffer, by qualified name."""
        return {name: value.copy() for name, value in self._arrays().items()}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Copy ``state`` into the parameters and buffers in place (optimizers stay attached).

        Parameters
        ----------
        state : mapping of str to np.ndarray
            Exactly the names of `state_dict`, each with the same shape; values are cast to
            the model's dtype.

        Raises
        ------
        ModelError
            A name is missing or unexpected, or a shape differs; nothing is copied then.
        """
        arrays = self._arrays()
        missing = sorted(set(arrays) - set(state))
        extra = sorted(set(state) - set(arrays))
        if missing or extra:
            raise ModelError(
                f"state dict: missing {missing or 'nothing'}, unexpected {extra or 'nothing'}; "
                f"expected exactly {sorted(arrays)}"
            )
        for name, target in arrays.items():
            shape = np.shape(state[name])
            if shape != target.shape:
                raise ModelError(
                    f"state dict[{name!r}]: got shape {shape}, expected {target.shape}"
                )
        for name, target in arrays.items():
            target[...] = state[name]

    def astype(self, dtype: type[np.floating] | np.dtype) -> Sequential:
        """Cast every parameter, gradient and buffer (new arrays: build optimizers after).

        Parameters
        ----------
        dtype : numpy floating dtype
            ``np.float32`` (the default of every layer) or ``np.float64``.

        Returns
        -------
        Sequential
            This model, for chaining.
        """
        for layer in self.layers:
            layer.astype(dtype)
        return self


_LinearSpec = kn.Conv2d | kn.DepthwiseConv2d | kn.PointwiseConv2d | kn.Dense
_HEADS: dict[str, kn.Layer] = {"softmax": kn.Softmax(), "sigmoid": kn.Sigmoid()}


def _linear_spec(layer: Layer) -> _LinearSpec | None:
    """The inference spec of a linear layer (bias zeros when it has none), or None."""
    if not isinstance(layer, Conv2d | DepthwiseConv2d | PointwiseConv2d | Dense):
        return None
    weight = layer.params["weight"]
    bias = layer.params.get("bias", np.zeros(weight.shape[-1]))
    if isinstance(layer, Conv2d):
        return kn.Conv2d(weight, bias, layer.stride, layer.padding)
    if isinstance(layer, DepthwiseConv2d):
        return kn.DepthwiseConv2d(weight, bias, layer.stride, layer.padding)
    if isinstance(layer, PointwiseConv2d):
        return kn.PointwiseConv2d(weight, bias)
    return kn.Dense(weight, bias)


def _fold(spec: _LinearSpec, norm: BatchNorm) -> _LinearSpec:
    """Fold an inference-mode batch norm into the spec before it."""
    return spec.with_batchnorm(
        gamma=norm.params["gamma"],
        beta=norm.params["beta"],
        mean=norm.buffers["running_mean"],
        var=norm.buffers["running_var"],
        eps=norm.eps,
    )


def to_inference(
    model: Sequential, input_shape: tuple[int, ...], *, output: Output = "logits"
) -> kn.Network:
    """Export a trained model to the inference network both engines run.

    Each batch norm is folded into the linear layer before it (with its running statistics),
    a ReLU becomes the ``relu`` flag of the layer that produces its input, dropout is dropped
    (it is the identity at inference) and global average pooling maps across. Weights become
    float32.

    Parameters
    ----------
    model : Sequential
        Trained layers: linear layers, each optionally followed by `BatchNorm` then `ReLU`;
        `GlobalAvgPool` and `Dropout` anywhere.
    input_shape : tuple[int, ...]
        One window without the batch axis, (frames, mels, channels).
    output : {"logits", "softmax", "sigmoid"}
        Append nothing, `kernels.network.Softmax` or `kernels.network.Sigmoid`.

    Returns
    -------
    kernels.network.Network
        Equal to ``model.forward(x, training=False)`` up to float32 rounding (then the head).

    Raises
    ------
    ModelError
        A batch norm or ReLU that does not follow a linear layer, a layer type that cannot be
        exported, an unknown ``output``, or shapes that do not chain from ``input_shape``.
    """
    if output != "logits" and output not in _HEADS:
        raise ModelError(f"output: got {output!r}, expected 'logits', 'softmax' or 'sigmoid'")
    kept = [(i, layer) for i, layer in enumerate(model.layers) if not isinstance(layer, Dropout)]
    specs: list[kn.Layer] = []
    position = 0
    while position < len(kept):
        index, layer = kept[position]
        position += 1
        spec = _linear_spec(layer)
        if spec is None:
            if not isinstance(layer, GlobalAvgPool):
                raise ModelError(
                    f"model.layers[{index}]: cannot export {type(layer).__name__} here; "
                    "BatchNorm and ReLU must follow Conv2d, DepthwiseConv2d, PointwiseConv2d "
                    "or Dense"
                )
            specs.append(kn.GlobalAvgPool())
            continue
        if position < len(kept) and isinstance(kept[position][1], BatchNorm):
            spec = _fold(spec, kept[position][1])  # type: ignore[arg-type]
            position += 1
        if position < len(kept) and isinstance(kept[position][1], ReLU):
            spec = dataclasses.replace(spec, activation=kn.RELU)
            position += 1
        specs.append(spec)
    if output in _HEADS:
        specs.append(_HEADS[output])
    return kn.Network(input_shape=input_shape, layers=tuple(specs))
