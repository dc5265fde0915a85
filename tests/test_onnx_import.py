"""`earshot model import`: ONNX graphs become networks that numpy and wgpu run as onnxruntime does.

Every supported op is checked on a small graph built here with `onnx.helper`, against onnxruntime
(the independent reference) on the numpy path and on the wgpu engine (lavapipe in CI). The shipped
speech embedding is checked against its source graph on real audio windows. Unsupported ops,
branches and broken files fail with a message naming the node, and write nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from kernels.errors import ModelError
from kernels.network import Network, run_numpy
from tests.conftest import IN_CI, REPO, require, run_earshot


def _module(name: str):
    """A test dependency (the bench extra): skipped outside CI when missing, an error in CI."""
    try:
        return importlib.import_module(name)
    except ImportError:
        if IN_CI:
            raise
        pytest.skip(f"{name} is not installed", allow_module_level=True)


onnx = _module("onnx")
ort = _module("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from models.nn.onnx_import import ImportFailed, import_onnx  # noqa: E402

TOL = 1e-4
"""Largest difference allowed, as a fraction of the reference output's largest magnitude."""
EMBEDDING_SHA256 = "70d164290c1d095d1d4ee149bc5e00543250a7316b59f31d056cff7bd3075c1f"


def wheel_model(name: str) -> Path:
    """A model file of the openwakeword wheel the bench extra installs."""
    spec = importlib.util.find_spec("openwakeword")
    require(spec is not None and spec.origin is not None, "openwakeword is not installed")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "resources" / "models" / name


def save(tmp_path: Path, nodes, input_shape, output_shape, inits=(), name="g") -> Path:
    """A one-input graph as an ONNX file (opset 13)."""
    graph = helper.make_graph(
        list(nodes), name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *input_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *output_shape])],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def reference(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape and actual.dtype == np.float32
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOL * scale)


def check_parity(path: Path, x: np.ndarray, gpu=None) -> Network:
    """The import of ``path`` against onnxruntime on ``x`` (NCHW or [N, F]), numpy and wgpu."""
    imported = import_onnx(path)
    network = imported.network
    expected = reference(path, x)
    ours = np.ascontiguousarray(x.transpose(0, 2, 3, 1) if x.ndim == 4 else x)  # NHWC
    assert_close(imported.as_graph_output(run_numpy(network, ours)), expected)
    if gpu is not None:
        from kernels.gpu_network import WgpuNetwork

        engine = WgpuNetwork(network, gpu, batch_size=x.shape[0])
        assert_close(imported.as_graph_output(engine.run(ours)), expected)
    return network


rng = np.random.default_rng(7)


def w(*shape: int, scale: float = 0.3) -> np.ndarray:
    return rng.normal(0, scale, shape).astype(np.float32)


# --- every op against onnxruntime ---------------------------------------------------------------


@pytest.mark.gpu
def test_convolutions_with_dilation_groups_and_asymmetric_padding(tmp_path: Path, gpu) -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 2], strides=[1, 2],
                         dilations=[2, 1], pads=[1, 0, 2, 1], group=1, name="dilated"),
        helper.make_node("BatchNormalization", ["c1", "g", "be", "m", "v"], ["n1"], epsilon=1e-3),
        helper.make_node("LeakyRelu", ["n1"], ["a1"], alpha=0.2),
        helper.make_node("Max", ["a1", "floor"], ["m1"]),
        helper.make_node("Conv", ["m1", "w2"], ["c2"], kernel_shape=[3, 3], group=3,
                         auto_pad="SAME_UPPER", name="grouped"),
        helper.make_node("Clip", ["c2", "lo", "hi"], ["k2"]),
        helper.make_node("Conv", ["k2", "w3", "b3"], ["c3"], kernel_shape=[3, 1], group=6,
                         name="depthwise"),
        helper.make_node("Mul", ["c3", "scale"], ["s3"]),
        helper.make_node("Add", ["shift", "s3"], ["y"]),
    ]  # fmt: skip
    inits = [
        ("w1", w(6, 2, 3, 2)), ("b1", w(6)), ("g", 1 + w(6)), ("be", w(6)), ("m", w(6)),
        ("v", np.abs(w(6)) + 0.5), ("floor", [[[[-0.05]]]]), ("w2", w(6, 2, 3, 3)),
        ("lo", np.float32(-0.4)), ("hi", np.float32(0.5)), ("w3", w(6, 1, 3, 1)), ("b3", w(6)),
        ("scale", w(1, 6, 1, 1) + 1), ("shift", w(6, 1, 1)),
    ]  # fmt: skip
    path = save(tmp_path, nodes, (2, 11, 9), (6, 8, 5), inits)
    network = check_parity(path, w(3, 2, 11, 9, scale=1.0), gpu)
    kinds = [type(layer).__name__ for layer in network.layers]
    assert kinds == ["Conv2d", "Conv2d", "DepthwiseConv2d"]  # the rest folded into them


