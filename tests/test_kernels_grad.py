"""Per-kernel parity of the training kernels, and checks of their numpy references.

Each WGSL training kernel runs through `kernels.gpu_program.GpuProgram` on seeded inputs and is
compared with its reference beside it in `kernels.ops`. Sizes are not multiples of the workgroup
(8 to 64), and the reductions run over more rows than one chunk (`REDUCE_CHUNK`), so the two-pass
path is covered. The references are checked against the models' numpy layers (themselves
gradient-checked in float64 by tests/test_layers.py) and by adjoint identities
(<A x, g> = <x, A^T g>) for the linear ops.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from kernels.device import GpuDevice
from kernels.gpu_program import GpuProgram
from kernels.launch import Launch, Slice, whole
from kernels.ops.activation import dropout_ref, elementwise, relu_backward_ref
from kernels.ops.adam import adam, adam_hyper, adam_ref
from kernels.ops.batch_norm import (
    BatchNormSlices,
    batch_norm_backward,
    batch_norm_backward_ref,
    batch_norm_forward,
    batch_norm_forward_ref,
)
from kernels.ops.column_sum import REDUCE_CHUNK, column_sum, column_sum_ref, splits
from kernels.ops.conv2d import (
    conv2d_forward,
    conv2d_input_grad,
    conv2d_input_grad_ref,
    conv2d_ref,
    conv2d_weight_grad,
    conv2d_weight_grad_ref,
)
from kernels.ops.depthwise_conv2d import (
    depthwise_conv2d_ref,
    depthwise_forward,
    depthwise_input_grad,
    depthwise_input_grad_ref,
    depthwise_weight_grad,
    depthwise_weight_grad_ref,
)
from kernels.ops.layout import ConvShape
from kernels.ops.linear import linear_forward, linear_input_grad, linear_weight_grad, matmul_ref
from kernels.ops.pooling import (
    global_avg_pool,
    global_avg_pool_grad,
    global_avg_pool_grad_ref,
    global_avg_pool_ref,
)
from kernels.ops.softmax import LossSlices, softmax_cross_entropy, softmax_cross_entropy_ref

# (rtol, atol) per kernel: float32 sums in another order than numpy's.
TOL_CONV = (1e-4, 1e-5)
TOL_CONV_WEIGHT_GRAD = (1e-4, 1e-4)  # sums over thousands of positions
TOL_MATMUL = (1e-4, 1e-5)
TOL_COLUMN_SUM = (1e-5, 1e-5)
TOL_BATCH_NORM = (1e-4, 1e-5)
TOL_ELEMENTWISE = (1e-6, 1e-7)
TOL_POOL = (1e-5, 1e-6)
TOL_LOSS = (1e-5, 1e-7)
TOL_ADAM = (1e-5, 1e-7)
TOL_REFERENCE = (1e-4, 1e-5)  # references against the models' layers and adjoint identities
SCRATCH = "scratch"
Runner = Callable[..., dict[str, np.ndarray]]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _normal(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


def _run(
    gpu: GpuDevice,
    inputs: dict[str, np.ndarray],
    outputs: dict[str, int],
    make_ops: Callable[[Callable[[str], Slice]], list[Launch]],
    uniforms: frozenset[str] = frozenset(),
) -> dict[str, np.ndarray]:
    """Run ``make_ops(slice_of)`` over one buffer per array; return every buffer's contents."""
    sizes = {name: array.size for name, array in inputs.items()} | outputs
    ops = make_ops(lambda name: whole(name, sizes[name]))
    program = GpuProgram(gpu, sizes, ops, uniforms=uniforms)
    for name, array in inputs.items():
        program.write(name, np.ascontiguousarray(array).ravel())
    program.run()
    return {name: program.read(name) for name in sizes if name not in uniforms}


def _check(actual: np.ndarray, expected: np.ndarray, tol: tuple[float, float]) -> None:
    actual = actual[: expected.size].reshape(expected.shape)
    assert actual.shape == expected.shape
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=tol[0], atol=tol[1])


