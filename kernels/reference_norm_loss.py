"""numpy references for the training kernels that reduce over the batch or update state.

Training-mode batch norm (``batch_norm_forward_ref``, ``batch_norm_backward_ref``: the kernels
``batch_norm_partials``, ``batch_norm_finalize``, ``batch_norm_forward`` and
``batch_norm_backward`` together), the class-weighted softmax cross-entropy
(``softmax_cross_entropy`` and ``softmax_cross_entropy_scale``) and the AdamW update (``adam``),
in float32; `kernels.reference_grad` re-exports them with the other training references.
"""

from __future__ import annotations

import math

import numpy as np


def _f32(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float32)


def batch_norm_forward_ref(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    *,
    momentum: float,
    eps: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training-mode batch norm over every axis but the last, and the running-stat update.

    Parameters
    ----------
    x : np.ndarray [shape=(..., c)]
        Activations; the statistics run over all M = x.size / c values of each channel, M >= 2.
    gamma, beta : np.ndarray [shape=(c,)]
        Scale and shift.
    running_mean, running_var : np.ndarray [shape=(c,)]
        Running statistics before this batch.
    momentum : float
        Weight of this batch in the running statistics, in (0, 1].
    eps : float
        Added to the variance, > 0.

    Returns
    -------
    y : np.ndarray [shape=x.shape], float32
        ``(x - mean) * inv_std * gamma + beta``.
    mean, inv_std : np.ndarray [shape=(c,)], float32
        Batch mean and ``1 / sqrt(biased variance + eps)``, saved for the backward pass.
    running_mean, running_var : np.ndarray [shape=(c,)], float32
        ``(1 - momentum) * running + momentum * batch``, with the unbiased batch variance
        ``var * M / (M - 1)`` for ``running_var``.
    """
    rows = _f32(x).reshape(-1, x.shape[-1])
    count = rows.shape[0]
    mean = rows.mean(axis=0, dtype=np.float32)
    centered = rows - mean
    var = np.square(centered).mean(axis=0, dtype=np.float32)
    inv_std = (1.0 / np.sqrt(var + np.float32(eps))).astype(np.float32)
    y = centered * (_f32(gamma) * inv_std) + _f32(beta)
    keep = np.float32(1.0 - momentum)
    new_mean = _f32(running_mean) * keep + np.float32(momentum) * mean
    new_var = _f32(running_var) * keep + np.float32(momentum * count / (count - 1)) * var
    return y.reshape(x.shape), mean, inv_std, new_mean, new_var


def batch_norm_backward_ref(
    grad_out: np.ndarray,
    x: np.ndarray,
    mean: np.ndarray,
    inv_std: np.ndarray,
    gamma: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of training-mode batch norm.

    With ``xhat = (x - mean) * inv_std`` and M values per channel: ``d beta = sum(g)``,
    ``d gamma = sum(g * xhat)``, ``dx = gamma * inv_std * (g - d beta / M - xhat * d gamma / M)``.

    Parameters
    ----------
    grad_out : np.ndarray [shape=(..., c)]
        Gradient with respect to the output.
    x : np.ndarray [shape=(..., c)]
        The forward input.
    mean, inv_std : np.ndarray [shape=(c,)]
        Saved by `batch_norm_forward_ref`.
    gamma : np.ndarray [shape=(c,)]
        Scale.

    Returns
    -------
    grad_x : np.ndarray [shape=x.shape], float32
    grad_gamma, grad_beta : np.ndarray [shape=(c,)], float32
    """
    channels = x.shape[-1]
    grad = _f32(grad_out).reshape(-1, channels)
    centered = _f32(x).reshape(-1, channels) - _f32(mean)
    count = grad.shape[0]
    grad_sum = grad.sum(axis=0)
    grad_centered_sum = (grad * centered).sum(axis=0)
    inv = _f32(inv_std)
    slope = -(inv**2) * grad_centered_sum / count
    grad_x = (grad - grad_sum / count + centered * slope) * (_f32(gamma) * inv)
    return grad_x.reshape(x.shape), grad_centered_sum * inv, grad_sum


def softmax_cross_entropy_ref(
    logits: np.ndarray, labels: np.ndarray, class_weights: np.ndarray
) -> tuple[float, np.ndarray, int]:
    """Class-weighted mean softmax cross-entropy, its gradient, and the correct count.

    ``loss = sum_i w[y_i] * nll_i / sum_i w[y_i]`` with ``nll_i = logsumexp(z_i) - z_i[y_i]``
    (PyTorch's ``CrossEntropyLoss(weight=w)``).

    Parameters
    ----------
    logits : np.ndarray [shape=(n, k)]
        Class scores.
    labels : np.ndarray [shape=(n,)], int
        Class of each row, in [0, k).
    class_weights : np.ndarray [shape=(k,)]
        Weight of each class, >= 0; those of the labels present must not all be 0.

    Returns
    -------
    loss : float
        Weighted mean negative log-likelihood (nats).
    grad : np.ndarray [shape=(n, k)], float32
        ``w[y_i] * (softmax(z_i) - onehot(y_i)) / sum_i w[y_i]``.
    correct : int
        Rows whose first largest logit is at the label.
    """
    z = _f32(logits)
    rows = np.arange(z.shape[0])
    weights = _f32(class_weights)[labels]
    total = weights.sum(dtype=np.float32)
    shifted = z - z.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sum_exp = exp.sum(axis=1)
    nll = np.log(sum_exp) - shifted[rows, labels]
    grad = exp / sum_exp[:, None]
    grad[rows, labels] -= 1
    grad *= (weights / total)[:, None]
    correct = int(np.sum(np.argmax(z, axis=1) == labels))
    return float(np.dot(weights, nll) / total), grad.astype(np.float32), correct


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
    p, g = _f32(param).copy(), _f32(grad)
    m, v = _f32(exp_avg).copy(), _f32(exp_avg_sq).copy()
    if weight_decay and decay:
        p *= np.float32(1 - lr * weight_decay)
    m *= np.float32(beta1)
    m += np.float32(1 - beta1) * g
    v *= np.float32(beta2)
    v += np.float32(1 - beta2) * np.square(g)
    denom = np.sqrt(v) / np.float32(math.sqrt(1 - beta2**step)) + np.float32(eps)
    p -= np.float32(lr / (1 - beta1**step)) * m / denom
    return p, m, v
