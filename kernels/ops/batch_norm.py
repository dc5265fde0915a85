"""Batch norm: references, and the training kernel launches (``batch_norm.wgsl``).

Inference folds batch norm into the preceding layer (`fold_batchnorm`); training normalises with
batch statistics.
Batch statistics run in two passes (``batch_norm_partials`` sums chunks of rows,
``batch_norm_finalize`` adds the partials and finishes the statistic), so they are correct for
any batch size; ``batch_norm_forward`` and ``batch_norm_backward`` then work per value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.launch import Constant, Launch, Slice, channel_vectors, f32_literal, read, write
from kernels.ops.column_sum import REDUCE_CHUNK, splits
from kernels.ops.layout import f32

BN_STATS_ROWS = 4
"""Rows of a batch norm's saved statistics: mean, 1/std, sum of g, sum of g * (x - mean)."""


def fold_batchnorm(
    weight: np.ndarray,
    bias: np.ndarray | None,
    *,
    gamma: np.ndarray,
    beta: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    eps: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray]:
    """Fold an inference-mode batch norm into the preceding layer's weights and bias.

    ``batchnorm(layer(x)) = gamma * (layer(x) - mean) / sqrt(var + eps) + beta`` equals
    ``layer'(x)`` with ``weight' = weight * s`` and ``bias' = (bias - mean) * s + beta`` where
    ``s = gamma / sqrt(var + eps)``, scaling along the output-channel axis (the last axis in
    every weight layout of this package).

    Parameters
    ----------
    weight : np.ndarray [shape=(..., out_c)]
        Conv (HWIO), depthwise ([kh, kw, c]), pointwise or dense weights.
    bias : np.ndarray [shape=(out_c,)] or None
        The layer's bias; None means zeros.
    gamma, beta, mean, var : np.ndarray [shape=(out_c,)]
        Batch-norm scale, shift, running mean and running variance (var >= 0).
    eps : float
        Added to the variance, > 0.

    Returns
    -------
    weight : np.ndarray [shape=(..., out_c)], float32
        Folded weights.
    bias : np.ndarray [shape=(out_c,)], float32
        Folded bias.
    """
    out_c = weight.shape[-1]
    bias64 = np.zeros(out_c) if bias is None else np.asarray(bias, dtype=np.float64)
    scale = np.asarray(gamma, dtype=np.float64) / np.sqrt(np.asarray(var, dtype=np.float64) + eps)
    folded_w = np.asarray(weight, dtype=np.float64) * scale
    folded_b = (bias64 - np.asarray(mean, dtype=np.float64)) * scale + np.asarray(beta, np.float64)
    return folded_w.astype(np.float32), folded_b.astype(np.float32)


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
    rows = f32(x).reshape(-1, x.shape[-1])
    count = rows.shape[0]
    mean = rows.mean(axis=0, dtype=np.float32)
    centered = rows - mean
    var = np.square(centered).mean(axis=0, dtype=np.float32)
    inv_std = (1.0 / np.sqrt(var + np.float32(eps))).astype(np.float32)
    y = centered * (f32(gamma) * inv_std) + f32(beta)
    keep = np.float32(1.0 - momentum)
    new_mean = f32(running_mean) * keep + np.float32(momentum) * mean
    new_var = f32(running_var) * keep + np.float32(momentum * count / (count - 1)) * var
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
    grad = f32(grad_out).reshape(-1, channels)
    centered = f32(x).reshape(-1, channels) - f32(mean)
    count = grad.shape[0]
    grad_sum = grad.sum(axis=0)
    grad_centered_sum = (grad * centered).sum(axis=0)
    inv = f32(inv_std)
    slope = -(inv**2) * grad_centered_sum / count
    grad_x = (grad - grad_sum / count + centered * slope) * (f32(gamma) * inv)
    return grad_x.reshape(x.shape), grad_centered_sum * inv, grad_sum