@dataclass(frozen=True)
class ConvOp:
    """The training launch builders of one convolution op."""

    forward: Callable[..., Launch]
    input_grad: Callable[..., Launch]
    weight_grad: Callable[..., list[Launch]]


CONV_OPS = {
    False: ConvOp(conv2d_forward, conv2d_input_grad, conv2d_weight_grad),
    True: ConvOp(
        depthwise_forward,
        depthwise_input_grad,
        depthwise_weight_grad,
    ),
}
REFERENCES = {  # depthwise -> (forward, input gradient, weight gradient)
    False: (conv2d_ref, conv2d_input_grad_ref, conv2d_weight_grad_ref),
    True: (
        depthwise_conv2d_ref,
        depthwise_input_grad_ref,
        depthwise_weight_grad_ref,
    ),
}
CONV_CASES = [
    # (x shape, kernel, out_c, stride, padding)
    ((2, 13, 11, 3), (3, 2), 6, (2, 1), (1, 1)),
    ((3, 21, 9, 1), (10, 4), 5, (2, 2), (4, 1)),  # the base network's first layer
    ((5, 30, 17, 2), (3, 3), 3, (1, 1), (1, 1)),  # 2550 positions: a two-pass weight gradient
    ((2, 7, 8, 5), (4, 5), 7, (3, 2), (2, 0)),
    ((3, 19, 10, 8), (3, 3), 12, (2, 2), (1, 1)),  # channels in quads: vectorised depthwise
]


@pytest.mark.parametrize("depthwise", [False, True])
@pytest.mark.parametrize(("x_shape", "kernel", "out_c", "stride", "padding"), CONV_CASES)
def test_conv_kernels(gpu: GpuDevice, depthwise, x_shape, kernel, out_c, stride, padding) -> None:
    rng = _rng(1)
    batch, height, width, in_c = x_shape
    out_c = in_c if depthwise else out_c
    shape = ConvShape(batch, height, width, in_c, out_c, kernel, stride, padding)
    w_shape = (*kernel, in_c) if depthwise else (*kernel, in_c, out_c)
    x, weight, bias = _normal(rng, *x_shape), _normal(rng, *w_shape), _normal(rng, out_c)
    grad_out = _normal(rng, batch, *shape.out_hw, out_c)
    n_weights = weight.size
    scratch = splits(shape.positions) * n_weights

    op = CONV_OPS[depthwise]

    def ops(s: Callable[[str], Slice]) -> list[Launch]:
        return [
            op.forward(shape, s("x"), s("w"), s("b"), s("y")),
            op.forward(shape, s("x"), s("w"), None, s("y0")),
            op.input_grad(shape, s("g"), s("w"), s("dx")),
            *op.weight_grad(shape, s("x"), s("g"), s("dw"), s(SCRATCH)),
        ]

    out_size = grad_out.size
    sizes = {"y": out_size, "y0": out_size, "dx": x.size, "dw": n_weights, SCRATCH: scratch}
    got = _run(gpu, {"x": x, "w": weight, "b": bias, "g": grad_out}, sizes, ops)
    forward, input_grad, weight_grad = REFERENCES[depthwise]
    _check(got["y"], forward(x, weight, bias, stride, padding), TOL_CONV)
    _check(got["y0"], forward(x, weight, None, stride, padding), TOL_CONV)
    _check(got["dx"], input_grad(grad_out, weight, x_shape, stride, padding), TOL_CONV)
    expected_dw = weight_grad(x, grad_out, kernel, stride, padding)
    _check(got["dw"], expected_dw, TOL_CONV_WEIGHT_GRAD)


