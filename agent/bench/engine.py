"""Benchmark of the inference engines on the DS-CNN-sized test network.

For the network of `kernels.testnet` (seeded random weights) it measures batch-1 latency (median
and 90th percentile of single-window runs) and large-batch throughput (windows per second and
effective GFLOP/s) for wgpu on every adapter wgpu finds, for the numpy path, and for onnxruntime
running the same network exported to ONNX (whose output is checked against numpy first). Run
``earshot bench engine`` or ``python -m agent.bench.engine``; ``--json`` prints one JSON document.
onnxruntime is optional: ``pip install 'earshot[bench]'``.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from agent.bench.common import MS_PER_S
from kernels.device import list_adapters, open_device
from kernels.gpu_network import WgpuNetwork
from kernels.network import (
    RELU,
    Conv2d,
    Dense,
    DepthwiseConv2d,
    GlobalAvgPool,
    Network,
    PointwiseConv2d,
    Softmax,
    run_numpy,
)
from kernels.testnet import ds_cnn_test_network, random_windows

THROUGHPUT_BATCH = 256
LATENCY_RUNS = 100
THROUGHPUT_RUNS = 5
WARMUP_RUNS = 3
P90 = 0.9
GIGA = 1e9
ONNX_OPSET = 17
ONNX_IR_VERSION = 8
ONNX_PARITY_ATOL = 1e-4
# Targets of the 2-core CPU machines (llvmpipe) and of a real GPU, from the engine's issue.
TARGET_CPU_ADAPTER_GFLOPS = 5.0
TARGET_CPU_ADAPTER_LATENCY_MS = 4.0
TARGET_NUMPY_VS_ORT = 3.0
TARGET_GPU_LATENCY_MS = 0.5
TARGET_GPU_WINDOWS_PER_S = 1_000_000
BENCH_HINT = "pip install 'earshot[bench]'"


def _time_runs(run: Callable[[], object], runs: int) -> list[float]:
    """Wall-clock seconds of each of ``runs`` calls, after warm-up calls."""
    for _ in range(WARMUP_RUNS):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(
    name: str,
    run_one: Callable[[], object],
    run_batch: Callable[[], object],
    *,
    flops: int,
    batch: int,
    runs: tuple[int, int],
) -> dict[str, Any]:
    """Time an engine: batch-1 latency and ``batch``-window throughput.

    Parameters
    ----------
    name : str
        Engine name for the report.
    run_one : Callable[[], object]
        Runs one window.
    run_batch : Callable[[], object]
        Runs ``batch`` windows.
    flops : int
        Floating-point operations per window.
    batch : int
        Windows per ``run_batch`` call.
    runs : tuple[int, int]
        Timed calls of ``run_one`` and of ``run_batch``.

    Returns
    -------
    dict[str, Any]
        ``latency_ms_median``, ``latency_ms_p90``, ``windows_per_s``, ``gflops``, ``batch`` and
        ``batch1_gflops``.
    """
    single = _time_runs(run_one, runs[0])
    batched = _time_runs(run_batch, runs[1])
    median_single, median_batch = statistics.median(single), statistics.median(batched)
    return {
        "engine": name,
        "latency_ms_median": median_single * MS_PER_S,
        "latency_ms_p90": _percentile(single, P90) * MS_PER_S,
        "batch1_gflops": flops / median_single / GIGA,
        "batch": batch,
        "windows_per_s": batch / median_batch,
        "gflops": flops * batch / median_batch / GIGA,
    }


def _import_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ImportError(f"the engine benchmark's onnxruntime peer needs {BENCH_HINT}") from exc
    return onnx, onnxruntime


def _conv_node(helper: Any, layer: Conv2d | DepthwiseConv2d | PointwiseConv2d, index: int, x: str):
    """ONNX Conv node and initializers (OIHW weights) for one convolution layer."""
    if isinstance(layer, Conv2d):
        weight, group = layer.weight.transpose(3, 2, 0, 1), 1
        stride, padding = layer.stride, layer.padding
    elif isinstance(layer, DepthwiseConv2d):
        weight, group = layer.weight.transpose(2, 0, 1)[:, None], layer.weight.shape[2]
        stride, padding = layer.stride, layer.padding
    else:
        weight, group = layer.weight.T[:, :, None, None], 1
        stride, padding = (1, 1), (0, 0)
    w_name, b_name, out = f"w{index}", f"b{index}", f"conv{index}"
    node = helper.make_node(
        "Conv",
        [x, w_name, b_name],
        [out],
        group=group,
        strides=list(stride),
        pads=[padding[0], padding[1], padding[0], padding[1]],
    )
    inits = [_tensor(helper, w_name, weight), _tensor(helper, b_name, layer.bias)]
    return node, inits, out


def _tensor(helper: Any, name: str, array: np.ndarray) -> Any:
    array = np.ascontiguousarray(array, dtype=np.float32)
    return helper.make_tensor(name, 1, array.shape, array.ravel().tolist())  # 1: FLOAT


def to_onnx(network: Network) -> bytes:
    """Export a network of the DS-CNN's layer types to an ONNX model (NCHW input).

    Parameters
    ----------
    network : Network
        Conv2d, DepthwiseConv2d, PointwiseConv2d, GlobalAvgPool, Dense and Softmax layers.

    Returns
    -------
    bytes
        Serialised ModelProto; input ``x`` [batch, channels, height, width], output ``y``.

    Raises
    ------
    TypeError
        A layer type this exporter does not cover.
    """
    onnx, _ = _import_onnx()
    helper = onnx.helper
    nodes, inits, x = [], [], "x"
    for index, layer in enumerate(network.layers):
        if isinstance(layer, Conv2d | DepthwiseConv2d | PointwiseConv2d):
            node, new_inits, x = _conv_node(helper, layer, index, x)
            nodes.append(node)
            inits += new_inits
            if layer.activation == RELU:
                nodes.append(helper.make_node("Relu", [x], [f"relu{index}"]))
                x = f"relu{index}"
        elif isinstance(layer, GlobalAvgPool):
            nodes.append(helper.make_node("GlobalAveragePool", [x], [f"gap{index}"]))
            nodes.append(helper.make_node("Flatten", [f"gap{index}"], [f"flat{index}"]))
            x = f"flat{index}"
        elif isinstance(layer, Dense):
            inits += [
                _tensor(helper, f"w{index}", layer.weight),
                _tensor(helper, f"b{index}", layer.bias),
            ]
            nodes.append(helper.make_node("Gemm", [x, f"w{index}", f"b{index}"], [f"dense{index}"]))
            x = f"dense{index}"
        elif isinstance(layer, Softmax):
            nodes.append(helper.make_node("Softmax", [x], [f"softmax{index}"], axis=-1))
            x = f"softmax{index}"
        else:
            raise TypeError(f"to_onnx: layer {type(layer).__name__} is not supported")
    nodes.append(helper.make_node("Identity", [x], ["y"]))
    height, width, channels = network.input_shape
    graph = helper.make_graph(
        nodes,
        "earshot_ds_cnn",
        [helper.make_tensor_value_info("x", 1, ["batch", channels, height, width])],
        [helper.make_tensor_value_info("y", 1, ["batch", *network.output_shape])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = ONNX_IR_VERSION  # what onnxruntime 1.18+ reads; newer onnx writes later ones
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def _wgpu_results(network: Network, args: argparse.Namespace) -> list[dict[str, Any]]:
    flops, results = network.flops(), []
    one, many = random_windows(1), random_windows(args.batch_size)
    for index, adapter in enumerate(list_adapters()):
        gpu = open_device(index=index)
        single = WgpuNetwork(network, gpu, batch_size=1)
        batched = WgpuNetwork(network, gpu, batch_size=args.batch_size)
        result = measure(
            f"wgpu {adapter.backend} {adapter.name}",
            functools.partial(single.run, one),
            functools.partial(batched.run, many),
            flops=flops,
            batch=args.batch_size,
            runs=(args.latency_runs, args.throughput_runs),
        )
        result["adapter_type"] = adapter.adapter_type
        results.append(result)
    return results


def _onnx_result(network: Network, args: argparse.Namespace) -> dict[str, Any]:
    _, ort = _import_onnx()
    session = ort.InferenceSession(to_onnx(network), providers=["CPUExecutionProvider"])
    one, many = random_windows(1), random_windows(args.batch_size)
    nchw_one, nchw_many = one.transpose(0, 3, 1, 2).copy(), many.transpose(0, 3, 1, 2).copy()
    max_error = float(
        np.abs(session.run(None, {"x": nchw_many})[0] - run_numpy(network, many)).max()
    )
    if max_error > ONNX_PARITY_ATOL:
        raise RuntimeError(f"onnxruntime output differs from numpy by {max_error:.3g}")
    result = measure(
        f"onnxruntime {ort.__version__} (CPU)",
        lambda: session.run(None, {"x": nchw_one}),
        lambda: session.run(None, {"x": nchw_many}),
        flops=network.flops(),
        batch=args.batch_size,
        runs=(args.latency_runs, args.throughput_runs),
    )
    result["max_abs_error_vs_numpy"] = max_error
    return result


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every engine; returns the report as a JSON-ready dict."""
    network = ds_cnn_test_network(seed=0)
    one, many = random_windows(1), random_windows(args.batch_size)
    engines = _wgpu_results(network, args)
    engines.append(
        measure(
            "numpy",
            lambda: run_numpy(network, one),
            lambda: run_numpy(network, many),
            flops=network.flops(),
            batch=args.batch_size,
            runs=(args.latency_runs, args.throughput_runs),
        )
    )
    try:
        engines.append(_onnx_result(network, args))
    except ImportError as exc:
        engines.append({"engine": "onnxruntime", "skipped": str(exc)})
    return {
        "network": "DS-CNN test network (kernels.testnet), input 98 frames x 40 mel bands",
        "flops_per_window": network.flops(),
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}",
        "engines": engines,
        "targets": _targets(engines),
    }


