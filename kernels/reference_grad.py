"""numpy references for the training kernels: backward passes, batch statistics, loss, Adam.

The source of truth for the training kernels in ``kernels/wgsl/`` (``conv2d_input_grad_ref`` and
``wgsl/conv2d_input_grad.wgsl``), in float32, with the conventions of `kernels.reference`:
activations NHWC ``[batch, height, width, channels]``, weights with output channels last (conv
``[kh, kw, in_c, out_c]``, depthwise ``[kh, kw, c]``, pointwise and dense ``[in, out]``),
symmetric zero padding ``(rows, columns)`` per side. Each backward reference is the adjoint of the
matching forward one and is checked against a numerical gradient in float64 by the tests.
"""

from __future__ import annotations

import math

import numpy as np

from kernels.reference import _windows, conv2d_ref, depthwise_conv2d_ref

Pair = tuple[int, int]


def _f32(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float32)


def conv2d_forward_ref(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
) -> np.ndarray:
    """2-D convolution with an optional bias and no activation (training forward).

    Parameters
    ----------
    x : np.ndarray [shape=(batch, height, width, in_c)]
        Input activations.
    weight : np.ndarray [shape=(kh, kw, in_c, out_c)]
        Kernel, HWIO.
    bias : np.ndarray [shape=(out_c,)] or None
        Added to every output position; None adds nothing.
    stride, padding : tuple[int, int]
        As in `kernels.reference.conv2d_ref`.

    Returns
    -------
    np.ndarray [shape=(batch, out_h, out_w, out_c)], float32
    """
    zeros = np.zeros(weight.shape[-1], np.float32)
    return conv2d_ref(x, weight, zeros if bias is None else bias, stride, padding)


def conv2d_input_grad_ref(
    grad_out: np.ndarray,
    weight: np.ndarray,
    input_shape: tuple[int, ...],
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
) -> np.ndarray:
    """Gradient of a convolution with respect to its input (a transposed convolution).

    Parameters
    ----------
    grad_out : np.ndarray [shape=(batch, out_h, out_w, out_c)]
        Gradient with respect to the convolution's output.
    weight : np.ndarray [shape=(kh, kw, in_c, out_c)]
        Kernel, HWIO.
    input_shape : tuple[int, int, int, int]
        (batch, height, width, in_c) of the forward input.
    stride, padding : tuple[int, int]
        Those of the forward convolution.

    Returns
    -------
    np.ndarray [shape=input_shape], float32
    """
    kh, kw, in_c, out_c = weight.shape
    batch, height, width, _ = input_shape
    out_h, out_w = grad_out.shape[1:3]
    columns = _f32(grad_out).reshape(-1, out_c) @ _f32(weight).reshape(-1, out_c).T
    columns = columns.reshape(batch, out_h, out_w, kh, kw, in_c)
    padded = np.zeros((batch, height + 2 * padding[0], width + 2 * padding[1], in_c), np.float32)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + stride[0] * (out_h - 1) + 1, stride[0])
            cols = slice(j, j + stride[1] * (out_w - 1) + 1, stride[1])
            padded[:, rows, cols] += columns[:, :, :, i, j]
    return padded[:, padding[0] : padding[0] + height, padding[1] : padding[1] + width]


def conv2d_weight_grad_ref(
    x: np.ndarray,
    grad_out: np.ndarray,
    kernel: Pair,
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
) -> np.ndarray:
    """Gradient of a convolution with respect to its weight: a sum over every output position.

    Parameters
    ----------
    x : np.ndarray [shape=(batch, height, width, in_c)]
        The forward input.
    grad_out : np.ndarray [shape=(batch, out_h, out_w, out_c)]
        Gradient with respect to the output.
    kernel : tuple[int, int]
        (kh, kw).
    stride, padding : tuple[int, int]
        Those of the forward convolution.

    Returns
    -------
    np.ndarray [shape=(kh, kw, in_c, out_c)], float32
    """
    windows = _windows(_f32(x), kernel, stride, padding)  # [b, oh, ow, c, kh, kw]
    return np.einsum("bhwckl,bhwo->klco", windows, _f32(grad_out), optimize=True).astype(np.float32)


def depthwise_forward_ref(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
) -> np.ndarray:
    """Depthwise convolution with an optional bias and no activation (training forward).

    Parameters
    ----------
    x : np.ndarray [shape=(batch, height, width, c)]
        Input activations.
    weight : np.ndarray [shape=(kh, kw, c)]
        One kernel per channel.
    bias : np.ndarray [shape=(c,)] or None
        Added to every output position; None adds nothing.
    stride, padding : tuple[int, int]
        As in `kernels.reference.depthwise_conv2d_ref`.

    Returns
    -------
    np.ndarray [shape=(batch, out_h, out_w, c)], float32
    """
    zeros = np.zeros(weight.shape[-1], np.float32)
    return depthwise_conv2d_ref(x, weight, zeros if bias is None else bias, stride, padding)