@pytest.mark.parametrize(("rows", "fin", "fout"), [(2 * 9 * 17, 13, 7), (5, 37, 11), (3, 1, 1)])
def test_matmul_linear_layers(gpu: GpuDevice, rows, fin, fout) -> None:
    rng = _rng(2)
    x, weight, bias = _normal(rng, rows, fin), _normal(rng, fin, fout), _normal(rng, fout)
    grad_out = _normal(rng, rows, fout)
    dims = dict(rows=rows, fin=fin, fout=fout)

    def ops(s: Callable[[str], Slice]) -> list[Launch]:
        return [
            linear_forward(s("x"), s("w"), s("b"), s("y"), **dims),
            linear_input_grad(s("g"), s("w"), s("dx"), **dims),
            *linear_weight_grad(s("x"), s("g"), s("dw"), s(SCRATCH), **dims),
        ]

    sizes = {"y": rows * fout, "dx": x.size, "dw": weight.size, SCRATCH: splits(rows) * fin * fout}
    got = _run(gpu, {"x": x, "w": weight, "b": bias, "g": grad_out}, sizes, ops)
    _check(got["y"], matmul_ref(x, weight, bias), TOL_MATMUL)
    _check(got["dx"], matmul_ref(grad_out, weight.T), TOL_MATMUL)
    _check(got["dw"], matmul_ref(x.T, grad_out), TOL_CONV_WEIGHT_GRAD)


@pytest.mark.parametrize(("rows", "cols", "chunk"), [(700, 5, 256), (13, 3, 13), (1, 4, 1)])
def test_column_sum(gpu: GpuDevice, rows, cols, chunk) -> None:
    x = _normal(_rng(3), rows, cols)
    parts = math.ceil(rows / chunk)

    def ops(s: Callable[[str], Slice]) -> list[Launch]:
        return [column_sum(s("x"), rows, cols, s("out"), chunk, scale=0.5)]

    got = _run(gpu, {"x": x}, {"out": parts * cols}, ops)
    _check(got["out"], column_sum_ref(x, chunk, 0.5), TOL_COLUMN_SUM)


def _bn_slices(s: Callable[[str], Slice]) -> BatchNormSlices:
    return BatchNormSlices(
        gamma=s("gamma"), beta=s("beta"), running_mean=s("rmean"), running_var=s("rvar"),
        stats=s("stats"), grad_gamma=s("dgamma"), grad_beta=s("dbeta"),
    )  # fmt: skip


@pytest.mark.parametrize("x_shape", [(3, 11, 9, 7), (5, 6), (2, 300), (4, 9, 10, 12)])
def test_batch_norm(gpu: GpuDevice, x_shape) -> None:
    rng = _rng(4)
    c = x_shape[-1]
    rows = math.prod(x_shape[:-1])
    x = 3.0 + 2.0 * _normal(rng, *x_shape)  # an offset mean: the variance comes from centred values
    gamma, beta, grad_out = _normal(rng, c), _normal(rng, c), _normal(rng, *x_shape)
    running_mean, running_var = _normal(rng, c), 1.0 + rng.random(c, dtype=np.float32)
    momentum, eps = 0.1, 1e-5

    def ops(s: Callable[[str], Slice]) -> list[Launch]:
        bn = _bn_slices(s)
        dims = dict(rows=rows, c=c)
        return [
            *batch_norm_forward(s("x"), s("y"), bn, s(SCRATCH), momentum=momentum, eps=eps, **dims),
            *batch_norm_backward(s("g"), s("x"), s("dx"), bn, s(SCRATCH), **dims),
        ]

    inputs = {
        "x": x, "gamma": gamma, "beta": beta, "rmean": running_mean, "rvar": running_var,
        "g": grad_out,
    }  # fmt: skip
    sizes = {"y": x.size, "dx": x.size, "stats": 4 * c, "dgamma": c, "dbeta": c}
    got = _run(gpu, inputs, sizes | {SCRATCH: splits(rows) * 2 * c}, ops)
    y, mean, inv_std, new_mean, new_var = batch_norm_forward_ref(
        x, gamma, beta, running_mean, running_var, momentum=momentum, eps=eps
    )
    _check(got["y"], y, TOL_BATCH_NORM)
    _check(got["stats"][:c], mean, TOL_BATCH_NORM)
    _check(got["stats"][c : 2 * c], inv_std, TOL_BATCH_NORM)
    _check(got["rmean"], new_mean, TOL_BATCH_NORM)
    _check(got["rvar"], new_var, TOL_BATCH_NORM)
    dx, dgamma, dbeta = batch_norm_backward_ref(grad_out, x, mean, inv_std, gamma)
    _check(got["dx"], dx, TOL_BATCH_NORM)
    _check(got["dgamma"], dgamma, TOL_BATCH_NORM)
    _check(got["dbeta"], dbeta, TOL_BATCH_NORM)