def _targets(engines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target of the engine issue next to the measured figure."""
    rows = []
    by_name = {e["engine"].split()[0]: e for e in engines if "skipped" not in e}
    for e in engines:
        if not e["engine"].startswith("wgpu"):
            continue
        cpu = e["adapter_type"] == "CPU"
        gflops_target = f">= {TARGET_CPU_ADAPTER_GFLOPS} GFLOP/s" if cpu else None
        latency = TARGET_CPU_ADAPTER_LATENCY_MS if cpu else TARGET_GPU_LATENCY_MS
        rows.append(
            {
                "what": f"{e['engine']} batch-1 latency",
                "target": f"< {latency} ms",
                "measured": f"{e['latency_ms_median']:.2f} ms",
                "met": e["latency_ms_median"] < latency,
            }
        )
        if gflops_target:
            met = e["gflops"] >= TARGET_CPU_ADAPTER_GFLOPS
            measured = f"{e['gflops']:.1f} GFLOP/s"
        else:
            gflops_target = f">= {TARGET_GPU_WINDOWS_PER_S:,} windows/s"
            met = e["windows_per_s"] >= TARGET_GPU_WINDOWS_PER_S
            measured = f"{e['windows_per_s']:,.0f} windows/s"
        rows.append(
            {
                "what": f"{e['engine']} batch {e['batch']}",
                "target": gflops_target,
                "measured": measured,
                "met": met,
            }
        )
    if "numpy" in by_name and "onnxruntime" in by_name:
        ratio = by_name["numpy"]["latency_ms_median"] / by_name["onnxruntime"]["latency_ms_median"]
        rows.append(
            {
                "what": "numpy / onnxruntime batch-1 latency",
                "target": f"<= {TARGET_NUMPY_VS_ORT}x",
                "measured": f"{ratio:.2f}x",
                "met": ratio <= TARGET_NUMPY_VS_ORT,
            }
        )
    return rows


def format_table(report: dict[str, Any]) -> str:
    """The report as a fixed-width table."""
    batch = next((e["batch"] for e in report["engines"] if "batch" in e), THROUGHPUT_BATCH)
    name_width = max(len(e["engine"]) for e in report["engines"])
    lines = [
        report["network"],
        f"{report['flops_per_window'] / 1e6:.2f} MFLOP per window (multiply-add = 2)",
        "",
        f"{'engine':{name_width}s}  {'batch 1: median':>15s} {'p90':>8s}  "
        f"{f'batch {batch}: windows/s':>22s} {'GFLOP/s':>8s}",
    ]
    for e in report["engines"]:
        if "skipped" in e:
            lines.append(f"{e['engine']:{name_width}s}  skipped: {e['skipped']}")
            continue
        latency = f"{e['latency_ms_median']:13.2f}ms {e['latency_ms_p90']:6.2f}ms"
        throughput = f"{e['windows_per_s']:22.1f} {e['gflops']:8.2f}"
        lines.append(f"{e['engine']:{name_width}s}  {latency}  {throughput}")
    what_width = max((len(row["what"]) for row in report["targets"]), default=0)
    lines += ["", "targets:"]
    for row in report["targets"]:
        mark = "met" if row["met"] else "NOT met"
        lines.append(
            f"  {row['what']:{what_width}s}  target {row['target']:>17s}  "
            f"measured {row['measured']:>14s}  {mark}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the engine benchmark and print a table, or one JSON document with ``--json``.

    Parameters
    ----------
    argv : list[str] or None
        Command-line arguments; None reads ``sys.argv``.

    Returns
    -------
    int
        Exit status, 0 on success.
    """
    parser = argparse.ArgumentParser(prog="earshot bench engine", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--batch-size", type=int, default=THROUGHPUT_BATCH, help="throughput batch")
    parser.add_argument("--latency-runs", type=int, default=LATENCY_RUNS, help="timed batch-1 runs")
    parser.add_argument(
        "--throughput-runs", type=int, default=THROUGHPUT_RUNS, help="timed batched runs"
    )
    args = parser.parse_args(argv)
    report = run_benchmark(args)
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