@pytest.mark.gpu
def test_pools_dense_and_reordering_reshapes(tmp_path: Path, gpu) -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["p1"], ["p2"], kernel_shape=[1, 2], strides=[1, 1]),
        helper.make_node("Transpose", ["p2"], ["t"], perm=[0, 2, 3, 1]),  # NHWC: a reorder
        helper.make_node("Flatten", ["t"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "wd", "bd"], ["d1"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Sigmoid", ["d1"], ["s1"]),
        helper.make_node("MatMul", ["s1", "wm"], ["d2"]),
        helper.make_node("Sub", ["d2", "bm"], ["d3"]),
        helper.make_node("Min", ["d3", "top"], ["d4"]),
        helper.make_node("Softmax", ["d4"], ["y"], axis=-1),
    ]  # fmt: skip
    inits = [
        ("w1", w(5, 3, 1, 1)), ("b1", w(5)), ("wd", w(7, 5 * 3 * 3)), ("bd", w(7)),
        ("wm", w(7, 4)), ("bm", w(4)), ("top", np.float32(0.3)),
    ]  # fmt: skip
    path = save(tmp_path, nodes, (3, 6, 8), (4,), inits)
    network = check_parity(path, w(5, 3, 6, 8, scale=1.0), gpu)
    kinds = [type(layer).__name__ for layer in network.layers]
    assert kinds == ["Conv2d", "MaxPool2d", "AvgPool2d", "Dense", "Sigmoid", "Dense", "Softmax"]


def test_global_pool_squeeze_and_unsqueeze(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c1"], ["g"]),
        helper.make_node("Squeeze", ["g", "axes"], ["s"]),
        helper.make_node("Unsqueeze", ["s", "axis1"], ["u"]),
        helper.make_node("Reshape", ["u", "flat"], ["r"]),
        helper.make_node("Identity", ["r"], ["i"]),
        helper.make_node("Div", ["i", "d"], ["y"]),
    ]  # fmt: skip
    inits = [("w1", w(4, 1, 3, 3)), ("d", np.float32(4.0))]
    extra = [
        numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([0, -1], np.int64), "flat"),
    ]
    path = save(tmp_path, nodes, (1, 7, 5), (4,), inits)
    model = onnx.load(str(path))
    model.graph.initializer.extend(extra)
    onnx.save(model, str(path))
    # Div folds into the conv, which the global pool follows: the pool is where it refuses.
    with pytest.raises(ImportFailed, match=r"'Div'|\(Div"):
        import_onnx(path)
    model.graph.node.remove(model.graph.node[-1])
    model.graph.node[-1].output[0] = "y"
    onnx.save(model, str(path))
    check_parity(path, w(2, 1, 7, 5, scale=1.0))


# --- what is refused -----------------------------------------------------------------------------


def test_an_unsupported_op_names_the_node_op_and_attributes_and_writes_nothing(
    tmp_path: Path, agent_env
) -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], kernel_shape=[1, 1]),
        helper.make_node("HardSigmoid", ["c1"], ["y"], alpha=0.25, name="gate"),
    ]
    path = save(tmp_path, nodes, (1, 4, 4), (2, 4, 4), [("w1", w(2, 1, 1, 1))])
    with pytest.raises(ImportFailed) as caught:
        import_onnx(path)
    message = str(caught.value)
    assert "'gate'" in message and "HardSigmoid" in message and "'alpha': 0.25" in message
    out = tmp_path / "out.npz"
    result = run_earshot("model", "import", str(path), "--out", str(out), "--licence", "MIT",
                         env=agent_env)  # fmt: skip
    assert result.returncode == 5, result.stderr
    assert "HardSigmoid" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.npz*"))


def test_an_output_that_cannot_be_written_is_one_line_naming_it(tmp_path: Path, agent_env) -> None:
    nodes = [helper.make_node("Conv", ["x", "w1"], ["y"], kernel_shape=[1, 1])]
    path = save(tmp_path, nodes, (1, 4, 4), (1, 4, 4), [("w1", w(1, 1, 1, 1))])
    out = tmp_path / "missing-folder" / "sub"
    out.parent.write_text("a file where a folder should be")
    result = run_earshot("model", "import", str(path), "--out", str(out / "x.npz"), "--licence",
                         "MIT", env=agent_env)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "--out" in result.stderr and "Traceback" not in result.stderr


def test_a_branching_graph_is_refused(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], kernel_shape=[1, 1]),
        helper.make_node("Conv", ["a", "w1"], ["b"], kernel_shape=[1, 1], name="second"),
        helper.make_node("Add", ["a", "b"], ["y"], name="residual"),
    ]
    path = save(tmp_path, nodes, (1, 4, 4), (1, 4, 4), [("w1", w(1, 1, 1, 1))])
    with pytest.raises(ImportFailed, match=r"'residual' \(Add.*only chains"):
        import_onnx(path)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "missing"])
