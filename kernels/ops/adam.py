"""The AdamW update: numpy reference and kernel launch (``adam.wgsl``)."""

from __future__ import annotations

import math

import numpy as np

from kernels.launch import Launch, Slice, read, uniform, write
from kernels.ops.layout import f32

HYPER_WORDS = 8
"""The Adam uniform: two vec4 of hyper-parameters (see `adam_hyper`)."""


def adam_ref(
    param: np.ndarray,
    grad: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    *,
    step: int,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    decay: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One AdamW step for one array, as `models.optim.Adam` takes it (decoupled weight decay).

    ``p *= 1 - lr * weight_decay`` when ``decay``; ``m = b1 m + (1 - b1) g``;
    ``v = b2 v + (1 - b2) g^2``; ``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.

    Parameters
    ----------
    param, grad, exp_avg, exp_avg_sq : np.ndarray [shape=(...)]
        The array, its gradient and its moment estimates before the step.
    step : int
        The step being taken, t >= 1.
    lr : float
        Learning rate, >= 0.
    betas : tuple[float, float]
        Moment decay rates, each in [0, 1).
    eps : float
        Added to the denominator.
    weight_decay : float
        Decoupled decay coefficient, >= 0.
    decay : bool
        Whether this array is decayed (the optimizer decays arrays with ndim >= 2).

    Returns
    -------
    param, exp_avg, exp_avg_sq : np.ndarray [shape=param.shape], float32
        The updated arrays (new arrays; the inputs are not modified).
    """
    beta1, beta2 = betas
    p, g = f32(param).copy(), f32(grad)
    m, v = f32(exp_avg).copy(), f32(exp_avg_sq).copy()
    if weight_decay and decay:
        p *= np.float32(1 - lr * weight_decay)
    m *= np.float32(beta1)
    m += np.float32(1 - beta1) * g
    v *= np.float32(beta2)
    v += np.float32(1 - beta2) * np.square(g)
    denom = np.sqrt(v) / np.float32(math.sqrt(1 - beta2**step)) + np.float32(eps)
    p -= np.float32(lr / (1 - beta1**step)) * m / denom
    return p, m, v


def adam(
    param: Slice, grad: Slice, exp_avg: Slice, exp_avg_sq: Slice, hyper: Slice, *, decay: bool
) -> Launch:
    """AdamW over one flat range; ``hyper`` is the uniform of `adam_hyper`."""
    bindings = (
        read(grad), uniform(hyper), write(param), write(exp_avg),
        write(exp_avg_sq),
    )  # fmt: skip
    return Launch("adam", {"DECAY": "true" if decay else "false"}, bindings, param.size)


def adam_hyper(
    *, step: int, lr: float, betas: tuple[float, float], eps: float, weight_decay: float
) -> list[float]:
    """The Adam uniform for step ``step`` (t >= 1), in the order adam.wgsl reads it."""
    beta1, beta2 = betas
    return [
        1.0 - lr * weight_decay, beta1, 1.0 - beta1, beta2,
        1.0 - beta2, lr / (1.0 - beta1**step), (1.0 - beta2**step) ** 0.5, eps,
    ]  # fmt: skip
