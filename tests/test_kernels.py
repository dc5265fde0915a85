"""Per-kernel parity: each WGSL kernel against its numpy reference, and each reference against a
naive float64 loop implementation on tiny sizes (so the source of truth is itself checked).

Sizes are deliberately not multiples of the workgroup (8 to 64), the register tile (8 positions x 64
channels), the depthwise tile (4 x 4) or the vec4 channel quad, and the cases cover both kernels of
conv2d (conv2d_patch and conv2d_tiled) and of pointwise (pointwise_conv2d and dense). Tolerances are
stated per kernel: float32 accumulation in another order than numpy's gives errors near 1e-6.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from kernels.device import GpuDevice
from kernels.gpu_network import WgpuNetwork
from kernels.network import (
    IDENTITY,
    RELU,
    AvgPool2d,
    Conv2d,
    Dense,
    DepthwiseConv2d,
    GlobalAvgPool,
    Layer,
    Network,
    PointwiseConv2d,
    Sigmoid,
    Softmax,
)
from kernels.ops.activation import relu_ref, sigmoid_ref
from kernels.ops.batch_norm import fold_batchnorm
from kernels.ops.conv2d import conv2d_ref
from kernels.ops.depthwise_conv2d import depthwise_conv2d_ref
from kernels.ops.linear import dense_ref, pointwise_conv2d_ref
from kernels.ops.pooling import avg_pool2d_ref, global_avg_pool_ref
from kernels.ops.softmax import softmax_ref
from kernels.template import render

# (rtol, atol) per kernel.
TOL_CONV2D = (1e-5, 1e-5)
TOL_DEPTHWISE = (1e-5, 1e-5)
TOL_POINTWISE = (1e-5, 1e-5)
TOL_DENSE = (1e-5, 1e-5)
TOL_AVG_POOL = (1e-6, 1e-6)
TOL_GLOBAL_POOL = (1e-6, 1e-6)
TOL_SOFTMAX = (1e-6, 1e-7)
TOL_SIGMOID = (1e-6, 1e-7)
TOL_REFERENCE = (1e-5, 1e-5)  # float32 reference against float64 loops


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _run_gpu(gpu: GpuDevice, layer: Layer, x: np.ndarray) -> np.ndarray:
    network = Network(input_shape=x.shape[1:], layers=(layer,))
    return WgpuNetwork(network, gpu, batch_size=x.shape[0]).run(x)


def _check(actual: np.ndarray, expected: np.ndarray, tol: tuple[float, float]) -> None:
    assert actual.shape == expected.shape
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=tol[0], atol=tol[1])


# --- WGSL kernels against the numpy references -------------------------------------------------


@pytest.mark.parametrize(
    ("x_shape", "kernel", "out_c", "stride", "padding"),
    [
        ((2, 13, 11, 3), (3, 2), 6, (2, 1), (1, 1)),
        ((1, 98, 40, 1), (10, 4), 64, (2, 2), (4, 1)),  # the DS-CNN first layer
        ((3, 9, 7, 5), (3, 3), 70, (1, 1), (0, 2)),  # padded quads
        ((2, 6, 5, 70), (3, 3), 68, (1, 2), (1, 1)),  # patch too large: two channel tiles
    ],
)
def test_conv2d(gpu: GpuDevice, x_shape, kernel, out_c, stride, padding) -> None:
    rng = _rng(1)
    x = rng.standard_normal(x_shape, dtype=np.float32)
    fan_in = kernel[0] * kernel[1] * x_shape[3]
    weight = rng.standard_normal((*kernel, x_shape[3], out_c), dtype=np.float32) / np.sqrt(fan_in)
    bias = rng.standard_normal(out_c, dtype=np.float32)
    for relu in (False, True):
        layer = Conv2d(
            weight, bias, stride=stride, padding=padding, activation=RELU if relu else IDENTITY
        )
        expected = conv2d_ref(x, weight, bias, stride, padding)
        _check(_run_gpu(gpu, layer, x), relu_ref(expected) if relu else expected, TOL_CONV2D)


@pytest.mark.parametrize(
    ("x_shape", "kernel", "stride", "padding"),
    [
        ((3, 9, 7, 6), (3, 3), (1, 1), (1, 1)),
        ((2, 11, 13, 10), (5, 3), (2, 2), (2, 1)),
        ((1, 5, 3, 67), (3, 3), (1, 1), (1, 1)),  # channels past one 64-channel tile
    ],
)
def test_depthwise_conv2d(gpu: GpuDevice, x_shape, kernel, stride, padding) -> None:
    rng = _rng(2)
    x = rng.standard_normal(x_shape, dtype=np.float32)
    weight = rng.standard_normal((*kernel, x_shape[3]), dtype=np.float32)
    bias = rng.standard_normal(x_shape[3], dtype=np.float32)
    layer = DepthwiseConv2d(weight, bias, stride=stride, padding=padding, activation=RELU)
    expected = relu_ref(depthwise_conv2d_ref(x, weight, bias, stride, padding))
    _check(_run_gpu(gpu, layer, x), expected, TOL_DEPTHWISE)


@pytest.mark.parametrize(
    ("x_shape", "out_c"),
    [
        ((2, 7, 5, 10), 13),
        ((1, 3, 5, 260), 68),  # weights exceed the uniform-buffer limit
        ((1, 2, 3, 522), 70),  # too wide to hold in registers: runs on the dense kernel
    ],
)
def test_pointwise_conv2d(gpu: GpuDevice, x_shape, out_c) -> None:
    rng = _rng(3)
    x = rng.standard_normal(x_shape, dtype=np.float32)
    weight = rng.standard_normal((x_shape[3], out_c), dtype=np.float32) / np.sqrt(x_shape[3])
    bias = rng.standard_normal(out_c, dtype=np.float32)
    expected = pointwise_conv2d_ref(x, weight, bias)
    _check(_run_gpu(gpu, PointwiseConv2d(weight, bias), x), expected, TOL_POINTWISE)


def test_dense(gpu: GpuDevice) -> None:
    rng = _rng(4)
    x = rng.standard_normal((5, 37), dtype=np.float32)
    weight = rng.standard_normal((37, 13), dtype=np.float32)
    bias = rng.standard_normal(13, dtype=np.float32)
    expected = relu_ref(dense_ref(x, weight, bias))
    _check(_run_gpu(gpu, Dense(weight, bias, activation=RELU), x), expected, TOL_DENSE)


def test_dense_flattens_a_spatial_input(gpu: GpuDevice) -> None:
    rng = _rng(5)
    x = rng.standard_normal((3, 4, 5, 6), dtype=np.float32)
    weight = rng.standard_normal((4 * 5 * 6, 7), dtype=np.float32)
    bias = rng.standard_normal(7, dtype=np.float32)
    expected = dense_ref(x.reshape(3, -1), weight, bias)
    _check(_run_gpu(gpu, Dense(weight, bias), x), expected, TOL_DENSE)


@pytest.mark.parametrize(("kernel", "stride"), [((2, 3), None), ((3, 2), (2, 1))])
def test_avg_pool2d(gpu: GpuDevice, kernel, stride) -> None:
    x = _rng(6).standard_normal((2, 9, 7, 6), dtype=np.float32)
    expected = avg_pool2d_ref(x, kernel, stride)
    _check(_run_gpu(gpu, AvgPool2d(kernel, stride), x), expected, TOL_AVG_POOL)


def test_global_avg_pool(gpu: GpuDevice) -> None:
    x = _rng(7).standard_normal((3, 7, 5, 10), dtype=np.float32)
    _check(_run_gpu(gpu, GlobalAvgPool(), x), global_avg_pool_ref(x), TOL_GLOBAL_POOL)


def test_softmax(gpu: GpuDevice) -> None:
    x = 30.0 * _rng(8).standard_normal((5, 13), dtype=np.float32)  # large logits: needs the max
    _check(_run_gpu(gpu, Softmax(), x), softmax_ref(x), TOL_SOFTMAX)


def test_sigmoid(gpu: GpuDevice) -> None:
    x = 40.0 * _rng(9).standard_normal((7, 6), dtype=np.float32)
    x[0, :3] = [-1000.0, 0.0, 1000.0]  # no overflow at the extremes
    _check(_run_gpu(gpu, Sigmoid(), x), sigmoid_ref(x), TOL_SIGMOID)


# --- numpy references against naive float64 loops ---------------------------------------------


def _conv_naive(x, weight, bias, stride, padding, depthwise=False):
    x = np.pad(x.astype(np.float64), ((0, 0), (padding[0],) * 2, (padding[1],) * 2, (0, 0)))
    kh, kw = weight.shape[:2]
    out_h = (x.shape[1] - kh) // stride[0] + 1
    out_w = (x.shape[2] - kw) // stride[1] + 1
    out_c = x.shape[3] if depthwise else weight.shape[3]
    out = np.zeros((x.shape[0], out_h, out_w, out_c))
    for b, i, j, o in itertools.product(*map(range, out.shape)):
        total = float(bias[o])
        for ky, kx in itertools.product(range(kh), range(kw)):
            pixel = x[b, i * stride[0] + ky, j * stride[1] + kx]
            if depthwise:
                total += pixel[o] * weight[ky, kx, o]
            else:
                total += sum(pixel[c] * weight[ky, kx, c, o] for c in range(x.shape[3]))
        out[b, i, j, o] = total
    return out


def test_conv2d_ref_matches_loops() -> None:
    rng = _rng(10)
    x = rng.standard_normal((2, 6, 5, 3))
    weight, bias = rng.standard_normal((3, 2, 3, 4)), rng.standard_normal(4)
    for stride, padding in [((1, 1), (0, 0)), ((2, 1), (1, 2))]:
        expected = _conv_naive(x, weight, bias, stride, padding)
        np.testing.assert_allclose(
            conv2d_ref(x, weight, bias, stride, padding), expected, *TOL_REFERENCE
        )


def test_depthwise_conv2d_ref_matches_loops() -> None:
    rng = _rng(11)
    x = rng.standard_normal((2, 6, 5, 3))
    weight, bias = rng.standard_normal((3, 2, 3)), rng.standard_normal(3)
    for stride, padding in [((1, 1), (1, 1)), ((2, 2), (0, 1))]:
        expected = _conv_naive(x, weight, bias, stride, padding, depthwise=True)
        actual = depthwise_conv2d_ref(x, weight, bias, stride, padding)
        np.testing.assert_allclose(actual, expected, *TOL_REFERENCE)


def test_pointwise_and_dense_ref_match_loops() -> None:
    rng = _rng(12)
    x = rng.standard_normal((2, 3, 4, 5))
    weight, bias = rng.standard_normal((5, 6)), rng.standard_normal(6)
    expected = np.zeros((2, 3, 4, 6))
    for b, i, j, o in itertools.product(*map(range, expected.shape)):
        expected[b, i, j, o] = bias[o] + sum(x[b, i, j, c] * weight[c, o] for c in range(5))
    np.testing.assert_allclose(pointwise_conv2d_ref(x, weight, bias), expected, *TOL_REFERENCE)
    rows = x.reshape(-1, 5)
    np.testing.assert_allclose(
        dense_ref(rows, weight, bias), expected.reshape(-1, 6), *TOL_REFERENCE
    )


def test_pooling_refs_match_loops() -> None:
    x = _rng(13).standard_normal((2, 5, 7, 3))
    expected = np.zeros((2, 2, 3, 3))
    for b, i, j, c in itertools.product(*map(range, expected.shape)):
        expected[b, i, j, c] = np.mean(
            [x[b, 2 * i + u, 2 * j + v, c] for u in (0, 1) for v in (0, 1, 2)]
        )
    np.testing.assert_allclose(avg_pool2d_ref(x, (2, 3), (2, 2)), expected, *TOL_REFERENCE)
    means = [[sum(x[b, :, :, c].ravel()) / 35 for c in range(3)] for b in range(2)]
    np.testing.assert_allclose(global_avg_pool_ref(x), means, *TOL_REFERENCE)


def test_activation_refs_match_loops() -> None:
    x = 10.0 * _rng(14).standard_normal((3, 5))
    softmax = [[math.exp(v) / sum(math.exp(u) for u in row) for v in row] for row in x]
    np.testing.assert_allclose(softmax_ref(x), softmax, *TOL_REFERENCE)
    sigmoid = [[1.0 / (1.0 + math.exp(-v)) for v in row] for row in x]
    np.testing.assert_allclose(sigmoid_ref(x), sigmoid, *TOL_REFERENCE)
    np.testing.assert_array_equal(relu_ref(x), np.where(x > 0, x, 0.0).astype(np.float32))
    assert np.all(np.isfinite(sigmoid_ref(np.array([-1e4, 1e4]))))


def test_fold_batchnorm_matches_batchnorm_after_conv() -> None:
    rng = _rng(15)
    x = rng.standard_normal((2, 6, 5, 3))
    weight, bias = rng.standard_normal((3, 3, 3, 4)), rng.standard_normal(4)
    bn = {
        "gamma": rng.uniform(0.5, 2, 4),
        "beta": rng.standard_normal(4),
        "mean": rng.standard_normal(4),
        "var": rng.uniform(0.1, 2, 4),
    }
    eps = 1e-3
    conv = _conv_naive(x, weight, bias, (1, 1), (1, 1))
    expected = bn["gamma"] * (conv - bn["mean"]) / np.sqrt(bn["var"] + eps) + bn["beta"]
    folded_w, folded_b = fold_batchnorm(weight, bias, **bn, eps=eps)
    assert folded_w.dtype == np.float32 and folded_b.dtype == np.float32
    actual = conv2d_ref(x, folded_w, folded_b, (1, 1), (1, 1))
    np.testing.assert_allclose(actual, expected, *TOL_REFERENCE)


def test_template_unrolls_and_rolls_loops() -> None:
    text = "a = ${N};\n//! unroll i 2\n//! unroll j ${M}\nf({i}, {j});\n//! end\n//! end\n"
    unrolled = render(text, {"N": 7, "M": 2})
    assert unrolled.split("\n")[:5] == [
        "a = 7u;",
        "f(0u, 0u);",
        "f(0u, 1u);",
        "f(1u, 0u);",
        "f(1u, 1u);",
    ]
    rolled = render(text, {"N": 7, "M": 2}, rolled={"j"})
    assert "for (var j: u32 = 0u; j < 2u; j++) {" in rolled
    assert "f(1u, j);" in rolled
    with pytest.raises(KeyError, match="NOPE"):
        render("${NOPE}", {})
    with pytest.raises(ValueError, match="without '//! end'"):
        render("//! unroll i 2\n", {})