def test_a_broken_file_gives_a_clear_error(tmp_path: Path, damage: str) -> None:
    source = save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], (4,), (4,))
    data = source.read_bytes()
    path = tmp_path / "broken.onnx"
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00\xffnot a model" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    with pytest.raises(ImportFailed) as caught:
        import_onnx(path)
    assert str(path) in str(caught.value)
    assert "no such file" in str(caught.value) if damage == "missing" else True


def test_the_cli_refuses_a_non_commercial_licence(tmp_path: Path, agent_env) -> None:
    out = tmp_path / "x.npz"
    result = run_earshot("model", "import", str(wheel_model("embedding_model.onnx")), "--out",
                         str(out), "--licence", "CC-BY-NC-SA-4.0", env=agent_env)  # fmt: skip
    assert result.returncode == 2 and "--licence" in result.stderr and not out.exists()


# --- the shipped speech embedding ----------------------------------------------------------------


@pytest.fixture(scope="module")
def embedding_onnx() -> Path:
    path = wheel_model("embedding_model.onnx")
    require(path.is_file(), f"{path} is missing")
    return path


def real_windows(count: int) -> np.ndarray:
    """Log-mel windows [count, 76, 32] of the demo recording (speech and pauses)."""
    import soundfile

    from dsp.embedding_features import embedding_log_mel
    from models.base.speech_embedding import SpeechEmbedding

    audio, rate = soundfile.read(REPO / "agent" / "data" / "demo.wav", dtype="float32")
    assert rate == 16_000
    features = embedding_log_mel(audio)
    base = SpeechEmbedding.load()
    windows = base.hop_windows(features)
    picks = np.linspace(0, windows.shape[0] - 1, count).astype(int)
    return np.ascontiguousarray(windows[picks], np.float32)


@pytest.mark.gpu
def test_speech_embedding_matches_onnxruntime_on_real_audio(embedding_onnx: Path, gpu) -> None:
    from kernels.gpu_network import WgpuNetwork

    imported = import_onnx(embedding_onnx)
    windows = real_windows(24)[..., None]  # [n, 76, 32, 1], the graph's own layout
    expected = reference(embedding_onnx, windows).reshape(len(windows), -1)
    assert expected.shape == (24, 96)
    assert_close(run_numpy(imported.network, windows).reshape(24, -1), expected)
    engine = WgpuNetwork(imported.network, gpu, batch_size=len(windows))  # compiled once
    for batch in (1, 24):
        out = np.asarray(engine.run(windows[:batch])).reshape(batch, -1)
        assert_close(out, expected[:batch])
    assert imported.ops == {"Conv": 20, "LeakyRelu": 19, "Max": 19, "MaxPool": 5, "Reshape": 2}
    assert imported.parameters == 328_128 + 96  # the graph's weights, and the last conv's zero bias
    assert 40e6 < imported.network.flops() / 2 < 45e6


def test_the_shipped_file_is_what_the_notice_command_makes(
    embedding_onnx: Path, tmp_path: Path, agent_env
) -> None:
    from models.base.speech_embedding import SpeechEmbedding
    from models.nn.checkpoint import load_model
    from models.paths import SHIPPED_EMBEDDING

    notice = (SHIPPED_EMBEDDING.parent / "NOTICE").read_text()
    assert "Apache-2.0" in notice and EMBEDDING_SHA256 in notice
    assert "earshot model import" in notice
    out = tmp_path / "speech_embedding.npz"
    result = run_earshot("model", "import", str(embedding_onnx), "--out", str(out), "--licence",
                         "Apache-2.0", "--json", env=agent_env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    written = json.loads(result.stdout)
    shipped = load_model(SHIPPED_EMBEDDING, kind="base", front_end=None)[1]
    assert written["sha256"] == shipped.sha256  # the same weights, bit for bit
    assert written["extra"]["source"]["sha256"] == EMBEDDING_SHA256
    assert written["extra"]["licence"] == "Apache-2.0"
    assert written["extra"]["input_shape"] == [76, 32, 1]
    assert written["extra"]["output_shape"] == [1, 1, 96]
    assert SpeechEmbedding.load(out).dim == 96


def test_the_embedding_refuses_a_network_made_for_the_other_front_end(
    embedding_onnx: Path, tmp_path: Path, agent_env
) -> None:
    from models.base.speech_embedding import SpeechEmbedding

    out = tmp_path / "forty.npz"
    result = run_earshot("model", "import", str(embedding_onnx), "--out", str(out), "--licence",
                         "Apache-2.0", "--front-end", "mel40", env=agent_env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    with pytest.raises(ModelError, match="n_mels"):
        SpeechEmbedding.load(out)
