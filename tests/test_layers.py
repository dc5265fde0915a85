"""Training layers, losses and optimizers against trusted references.

Every backward pass (input gradient and every parameter gradient) and both losses are checked
against float64 central finite differences of ``sum(forward(x) * upstream)`` on small, untidy
shapes. The tolerance is on the max-norm relative error,
``max|analytic - numeric| / max(max|analytic|, max|numeric|)`` < `GRAD_RTOL`: with a step of
1e-6 in float64 the truncation error is ~1e-12 and the rounding error ~1e-10, so 1e-6 leaves
room without letting a wrong gradient (error ~1) through.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from kernels.errors import ModelError
from kernels.network import RELU, Sigmoid, Softmax, run_numpy
from kernels.ops.conv2d import conv2d_ref
from kernels.ops.depthwise_conv2d import depthwise_conv2d_ref
from models.nn.layers import (
    BatchNorm,
    Conv2d,
    Dense,
    DepthwiseConv2d,
    Dropout,
    GlobalAvgPool,
    Layer,
    PointwiseConv2d,
    ReLU,
    Sequential,
    to_inference,
)
from models.nn.losses import binary_cross_entropy_with_logits, softmax_cross_entropy
from models.nn.optim import SGD, Adam, cosine_with_warmup

GRAD_RTOL = 1e-6
FD_STEP = 1e-6
PARITY_TOL = 1e-5  # float32 inference network vs the float32 training model


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def numeric_grad(loss: Callable[[], float], array: np.ndarray) -> np.ndarray:
    """Central differences of ``loss()`` with respect to every element of ``array`` (in place)."""
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        original = array[index]
        array[index] = original + FD_STEP
        plus = loss()
        array[index] = original - FD_STEP
        minus = loss()
        array[index] = original
        grad[index] = (plus - minus) / (2 * FD_STEP)
    return grad


def rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    scale = max(np.abs(analytic).max(), np.abs(numeric).max(), 1e-12)
    return float(np.abs(analytic - numeric).max() / scale)


def check_gradients(
    layer: Layer | Sequential,
    x: np.ndarray,
    *,
    training: bool = True,
    reset: Callable[[], None] = lambda: None,
) -> None:
    """Compare every analytic gradient of ``layer`` with finite differences, in float64."""
    layer.astype(np.float64)
    x = x.astype(np.float64)
    reset()
    upstream = _rng(99).standard_normal(layer.forward(x, training=training).shape)

    def loss() -> float:
        reset()
        return float(np.sum(layer.forward(x, training=training) * upstream))

    reset()
    layer.forward(x, training=training)
    grad_x = layer.backward(upstream)
    assert grad_x.shape == x.shape
    assert grad_x.dtype == np.float64
    assert rel_error(grad_x, numeric_grad(loss, x)) < GRAD_RTOL
    named = (
        list(layer.parameters())
        if isinstance(layer, Sequential)
        else [(key, value, layer.grads[key]) for key, value in layer.params.items()]
    )
    analytic = {name: grad.copy() for name, _, grad in named}
    for name, param, _ in named:
        error = rel_error(analytic[name], numeric_grad(loss, param))
        assert error < GRAD_RTOL, f"{name}: relative error {error:.2e}"


def away_from_zero(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    """Random values with |v| in [0.1, 1]: no ReLU kink within a finite-difference step."""
    rng = _rng(seed)
    return rng.uniform(0.1, 1.0, shape) * rng.choice([-1.0, 1.0], shape)


CONV_CASES = [
    # (x shape, out_c, kernel, stride, padding, bias)
    ((2, 13, 7, 3), 4, (10, 4), (2, 2), (4, 1), True),
    ((2, 5, 6, 2), 3, (3, 1), (1, 2), (1, 0), True),
    ((3, 5, 4, 2), 2, (1, 3), (2, 1), (0, 2), True),
    ((2, 8, 5, 3), 3, (3, 3), (2, 2), (0, 1), False),
    # stride 1: the depthwise input gradient is a correlation with the flipped kernel ...
    ((2, 6, 5, 3), 2, (3, 1), (1, 1), (1, 0), True),
    ((2, 7, 6, 2), 3, (2, 3), (1, 1), (0, 2), True),
    # ... unless the padding exceeds kernel - 1
    ((2, 4, 5, 2), 2, (1, 3), (1, 1), (1, 1), True),
]


@pytest.mark.parametrize(("shape", "out_c", "kernel", "stride", "padding", "bias"), CONV_CASES)
def test_conv2d_gradients(shape, out_c, kernel, stride, padding, bias) -> None:
    layer = Conv2d(shape[3], out_c, kernel, stride, padding, bias, rng=_rng())
    if bias:
        layer.params["bias"][:] = _rng(2).standard_normal(out_c)
    check_gradients(layer, _rng(1).standard_normal(shape))


@pytest.mark.parametrize(("shape", "_", "kernel", "stride", "padding", "bias"), CONV_CASES)
def test_depthwise_conv2d_gradients(shape, _, kernel, stride, padding, bias) -> None:
    layer = DepthwiseConv2d(shape[3], kernel, stride, padding, bias, rng=_rng())
    check_gradients(layer, _rng(1).standard_normal(shape))


@pytest.mark.parametrize(("shape", "_", "kernel", "stride", "padding", "bias"), CONV_CASES)
def test_convolutions_match_the_inference_references(
    shape, _, kernel, stride, padding, bias
) -> None:
    x = _rng(1).standard_normal(shape).astype(np.float32)
    conv = Conv2d(shape[3], 5, kernel, stride, padding, bias, rng=_rng())
    depthwise = DepthwiseConv2d(shape[3], kernel, stride, padding, bias, rng=_rng())
    for layer, ref in ((conv, conv2d_ref), (depthwise, depthwise_conv2d_ref)):
        weight = layer.params["weight"]
        bias_value = layer.params.get("bias", np.zeros(weight.shape[-1], np.float32))
        out = layer.forward(x, training=False)
        expected = ref(x, weight, bias_value, stride, padding)
        assert out.shape == expected.shape
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_depthwise_conv2d_gradients_across_batch_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("models.nn.conv_ops.CHUNK_VALUES", 40)  # a few items per chunk
    layer = DepthwiseConv2d(2, (3, 3), (2, 1), (1, 1), rng=_rng())
    check_gradients(layer, _rng(1).standard_normal((5, 7, 4, 2)))


@pytest.mark.parametrize("bias", [True, False])
def test_pointwise_conv2d_gradients(bias: bool) -> None:
    layer = PointwiseConv2d(3, 4, bias, rng=_rng())
    check_gradients(layer, _rng(1).standard_normal((2, 3, 5, 3)))


@pytest.mark.parametrize(("shape", "in_f"), [((4, 6), 6), ((3, 2, 3, 2), 12)])
def test_dense_gradients(shape: tuple[int, ...], in_f: int) -> None:
    layer = Dense(in_f, 5, rng=_rng())
    layer.params["bias"][:] = _rng(2).standard_normal(5)
    check_gradients(layer, _rng(1).standard_normal(shape))


@pytest.mark.parametrize("shape", [(3, 4, 5, 3), (5, 4)])
def test_batchnorm_gradients(shape: tuple[int, ...]) -> None:
    layer = BatchNorm(shape[-1])
    rng = _rng(2)
    layer.params["gamma"][:] = rng.uniform(0.5, 2.0, shape[-1])
    layer.params["beta"][:] = rng.standard_normal(shape[-1])
    layer.buffers["running_var"][:] = rng.uniform(0.5, 2.0, shape[-1])
    check_gradients(layer, 3 + 2 * _rng(1).standard_normal(shape))


def test_batchnorm_statistics() -> None:
    layer = BatchNorm(3, momentum=0.25)
    x = 5 + 2 * _rng(1).standard_normal((6, 4, 5, 3))
    out = layer.forward(x, training=True)
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 1, atol=1e-3)
    rows = x.reshape(-1, 3)
    expected_mean = 0.25 * rows.mean(axis=0)
    expected_var = 0.75 + 0.25 * rows.var(axis=0, ddof=1)
    np.testing.assert_allclose(layer.buffers["running_mean"], expected_mean, rtol=1e-5)
    np.testing.assert_allclose(layer.buffers["running_var"], expected_var, rtol=1e-5)
    gamma, beta = layer.params["gamma"], layer.params["beta"]
    gamma[:], beta[:] = [0.5, 1.0, 2.0], [0.1, 0.2, 0.3]
    running_mean, running_var = layer.buffers["running_mean"], layer.buffers["running_var"]
    inference = layer.forward(x, training=False)
    expected = gamma * (x - running_mean) / np.sqrt(running_var + layer.eps) + beta
    np.testing.assert_allclose(inference, expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ModelError, match="at least 2"):
        layer.forward(np.zeros((1, 3), np.float32), training=True)


def test_relu_global_avg_pool_and_dropout_gradients() -> None:
    check_gradients(ReLU(), away_from_zero((2, 3, 4, 5)))
    check_gradients(GlobalAvgPool(), _rng(1).standard_normal((2, 3, 5, 4)))
    dropout = Dropout(0.3, rng=_rng())

    def reseed() -> None:
        dropout.rng = _rng(5)

    check_gradients(dropout, _rng(1).standard_normal((4, 5)), reset=reseed)


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: Conv2d(2, 3, (3, 1), rng=rng),
        lambda rng: DepthwiseConv2d(2, (1, 3), padding=(0, 1), rng=rng),
        lambda rng: PointwiseConv2d(2, 3, rng=rng),
        lambda rng: Dense(40, 3, rng=rng),
        lambda rng: BatchNorm(2),
    ],
)
def test_backward_sets_rather_than_accumulates(make) -> None:
    layer = make(_rng())
    x = _rng(1).standard_normal((2, 5, 4, 2)).astype(np.float32)
    grad_out = _rng(2).standard_normal(layer.forward(x, training=True).shape).astype(np.float32)
    layer.backward(grad_out)
    first = {key: grad.copy() for key, grad in layer.grads.items()}
    layer.backward(grad_out)
    for key, grad in layer.grads.items():
        np.testing.assert_array_equal(grad, first[key], err_msg=key)


def test_backward_before_forward_is_an_error() -> None:
    with pytest.raises(ModelError, match="forward"):
        Dense(3, 2, rng=_rng()).backward(np.zeros((1, 2)))


def test_dropout_preserves_the_expected_value_and_is_reproducible() -> None:
    x = np.ones((200, 500), np.float32)
    out = Dropout(0.3, rng=_rng(7)).forward(x, training=True)
    assert out.dtype == np.float32
    assert abs(float(np.mean(out == 0)) - 0.3) < 0.01
    assert abs(float(out.mean()) - 1.0) < 0.01
    np.testing.assert_allclose(out[out != 0], 1 / 0.7, rtol=1e-6)
    np.testing.assert_array_equal(out, Dropout(0.3, rng=_rng(7)).forward(x, training=True))
    assert Dropout(0.3, rng=_rng(7)).forward(x, training=False) is x
    with pytest.raises(ModelError, match="Dropout.p"):
        Dropout(1.0, rng=_rng())


def small_model(rng: np.random.Generator, dropout: float = 0.2, bias: bool = False) -> Sequential:
    """A DS-CNN in miniature; ``bias`` gives the layers before a batch norm a bias (which the
    norm makes redundant: its gradient is zero, which a relative error cannot check)."""
    return Sequential(
        [
            Conv2d(1, 4, (3, 2), stride=(2, 1), padding=(1, 0), bias=bias, rng=rng),
            BatchNorm(4),
            ReLU(),
            DepthwiseConv2d(4, (3, 3), padding=(1, 1), bias=bias, rng=rng),
            BatchNorm(4),
            ReLU(),
            PointwiseConv2d(4, 5, bias=bias, rng=rng),
            BatchNorm(5),
            ReLU(),
            GlobalAvgPool(),
            Dense(5, 6, bias=bias, rng=rng),
            BatchNorm(6),
            ReLU(),
            Dropout(dropout, rng=rng),
            Dense(6, 3, rng=rng, init="lecun"),
        ]
    )


def randomise(model: Sequential, seed: int = 3) -> Sequential:
    """Give every parameter and batch-norm statistic a non-trivial value."""
    rng = _rng(seed)
    for layer in model:
        for key, value in layer.params.items():
            if key == "gamma":
                value[...] = rng.uniform(0.5, 1.5, value.shape)
            elif key in ("beta", "bias"):
                value[...] = 0.1 * rng.standard_normal(value.shape)
        if isinstance(layer, BatchNorm):
            layer.buffers["running_mean"][:] = 0.2 * rng.standard_normal(layer.c)
            layer.buffers["running_var"][:] = rng.uniform(0.5, 2.0, layer.c)
    return model


def test_whole_model_gradients() -> None:
    model = randomise(small_model(_rng(), dropout=0.0))
    check_gradients(model, _rng(1).standard_normal((4, 9, 6, 1)))


def test_backward_params_sets_the_same_gradients_as_backward() -> None:
    model = randomise(small_model(_rng(), dropout=0.0))
    x = _rng(1).standard_normal((4, 9, 6, 1)).astype(np.float32)
    grad_out = np.ones_like(model.forward(x, training=True))
    model.backward(grad_out)
    expected = {name: grad.copy() for name, _, grad in model.parameters()}
    for _, _, grad in model.parameters():
        grad[...] = np.nan
    model.backward_params(grad_out)
    for name, _, grad in model.parameters():
        np.testing.assert_array_equal(grad, expected[name], err_msg=name)


def test_state_dict_round_trip() -> None:
    source, target = randomise(small_model(_rng(0))), small_model(_rng(1))
    params_before = [param for _, param, _ in target.parameters()]
    state = source.state_dict()
    assert "1.running_var" in state and "0.weight" in state and "0.bias" not in state
    target.load_state_dict(state)
    assert all(a is b for a, (_, b, _) in zip(params_before, target.parameters(), strict=True))
    x = _rng(2).standard_normal((3, 9, 6, 1)).astype(np.float32)
    np.testing.assert_array_equal(
        target.forward(x, training=False), source.forward(x, training=False)
    )
    with pytest.raises(ModelError, match=r"missing \['1.gamma'\]"):
        target.load_state_dict({k: v for k, v in state.items() if k != "1.gamma"})
    with pytest.raises(ModelError, match=r"unexpected \['99.weight'\]"):
        target.load_state_dict({**state, "99.weight": np.zeros(1)})
    with pytest.raises(ModelError, match=r"'0.weight'.*shape"):
        target.load_state_dict({**state, "0.weight": np.zeros((3, 2, 1, 5))})


def test_to_inference_matches_the_model_in_inference_mode() -> None:
    model = randomise(small_model(_rng(), bias=True))
    x = _rng(2).standard_normal((5, 9, 6, 1)).astype(np.float32)
    network = to_inference(model, (9, 6, 1))
    assert len(network.layers) == 6  # conv, depthwise, pointwise, pool, dense, dense
    relu = [getattr(spec, "activation", None) == RELU for spec in network.layers]
    assert relu == [True, True, True, False, True, False]
    out = run_numpy(network, x)
    expected = model.forward(x, training=False)
    assert out.shape == expected.shape
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=PARITY_TOL, atol=PARITY_TOL)
    assert isinstance(to_inference(model, (9, 6, 1), output="softmax").layers[-1], Softmax)
    assert isinstance(to_inference(model, (9, 6, 1), output="sigmoid").layers[-1], Sigmoid)


def ds_cnn(rng: np.random.Generator) -> Sequential:
    """The DS-CNN of the speed note: 10x4 stride-2 conv, four depthwise blocks, two dense."""
    layers: list[Layer] = [
        Conv2d(1, 32, (10, 4), stride=(2, 2), padding=(4, 1), rng=rng),
        BatchNorm(32),
        ReLU(),
        DepthwiseConv2d(32, (3, 3), stride=(2, 2), padding=(1, 1), rng=rng),
        BatchNorm(32),
        ReLU(),
        PointwiseConv2d(32, 64, rng=rng),
        BatchNorm(64),
        ReLU(),
    ]
    for _ in range(3):
        layers += [DepthwiseConv2d(64, (3, 3), padding=(1, 1), rng=rng), BatchNorm(64), ReLU()]
        layers += [PointwiseConv2d(64, 64, rng=rng), BatchNorm(64), ReLU()]
    layers += [GlobalAvgPool(), Dense(64, 96, rng=rng), BatchNorm(96), ReLU()]
    return Sequential([*layers, Dropout(0.1, rng=rng), Dense(96, 12, rng=rng, init="lecun")])


def test_to_inference_matches_a_full_size_ds_cnn() -> None:
    model = randomise(ds_cnn(_rng()))
    x = _rng(2).standard_normal((2, 97, 40, 1)).astype(np.float32)
    network = to_inference(model, (97, 40, 1))
    assert network.shapes[1] == (48, 20, 32)
    np.testing.assert_allclose(
        run_numpy(network, x), model.forward(x, training=False), rtol=PARITY_TOL, atol=PARITY_TOL
    )


@pytest.mark.parametrize(
    "layers",
    [
        lambda rng: [BatchNorm(1), Conv2d(1, 2, (3, 3), rng=rng)],
        lambda rng: [Conv2d(1, 2, (3, 3), rng=rng), GlobalAvgPool(), ReLU()],
        lambda rng: [Conv2d(1, 2, (3, 3), rng=rng), ReLU(), BatchNorm(2)],
    ],
)
def test_to_inference_rejects_what_it_cannot_fold(layers) -> None:
    with pytest.raises(ModelError, match="cannot export"):
        to_inference(Sequential(layers(_rng())), (9, 6, 1))


@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_cross_entropy(weighted: bool) -> None:
    rng = _rng(4)
    logits = rng.standard_normal((7, 5))
    labels = np.array([0, 4, 2, 2, 1, 3, 4])
    weights = rng.uniform(0.2, 3.0, 5) if weighted else None
    loss, grad = softmax_cross_entropy(logits, labels, weights)
    w = np.ones(5) if weights is None else weights
    log_prob = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    nll = -log_prob[np.arange(7), labels]
    assert loss == pytest.approx(np.sum(w[labels] * nll) / np.sum(w[labels]), rel=1e-12)
    numeric = numeric_grad(lambda: softmax_cross_entropy(logits, labels, weights)[0], logits)
    assert rel_error(grad, numeric) < GRAD_RTOL


def test_softmax_cross_entropy_is_stable_and_checks_labels() -> None:
    loss, grad = softmax_cross_entropy(np.array([[1000.0, -1000.0, 0.0]]), np.array([1]))
    assert loss == pytest.approx(2000.0)
    assert np.all(np.isfinite(grad))
    assert softmax_cross_entropy(np.zeros((2, 4)), np.array([0, 3]))[0] == pytest.approx(np.log(4))
    with pytest.raises(ModelError, match=r"labels: got values in \[0, 4\], expected \[0, 4\)"):
        softmax_cross_entropy(np.zeros((2, 4)), np.array([0, 4]))


@pytest.mark.parametrize("pos_weight", [None, 3.0])
def test_binary_cross_entropy_with_logits(pos_weight: float | None) -> None:
    logits = _rng(5).standard_normal(9) * 3
    targets = np.array([1, 0, 0, 1, 1, 0, 1, 0, 0], np.float64)
    loss, grad = binary_cross_entropy_with_logits(logits, targets, pos_weight)
    p = 1.0 if pos_weight is None else pos_weight
    prob = 1 / (1 + np.exp(-logits))
    naive = -np.mean(p * targets * np.log(prob) + (1 - targets) * np.log(1 - prob))
    assert loss == pytest.approx(naive, rel=1e-12)
    numeric = numeric_grad(
        lambda: binary_cross_entropy_with_logits(logits, targets, pos_weight)[0], logits
    )
    assert rel_error(grad, numeric) < GRAD_RTOL
    big_loss, big_grad = binary_cross_entropy_with_logits(np.array([800.0, -800.0]), [0, 1])
    assert big_loss == pytest.approx(800.0)
    np.testing.assert_allclose(big_grad, [0.5, -0.5])


def one_param(value: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array(value, np.float64), np.zeros((len(value), len(value[0])))


def test_sgd_steps_by_hand() -> None:
    param, grad = one_param([[1.0, -2.0]])
    bias, bias_grad = np.array([0.5]), np.array([1.0])
    sgd = SGD([("w", param, grad), ("b", bias, bias_grad)], lr=0.1, momentum=0.9, weight_decay=0.5)
    grad[:] = [[0.2, 0.4]]
    sgd.step()  # v = g + 0.5 p = [0.7, -0.6]; p -= 0.1 v; bias: no decay, v = 1
    np.testing.assert_allclose(param, [[0.93, -1.94]])
    np.testing.assert_allclose(bias, [0.4])
    grad[:] = [[0.0, 0.0]]
    sgd.step()  # v = 0.9 [0.7, -0.6] + 0.5 [0.93, -1.94] = [1.095, -1.51]
    np.testing.assert_allclose(param, [[0.93 - 0.1095, -1.94 + 0.151]])


def test_adam_steps_by_hand() -> None:
    param, grad = one_param([[1.0, -2.0, 3.0]])
    adam = Adam([("w", param, grad)], lr=0.01, weight_decay=0.1)
    grad[:] = [[0.5, -0.25, 0.0]]
    adam.step()  # p *= 1 - 0.001; bias-corrected m / sqrt(v) = sign(g); g = 0 stays put
    np.testing.assert_allclose(param, [[0.999 - 0.01, -1.998 + 0.01, 2.997]], rtol=1e-7)
    grad[:] = [[0.5, 0.25, 0.0]]
    before = param.copy()
    adam.step()  # m = 0.19 g1 + 0.1 g2 over 0.19; v likewise with 0.999 and 0.001
    m = (0.9 * 0.1 * np.array([0.5, -0.25]) + 0.1 * np.array([0.5, 0.25])) / (1 - 0.9**2)
    v = (0.999 * 0.001 * np.array([0.25, 0.0625]) + 0.001 * np.array([0.25, 0.0625])) / (
        1 - 0.999**2
    )
    expected = before[0, :2] * (1 - 0.001) - 0.01 * m / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(param[0, :2], expected, rtol=1e-7)


def test_adam_minimises_a_quadratic() -> None:
    target = np.array([[3.0, -1.0], [0.5, 2.0]])
    param = np.zeros((2, 2))
    grad = np.zeros((2, 2))
    adam = Adam([("w", param, grad)], lr=0.1)
    for step in range(500):
        adam.lr = cosine_with_warmup(step, total_steps=500, peak_lr=0.1, warmup_steps=20)
        grad[...] = 2 * (param - target)
        adam.step()
    np.testing.assert_allclose(param, target, atol=1e-3)


@pytest.mark.parametrize("make", [lambda p: SGD(p, lr=0.05, momentum=0.9), lambda p: Adam(p)])
def test_optimizer_resumes_exactly(make) -> None:
    x = _rng(2).standard_normal((6, 9, 6, 1)).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 1, 2])

    def train_step(model: Sequential, optimizer) -> None:
        _, grad = softmax_cross_entropy(model.forward(x, training=True), labels)
        model.backward(grad)
        optimizer.step()

    first = small_model(_rng(0), dropout=0.0)
    first_opt = make(first.parameters())
    for _ in range(3):
        train_step(first, first_opt)
    second = small_model(_rng(1), dropout=0.0)
    second_opt = make(second.parameters())
    second.load_state_dict(first.state_dict())
    second_opt.load_state_dict(first_opt.state_dict())
    train_step(first, first_opt)
    train_step(second, second_opt)
    for (name, a, _), (_, b, _) in zip(first.parameters(), second.parameters(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    with pytest.raises(ModelError, match="missing"):
        second_opt.load_state_dict({"lr": np.asarray(0.1)})


def test_cosine_with_warmup() -> None:
    def lr(step: int) -> float:
        return cosine_with_warmup(step, total_steps=110, peak_lr=1.0, warmup_steps=10, final_lr=0.1)

    assert lr(0) == pytest.approx(0.1)
    assert lr(9) == pytest.approx(1.0)
    assert lr(10) == pytest.approx(1.0)
    assert lr(60) == pytest.approx(0.55)
    assert lr(110) == pytest.approx(0.1)
    assert lr(500) == pytest.approx(0.1)
    with pytest.raises(ModelError, match="warmup_steps"):
        cosine_with_warmup(0, total_steps=5, peak_lr=1.0, warmup_steps=6)