@pytest.mark.parametrize("shape", [(3, 7, 5, 6), (2, 5, 3, 8)])  # scalar and vec4 paths
def test_elementwise_and_pooling(gpu: GpuDevice, shape) -> None:
    rng = _rng(5)
    x, grad_out = _normal(rng, *shape), _normal(rng, *shape)
    mask = (rng.random(x.shape) >= 0.3).astype(np.float32) / np.float32(0.7)
    batch, height, width, c = shape
    pooled_grad = _normal(rng, batch, c)
    y = np.maximum(x, 0)
    n = x.size
    dims = dict(batch=batch, positions=height * width, c=c)

    def ops(s: Callable[[str], Slice]) -> list[Launch]:
        return [
            elementwise("relu", (s("x"),), s("relu"), n),
            elementwise("relu_backward", (s("g"), s("y")), s("relu_grad"), n),
            elementwise("dropout", (s("x"), s("mask")), s("dropout"), n),
            global_avg_pool(s("x"), s("pool"), **dims),
            global_avg_pool_grad(s("pg"), s("pool_grad"), **dims),
        ]

    inputs = {"x": x, "g": grad_out, "y": y, "mask": mask, "pg": pooled_grad}
    sizes = {"relu": n, "relu_grad": n, "dropout": n, "pool": batch * c, "pool_grad": n}
    got = _run(gpu, inputs, sizes, ops)
    _check(got["relu"], np.maximum(x, 0), TOL_ELEMENTWISE)
    _check(got["relu_grad"], relu_backward_ref(grad_out, y), TOL_ELEMENTWISE)
    _check(got["dropout"], dropout_ref(x, mask), TOL_ELEMENTWISE)
    _check(got["pool"], global_avg_pool_ref(x), TOL_POOL)
    _check(got["pool_grad"], global_avg_pool_grad_ref(pooled_grad, x.shape), TOL_POOL)


@pytest.mark.parametrize(("batch", "classes"), [(5, 13), (REDUCE_CHUNK + 45, 7)])
def test_softmax_cross_entropy(gpu: GpuDevice, batch, classes) -> None:
    rng = _rng(6)
    logits = 10.0 * _normal(rng, batch, classes)  # large logits: needs the max shift
    labels = rng.integers(0, classes, batch).astype(np.uint32)
    weights = rng.random(classes, dtype=np.float32) + 0.1

    def ops(s: Callable[[str], Slice]) -> list[Launch]:
        loss = LossSlices(s("labels"), s("weights"), s("rows"), s("totals"), s("result"))
        return softmax_cross_entropy(
            s("logits"), s("grad"), loss, s(SCRATCH), batch=batch, classes=classes
        )

    inputs = {"logits": logits, "labels": labels, "weights": weights}
    sizes = {"grad": logits.size, "rows": 3 * batch, "totals": 3, "result": 2}
    got = _run(gpu, inputs, sizes | {SCRATCH: 3 * splits(batch)}, ops)
    loss, grad, correct = softmax_cross_entropy_ref(logits, labels.astype(np.int64), weights)
    _check(got["grad"], grad, TOL_LOSS)
    np.testing.assert_allclose(got["result"][0], loss, rtol=TOL_LOSS[0])
    assert got["result"][1] == correct


