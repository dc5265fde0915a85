"""Training losses, each returning the loss and its gradient with respect to the logits.

Both are computed from logits (never from probabilities), so they stay finite for logits of any
size: softmax cross-entropy through log-sum-exp, binary cross-entropy through ``logaddexp``.
"""

from __future__ import annotations

import numpy as np

from kernels.errors import ModelError


def _check_weights(weights: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != shape or not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ModelError(f"{name}: got shape {weights.shape}, expected {shape} finite weights >= 0")
    return weights


def softmax_cross_entropy(
    logits: np.ndarray, labels: np.ndarray, class_weights: np.ndarray | None = None
) -> tuple[float, np.ndarray]:
    """Weighted mean cross-entropy of a softmax classifier, and its gradient.

    ``loss = sum_i w[y_i] * nll_i / sum_i w[y_i]`` with ``nll_i = logsumexp(z_i) - z_i[y_i]``
    (PyTorch's ``CrossEntropyLoss(weight=w)``); without weights, the plain mean.

    Parameters
    ----------
    logits : np.ndarray [shape=(N, K)]
        Unnormalised class scores, N >= 1.
    labels : np.ndarray [shape=(N,)], int
        Class of each row, in [0, K).
    class_weights : np.ndarray [shape=(K,)] or None
        Weight of each class (>= 0; those of the labels present must not all be 0).

    Returns
    -------
    loss : float
        Weighted mean negative log-likelihood (nats).
    grad : np.ndarray [shape=(N, K)], dtype of ``logits``
        ``d loss / d logits = w[y_i] * (softmax(z_i) - onehot(y_i)) / sum_i w[y_i]``.

    Raises
    ------
    ModelError
        Shapes disagree, a label is out of range, or the weights are invalid or sum to 0.
    """
    if logits.ndim != 2 or logits.shape[0] == 0:
        raise ModelError(f"logits: got shape {logits.shape}, expected (N, K) with N >= 1")
    count, classes = logits.shape
    labels = np.asarray(labels)
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise ModelError(
            f"labels: got {labels.dtype} shape {labels.shape}, expected int ({count},)"
        )
    if labels.min() < 0 or labels.max() >= classes:
        raise ModelError(
            f"labels: got values in [{labels.min()}, {labels.max()}], expected [0, {classes})"
        )
    rows = np.arange(count)
    if class_weights is None:
        weights = np.ones(count)
    else:
        weights = _check_weights(class_weights, (classes,), "class_weights")[labels]
    total = weights.sum()
    if not total > 0:
        raise ModelError("class_weights: the classes present in labels all have weight 0")
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sum_exp = exp.sum(axis=1)
    nll = np.log(sum_exp) - shifted[rows, labels]
    loss = float(np.dot(weights, nll) / total)
    grad = exp / sum_exp[:, None]
    grad[rows, labels] -= 1
    grad *= (weights / total).astype(logits.dtype)[:, None]
    return loss, grad


def binary_cross_entropy_with_logits(
    logits: np.ndarray, targets: np.ndarray, pos_weight: float | None = None
) -> tuple[float, np.ndarray]:
    """Mean binary cross-entropy of sigmoid outputs, and its gradient.

    ``loss = mean_i [p * t_i * softplus(-z_i) + (1 - t_i) * softplus(z_i)]`` where
    ``softplus(z) = log(1 + exp(z))`` and ``p`` is ``pos_weight`` (1 when None): the mean over
    all N, as PyTorch's ``BCEWithLogitsLoss(pos_weight=p)``, so ``p > 1`` makes misses of
    positives cost more without changing the scale of the negatives.

    Parameters
    ----------
    logits : np.ndarray [shape=(N,)]
        Log-odds of the positive class, N >= 1.
    targets : np.ndarray [shape=(N,)]
        1 for positive, 0 for negative (values in between act as soft labels).
    pos_weight : float or None
        Weight of the positive term, > 0.

    Returns
    -------
    loss : float
        Mean loss (nats).
    grad : np.ndarray [shape=(N,)], dtype of ``logits``
        ``(p * t_i * (sigmoid(z_i) - 1) + (1 - t_i) * sigmoid(z_i)) / N``.

    Raises
    ------
    ModelError
        Shapes disagree, a target is outside [0, 1], or ``pos_weight`` is not > 0.
    """
    if logits.ndim != 1 or logits.shape[0] == 0:
        raise ModelError(f"logits: got shape {logits.shape}, expected (N,) with N >= 1")
    targets = np.asarray(targets, dtype=np.float64)
    if targets.shape != logits.shape or np.any((targets < 0) | (targets > 1)):
        raise ModelError(f"targets: got shape {targets.shape}, expected {logits.shape} in [0, 1]")
    positive = 1.0 if pos_weight is None else float(pos_weight)
    if not positive > 0:
        raise ModelError(f"pos_weight: got {pos_weight!r}, expected a number > 0")
    z = logits.astype(np.float64)
    softplus_pos = np.logaddexp(0.0, z)  # -log(1 - sigmoid(z))
    softplus_neg = np.logaddexp(0.0, -z)  # -log(sigmoid(z))
    loss = float(np.mean(positive * targets * softplus_neg + (1 - targets) * softplus_pos))
    sigmoid = np.exp(-softplus_neg)
    grad = (positive * targets * (sigmoid - 1) + (1 - targets) * sigmoid) / z.size
    return loss, grad.astype(logits.dtype)
