"""Benchmark of the streaming log-mel front end: CPU time per hour of audio.

Audio is pushed through `LogMelStream` in 80 ms chunks, as the agent does, and the process CPU time
(all threads) is scaled to one hour of audio. It runs twice: with BLAS capped at one thread, as the
agent runs, and with the BLAS library's default thread count. Run ``earshot bench frontend`` or
``python -m agent.bench.frontend``; ``--json`` prints one JSON document.
"""

from __future__ import annotations

import argparse

import numpy as np

from agent.bench.common import (
    CHUNK_MS,
    CHUNK_SAMPLES,
    MEASURED_AUDIO_S,
    Stopwatch,
    add_json_option,
    chunks,
    machine,
    print_json,
)
from dsp.constants import SAMPLE_RATE_HZ
from dsp.features import LogMelStream
from models.wake.metrics import SECONDS_PER_HOUR

TARGET_S_PER_HOUR = 2.0


def _test_audio(seconds: int, seed: int = 0) -> np.ndarray:
    """Seeded noise with speech-like level changes (the front end's cost ignores content)."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(seconds * SAMPLE_RATE_HZ).astype(np.float32)
    envelope = np.repeat(rng.uniform(0.01, 0.3, seconds * 10), SAMPLE_RATE_HZ // 10)
    return noise * envelope.astype(np.float32)


def measure_cpu_s_per_hour(audio: np.ndarray, *, chunk_samples: int) -> tuple[float, float]:
    """Stream ``audio`` through a fresh `LogMelStream`; return (CPU s, wall s) per hour of audio."""
    stream = LogMelStream()
    clock = Stopwatch()
    for chunk in chunks(audio, chunk_samples):
        stream.push(chunk)
    cpu, wall = clock.read()
    scale = SECONDS_PER_HOUR / (audio.size / SAMPLE_RATE_HZ)
    return cpu * scale, wall * scale


def run(seconds: int = MEASURED_AUDIO_S) -> dict[str, object]:
    """Measure both BLAS settings; returns the figures as a dict."""
    from threadpoolctl import threadpool_limits

    audio = _test_audio(seconds)
    chunk = CHUNK_SAMPLES
    measure_cpu_s_per_hour(audio[: 10 * SAMPLE_RATE_HZ], chunk_samples=chunk)  # warm caches
    with threadpool_limits(limits=1):
        cpu_1, wall_1 = measure_cpu_s_per_hour(audio, chunk_samples=chunk)
    cpu_n, wall_n = measure_cpu_s_per_hour(audio, chunk_samples=chunk)
    return {
        "benchmark": "frontend",
        "machine": machine(),
        "audio_seconds_measured": seconds,
        "chunk_ms": CHUNK_MS,
        "cpu_s_per_hour_blas_1_thread": round(cpu_1, 3),
        "wall_s_per_hour_blas_1_thread": round(wall_1, 3),
        "cpu_s_per_hour_blas_default": round(cpu_n, 3),
        "wall_s_per_hour_blas_default": round(wall_n, 3),
        "target_cpu_s_per_hour": TARGET_S_PER_HOUR,
        "meets_target": cpu_1 < TARGET_S_PER_HOUR,
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns 0."""
    parser = argparse.ArgumentParser(prog="earshot bench frontend", description=__doc__)
    add_json_option(parser)
    parser.add_argument(
        "--seconds", type=int, default=MEASURED_AUDIO_S, help="audio to stream, in s"
    )
    args = parser.parse_args(argv)
    result = run(args.seconds)
    if args.json:
        print_json(result)
        return 0
    print(f"log-mel front end, {CHUNK_MS} ms chunks, {args.seconds} s of audio scaled to 1 h")
    print(
        f"  BLAS 1 thread (as the agent): {result['cpu_s_per_hour_blas_1_thread']:.3f} s CPU/h "
        f"({result['wall_s_per_hour_blas_1_thread']:.3f} s wall)"
    )
    print(
        f"  BLAS default threads:         {result['cpu_s_per_hour_blas_default']:.3f} s CPU/h "
        f"({result['wall_s_per_hour_blas_default']:.3f} s wall)"
    )
    verdict = "meets" if result["meets_target"] else "misses"
    print(f"  target: < {TARGET_S_PER_HOUR} s CPU per hour: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
