"""Benchmark of the imported speech embedding: what one 80 ms hop costs, streamed and whole.

On the shipped network (`models.base.speech_embedding`) and real speech (the demo recording, looped
to ``--seconds``), in one run:

- **streamed (numpy)**: the agent's always-on path: 32-band log-mel and `kernels.streaming`,
  which computes only the newest columns of every layer; audio pushed in 80 ms chunks.
- **whole window (numpy)**, **(wgpu, every adapter)**, **(onnxruntime)**: the whole 76-frame window
  at every hop, batch 1, as openWakeWord runs this network (on onnxruntime, when installed);
  and the batched throughput (windows per second) that embedding a data set sees.

Each figure is milliseconds per hop (median of the timed hops) and the share of one core that
listening in real time costs (hops per second x time per hop). Run ``earshot bench embedding``
or ``python -m agent.bench.embedding``; ``--json`` prints one JSON document.
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
from agent.paths import DEMO_AUDIO
from dsp.audio import load_audio
from dsp.constants import SAMPLE_RATE_HZ
from dsp.embedding_features import EMBEDDING_HOP_SAMPLES, embedding_log_mel
from kernels.device import list_adapters, open_device
from kernels.gpu_network import WgpuNetwork
from kernels.network import run_numpy
from models.base.speech_embedding import HOP_FRAMES, SpeechEmbedding

HOP_SAMPLES = HOP_FRAMES * EMBEDDING_HOP_SAMPLES
HOPS_PER_S = SAMPLE_RATE_HZ / HOP_SAMPLES
SECONDS = 30.0
BATCH = 64
WHOLE_HOPS = 40
"""Whole-window hops timed per engine (after warm-up)."""


def _per_hop(run: Callable[[np.ndarray], object], windows: np.ndarray) -> list[float]:
    for window in windows[:3]:
        run(window[None])
    times = []
    for window in windows[:WHOLE_HOPS]:
        start = time.perf_counter()
        run(window[None])
        times.append(time.perf_counter() - start)
    return times


def _row(engine: str, times: list[float], batched_s: float | None = None) -> dict[str, Any]:
    median = statistics.median(times)
    return {
        "engine": engine,
        "ms_per_hop": median * MS_PER_S,
        "ms_per_hop_min": min(times) * MS_PER_S,
        "core_share": median * HOPS_PER_S,
        "windows_per_s": None if batched_s is None else BATCH / batched_s,
    }


def _timed(run: Callable[[], object]) -> float:
    run()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def run_benchmark(seconds: float) -> dict[str, Any]:
    """Every engine's cost per hop on ``seconds`` of real speech."""
    base = SpeechEmbedding.load()
    demo = load_audio(DEMO_AUDIO)
    audio = np.resize(demo, int(seconds * SAMPLE_RATE_HZ)).astype(np.float32)
    windows = np.ascontiguousarray(base.hop_windows(embedding_log_mel(audio))[..., None])
    rows = []

    stream = base.stream()
    times = []
    for start in range(0, audio.size, HOP_SAMPLES):
        begin = time.perf_counter()
        stream.push(audio[start : start + HOP_SAMPLES])
        times.append(time.perf_counter() - begin)
    rows.append(_row("streamed, numpy (front end included)", times[len(times) // 10 :]))

    batch = windows[:BATCH]
    rows.append(_row("whole window, numpy", _per_hop(lambda w: run_numpy(base.network, w), windows),
                     _timed(lambda: run_numpy(base.network, batch))))  # fmt: skip
    for index, adapter in enumerate(list_adapters()):
        gpu = open_device(index=index)
        one = WgpuNetwork(base.network, gpu, batch_size=1)
        many = WgpuNetwork(base.network, gpu, batch_size=BATCH)
        times = _per_hop(one.run, windows)
        batched = _timed(functools.partial(many.run, batch))
        rows.append(_row(f"whole window, wgpu {adapter.backend} {adapter.name}", times, batched))
    onnx_row = _onnxruntime_row(windows)
    if onnx_row is not None:
        rows.append(onnx_row)
    return {
        "machine": platform.processor() or platform.machine(),
        "audio_s": seconds,
        "hops": len(times),
        "hops_per_s": HOPS_PER_S,
        "flops_per_window": base.network.flops(),
        "rows": rows,
    }


def _onnxruntime_row(windows: np.ndarray) -> dict[str, Any] | None:
    """The source graph on onnxruntime (one thread), when onnxruntime and the graph are here."""
    try:
        import onnxruntime
        import openwakeword
    except ImportError:
        return None
    from pathlib import Path

    graph = Path(openwakeword.__file__).parent / "resources" / "models" / "embedding_model.onnx"
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    batch = windows[:BATCH]
    return _row("whole window, onnxruntime (1 thread)",
                _per_hop(lambda w: session.run(None, {name: w}), windows),
                _timed(lambda: session.run(None, {name: batch})))  # fmt: skip


def format_table(report: dict[str, Any]) -> str:
    """The report as a table."""
    lines = [
        f"speech embedding, {report['flops_per_window'] / 2e6:.1f} M multiply-adds per window, "
        f"{report['hops_per_s']:.1f} hops/s, {report['audio_s']:.0f} s of speech",
        f"{'engine':58s} {'ms/hop':>8s} {'min':>7s} {'% core':>7s} {'batched win/s':>14s}",
    ]
    for row in report["rows"]:
        batched = "" if row["windows_per_s"] is None else f"{row['windows_per_s']:.0f}"
        lines.append(
            f"{row['engine'][:58]:58s} {row['ms_per_hop']:8.3f} {row['ms_per_hop_min']:7.3f} "
            f"{100 * row['core_share']:6.2f}% {batched:>14s}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``earshot bench embedding``."""
    parser = argparse.ArgumentParser(
        prog="earshot bench embedding",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=SECONDS,
        help=f"speech streamed, in seconds (default {SECONDS:g})",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    if args.seconds < 2:
        parser.error(f"--seconds: got {args.seconds}, expected at least 2")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # as the agent runs: one BLAS thread
        report = run_benchmark(args.seconds)
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