@pytest.mark.parametrize("decay", [False, True])
def test_adam(gpu: GpuDevice, decay: bool) -> None:
    rng = _rng(7)
    n = 1000
    param, grad = _normal(rng, n), 1e-3 * _normal(rng, n)
    exp_avg, exp_avg_sq = 1e-3 * _normal(rng, n), 1e-6 * rng.random(n, dtype=np.float32)
    grad[:3] = 0.0  # zero gradients: the update is then m / (sqrt(v) + eps) of the old moments
    hyper: dict[str, Any] = dict(step=3, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)

    def ops(s: Callable[[str], Slice]) -> list[Launch]:
        return [adam(s("p"), s("g"), s("m"), s("v"), s("hyper"), decay=decay)]

    inputs = {
        "p": param, "g": grad, "m": exp_avg, "v": exp_avg_sq,
        "hyper": np.asarray(adam_hyper(**hyper), np.float32),
    }  # fmt: skip
    got = _run(gpu, inputs, {}, ops, uniforms=frozenset({"hyper"}))
    expected = adam_ref(param, grad, exp_avg, exp_avg_sq, decay=decay, **hyper)
    for name, value in zip(("p", "m", "v"), expected, strict=True):
        _check(got[name], value, TOL_ADAM)


# --- the references against the models' numpy layers and adjoint identities --------------------


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a.astype(np.float64).ravel(), b.astype(np.float64).ravel()))


@pytest.mark.parametrize(("x_shape", "kernel", "out_c", "stride", "padding"), CONV_CASES)
def test_conv_references_are_adjoints(x_shape, kernel, out_c, stride, padding) -> None:
    rng = _rng(10)
    for depthwise in (False, True):
        c = x_shape[3]
        w_shape = (*kernel, c) if depthwise else (*kernel, c, out_c)
        x, weight = _normal(rng, *x_shape), _normal(rng, *w_shape)
        forward, input_grad, weight_grad = REFERENCES[depthwise]
        y = forward(x, weight, None, stride, padding)
        g = _normal(rng, *y.shape)
        dx = input_grad(g, weight, x_shape, stride, padding)
        dw = weight_grad(x, g, kernel, stride, padding)
        # y is linear in x and in weight: <y, g> = <x, dx> = <weight, dw>.
        np.testing.assert_allclose(_dot(x, dx), _dot(y, g), *TOL_REFERENCE)
        np.testing.assert_allclose(_dot(weight, dw), _dot(y, g), *TOL_REFERENCE)


