"""Softmax and the softmax cross-entropy loss: references and kernel launches.

Softmax over the last axis serves inference; the class-weighted softmax cross-entropy with the
gradient of its logits serves training (both in ``softmax.wgsl``).
The loss runs in two passes, so it is correct for any batch size: ``softmax_cross_entropy``
writes each row's gradient and loss terms, `kernels.ops.column_sum` adds the terms, and
``softmax_cross_entropy_scale`` divides by the total weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.launch import Launch, Slice, pad4, read, write
from kernels.ops.column_sum import reduce_rows
from kernels.ops.layout import f32

LOSS_COLUMNS = 3
"""Per-row loss terms: w_i * nll_i, w_i, correct_i."""
RESULT_WORDS = 2
"""What a training step reads back: the weighted mean loss and the correct count."""


def softmax_ref(x: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis.

    Parameters
    ----------
    x : np.ndarray [shape=(..., n)]
        Logits.

    Returns
    -------
    np.ndarray [shape=(..., n)], float32
        Probabilities in [0, 1] that sum to 1 along the last axis.
    """
    x = f32(x)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


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
    z = f32(logits)
    rows = np.arange(z.shape[0])
    weights = f32(class_weights)[labels]
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


def softmax_launch(x: Slice, y: Slice, *, rows: int, n: int) -> Launch:
    """Inference softmax of ``rows`` rows of ``n`` values (rows padded to a multiple of 4)."""
    return Launch("softmax", {"N": n, "N4": pad4(n)}, (read(x), write(y)), rows)


@dataclass(frozen=True)
class LossSlices:
    """Where the loss reads and writes.

    Attributes
    ----------
    labels : Slice
        [batch] u32 class indices.
    class_weights : Slice
        [classes] f32.
    rows : Slice
        [batch, 3] per-row terms (see `LOSS_COLUMNS`).
    totals : Slice
        [3] their sums.
    result : Slice
        [2]: weighted mean loss, correct count.
    """

    labels: Slice
    class_weights: Slice
    rows: Slice
    totals: Slice
    result: Slice


def softmax_cross_entropy(
    logits: Slice, grad: Slice, loss: LossSlices, scratch: Slice, *, batch: int, classes: int
) -> list[Launch]:
    """Class-weighted mean softmax cross-entropy: the result and the gradient of the logits.

    ``scratch`` needs ``splits(batch) * 3`` words when ``batch`` exceeds one reduction chunk.
    """
    bindings = (
        read(logits), read(loss.labels), read(loss.class_weights), write(grad),
        write(loss.rows),
    )  # fmt: skip
    scale = (read(loss.totals), write(grad), write(loss.result))
    return [
        Launch("softmax_cross_entropy", {"K": classes}, bindings, batch),
        *reduce_rows(loss.rows, batch, LOSS_COLUMNS, loss.totals, scratch),
        Launch("softmax_cross_entropy_scale", {}, scale, batch * classes),
    ]
