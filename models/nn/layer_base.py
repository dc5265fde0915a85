"""What every trainable layer shares: the `Layer` interface, weight initialisation, checks.

A layer keeps its forward pass and its local gradient side by side. ``forward(x, training=True)``
caches what ``backward`` needs; ``backward(grad_out)`` returns the gradient with respect to the
input and writes the gradient of every parameter into ``grads``. Gradient arrays are allocated
once, when the layer is built, and ``backward`` overwrites them in place (it sets, it does not
accumulate), so an optimizer can hold on to the arrays of ``Sequential.parameters()``.
"""

from __future__ import annotations

from typing import Literal, TypeVar

import numpy as np

from kernels.errors import ModelError

DEFAULT_DTYPE = np.float32
"""Parameters, buffers and activations are float32 unless a model is cast with ``astype``."""

Init = Literal["he", "lecun"]
"""Weight initialisation: ``"he"`` draws N(0, 2 / fan_in) for layers followed by ReLU (Kaiming
normal); ``"lecun"`` draws N(0, 1 / fan_in) for layers that are not (a classifier head)."""

_INIT_GAIN: dict[str, float] = {"he": 2.0, "lecun": 1.0}
"""Variance of a weight times its fan-in, per initialisation."""

Pair = tuple[int, int]
_Cache = TypeVar("_Cache")


class Layer:
    """Base of every trainable layer: parameters, their gradients, and non-trainable buffers.

    Attributes
    ----------
    params : dict[str, np.ndarray]
        Trainable arrays, updated in place by an optimizer; may be empty.
    grads : dict[str, np.ndarray]
        One array per parameter, same key and shape, overwritten by `backward`.
    buffers : dict[str, np.ndarray]
        Non-trainable state saved with the model (batch-norm running statistics); may be empty.
    """

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """Compute the output; when ``training``, cache what `backward` needs."""
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """Return the gradient with respect to the last training input; set ``grads``."""
        raise NotImplementedError

    def backward_params(self, grad_out: np.ndarray) -> None:
        """Set ``grads`` only: for a first layer, whose input (the data) needs no gradient.

        The default runs `backward` and drops its result; a layer whose input gradient is
        costly (`Conv2d`: a col2im) skips computing it.
        """
        self.backward(grad_out)

    def add_param(self, name: str, value: np.ndarray) -> None:
        """Register a trainable array and allocate its gradient."""
        self.params[name] = np.ascontiguousarray(value, dtype=DEFAULT_DTYPE)
        self.grads[name] = np.zeros_like(self.params[name])

    def astype(self, dtype: type[np.floating] | np.dtype) -> None:
        """Cast parameters, gradients and buffers to ``dtype`` (new arrays: build optimizers after).

        Parameters
        ----------
        dtype : numpy floating dtype
            ``np.float32`` for training, ``np.float64`` for gradient checks.
        """
        for store in (self.params, self.grads, self.buffers):
            for key, value in store.items():
                store[key] = np.ascontiguousarray(value, dtype=dtype)

    def _cached(self, value: _Cache | None, what: str) -> _Cache:
        """Return a forward cache; raise if ``backward`` came before ``forward(training=True)``."""
        if value is None:
            raise ModelError(
                f"{type(self).__name__}.backward: no cached {what}; "
                "call forward(x, training=True) first"
            )
        return value


def init_weight(
    shape: tuple[int, ...], fan_in: int, init: Init, rng: np.random.Generator
) -> np.ndarray:
    """Draw a weight array from N(0, gain / fan_in).

    Parameters
    ----------
    shape : tuple[int, ...]
        Shape of the weight array.
    fan_in : int
        Inputs that feed one output (kh * kw * in_c for a convolution), at least 1.
    init : {"he", "lecun"}
        Gain 2 (followed by ReLU) or 1 (not).
    rng : np.random.Generator
        Source of randomness; a seeded generator makes the model reproducible.

    Returns
    -------
    np.ndarray [shape=shape], float32
    """
    if init not in _INIT_GAIN:
        raise ModelError(f"init: got {init!r}, expected one of {sorted(_INIT_GAIN)}")
    std = np.sqrt(_INIT_GAIN[init] / fan_in)
    return rng.normal(0.0, std, size=shape).astype(DEFAULT_DTYPE)


def check_positive(value: int, name: str) -> int:
    """Return ``value`` as int after checking it is at least 1."""
    if int(value) != value or value < 1:
        raise ModelError(f"{name}: got {value!r}, expected an integer >= 1")
    return int(value)


def check_pair(value: Pair, name: str, minimum: int) -> Pair:
    """Return ``value`` as a pair of ints after checking both are at least ``minimum``."""
    pair = tuple(value)
    if len(pair) != 2 or any(int(v) != v or v < minimum for v in pair):
        raise ModelError(f"{name}: got {value!r}, expected two integers >= {minimum}")
    return int(pair[0]), int(pair[1])


def check_input(x: np.ndarray, ndim: int, channels: int, layer: str) -> None:
    """Raise `ModelError` unless ``x`` has ``ndim`` axes and ``channels`` on the last one."""
    if x.ndim != ndim or x.shape[-1] != channels:
        axes = "(batch, height, width, channels)" if ndim == 4 else "(batch, features)"
        raise ModelError(
            f"{layer}: got input shape {x.shape}, expected {axes} with {channels} channels"
        )
