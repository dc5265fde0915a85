"""Whole-network behaviour: DS-CNN parity on the GPU, batch-norm folding, chunking under device
limits, shader-failure reporting, and adapter/backend selection."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import kernels.device as device_mod
import kernels.gpu_program as gpu_program_mod
from kernels.device import GpuDevice, list_adapters, open_device
from kernels.errors import DeviceError, ModelError
from kernels.gpu_network import WgpuNetwork, max_chunk, plan_layer
from kernels.network import (
    RELU,
    AvgPool2d,
    Conv2d,
    Dense,
    DepthwiseConv2d,
    Network,
    PointwiseConv2d,
    Sigmoid,
    run_numpy,
)
from kernels.ops.batch_norm import fold_batchnorm
from kernels.runtime import NumpyEngine, create_engine, resolve_backend
from kernels.testnet import ds_cnn_test_network, random_batchnorm, random_windows

NETWORK_TOL = (1e-4, 1e-4)  # (rtol, atol) of the whole network against the numpy reference
FOLD_TOL = (1e-5, 1e-5)


@pytest.fixture(scope="module")
def network() -> Network:
    return ds_cnn_test_network(seed=0)


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_ds_cnn_matches_numpy(gpu: GpuDevice, network: Network, batch: int) -> None:
    x = random_windows(batch, seed=batch)
    actual = WgpuNetwork(network, gpu, batch_size=batch).run(x)
    expected = run_numpy(network, x)
    assert actual.shape == (batch, 12)
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, *NETWORK_TOL)


def test_ds_cnn_flops_and_shapes(network: Network) -> None:
    assert network.shapes[1] == (49, 20, 64)
    assert network.output_shape == (12,)
    # 10x4 conv: 49*20*64*40 MACs; per block 49*20*64*(9 + 64) MACs; dense 64*12 MACs.
    macs = 49 * 20 * 64 * 40 + 4 * 49 * 20 * 64 * (9 + 64) + 64 * 12
    assert network.flops() == 2 * macs + 49 * 20 * 64


def test_chunks_when_a_batch_exceeds_the_binding_limit(gpu: GpuDevice, network: Network) -> None:
    window_bytes = 49 * 20 * 64 * 4  # the largest activation of one window
    compiled = WgpuNetwork(network, gpu, batch_size=64, max_binding_bytes=3 * window_bytes)
    assert compiled.chunk == 3
    x = random_windows(10, seed=3)
    np.testing.assert_allclose(compiled.run(x), run_numpy(network, x), *NETWORK_TOL)


def test_chunk_respects_the_workgroup_limit(network: Network) -> None:
    limits = dict(device_mod.WANTED_LIMITS, **{"max-compute-workgroups-per-dimension": 100})
    chunk = max_chunk(network, limits, wanted=1000)
    assert chunk >= 1
    uniform = limits["max-uniform-buffer-binding-size"]
    steps = zip(network.layers, network.shapes, network.shapes[1:], strict=False)
    workgroups = [
        launch.workgroups
        for layer, s, o in steps
        for launch in plan_layer(layer, s, o, chunk, uniform).launches
    ]
    assert max(workgroups) <= 100


def test_large_weights_go_to_storage_buffers() -> None:
    layer = PointwiseConv2d(np.zeros((260, 68), np.float32), np.zeros(68, np.float32))
    plans = plan_layer(layer, (3, 5, 260), (3, 5, 68), 1, 64 * 1024).launches
    assert [(p.kernel, p.constants["PARAM_SPACE"]) for p in plans] == [
        ("pointwise_conv2d", "storage, read")
    ]
    assert [access for _, access in plans[0].bindings] == ["read", "read", "read", "write"]


def test_wide_pointwise_runs_on_the_dense_kernel_in_channel_groups() -> None:
    layer = PointwiseConv2d(np.zeros((600, 68), np.float32), np.zeros(68, np.float32))
    plans = plan_layer(layer, (3, 5, 600), (3, 5, 68), 1, 64 * 1024).launches
    assert [p.kernel for p in plans] == ["dense", "dense"]
    assert [p.overrides["OC_0"] for p in plans] == [0.0, 64.0]


def test_broken_shader_names_the_kernel(gpu: GpuDevice, network: Network, monkeypatch) -> None:
    real = gpu_program_mod.kernel_source

    def broken(kernel: str) -> str:
        text = real(kernel)
        return text.replace("fn main(", "fn main((") if kernel == "pointwise_conv2d" else text

    monkeypatch.setattr(gpu_program_mod, "kernel_source", broken)
    with pytest.raises(DeviceError, match="pointwise_conv2d"):
        WgpuNetwork(network, gpu, batch_size=1)


def test_batchnorm_folding_equals_unfolded_layers() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 9, 8, 6)).astype(np.float32)
    eps = 1e-5
    layers: list[Conv2d | DepthwiseConv2d | PointwiseConv2d | Dense] = [
        Conv2d(rng.standard_normal((3, 3, 6, 5)), rng.standard_normal(5), padding=(1, 1)),
        DepthwiseConv2d(rng.standard_normal((3, 3, 6)), rng.standard_normal(6), padding=(1, 1)),
        PointwiseConv2d(rng.standard_normal((6, 5)), rng.standard_normal(5)),
        Dense(rng.standard_normal((9 * 8 * 6, 5)), rng.standard_normal(5)),
    ]
    for layer in layers:
        bn = random_batchnorm(rng, layer.bias.shape[0])
        scale = bn["gamma"] / np.sqrt(bn["var"] + eps)
        unfolded = (layer.forward(x) - bn["mean"]) * scale + bn["beta"]
        folded = layer.with_batchnorm(**bn, eps=eps)
        np.testing.assert_allclose(folded.forward(x), unfolded, *FOLD_TOL)


def test_network_rejects_mismatched_shapes() -> None:
    with pytest.raises(ModelError, match="input channels"):
        Network((10, 10, 3), (PointwiseConv2d(np.zeros((4, 2)), np.zeros(2)),))
    with pytest.raises(ModelError, match="no layers"):
        Network((10, 10, 3), ())
    with pytest.raises(ModelError, match="network input"):
        run_numpy(ds_cnn_test_network(), np.zeros((1, 40, 98, 1), np.float32))


# --- adapter and backend selection ---------------------------------------------------------------


@dataclass
class FakeAdapter:
    device: str
    backend_type: str
    adapter_type: str
    limits: dict[str, int] = field(default_factory=lambda: dict(device_mod.WANTED_LIMITS))

    @property
    def info(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "backend_type": self.backend_type,
            "adapter_type": self.adapter_type,
        }


def _fake_adapters(monkeypatch, adapters: list[FakeAdapter]) -> None:
    wgpu = device_mod._import_wgpu()
    monkeypatch.setattr(wgpu.gpu, "enumerate_adapters_sync", lambda: list(adapters))


def test_real_gpu_preferred_to_cpu_and_gl_last(monkeypatch) -> None:
    _fake_adapters(
        monkeypatch,
        [
            FakeAdapter("llvmpipe", "Vulkan", "CPU"),
            FakeAdapter("iGPU", "OpenGL", "IntegratedGPU"),
            FakeAdapter("iGPU", "Vulkan", "IntegratedGPU"),
            FakeAdapter("dGPU", "Vulkan", "DiscreteGPU"),
        ],
    )
    names = [(a.name, a.backend) for a in list_adapters()]
    assert names == [
        ("dGPU", "Vulkan"),
        ("iGPU", "Vulkan"),
        ("iGPU", "OpenGL"),
        ("llvmpipe", "Vulkan"),
    ]
    assert [a.backend for a in list_adapters("gl")] == ["OpenGL"]


def test_auto_uses_numpy_when_only_a_cpu_adapter_exists(monkeypatch, caplog) -> None:
    _fake_adapters(monkeypatch, [FakeAdapter("llvmpipe", "Vulkan", "CPU")])
    with caplog.at_level(logging.INFO, logger="kernels.runtime"):
        assert resolve_backend("auto") == "numpy"
    assert "CPU adapter" in caplog.text
    assert isinstance(create_engine(ds_cnn_test_network()), NumpyEngine)


def test_auto_uses_wgpu_on_a_real_gpu(monkeypatch) -> None:
    _fake_adapters(monkeypatch, [FakeAdapter("dGPU", "Vulkan", "DiscreteGPU")])
    assert resolve_backend("auto") == "wgpu"
    assert resolve_backend("numpy") == "numpy"


def test_no_adapter_names_the_software_adapter_package(monkeypatch) -> None:
    _fake_adapters(monkeypatch, [])
    assert resolve_backend("auto") == "numpy"
    with pytest.raises(DeviceError, match="mesa-vulkan-drivers"):
        open_device()
    with pytest.raises(DeviceError, match="mesa-vulkan-drivers"):
        create_engine(ds_cnn_test_network(), backend="wgpu")


def test_bad_backend_or_hint_is_rejected() -> None:
    with pytest.raises(DeviceError, match="backend: got 'cuda'"):
        resolve_backend("cuda")  # type: ignore[arg-type]
    with pytest.raises(DeviceError, match="backend hint: got 'opencl'"):
        list_adapters("opencl")  # type: ignore[arg-type]


def test_hint_without_matching_adapter_lists_the_available_ones(monkeypatch) -> None:
    _fake_adapters(monkeypatch, [FakeAdapter("llvmpipe", "Vulkan", "CPU")])
    with pytest.raises(DeviceError, match="no 'metal' adapter.*llvmpipe"):
        open_device("metal")


def test_forced_wgpu_runs_on_the_cpu_adapter(gpu: GpuDevice, network: Network) -> None:
    engine = create_engine(network, backend="wgpu", batch_size=2)
    assert isinstance(engine, WgpuNetwork)
    assert engine.description.startswith("wgpu ")
    x = random_windows(2, seed=5)
    np.testing.assert_allclose(engine.run(x), run_numpy(network, x), *NETWORK_TOL)


def test_device_limits_are_explicit_not_the_adapter_maximum(gpu: GpuDevice) -> None:
    assert set(gpu.limits) == set(device_mod.WANTED_LIMITS)
    for name, value in gpu.limits.items():
        assert value <= device_mod.WANTED_LIMITS[name]
        assert gpu.device.limits[name] >= value


def test_every_adapter_runs_the_network(network: Network, gpu: GpuDevice) -> None:
    x = random_windows(1, seed=6)
    expected = run_numpy(network, x)
    for index, adapter in enumerate(list_adapters()):
        compiled = WgpuNetwork(network, open_device(index=index), batch_size=1)
        np.testing.assert_allclose(compiled.run(x), expected, *NETWORK_TOL, err_msg=str(adapter))


def test_fold_reference_is_used_by_layers() -> None:
    rng = np.random.default_rng(7)
    layer = PointwiseConv2d(rng.standard_normal((4, 3)), np.zeros(3))
    bn: dict[str, Any] = random_batchnorm(rng, 3)
    folded = layer.with_batchnorm(**bn)
    weight, bias = fold_batchnorm(layer.weight, layer.bias, **bn)
    np.testing.assert_array_equal(folded.weight, weight)
    np.testing.assert_array_equal(folded.bias, bias)


def test_readme_example_runs(gpu: GpuDevice) -> None:
    readme = Path(__file__).resolve().parent.parent / "kernels" / "README.md"
    match = re.search(r"```python\n(.*?)```", readme.read_text(encoding="utf-8"), re.S)
    assert match is not None
    namespace: dict[str, Any] = {}
    exec(compile(match.group(1).replace('"auto"', '"wgpu"'), str(readme), "exec"), namespace)
    expected = run_numpy(namespace["network"], namespace["windows"])
    np.testing.assert_allclose(namespace["probabilities"], expected, *NETWORK_TOL)


def test_benchmark_runs_and_onnx_export_matches(gpu: GpuDevice, capsys) -> None:
    pytest.importorskip(
        "onnxruntime", reason="the benchmark's peer needs pip install 'earshot[bench]'"
    )
    from agent.bench import engine as bench
    argv = ["--json", "--batch-size", "3", "--latency-runs", "1", "--throughput-runs", "1"]
    assert bench.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    engines = {e["engine"].split()[0] for e in report["engines"]}
    assert {"wgpu", "numpy", "onnxruntime"} <= engines
    assert report["flops_per_window"] == ds_cnn_test_network().flops()
    onnx_row = next(e for e in report["engines"] if e["engine"].startswith("onnxruntime"))
    assert onnx_row["max_abs_error_vs_numpy"] <= 1e-4


def test_every_layer_type_composes(gpu: GpuDevice) -> None:
    """Channel counts that are not multiples of 4 flow between all layer types."""
    rng = np.random.default_rng(8)

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32) / np.sqrt(np.prod(shape[:-1]))

    network = Network(
        input_shape=(17, 11, 3),
        layers=(
            Conv2d(normal(3, 3, 3, 6), normal(1, 6)[0], padding=(1, 1), activation=RELU),
            AvgPool2d((2, 2)),
            DepthwiseConv2d(normal(3, 3, 6), normal(1, 6)[0], stride=(2, 1), activation=RELU),
            PointwiseConv2d(normal(6, 5), normal(1, 5)[0], activation=RELU),
            Dense(normal(3 * 3 * 5, 7), normal(1, 7)[0]),
            Sigmoid(),
        ),
    )
    x = rng.standard_normal((5, 17, 11, 3)).astype(np.float32)
    actual = WgpuNetwork(network, gpu, batch_size=2).run(x)
    assert actual.shape == (5, 7)
    np.testing.assert_allclose(actual, run_numpy(network, x), *NETWORK_TOL)
    assert run_numpy(network, x[:0]).shape == (0, 7)
    assert WgpuNetwork(network, gpu, batch_size=2).run(x[:0]).shape == (0, 7)