@dataclass(frozen=True)
class BatchNormSlices:
    """Where one batch norm's arrays live.

    Attributes
    ----------
    gamma, beta : Slice
        Parameters [c].
    running_mean, running_var : Slice
        Running statistics [c], updated by the forward pass.
    stats : Slice
        Saved statistics [4, c] (see `BN_STATS_ROWS`).
    grad_gamma, grad_beta : Slice
        Parameter gradients [c].
    """

    gamma: Slice
    beta: Slice
    running_mean: Slice
    running_var: Slice
    stats: Slice
    grad_gamma: Slice
    grad_beta: Slice


def _partials(x: Slice, g: Slice, stats: Slice, out: Slice, rows: int, c: int, mode: int) -> Launch:
    count, vectors = channel_vectors(splits(rows), c)
    constants: dict[str, Constant] = dict(vectors, ROWS=rows, CHUNK=REDUCE_CHUNK, MODE=mode)
    bindings = (read(x), read(g), read(stats), write(out))
    return Launch("batch_norm_partials", constants, bindings, count)


def _finalize(
    partial: Slice, bn: BatchNormSlices, outs: tuple[Slice, Slice], *, rows: int, c: int,
    mode: int, momentum: float = 1.0, eps: float = 1.0,
) -> Launch:  # fmt: skip
    constants: dict[str, Constant] = dict(
        ROWS=rows, SPLITS=splits(rows), MODE=mode, EPS=f32_literal(eps),
        MOMENTUM=f32_literal(momentum), KEEP=f32_literal(1.0 - momentum),
        UNBIASED_MOMENTUM=f32_literal(momentum * rows / max(rows - 1, 1)),
    )  # fmt: skip
    bindings = (read(partial), write(bn.stats), write(outs[0]), write(outs[1]))
    return Launch("batch_norm_finalize", constants, bindings, c)


def _per_value(kernel: str, inputs: tuple[Slice, ...], out: Slice, rows: int, c: int) -> Launch:
    count, vectors = channel_vectors(rows, c)
    bindings = (*map(read, inputs), write(out))
    return Launch(kernel, dict(vectors, ROWS=rows), bindings, count)


def batch_norm_forward(
    x: Slice, y: Slice, bn: BatchNormSlices, scratch: Slice, *, rows: int, c: int,
    momentum: float, eps: float,
) -> list[Launch]:  # fmt: skip
    """Training forward: batch mean, variance (from centred values), running stats, normalise.

    Parameters
    ----------
    x, y : Slice
        Input and output [rows, c] (NHWC flattened).
    bn : BatchNormSlices
        The layer's arrays; ``stats`` receives the mean and 1/std.
    scratch : Slice
        At least ``splits(rows) * c`` words for the partial sums.
    rows, c : int
        Values per channel (batch * height * width) and channels.
    momentum, eps : float
        As `batch_norm_forward_ref`.

    Returns
    -------
    list[Launch]
        Five launches.
    """
    partial = Slice(scratch.buffer, scratch.offset, splits(rows) * c)
    stats, running = bn.stats, (bn.running_mean, bn.running_var)
    dims = dict(rows=rows, c=c)
    return [
        _partials(x, x, stats, partial, rows, c, mode=0),
        _finalize(partial, bn, (stats, stats), mode=0, **dims),
        _partials(x, x, stats, partial, rows, c, mode=1),
        _finalize(partial, bn, running, mode=1, momentum=momentum, eps=eps, **dims),
        _per_value("batch_norm_forward", (x, stats, bn.gamma, bn.beta), y, rows, c),
    ]


def batch_norm_backward(
    grad_out: Slice, x: Slice, grad_in: Slice | None, bn: BatchNormSlices, scratch: Slice, *,
    rows: int, c: int,
) -> list[Launch]:  # fmt: skip
    """Backward: gamma and beta gradients, and the input gradient unless ``grad_in`` is None.

    ``scratch`` needs ``splits(rows) * 2 * c`` words.
    """
    partial = Slice(scratch.buffer, scratch.offset, splits(rows) * 2 * c)
    launches = [
        _partials(x, grad_out, bn.stats, partial, rows, c, mode=2),
        _finalize(partial, bn, (bn.grad_gamma, bn.grad_beta), rows=rows, c=c, mode=2),
    ]
    if grad_in is not None:
        inputs = (grad_out, x, bn.stats, bn.gamma)
        launches.append(_per_value("batch_norm_backward", inputs, grad_in, rows, c))
    return launches
