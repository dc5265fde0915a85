"""The ops an imported ONNX speech-embedding network needs: convolutions with dilation, groups and
asymmetric padding, max pooling, and the fused epilogue (leaky ReLU, then a clamp).

Each numpy reference is checked against a naive float64 loop (or np.where / np.clip), each WGSL
kernel against its reference, and a whole network shaped like the speech-embedding one (20
convolutions, LeakyRelu(0.2) then Max(x, c) after each but the last, max pooling between) runs on
both engines. Sizes are not multiples of the vec4 quad, the workgroup or the register tiles.
"""

from __future__ import annotations

import itertools
import math
import typing

import numpy as np
import pytest

from kernels.device import GpuDevice
from kernels.errors import ModelError
from kernels.gpu_network import WgpuNetwork, plan_layer
from kernels.network import (
    IDENTITY,
    RELU,
    Activation,
    AvgPool2d,
    Conv2d,
    Dense,
    DepthwiseConv2d,
    Layer,
    MaxPool2d,
    Network,
    PointwiseConv2d,
    Sigmoid,
    Softmax,
    run_numpy,
)
from kernels.ops.activation import FLOAT32_MAX, activation_overrides, activation_ref
from kernels.ops.conv2d import conv2d_ref
from kernels.ops.depthwise_conv2d import depthwise_conv2d_ref
from kernels.ops.layout import conv_output_size, pads4
from kernels.ops.linear import dense_ref, pointwise_conv2d_ref
from kernels.ops.pooling import avg_pool2d_ref, max_pool2d_ref
from kernels.ops.softmax import softmax_ref

# (rtol, atol) per kernel.
TOL_CONV2D = (1e-5, 1e-5)
TOL_DEPTHWISE = (1e-5, 1e-5)
TOL_LINEAR = (1e-5, 1e-5)
TOL_POOL = (1e-6, 1e-6)
TOL_MAX_POOL = (0.0, 0.0)  # a maximum is exact
TOL_REFERENCE = (1e-5, 1e-5)  # float32 reference against float64 loops
NETWORK_REL_TOL = 1e-4
"""Largest |wgpu - numpy| of the whole network, relative to max |numpy output|."""

LEAKY_MAX = Activation(slope=0.2, low=-0.1)  # LeakyRelu(0.2), then Max(x, -0.1)
EPILOGUES = [
    LEAKY_MAX,
    Activation(slope=0.2, low=-0.3, high=0.8),
    Activation(slope=-0.5),  # a negative slope, no clamp
    Activation(high=0.5),  # identity, clamped above only
    Activation(slope=0.0, low=0.1, high=0.6),  # ReLU, then clamped
]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _normal(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


def _run_gpu(gpu: GpuDevice, layer: Layer, x: np.ndarray) -> np.ndarray:
    network = Network(input_shape=x.shape[1:], layers=(layer,))
    return WgpuNetwork(network, gpu, batch_size=x.shape[0]).run(x)


def _check(actual: np.ndarray, expected: np.ndarray, tol: tuple[float, float]) -> None:
    assert actual.shape == expected.shape
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=tol[0], atol=tol[1])


# --- numpy references against naive float64 loops ---------------------------------------------