def test_references_match_the_models_layers() -> None:
    from models.nn.layers import BatchNorm, Conv2d, DepthwiseConv2d

    rng = _rng(11)
    x = _normal(rng, 3, 12, 9, 4)
    conv = Conv2d(4, 5, (3, 2), stride=(2, 1), padding=(1, 1), rng=rng)
    conv.params["bias"][...] = _normal(rng, 5)
    y = conv.forward(x, training=True)
    g = _normal(rng, *y.shape)
    w, b = conv.params["weight"], conv.params["bias"]
    np.testing.assert_allclose(conv2d_ref(x, w, b, (2, 1), (1, 1)), y, *TOL_REFERENCE)
    dx = conv.backward(g)
    np.testing.assert_allclose(
        conv2d_input_grad_ref(g, w, x.shape, (2, 1), (1, 1)), dx, *TOL_REFERENCE
    )
    np.testing.assert_allclose(
        conv2d_weight_grad_ref(x, g, (3, 2), (2, 1), (1, 1)), conv.grads["weight"],
        *TOL_REFERENCE,
    )  # fmt: skip
    depthwise = DepthwiseConv2d(4, (3, 3), stride=(2, 2), padding=(1, 1), bias=False, rng=rng)
    y = depthwise.forward(x, training=True)
    g = _normal(rng, *y.shape)
    w = depthwise.params["weight"]
    np.testing.assert_allclose(depthwise_conv2d_ref(x, w, None, (2, 2), (1, 1)), y, 1e-5)
    np.testing.assert_allclose(
        depthwise_input_grad_ref(g, w, x.shape, (2, 2), (1, 1)), depthwise.backward(g),
        *TOL_REFERENCE,
    )  # fmt: skip
    np.testing.assert_allclose(
        depthwise_weight_grad_ref(x, g, (3, 3), (2, 2), (1, 1)), depthwise.grads["weight"],
        *TOL_REFERENCE,
    )  # fmt: skip
    norm = BatchNorm(4)
    norm.params["gamma"][...] = _normal(rng, 4)
    norm.params["beta"][...] = _normal(rng, 4)
    running = norm.buffers["running_mean"].copy(), norm.buffers["running_var"].copy()
    y = norm.forward(x, training=True)
    ref_y, mean, inv_std, new_mean, new_var = batch_norm_forward_ref(
        x, norm.params["gamma"], norm.params["beta"], *running, momentum=norm.momentum,
        eps=norm.eps,
    )  # fmt: skip
    np.testing.assert_allclose(ref_y, y, *TOL_REFERENCE)
    np.testing.assert_allclose(new_mean, norm.buffers["running_mean"], *TOL_REFERENCE)
    np.testing.assert_allclose(new_var, norm.buffers["running_var"], *TOL_REFERENCE)
    g = _normal(rng, *x.shape)
    dx, dgamma, dbeta = batch_norm_backward_ref(g, x, mean, inv_std, norm.params["gamma"])
    np.testing.assert_allclose(dx, norm.backward(g), *TOL_REFERENCE)
    np.testing.assert_allclose(dgamma, norm.grads["gamma"], *TOL_REFERENCE)
    np.testing.assert_allclose(dbeta, norm.grads["beta"], *TOL_REFERENCE)


def test_loss_and_adam_references_match_the_models() -> None:
    from models.nn.losses import softmax_cross_entropy as model_loss
    from models.nn.optim import Adam

    rng = _rng(12)
    logits = 5.0 * _normal(rng, 9, 6)
    labels = rng.integers(0, 6, 9)
    weights = rng.random(6, dtype=np.float32) + 0.1
    loss, grad, correct = softmax_cross_entropy_ref(logits, labels, weights)
    expected_loss, expected_grad = model_loss(logits, labels, weights)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-6)
    np.testing.assert_allclose(grad, expected_grad, *TOL_REFERENCE)
    assert correct == int(np.sum(np.argmax(logits, axis=1) == labels))
    weight, bias = _normal(rng, 4, 3), _normal(rng, 3)
    grads = [_normal(rng, 4, 3), _normal(rng, 3)]
    optimizer = Adam(
        [("w", weight.copy(), grads[0]), ("b", bias.copy(), grads[1])], lr=0.01, weight_decay=0.1
    )
    state = {"w": (weight, np.zeros_like(weight), np.zeros_like(weight)),
             "b": (bias, np.zeros_like(bias), np.zeros_like(bias))}  # fmt: skip
    for step in (1, 2):
        optimizer.step()
        for (name, param, grad_), decay in zip(optimizer.params, (True, False), strict=True):
            state[name] = adam_ref(
                state[name][0], grad_, state[name][1], state[name][2], step=step, lr=0.01,
                betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, decay=decay,
            )  # fmt: skip
            np.testing.assert_allclose(state[name][0], param, rtol=1e-6, atol=1e-7)


def test_a_kernel_that_fails_to_compile_raises_device_error_naming_it(gpu: GpuDevice) -> None:
    from kernels.errors import DeviceError

    op = elementwise("relu", (whole("x", 4),), whole("y", 4), 4)
    broken = Launch(op.kernel, {**op.constants, "VEC": "not a type"}, op.bindings, op.invocations)
    with pytest.raises(DeviceError, match="kernel 'relu'"):
        GpuProgram(gpu, {"x": 4, "y": 4}, [broken])
