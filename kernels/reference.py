"""numpy references for every kernel in ``kernels/wgsl/``: the source of truth, and the numpy path.

Each function computes the same op as the WGSL kernel of the same stem (``conv2d_ref`` and
``wgsl/conv2d.wgsl``), in float32, vectorised (im2col and matrix products; loops run only over
kernel taps), so the same functions serve as the inference path on machines where no GPU is
worth using.

Conventions: activations are channels-last (NHWC): ``[batch, height, width, channels]``; for
earshot's speech models height is time (frames) and width is frequency (mel bands). Weights put
the output channels last: conv ``[kh, kw, in_c, out_c]`` (HWIO), depthwise ``[kh, kw, c]``,
pointwise ``[in_c, out_c]``, dense ``[in_features, out_features]``. Padding is symmetric zero
padding given as ``(rows, columns)`` added on each side.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Pair = tuple[int, int]


def _f32(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float32)


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Length of a convolution's output along one axis.

    Parameters
    ----------
    size : int
        Input length (samples, frames or bins), at least 1.
    kernel : int
        Kernel length, at least 1.
    stride : int
        Step between windows, at least 1.
    padding : int
        Zeros added on each side, at least 0.

    Returns
    -------
    int
        ``(size + 2 * padding - kernel) // stride + 1``.

    Raises
    ------
    ValueError
        The padded input is shorter than the kernel.
    """
    padded = size + 2 * padding
    if padded < kernel:
        raise ValueError(f"kernel: got {kernel}, expected at most the padded input size {padded}")
    return (padded - kernel) // stride + 1


def _windows(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair) -> np.ndarray:
    """Strided view of every kernel window: [b, oh, ow, c, kh, kw] (no copy unless padded)."""
    pad_h, pad_w = padding
    if pad_h or pad_w:
        batch, height, width, channels = x.shape
        padded = np.zeros((batch, height + 2 * pad_h, width + 2 * pad_w, channels), x.dtype)
        padded[:, pad_h : pad_h + height, pad_w : pad_w + width] = x  # np.pad is slower
        x = padded
    view = sliding_window_view(x, kernel, axis=(1, 2))
    return view[:, :: stride[0], :: stride[1]]


def conv2d_ref(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
) -> np.ndarray:
    """2-D convolution (cross-correlation, as in every deep learning framework) plus bias.

    Parameters
    ----------
    x : np.ndarray [shape=(batch, height, width, in_c)]
        Input activations, NHWC.
    weight : np.ndarray [shape=(kh, kw, in_c, out_c)]
        Kernel, HWIO.
    bias : np.ndarray [shape=(out_c,)]
        Added to every output position.
    stride : tuple[int, int]
        Step between windows along (height, width), each at least 1.
    padding : tuple[int, int]
        Zeros added on both sides of (height, width).

    Returns
    -------
    np.ndarray [shape=(batch, out_h, out_w, out_c)], float32
        ``out_h = conv_output_size(height, kh, stride[0], padding[0])``, likewise ``out_w``.
    """
    kh, kw, in_c, out_c = weight.shape
    windows = _windows(_f32(x), (kh, kw), stride, padding)  # [b, oh, ow, c, kh, kw]
    batch, out_h, out_w = windows.shape[:3]
    columns = windows.transpose(0, 1, 2, 4, 5, 3).reshape(batch * out_h * out_w, kh * kw * in_c)
    out = columns @ _f32(weight).reshape(kh * kw * in_c, out_c)
    out += _f32(bias)
    return out.reshape(batch, out_h, out_w, out_c)


def depthwise_conv2d_ref(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
) -> np.ndarray:
    """Depthwise 2-D convolution: each channel convolved with its own kernel, plus bias.

    Parameters
    ----------
    x : np.ndarray [shape=(batch, height, width, c)]
        Input activations, NHWC.
    weight : np.ndarray [shape=(kh, kw, c)]
        One kernel per channel.
    bias : np.ndarray [shape=(c,)]
        Added to every output position.
    stride : tuple[int, int]
        Step between windows along (height, width), each at least 1.
    padding : tuple[int, int]
        Zeros added on both sides of (height, width).

    Returns
    -------
    np.ndarray [shape=(batch, out_h, out_w, c)], float32
        Output sizes as in `conv2d_ref`.
    """
    kh, kw, _ = weight.shape
    windows = _windows(_f32(x), (kh, kw), stride, padding)  # [b, oh, ow, c, kh, kw]
    out = np.einsum("bhwckl,klc->bhwc", windows, _f32(weight))
    out += _f32(bias)
    return out


def pointwise_conv2d_ref(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Pointwise (1x1) convolution: a matrix product over channels at every position, plus bias.

    Parameters
    ----------
    x : np.ndarray [shape=(batch, height, width, in_c)]
        Input activations, NHWC.
    weight : np.ndarray [shape=(in_c, out_c)]
        Channel mixing matrix.
    bias : np.ndarray [shape=(out_c,)]
        Added to every output position.

    Returns
    -------
    np.ndarray [shape=(batch, height, width, out_c)], float32
    """
    out = _f32(x) @ _f32(weight)
    out += _f32(bias)
    return out


def dense_ref(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Fully connected layer ``x @ weight + bias``.

    Parameters
    ----------
    x : np.ndarray [shape=(batch, in_features)]
        Input rows.
    weight : np.ndarray [shape=(in_features, out_features)]
        Weight matrix.
    bias : np.ndarray [shape=(out_features,)]
        Added to every row.

    Returns
    -------
    np.ndarray [shape=(batch, out_features)], float32
    """
    out = _f32(x) @ _f32(weight)
    out += _f32(bias)
    return out


def avg_pool2d_ref(x: np.ndarray, kernel: Pair, stride: Pair | None = None) -> np.ndarray:
    """Average over ``kernel`` windows with no padding (every window lies inside the input).

    Parameters
    ----------
    x : np.ndarray [shape=(batch, height, width, c)]
        Input activations, NHWC.
    kernel : tuple[int, int]
        Window size along (height, width).
    stride : tuple[int, int] or None
        Step between windows; None means ``kernel`` (non-overlapping windows).

    Returns
    -------
    np.ndarray [shape=(batch, out_h, out_w, c)], float32
        ``out_h = (height - kernel[0]) // stride[0] + 1``, likewise ``out_w``.
    """
    stride = kernel if stride is None else stride
    windows = _windows(_f32(x), kernel, stride, (0, 0))  # [b, oh, ow, c, kh, kw]
    return windows.mean(axis=(4, 5), dtype=np.float32)


def global_avg_pool_ref(x: np.ndarray) -> np.ndarray:
    """Mean over all positions of each image and channel.

    Parameters
    ----------
    x : np.ndarray [shape=(batch, height, width, c)]
        Input activations, NHWC.

    Returns
    -------
    np.ndarray [shape=(batch, c)], float32
    """
    return _f32(x).mean(axis=(1, 2), dtype=np.float32)


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
    x = _f32(x)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


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
    x = _f32(x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)


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
    return np.maximum(_f32(x), np.float32(0.0))


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
