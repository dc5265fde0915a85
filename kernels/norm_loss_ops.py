"""Kernel launches of the training engine that reduce over the batch or update state.

Training-mode batch norm (batch statistics, running-stat update, backward), the class-weighted
softmax cross-entropy and the AdamW update, as `kernels.train_ops.Op` lists over buffer slices
(no wgpu objects). Batch statistics and the loss run in two passes, so they are correct for any
batch size.
"""

from __future__ import annotations

from dataclasses import dataclass

from kernels.train_ops import (
    REDUCE_CHUNK,
    Op,
    Slice,
    f32_literal,
    read,
    reduce_rows,
    splits,
    uniform,
    vector_type,
    vector_width,
    write,
)

BN_STATS_ROWS = 4
"""Rows of a batch norm's saved statistics: mean, 1/std, sum of g, sum of g * (x - mean)."""
LOSS_COLUMNS = 3
"""Per-row loss terms: w_i * nll_i, w_i, correct_i."""
RESULT_WORDS = 2
"""What a step reads back: the weighted mean loss and the correct count."""
HYPER_WORDS = 8
"""The Adam uniform: two vec4 of hyper-parameters."""


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


def _part(scratch: Slice, words: int) -> Slice:
    return Slice(scratch.buffer, scratch.offset, words)


def _elementwise_constants(rows: int, c: int) -> dict[str, int | str]:
    """Constants of a per-value batch-norm kernel over [rows, c], vectorised when c allows."""
    width = vector_width(c)
    return {"COUNT": rows * c // width, "C": c // width, "ROWS": rows, "VEC": vector_type(width)}


def _partials(x: Slice, g: Slice, stats: Slice, out: Slice, rows: int, c: int, mode: int) -> Op:
    width = vector_width(c)
    count = splits(rows) * c // width
    constants: dict[str, int | str] = dict(
        COUNT=count, ROWS=rows, C=c // width, CHUNK=REDUCE_CHUNK, MODE=mode,
        VEC=vector_type(width),
    )  # fmt: skip
    bindings = (read(x), read(g), read(stats), write(out))
    return Op("batch_norm_partials", constants, bindings, count)


def _finalize(
    partial: Slice, bn: BatchNormSlices, out_a: Slice, out_b: Slice, *, rows: int, c: int,
    mode: int, momentum: float = 1.0, eps: float = 1.0,
) -> Op:  # fmt: skip
    constants: dict[str, int | str] = dict(
        C=c, ROWS=rows, SPLITS=splits(rows), MODE=mode, EPS=f32_literal(eps),
        MOMENTUM=f32_literal(momentum), KEEP=f32_literal(1.0 - momentum),
        UNBIASED_MOMENTUM=f32_literal(momentum * rows / max(rows - 1, 1)),
    )  # fmt: skip
    bindings = (read(partial), write(bn.stats), write(out_a), write(out_b))
    return Op("batch_norm_finalize", constants, bindings, c)


def batch_norm_forward(
    x: Slice, y: Slice, bn: BatchNormSlices, scratch: Slice, *, rows: int, c: int,
    momentum: float, eps: float,
) -> list[Op]:  # fmt: skip
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
        As `kernels.reference_grad.batch_norm_forward_ref`.

    Returns
    -------
    list[Op]
        Five launches.
    """
    partial = _part(scratch, splits(rows) * c)
    stats = bn.stats
    return [
        _partials(x, x, stats, partial, rows, c, mode=0),
        _finalize(partial, bn, stats, stats, rows=rows, c=c, mode=0),
        _partials(x, x, stats, partial, rows, c, mode=1),
        _finalize(
            partial,
            bn,
            bn.running_mean,
            bn.running_var,
            rows=rows,
            c=c,
            mode=1,
            momentum=momentum,
            eps=eps,
        ),  # fmt: skip
        Op(
            "batch_norm_forward",
            _elementwise_constants(rows, c),
            (read(x), read(stats), read(bn.gamma), read(bn.beta), write(y)),
            rows * c // vector_width(c),
        ),
    ]


def batch_norm_backward(
    grad_out: Slice, x: Slice, grad_in: Slice | None, bn: BatchNormSlices, scratch: Slice, *,
    rows: int, c: int,
) -> list[Op]:  # fmt: skip
    """Backward: gamma and beta gradients, and the input gradient unless ``grad_in`` is None.

    ``scratch`` needs ``splits(rows) * 2 * c`` words.
    """
    partial = _part(scratch, splits(rows) * 2 * c)
    ops = [
        _partials(x, grad_out, bn.stats, partial, rows, c, mode=2),
        _finalize(partial, bn, bn.grad_gamma, bn.grad_beta, rows=rows, c=c, mode=2),
    ]
    if grad_in is not None:
        bindings = (
            read(grad_out), read(x), read(bn.stats), read(bn.gamma),
            write(grad_in),
        )  # fmt: skip
        constants = _elementwise_constants(rows, c)
        ops.append(Op("batch_norm_backward", constants, bindings, rows * c // vector_width(c)))
    return ops


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
) -> list[Op]:
    """Class-weighted mean softmax cross-entropy: the result and the gradient of the logits.

    ``scratch`` needs ``splits(batch) * 3`` words when ``batch`` exceeds one reduction chunk.
    """
    bindings = (
        read(logits), read(loss.labels), read(loss.class_weights), write(grad),
        write(loss.rows),
    )  # fmt: skip
    count = batch * classes
    scale = (read(loss.totals), write(grad), write(loss.result))
    return [
        Op("softmax_cross_entropy", {"BATCH": batch, "K": classes}, bindings, batch),
        *reduce_rows(loss.rows, batch, LOSS_COLUMNS, loss.totals, scratch),
        Op("softmax_cross_entropy_scale", {"COUNT": count}, scale, count),
    ]


def adam(
    param: Slice, grad: Slice, exp_avg: Slice, exp_avg_sq: Slice, hyper: Slice, *, decay: bool
) -> Op:
    """AdamW over one flat range (see adam.wgsl); ``hyper`` is the uniform of `adam_hyper`."""
    bindings = (
        read(grad), uniform(hyper), write(param), write(exp_avg),
        write(exp_avg_sq),
    )  # fmt: skip
    constants = {"COUNT": param.size, "DECAY": "true" if decay else "false"}
    return Op("adam", constants, bindings, param.size)


def adam_hyper(
    *, step: int, lr: float, betas: tuple[float, float], eps: float, weight_decay: float
) -> list[float]:
    """The Adam uniform for step ``step`` (t >= 1), in the order adam.wgsl reads it."""
    beta1, beta2 = betas
    return [
        1.0 - lr * weight_decay, beta1, 1.0 - beta1, beta2,
        1.0 - beta2, lr / (1.0 - beta1**step), (1.0 - beta2**step) ** 0.5, eps,
    ]  # fmt: skip
