"""Batch norm and the layers without weights: ReLU, global average pooling, dropout.

Each implements the `Layer` interface of `models.nn.layer_base`; `models.nn.layers` re-exports them.
Activations are NHWC ``[batch, height, width, channels]`` or ``[batch, features]``.
"""

from __future__ import annotations

import numpy as np

from kernels.errors import ModelError
from models.nn.layer_base import Layer, check_positive

DEFAULT_MOMENTUM = 0.1
"""Weight of the newest batch in the batch-norm running statistics."""
DEFAULT_EPS = 1e-5
"""Added to the batch-norm variance before the square root."""
SPATIAL_NDIM = 4
"""[N, H, W, C]."""
FEATURE_NDIM = 2
"""[N, C]."""


class BatchNorm(Layer):
    """Batch normalisation over every axis but the last (channels): after a conv or a dense layer.

    Training normalises with the batch mean and biased variance and updates the running
    statistics as ``running = (1 - momentum) * running + momentum * batch``, with the unbiased
    batch variance for ``running_var`` (PyTorch's convention). Inference uses the running ones.

    Parameters
    ----------
    c : int
        Channels, at least 1.
    momentum : float
        In (0, 1].
    eps : float
        Added to the variance, > 0.

    Attributes
    ----------
    params : dict
        ``gamma`` (scale, starts at 1) and ``beta`` (shift, starts at 0) [shape=(c,)].
    buffers : dict
        ``running_mean`` (starts at 0) and ``running_var`` (starts at 1) [shape=(c,)].
    """

    def __init__(
        self, c: int, momentum: float = DEFAULT_MOMENTUM, eps: float = DEFAULT_EPS
    ) -> None:
        super().__init__()
        self.c = check_positive(c, "BatchNorm.c")
        if not 0.0 < momentum <= 1.0:
            raise ModelError(f"BatchNorm.momentum: got {momentum!r}, expected a number in (0, 1]")
        if not eps > 0.0:
            raise ModelError(f"BatchNorm.eps: got {eps!r}, expected a number > 0")
        self.momentum, self.eps = float(momentum), float(eps)
        self.add_param("gamma", np.ones(c))
        self.add_param("beta", np.zeros(c))
        self.buffers["running_mean"] = np.zeros(c, self.params["gamma"].dtype)
        self.buffers["running_var"] = np.ones(c, self.params["gamma"].dtype)
        self._centered: np.ndarray | None = None
        self._inv_std: np.ndarray | None = None

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """[..., c] -> [..., c], for [N, H, W, c] or [N, c] inputs."""
        if x.ndim not in (SPATIAL_NDIM, FEATURE_NDIM) or x.shape[-1] != self.c:
            raise ModelError(
                f"BatchNorm: got input shape {x.shape}, expected (batch, height, width, {self.c}) "
                f"or (batch, {self.c})"
            )
        gamma, beta = self.params["gamma"], self.params["beta"]
        if not training:
            scale = gamma / np.sqrt(self.buffers["running_var"] + self.eps)
            shift = beta - self.buffers["running_mean"] * scale
            return (x * scale + shift).astype(x.dtype, copy=False)
        wide, reps = _wide(x)
        count = wide.shape[0] * reps
        if count < 2:
            raise ModelError(
                f"BatchNorm: got {count} value per channel, expected at least 2 when training"
            )
        mean_weights = np.full(wide.shape[0], 1.0 / count, x.dtype)
        mean = _channel_sum(mean_weights @ wide, reps)
        centered = wide - np.tile(mean, reps)
        out = np.square(centered)
        var = _channel_sum(mean_weights @ out, reps)
        inv_std = 1.0 / np.sqrt(var + self.eps)
        np.multiply(centered, np.tile(gamma * inv_std, reps), out=out)
        out += np.tile(beta, reps)
        self._centered, self._inv_std = centered, inv_std
        momentum = self.momentum
        self.buffers["running_mean"] *= 1.0 - momentum
        self.buffers["running_mean"] += momentum * mean
        self.buffers["running_var"] *= 1.0 - momentum
        self.buffers["running_var"] += (momentum * count / (count - 1)) * var
        return out.reshape(x.shape)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """[..., c] -> [..., c]; sets ``gamma`` and ``beta`` gradients.

        With ``xhat = centered * inv_std`` and M values per channel:
        ``d beta = sum(g)``, ``d gamma = sum(g * xhat)`` and
        ``dx = gamma * inv_std * (g - d beta / M - xhat * d gamma / M)``.
        """
        centered = self._cached(self._centered, "centred input")
        inv_std = self._cached(self._inv_std, "inverse standard deviation")
        grad = grad_out.reshape(centered.shape)
        reps = centered.shape[1] // self.c
        count = centered.shape[0] * reps
        ones = np.ones(centered.shape[0], grad.dtype)
        grad_sum = _channel_sum(ones @ grad, reps)
        grad_in = grad * centered
        grad_centered_sum = _channel_sum(ones @ grad_in, reps)
        self.grads["beta"][...] = grad_sum
        self.grads["gamma"][...] = grad_centered_sum * inv_std
        slope = -(inv_std**2) * grad_centered_sum / count
        np.multiply(centered, np.tile(slope, reps), out=grad_in)
        grad_in += grad
        grad_in -= np.tile(grad_sum / count, reps)
        grad_in *= np.tile(self.params["gamma"] * inv_std, reps)
        return grad_in.reshape(grad_out.shape)


