"""Elementwise activations: ReLU (and its gradient), inverted dropout, sigmoid.

Kernels (``activation.wgsl``): ``relu``, ``relu_backward`` and ``dropout`` for training (the
inference engine fuses ReLU into the producing layer's kernel), ``sigmoid`` for inference. Each
takes four values per invocation when the size allows.
"""

from __future__ import annotations

import numpy as np

from kernels.launch import Launch, Slice, channel_vectors, read, write
from kernels.ops.layout import f32


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