def depthwise_input_grad_ref(
    grad_out: np.ndarray,
    weight: np.ndarray,
    input_shape: tuple[int, ...],
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
) -> np.ndarray:
    """Gradient of a depthwise convolution with respect to its input.

    Parameters
    ----------
    grad_out : np.ndarray [shape=(batch, out_h, out_w, c)]
        Gradient with respect to the output.
    weight : np.ndarray [shape=(kh, kw, c)]
        One kernel per channel.
    input_shape : tuple[int, int, int, int]
        (batch, height, width, c) of the forward input.
    stride, padding : tuple[int, int]
        Those of the forward convolution.

    Returns
    -------
    np.ndarray [shape=input_shape], float32
    """
    kh, kw, channels = weight.shape
    batch, height, width, _ = input_shape
    out_h, out_w = grad_out.shape[1:3]
    padded = np.zeros(
        (batch, height + 2 * padding[0], width + 2 * padding[1], channels), np.float32
    )
    grad = _f32(grad_out)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + stride[0] * (out_h - 1) + 1, stride[0])
            cols = slice(j, j + stride[1] * (out_w - 1) + 1, stride[1])
            padded[:, rows, cols] += grad * _f32(weight[i, j])
    return padded[:, padding[0] : padding[0] + height, padding[1] : padding[1] + width]


def depthwise_weight_grad_ref(
    x: np.ndarray,
    grad_out: np.ndarray,
    kernel: Pair,
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
) -> np.ndarray:
    """Gradient of a depthwise convolution with respect to its weight.

    Parameters
    ----------
    x : np.ndarray [shape=(batch, height, width, c)]
        The forward input.
    grad_out : np.ndarray [shape=(batch, out_h, out_w, c)]
        Gradient with respect to the output.
    kernel : tuple[int, int]
        (kh, kw).
    stride, padding : tuple[int, int]
        Those of the forward convolution.

    Returns
    -------
    np.ndarray [shape=(kh, kw, c)], float32
    """
    windows = _windows(_f32(x), kernel, stride, padding)  # [b, oh, ow, c, kh, kw]
    return np.einsum("bhwckl,bhwc->klc", windows, _f32(grad_out), optimize=True).astype(np.float32)


def matmul_ref(a: np.ndarray, b: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """Matrix product ``a @ b`` plus an optional bias row.

    The pointwise and dense layers are matrix products each way: forward ``x @ w + bias``, input
    gradient ``grad @ w.T``, weight gradient ``x.T @ grad`` (x and grad as [positions, channels]).

    Parameters
    ----------
    a : np.ndarray [shape=(m, k)]
        Left operand (any strides: a transposed view is fine).
    b : np.ndarray [shape=(k, n)]
        Right operand.
    bias : np.ndarray [shape=(n,)] or None
        Added to every row.

    Returns
    -------
    np.ndarray [shape=(m, n)], float32
    """
    out = _f32(a) @ _f32(b)
    if bias is not None:
        out += _f32(bias)
    return out


def column_sum_ref(x: np.ndarray, chunk: int, scale: float = 1.0) -> np.ndarray:
    """Sums of consecutive chunks of rows: the first pass of a two-pass column reduction.

    Parameters
    ----------
    x : np.ndarray [shape=(m, n)]
        Rows to reduce, m >= 1.
    chunk : int
        Rows per partial sum, at least 1.
    scale : float
        Multiplies every sum.

    Returns
    -------
    np.ndarray [shape=(ceil(m / chunk), n)], float32
        Row s holds ``scale * x[s * chunk : (s + 1) * chunk].sum(axis=0)``.
    """
    x = _f32(x)
    parts = math.ceil(x.shape[0] / chunk)
    return np.stack(
        [x[s * chunk : (s + 1) * chunk].sum(axis=0) * np.float32(scale) for s in range(parts)]
    )


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
    return np.where(_f32(y) > 0, _f32(grad_out), np.float32(0.0))


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
    return _f32(x) * _f32(mask)


def global_avg_pool_forward_ref(x: np.ndarray) -> np.ndarray:
    """Mean over all positions: [batch, height, width, c] -> [batch, c].

    Parameters
    ----------
    x : np.ndarray [shape=(batch, height, width, c)]
        Activations.

    Returns
    -------
    np.ndarray [shape=(batch, c)], float32
    """
    return _f32(x).mean(axis=(1, 2), dtype=np.float32)


def global_avg_pool_grad_ref(grad_out: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """Gradient of global average pooling: each position receives ``1 / (h * w)`` of it.

    Parameters
    ----------
    grad_out : np.ndarray [shape=(batch, c)]
        Gradient with respect to the pooled output.
    input_shape : tuple[int, int, int, int]
        (batch, height, width, c) of the forward input.

    Returns
    -------
    np.ndarray [shape=input_shape], float32
    """
    batch, height, width, channels = input_shape
    scaled = _f32(grad_out) * np.float32(1.0 / (height * width))
    return np.broadcast_to(scaled[:, None, None, :], input_shape).astype(np.float32)


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