def _wide(x: np.ndarray) -> tuple[np.ndarray, int]:
    """View [N, H, W, C] as [N * H, W * C] (W repeats of the channels), [N, C] as itself.

    Per-channel vectors are tiled W times to broadcast over whole rows, so numpy's inner loops
    run over W * C values rather than C.
    """
    reps = x.shape[2] if x.ndim == SPATIAL_NDIM else 1
    return x.reshape(-1, reps * x.shape[-1]), reps


def _channel_sum(row: np.ndarray, reps: int) -> np.ndarray:
    """Fold a [reps * C] row of sums back to [C]."""
    return row.reshape(reps, -1).sum(axis=0)


class ReLU(Layer):
    """Elementwise ``max(x, 0)``; exported as the ``relu`` flag of the layer before it."""

    def __init__(self) -> None:
        super().__init__()
        self._mask: np.ndarray | None = None

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """Shape unchanged; caches where the input was positive when training."""
        out = np.maximum(x, 0)
        if training:
            self._mask = out > 0
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """Pass the gradient where the input was positive, zero elsewhere."""
        return grad_out * self._cached(self._mask, "mask")


class GlobalAvgPool(Layer):
    """Mean over all positions: [N, H, W, C] -> [N, C]."""

    def __init__(self) -> None:
        super().__init__()
        self._shape: tuple[int, ...] | None = None

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """[N, H, W, C] -> [N, C]."""
        if x.ndim != SPATIAL_NDIM:
            raise ModelError(f"GlobalAvgPool: got input shape {x.shape}, expected (N, H, W, C)")
        if training:
            self._shape = x.shape
        return x.mean(axis=(1, 2))

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """[N, C] -> [N, H, W, C], each position receiving 1 / (H * W) of the gradient."""
        shape = self._cached(self._shape, "input shape")
        batch, height, width, channels = shape
        out = np.empty(shape, grad_out.dtype)
        out[...] = (grad_out / (height * width)).reshape(batch, 1, 1, channels)
        return out


class Dropout(Layer):
    """Inverted dropout: when training, zero each value with probability ``p``, scale the rest.

    Kept values are divided by ``1 - p`` so the expected output equals the input; inference is
    the identity, and export drops the layer.

    Parameters
    ----------
    p : float
        Drop probability in [0, 1).
    rng : np.random.Generator
        Draws the masks; the same seed gives the same masks in the same order.
    """

    def __init__(self, p: float, *, rng: np.random.Generator) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ModelError(f"Dropout.p: got {p!r}, expected a number in [0, 1)")
        self.p = float(p)
        self.rng = rng
        self._mask: np.ndarray | None = None

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """Shape unchanged; caches the scaled mask when training."""
        if not training or self.p == 0.0:
            self._mask = np.ones(1, x.dtype) if training else None
            return x
        dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float64
        keep = self.rng.random(x.shape, dtype=dtype) >= self.p
        self._mask = keep * np.asarray(1.0 / (1.0 - self.p), dtype)
        return x * self._mask

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """Gradient times the scaled mask of the last training forward."""
        return grad_out * self._cached(self._mask, "mask")