def _conv_loops(x, weight, bias, stride, padding, dilation, groups=1, depthwise=False):
    """Direct convolution in float64: every output, tap and channel in Python loops."""
    top, left, bottom, right = padding
    x = np.pad(x.astype(np.float64), ((0, 0), (top, bottom), (left, right), (0, 0)))
    kh, kw = weight.shape[:2]
    out_c = x.shape[3] if depthwise else weight.shape[3]
    group_in = 1 if depthwise else weight.shape[2]
    group_out = 1 if depthwise else out_c // groups
    out_h = (x.shape[1] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (x.shape[2] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((x.shape[0], out_h, out_w, out_c))
    for b, i, j, o in itertools.product(*map(range, out.shape)):
        total = float(bias[o])
        for ky, kx, c in itertools.product(range(kh), range(kw), range(group_in)):
            pixel = x[b, i * stride[0] + ky * dilation[0], j * stride[1] + kx * dilation[1]]
            if depthwise:
                total += pixel[o] * weight[ky, kx, o]
            else:
                total += pixel[(o // group_out) * group_in + c] * weight[ky, kx, c, o]
        out[b, i, j, o] = total
    return out


@pytest.mark.parametrize(
    ("x_shape", "kernel", "out_c", "stride", "padding", "dilation", "groups"),
    [
        ((2, 6, 5, 3), (3, 3), 4, (1, 1), (0, 1, 0, 1), (1, 1), 1),  # the first layer's padding
        ((1, 9, 8, 4), (3, 2), 6, (2, 1), (2, 0, 1, 3), (2, 2), 2),
        ((2, 7, 9, 6), (2, 3), 9, (1, 2), (1, 2), (1, 3), 3),
    ],
)
def test_conv2d_ref_matches_loops(x_shape, kernel, out_c, stride, padding, dilation, groups):
    rng = _rng(20)
    x = rng.standard_normal(x_shape)
    weight = rng.standard_normal((*kernel, x_shape[3] // groups, out_c))
    bias = rng.standard_normal(out_c)
    expected = _conv_loops(x, weight, bias, stride, pads4(padding), dilation, groups)
    actual = conv2d_ref(x, weight, bias, stride, padding, dilation, groups)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, *TOL_REFERENCE)


def test_depthwise_conv2d_ref_matches_loops() -> None:
    rng = _rng(21)
    x = rng.standard_normal((2, 9, 7, 3))
    weight, bias = rng.standard_normal((3, 2, 3)), rng.standard_normal(3)
    for stride, padding, dilation in [((1, 1), (0, 2, 1, 0), (2, 3)), ((2, 1), (1, 1), (3, 1))]:
        expected = _conv_loops(x, weight, bias, stride, pads4(padding), dilation, depthwise=True)
        actual = depthwise_conv2d_ref(x, weight, bias, stride, padding, dilation)
        np.testing.assert_allclose(actual, expected, *TOL_REFERENCE)


def test_grouped_conv2d_ref_equals_separate_convolutions() -> None:
    """Groups are independent convolutions over channel slices, concatenated."""
    rng = _rng(22)
    x, weight = _normal(rng, 2, 8, 7, 6), _normal(rng, 3, 3, 2, 9)
    parts = [
        conv2d_ref(x[..., 2 * g : 2 * g + 2], weight[..., 3 * g : 3 * g + 3], None, (1, 1), (1, 1))
        for g in range(3)
    ]
    actual = conv2d_ref(x, weight, None, (1, 1), (1, 1), groups=3)
    np.testing.assert_allclose(actual, np.concatenate(parts, axis=-1), *TOL_REFERENCE)


def test_conv_output_size_with_dilation_and_asymmetric_padding() -> None:
    assert conv_output_size(10, 3, 1, (0, 0), dilation=2) == 6  # the window spans 5
    assert conv_output_size(10, 3, 2, (2, 1), dilation=2) == 5
    assert conv_output_size(32, 3, 1, 1) == 32
    assert pads4((1, 2)) == (1, 2, 1, 2)
    assert pads4((0, 1, 2, 3)) == (0, 1, 2, 3)
    with pytest.raises(ValueError, match="spanning 5"):
        conv_output_size(4, 3, 1, 0, dilation=2)


@pytest.mark.parametrize(
    ("x_shape", "kernel", "stride"), [((2, 5, 7, 3), (2, 2), None), ((1, 4, 9, 2), (1, 2), (1, 2)),
                                      ((2, 7, 6, 3), (3, 2), (2, 1))],
)  # fmt: skip
def test_max_pool2d_ref_matches_loops(x_shape, kernel, stride) -> None:
    x = _rng(23).standard_normal(x_shape)
    step = kernel if stride is None else stride
    out_h = (x_shape[1] - kernel[0]) // step[0] + 1
    out_w = (x_shape[2] - kernel[1]) // step[1] + 1
    expected = np.zeros((x_shape[0], out_h, out_w, x_shape[3]))
    for b, i, j, c in itertools.product(*map(range, expected.shape)):
        expected[b, i, j, c] = max(
            x[b, i * step[0] + u, j * step[1] + v, c]
            for u in range(kernel[0])
            for v in range(kernel[1])
        )
    actual = max_pool2d_ref(x, kernel, stride)
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, *TOL_REFERENCE)


@pytest.mark.parametrize("activation", [IDENTITY, RELU, *EPILOGUES])
def test_activation_ref_matches_where_and_clip(activation: Activation) -> None:
    x = 2.0 * _normal(_rng(24), 7, 13)
    leaky = np.where(x >= 0, x, np.float32(activation.slope) * x)
    expected = np.clip(leaky, np.float32(activation.low), np.float32(activation.high))
    actual = activation_ref(x, activation)
    assert actual.dtype == np.float32
    np.testing.assert_array_equal(actual, expected)
    scratch = x.copy()
    assert activation_ref(scratch, activation, inplace=True) is scratch
    np.testing.assert_array_equal(scratch, expected)
    np.testing.assert_array_equal(x, 2.0 * _normal(_rng(24), 7, 13))  # not in place: x kept


def test_activation_overrides_replace_infinite_bounds() -> None:
    assert activation_overrides(IDENTITY) == {
        "SLOPE": 1.0, "CLAMP": 0.0, "LOW": -FLOAT32_MAX, "HIGH": FLOAT32_MAX,
    }  # fmt: skip
    assert activation_overrides(LEAKY_MAX) == {
        "SLOPE": 0.2, "CLAMP": 1.0, "LOW": -0.1, "HIGH": FLOAT32_MAX,
    }  # fmt: skip
    assert RELU == Activation(slope=0.0) and not RELU.clamps


# --- WGSL kernels against the numpy references -------------------------------------------------


@pytest.mark.parametrize(
    ("x_shape", "kernel", "out_c", "stride", "padding", "dilation", "groups"),
    [
        ((2, 13, 11, 1), (3, 3), 6, (1, 1), (0, 1, 0, 1), (1, 1), 1),  # the first layer's shape
        ((1, 9, 10, 5), (1, 3), 7, (1, 1), (0, 1), (1, 1), 1),  # 1x3, padded along width
        ((2, 11, 9, 5), (3, 3), 10, (1, 2), (2, 1, 0, 3), (2, 2), 1),  # dilation 2, asymmetric
        ((1, 9, 11, 4), (3, 3), 6, (1, 2), (1, 1), (2, 1), 2),  # groups 2
        ((2, 13, 10, 6), (3, 2), 9, (2, 1), (2, 0, 1, 3), (2, 2), 3),  # groups 3
        ((2, 7, 9, 70), (3, 3), 10, (1, 1), (1, 2, 0, 1), (2, 2), 2),  # conv2d_tiled, groups 2
        ((2, 9, 8, 7), (3, 3), 7, (1, 1), (1, 0, 2, 1), (2, 1), 7),  # depthwise as groups
    ],
)
def test_conv2d_geometry(gpu: GpuDevice, x_shape, kernel, out_c, stride, padding, dilation, groups):
    rng = _rng(30)
    x = _normal(rng, *x_shape)
    group_in = x_shape[3] // groups
    weight = _normal(rng, *kernel, group_in, out_c) / np.float32(np.sqrt(kernel[0] * kernel[1]))
    bias = _normal(rng, out_c)
    layer = Conv2d(
        weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups,
        activation=LEAKY_MAX,
    )  # fmt: skip
    pre = conv2d_ref(x, weight, bias, stride, padding, dilation, groups)
    _check(_run_gpu(gpu, layer, x), activation_ref(pre, LEAKY_MAX), TOL_CONV2D)


def test_depthwise_groups_run_on_the_depthwise_kernel() -> None:
    layer = Conv2d(np.ones((3, 3, 1, 7)), np.zeros(7), padding=(1, 1), groups=7)
    launches = plan_layer(layer, (9, 8, 7), (9, 8, 7), 1, 64 * 1024).launches
    assert [launch.kernel for launch in launches] == ["depthwise_conv2d"]
    grouped = Conv2d(np.ones((3, 3, 2, 6)), np.zeros(6), padding=(1, 1), groups=3)
    launches = plan_layer(grouped, (9, 8, 6), (9, 8, 6), 1, 64 * 1024).launches
    assert [launch.kernel for launch in launches] == ["conv2d_patch"]


@pytest.mark.parametrize(
    ("x_shape", "kernel", "stride", "padding", "dilation"),
    [
        ((2, 10, 9, 6), (3, 3), (1, 1), (0, 2, 1, 1), (2, 2)),
        ((1, 11, 13, 67), (3, 2), (2, 1), (1, 0, 0, 1), (1, 3)),  # channels past a 64-tile
    ],
)
def test_depthwise_conv2d_geometry(gpu: GpuDevice, x_shape, kernel, stride, padding, dilation):
    rng = _rng(31)
    x = _normal(rng, *x_shape)
    weight, bias = _normal(rng, *kernel, x_shape[3]), _normal(rng, x_shape[3])
    layer = DepthwiseConv2d(
        weight, bias, stride=stride, padding=padding, dilation=dilation, activation=LEAKY_MAX
    )
    pre = depthwise_conv2d_ref(x, weight, bias, stride, padding, dilation)
    _check(_run_gpu(gpu, layer, x), activation_ref(pre, LEAKY_MAX), TOL_DEPTHWISE)


@pytest.mark.parametrize(
    ("x_shape", "kernel", "stride"),
    [
        ((2, 9, 7, 6), (2, 2), None),  # MaxPool 2x2 stride 2, odd sizes
        ((3, 5, 9, 10), (1, 2), (1, 2)),  # MaxPool 1x2 stride (1, 2)
        ((2, 8, 8, 3), (3, 3), (2, 1)),  # overlapping windows
        ((1, 14, 4, 72), (2, 2), None),
    ],
)
def test_max_pool2d(gpu: GpuDevice, x_shape, kernel, stride) -> None:
    x = _normal(_rng(32), *x_shape) - np.float32(3.0)  # mostly negative: no zero sneaks in
    expected = max_pool2d_ref(x, kernel, stride)
    _check(_run_gpu(gpu, MaxPool2d(kernel, stride), x), expected, TOL_MAX_POOL)


@pytest.mark.parametrize("activation", EPILOGUES)
def test_epilogue_on_every_layer_that_has_one(gpu: GpuDevice, activation: Activation) -> None:
    rng = _rng(33)
    x = _normal(rng, 3, 7, 6, 5)
    conv_w, dw_w = _normal(rng, 3, 2, 5, 6) / np.float32(4.0), _normal(rng, 3, 3, 5)
    pw_w, dense_w = _normal(rng, 5, 9) / np.float32(2.0), _normal(rng, 7 * 6 * 5, 11) / 15
    wide_w = _normal(rng, 522, 70) / np.float32(20.0)  # runs on the dense kernel
    bias = {n: _normal(rng, n) for n in (5, 6, 9, 11, 70)}
    cases: list[tuple[Layer, np.ndarray, np.ndarray, tuple[float, float]]] = [
        (
            Conv2d(conv_w, bias[6], padding=(1, 0, 0, 1), activation=activation),
            x, conv2d_ref(x, conv_w, bias[6], (1, 1), (1, 0, 0, 1)), TOL_CONV2D,
        ),
        (
            DepthwiseConv2d(dw_w, bias[5], padding=(1, 1), activation=activation),
            x, depthwise_conv2d_ref(x, dw_w, bias[5], (1, 1), (1, 1)), TOL_DEPTHWISE,
        ),
        (
            PointwiseConv2d(pw_w, bias[9], activation=activation),
            x, pointwise_conv2d_ref(x, pw_w, bias[9]), TOL_LINEAR,
        ),
        (
            Dense(dense_w, bias[11], activation=activation),
            x, dense_ref(x.reshape(3, -1), dense_w, bias[11]), TOL_LINEAR,
        ),
        (AvgPool2d((2, 3), (1, 2), activation=activation), x, avg_pool2d_ref(x, (2, 3), (1, 2)),
         TOL_POOL),
    ]  # fmt: skip
    wide_x = _normal(rng, 1, 2, 3, 522)
    wide = PointwiseConv2d(wide_w, bias[70], activation=activation)
    cases.append((wide, wide_x, pointwise_conv2d_ref(wide_x, wide_w, bias[70]), TOL_LINEAR))
    for layer, inputs, pre, tol in cases:
        _check(_run_gpu(gpu, layer, inputs), activation_ref(pre, activation), tol)


def test_max_pool_then_softmax_and_sigmoid(gpu: GpuDevice) -> None:
    rng = _rng(34)
    x = _normal(rng, 5, 9, 7, 3)
    for head in (Softmax(), Sigmoid()):
        network = Network(
            input_shape=(9, 7, 3),
            layers=(
                Conv2d(_normal(rng, 3, 3, 3, 6) / 5, _normal(rng, 6), padding=(0, 1, 0, 1),
                       activation=LEAKY_MAX),
                MaxPool2d((2, 2)),
                Dense(_normal(rng, 3 * 3 * 6, 7) / 6, _normal(rng, 7)),
                head,
            ),
        )  # fmt: skip
        expected = run_numpy(network, x)
        assert expected.shape == (5, 7)
        if isinstance(head, Softmax):
            np.testing.assert_allclose(expected.sum(axis=1), 1.0, rtol=1e-6)
        actual = WgpuNetwork(network, gpu, batch_size=2).run(x)
        _check(actual, expected, (1e-5, 1e-6))
    np.testing.assert_allclose(softmax_ref(np.zeros((1, 4))), 0.25)


# --- the layer specs ---------------------------------------------------------------------------


def test_layer_union_and_specs() -> None:
    assert MaxPool2d in typing.get_args(Layer)
    conv = Conv2d(np.zeros((3, 3, 2, 6)), np.zeros(6), padding=(0, 1, 2, 3), groups=3)
    assert conv.pads == (0, 1, 2, 3) and conv.padding == (0, 1, 2, 3)
    assert conv.output_shape((9, 8, 6)) == (9 - 2 + 2, 8 - 2 + 4, 6)
    assert conv.flops((9, 8, 6)) == 2 * 9 * 10 * 6 * 3 * 3 * 2
    symmetric = DepthwiseConv2d(np.zeros((3, 3, 4)), np.zeros(4), padding=(1, 2), dilation=(2, 1))
    assert symmetric.padding == (1, 2) and symmetric.pads == (1, 2, 1, 2)
    assert symmetric.output_shape((9, 8, 4)) == (9 + 2 - 5 + 1, 8 + 4 - 3 + 1, 4)
    pool = MaxPool2d((1, 2), (1, 2))
    assert pool.output_shape((5, 9, 3)) == (5, 4, 3)
    assert pool.flops((5, 9, 3)) == 5 * 4 * 3 * 2
    assert MaxPool2d((2, 2)).step == (2, 2)
    assert Dense(np.zeros((3, 2)), np.zeros(2)).activation == IDENTITY


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Conv2d(np.zeros((3, 3, 2, 6)), np.zeros(6), groups=4),
         r"Conv2d\.groups: got 4, expected an integer >= 1 that divides the 6 output channels"),
        (lambda: Conv2d(np.zeros((3, 3, 2, 6)), np.zeros(6), groups=0), r"Conv2d\.groups: got 0"),
        (lambda: Conv2d(np.zeros((3, 3, 2, 6)), np.zeros(6), padding=(1, 2, 3)),
         r"Conv2d\.padding: got \(1, 2, 3\), expected \(rows, columns\) or \(top, left"),
        (lambda: Conv2d(np.zeros((3, 3, 2, 6)), np.zeros(6), padding=(0, -1)),
         r"Conv2d\.padding: got \(0, -1\)"),
        (lambda: Conv2d(np.zeros((3, 3, 2, 6)), np.zeros(6), dilation=(0, 1)),
         r"Conv2d\.dilation: got \(0, 1\), expected two integers >= 1"),
        (lambda: DepthwiseConv2d(np.zeros((3, 3, 2)), np.zeros(2), stride=(1,)),
         r"DepthwiseConv2d\.stride: got \(1,\), expected two integers >= 1"),
        (lambda: Conv2d(np.zeros((3, 3, 2, 6)), np.zeros(6), activation=True),
         r"Conv2d\.activation: got True, expected a kernels\.network\.Activation"),
        (lambda: AvgPool2d((2, 2), activation="relu"), r"AvgPool2d\.activation: got 'relu'"),
        (lambda: MaxPool2d((0, 2)), r"MaxPool2d\.kernel: got \(0, 2\), expected two integers"),
        (lambda: MaxPool2d((2, 2), (2, 2.5)), r"MaxPool2d\.stride: got \(2, 2\.5\)"),
        (lambda: Activation(slope=math.nan), r"Activation\.slope: got nan, expected a finite"),
        (lambda: Activation(slope="leaky"), r"Activation\.slope: got 'leaky', expected a number"),
        (lambda: Activation(low=1.0, high=0.0), r"Activation\.low: got 1\.0 above high 0\.0"),
        (lambda: Activation(high=1e39), r"Activation\.high: got 1e\+39, expected inf or a float32"),
    ],
)  # fmt: skip
def test_bad_layer_settings_are_named(build, message) -> None:
    with pytest.raises(ModelError, match=message):
        build()


def test_shape_errors_name_the_layer() -> None:
    grouped = Conv2d(np.zeros((3, 3, 2, 6)), np.zeros(6), groups=3)
    with pytest.raises(ModelError, match=r"Conv2d: got 4 input channels, weight expects 6 \(3 "):
        Network((9, 9, 4), (grouped,))
    with pytest.raises(ModelError, match=r"MaxPool2d: input shape \(1, 5, 3\): kernel: got 2"):
        Network((1, 5, 3), (MaxPool2d((2, 2)),))
    dilated = Conv2d(np.zeros((3, 1, 1, 2)), np.zeros(2), dilation=(3, 1))
    with pytest.raises(ModelError, match="spanning 7, expected at most the padded input size 6"):
        Network((6, 4, 1), (dilated,))
