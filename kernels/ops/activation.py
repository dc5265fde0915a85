"""Elementwise activations: the fused epilogue, ReLU (and its gradient), dropout, sigmoid.

`Activation` is what an inference layer applies to each output value before writing it (a leaky
ReLU, then a clamp); `activation_ref` is its reference and `activation_overrides` the pipeline
constants of the ``activate`` fragment (``shared.wgsl``) that every inference kernel applies.
Kernels (``activation.wgsl``): ``relu``, ``relu_backward`` and ``dropout`` for training (the
inference engine fuses the activation into the producing layer's kernel), ``sigmoid`` for
inference. Each takes four values per invocation when the size allows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kernels.errors import ModelError
from kernels.launch import Launch, Slice, channel_vectors, read, write
from kernels.ops.layout import f32

FLOAT32_MAX = float(np.finfo(np.float32).max)
"""Largest finite float32: WGSL has no infinity literal, so an open bound becomes this one."""


@dataclass(frozen=True)
class Activation:
    """What a layer applies to each output value before writing it.

    ``y = x if x >= 0 else slope * x``, then clamped to ``[low, high]``.

    Attributes
    ----------
    slope : float
        Slope for negative inputs, finite: 1 is the identity, 0 ReLU, 0.2 LeakyRelu(0.2).
    low, high : float
        Clamp bounds, ``low <= high``; -inf and inf leave that side open. Finite bounds must be
        float32 values (magnitude at most 3.4028235e38).

    Raises
    ------
    ModelError
        A bound or the slope out of range (the message names the field and the value).
    """

    slope: float = 1.0
    low: float = -math.inf
    high: float = math.inf

    def __post_init__(self) -> None:
        for name in ("slope", "low", "high"):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, float(value))
            except (TypeError, ValueError):
                raise ModelError(f"Activation.{name}: got {value!r}, expected a number") from None
        if not math.isfinite(self.slope):
            raise ModelError(f"Activation.slope: got {self.slope}, expected a finite number")
        for name, value, infinite in (("low", self.low, -math.inf), ("high", self.high, math.inf)):
            if value != infinite and not abs(value) <= FLOAT32_MAX:
                raise ModelError(
                    f"Activation.{name}: got {value}, expected {infinite} or a float32 value "
                    f"in [-{FLOAT32_MAX:.8g}, {FLOAT32_MAX:.8g}]"
                )
        if self.low > self.high:
            raise ModelError(
                f"Activation.low: got {self.low} above high {self.high}, expected low <= high"
            )

    @property
    def clamps(self) -> bool:
        """Whether either clamp bound is finite."""
        return self.low != -math.inf or self.high != math.inf


IDENTITY = Activation()
"""No activation."""
RELU = Activation(slope=0.0)
"""``max(x, 0)``."""


def activation_ref(x: np.ndarray, activation: Activation, *, inplace: bool = False) -> np.ndarray:
    """Apply the epilogue of an inference layer: leaky ReLU, then a clamp.

    Parameters
    ----------
    x : np.ndarray [shape=(...)]
        Pre-activation values.
    activation : Activation
        Slope for negative values and clamp bounds.
    inplace : bool
        Overwrite ``x`` (when it is float32) instead of a copy: for a layer's fresh output.

    Returns
    -------
    np.ndarray [shape=x.shape], float32
        ``clip(where(x >= 0, x, slope * x), low, high)``; ``x`` itself (as float32) for the
        identity.
    """
    out = f32(x)
    if not inplace and (activation.slope != 1.0 or activation.clamps):
        out = out.copy()
    slope = activation.slope
    if slope == 0.0:
        np.maximum(out, np.float32(0.0), out=out)
    elif 0.0 < slope < 1.0:  # x >= slope * x exactly when x >= 0: one pass, no mask
        np.maximum(out, out * np.float32(slope), out=out)
    elif slope != 1.0:
        np.multiply(out, np.float32(slope), out=out, where=out < 0)
    if activation.low > -math.inf:
        np.maximum(out, np.float32(activation.low), out=out)
    if activation.high < math.inf:
        np.minimum(out, np.float32(activation.high), out=out)
    return out


def activation_overrides(activation: Activation) -> dict[str, float]:
    """Pipeline constants of the ``activate`` fragment (``shared.wgsl``) for ``activation``.

    Parameters
    ----------
    activation : Activation
        The epilogue.

    Returns
    -------
    dict[str, float]
        ``SLOPE``; ``CLAMP`` (1 when a bound is finite, else 0, and the clamp is skipped);
        ``LOW`` and ``HIGH`` with infinite bounds replaced by -+`FLOAT32_MAX`.
    """
    return {
        "SLOPE": activation.slope,
        "CLAMP": float(activation.clamps),
        "LOW": max(activation.low, -FLOAT32_MAX),
        "HIGH": min(activation.high, FLOAT32_MAX),
    }


def relu_ref(x: np.ndarray) -> np.ndarray:
    """Elementwise ``max(x, 0)``.

    Parameters
    ----------
    x : np.ndarray [shape=(...)]
        Activations.

    Returns
    -------
    np.ndarray [shape=(...)], float32
    """
    return np.maximum(f32(x), np.float32(0.0))


def relu_backward_ref(grad_out: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient of ReLU from its output: pass where ``y > 0``, zero elsewhere.

    Parameters
    ----------
    grad_out : np.ndarray [shape=(...)]
        Gradient with respect to the output.
    y : np.ndarray [shape=grad_out.shape]
        The forward output ``max(x, 0)`` (positive exactly where x is).

    Returns
    -------
    np.ndarray [shape=grad_out.shape], float32
    """
    return np.where(f32(y) > 0, f32(grad_out), np.float32(0.0))


def dropout_ref(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Inverted dropout forward and backward: elementwise ``x * mask``.

    Parameters
    ----------
    x : np.ndarray [shape=(...)]
        Activations (forward) or the output gradient (backward).
    mask : np.ndarray [shape=x.shape]
        0 for dropped values, ``1 / (1 - p)`` for kept ones.

    Returns
    -------
    np.ndarray [shape=x.shape], float32
    """
    return f32(x) * f32(mask)


def sigmoid_ref(x: np.ndarray) -> np.ndarray:
    """Elementwise logistic function ``1 / (1 + exp(-x))``, without overflow for any input.

    Parameters
    ----------
    x : np.ndarray [shape=(...)]
        Logits.

    Returns
    -------
    np.ndarray [shape=(...)], float32
        Values in [0, 1].
    """
    x = f32(x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)


def elementwise(kernel: str, inputs: tuple[Slice, ...], out: Slice, count: int) -> Launch:
    """An elementwise kernel over ``count`` values, its inputs bound in order before the output.

    The kernels are ``relu``, ``relu_backward``, ``dropout`` and ``sigmoid``.
    """
    invocations, vectors = channel_vectors(1, count)
    return Launch(kernel, vectors, (*map(read, inputs), write(out)), invocations)
