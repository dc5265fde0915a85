"""The wake benchmark's measurements: ten wake words against one, detection latency, training.

Audio is pushed in `CHUNK_MS` chunks through `models.wake.detector.Detector`, as the agent does;
training runs `train_wake_word` with all cores, as ``earshot train`` does. `agent.bench.wake`
describes the figures.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.bench.common import CHUNK_SAMPLES, MS_PER_S, PHRASE, Stopwatch, chunks, say
from agent.bench.wake_audio import PhraseStream
from dsp.constants import SAMPLE_RATE_HZ
from kernels.runtime import Backend
from models.base.geometry import Embedder
from models.speech.dataset import load_vocabulary
from models.speech.synth import SpeechCache
from models.wake.detector import Detector, WakeWord
from models.wake.metrics import SECONDS_PER_HOUR, smooth
from models.wake.model import WakeWordModel
from models.wake.recipe import WakeRecipe
from models.wake.streams import default_stream_dir
from models.wake.training import train_wake_word

FRESH_PREFIX = "hey "
REPETITIONS = 3
MANY_WAKE_WORDS = 10
SMOOTHING_HOPS = 2
REFRACTORY_S = 2.0
MATCH_AFTER_S = 1.5
"""A detection from a phrase's start to this long after its end belongs to that phrase."""
WARM_UP_S = 10
"""Audio streamed through each detector before the timed runs."""
P90 = 90
TARGET_RATIO = 1.2
TARGET_LATENCY_MS = 200.0


class _StageNames:
    """A training ``progress`` that names each stage once on stderr (cold caches take minutes)."""

    def __init__(self) -> None:
        self.stage = ""

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.stage = stage
            say(f"  ... {stage}")


def stream_cpu_s(detector: Detector, audio: np.ndarray) -> tuple[float, float]:
    """Stream ``audio`` through a fresh state of ``detector``: (CPU s, wall s)."""
    detector.reset()
    clock = Stopwatch()
    for chunk in chunks(audio):
        detector.push(chunk)
    return clock.read()


def measure_wake_words(
    base: Embedder,
    model: WakeWordModel,
    threshold: float,
    audio: np.ndarray,
    *,
    repetitions: int = REPETITIONS,
    many: int = MANY_WAKE_WORDS,
    backend: Backend = "auto",
) -> dict[str, Any]:
    """CPU time per hour of audio with one wake word and with ``many``, measured alternately."""
    copies = [dataclasses.replace(model, name=f"{model.name}-{i}") for i in range(many)]
    detectors = {
        n: Detector(
            base,
            [WakeWord(m, threshold, SMOOTHING_HOPS, REFRACTORY_S) for m in models],
            backend=backend,
        )
        for n, models in ((1, [model]), (many, copies))
    }
    warm_up = audio[: WARM_UP_S * SAMPLE_RATE_HZ]
    for detector in detectors.values():
        stream_cpu_s(detector, warm_up)
    cpu: dict[int, list[float]] = {n: [] for n in detectors}
    wall: dict[int, list[float]] = {n: [] for n in detectors}
    for rep in range(repetitions):
        order = list(detectors) if rep % 2 == 0 else list(detectors)[::-1]
        for n in order:
            c, w = stream_cpu_s(detectors[n], audio)
            cpu[n].append(c)
            wall[n].append(w)
    audio_s = audio.size / SAMPLE_RATE_HZ
    scale = SECONDS_PER_HOUR / audio_s
    one, ten = statistics.median(cpu[1]), statistics.median(cpu[many])
    return {
        "audio_seconds": round(audio_s, 1),
        "repetitions": repetitions,
        "wake_words": [1, many],
        "cpu_s_per_hour": {"1": round(one * scale, 3), str(many): round(ten * scale, 3)},
        "wall_s_per_hour": {
            "1": round(statistics.median(wall[1]) * scale, 3),
            str(many): round(statistics.median(wall[many]) * scale, 3),
        },
        "cpu_s_per_hour_each_repetition": {
            str(n): [round(c * scale, 3) for c in cs] for n, cs in cpu.items()
        },
        "ratio": round(ten / one, 4),
        "real_time_factor": {"1": round(one / audio_s, 5), str(many): round(ten / audio_s, 5)},
        "target_ratio": TARGET_RATIO,
        "meets_target": ten / one <= TARGET_RATIO,
    }


def measure_latency(
    base: Embedder,
    model: WakeWordModel,
    threshold: float,
    stream: PhraseStream,
    *,
    calibrated_threshold: float | None = None,
    backend: Backend = "auto",
) -> dict[str, Any]:
    """Stream the placed phrases; latency of each detected one and the compute per hop."""
    hops: list[tuple[float, float]] = []
    detector = Detector(
        base, [WakeWord(model, threshold, SMOOTHING_HOPS, REFRACTORY_S)],
        on_hop=lambda t, s: hops.append((t, float(s[0]))), backend=backend,
    )  # fmt: skip
    step = CHUNK_SAMPLES
    compute_s, false_alarms = 0.0, 0
    latencies: dict[int, float] = {}
    with_wait: dict[int, float] = {}
    for start in range(0, stream.audio.size, step):
        chunk = stream.audio[start : start + step]
        clock = time.perf_counter()
        found = detector.push(chunk)
        spent = time.perf_counter() - clock
        compute_s += spent
        chunk_end_s = (start + chunk.size) / SAMPLE_RATE_HZ
        for d in found:
            hit = np.flatnonzero(
                (stream.starts_s <= d.time_s) & (d.time_s <= stream.ends_s + MATCH_AFTER_S)
            )
            if hit.size == 0 or int(hit[0]) in latencies:
                false_alarms += 1
                continue
            i = int(hit[0])
            latencies[i] = (d.time_s - stream.ends_s[i] + spent) * MS_PER_S
            with_wait[i] = (chunk_end_s - stream.ends_s[i] + spent) * MS_PER_S
    times = np.array([t for t, _ in hops])
    smoothed = smooth(np.array([s for _, s in hops]), SMOOTHING_HOPS)
    peaks = [
        float(smoothed[(times >= a) & (times <= b + MATCH_AFTER_S)].max(initial=0.0))
        for a, b in zip(stream.starts_s, stream.ends_s, strict=True)
    ]
    values = [latencies[i] for i in sorted(latencies)]
    waited = [with_wait[i] for i in sorted(with_wait)]
    placements = int(stream.starts_s.size)

    def stat(xs: list[float], q: float) -> float | None:
        return round(float(np.percentile(xs, q)), 1) if xs else None

    result: dict[str, Any] = {
        "placements": placements,
        "audio_seconds": round(stream.audio.size / SAMPLE_RATE_HZ, 1),
        "threshold": threshold,
        "detected": len(values),
        "hit_rate": round(len(values) / placements, 4),
        "false_alarms": false_alarms,
        "latency_ms": [round(v, 1) for v in values],
        "latency_median_ms": stat(values, 50),
        "latency_p90_ms": stat(values, P90),
        "latency_with_block_wait_median_ms": stat(waited, 50),
        "latency_with_block_wait_p90_ms": stat(waited, P90),
        "compute_ms_per_hop": round(compute_s / max(detector.hops, 1) * MS_PER_S, 3),
        "peak_scores": [round(p, 4) for p in peaks],
        "target_latency_median_ms": TARGET_LATENCY_MS,
        "meets_target": bool(values) and float(np.median(values)) < TARGET_LATENCY_MS,
    }
    if calibrated_threshold is not None:
        result["threshold_1_per_hour"] = round(calibrated_threshold, 5)
        result["hit_rate_at_1_per_hour"] = round(
            float(np.mean([p >= calibrated_threshold for p in peaks])), 4
        )
    return result


def _files(directory: Path) -> set[str]:
    if not directory.is_dir():
        return set()
    return {p.name for p in directory.iterdir() if p.suffix == ".npz"}


def _count_files(directory: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(directory))


def train(
    name: str,
    phrase: str,
    base: Embedder,
    recipe: WakeRecipe,
    cache: SpeechCache,
    *,
    show_progress: bool = True,
) -> tuple[WakeWordModel, dict[str, Any]]:
    """Train with all cores, as ``earshot train`` does; the model and what the training took."""
    from threadpoolctl import threadpool_limits

    streams_before = _files(default_stream_dir())
    renditions_before = _count_files(cache.directory)
    clock = Stopwatch()
    with threadpool_limits(os.cpu_count() or 1):
        model, report = train_wake_word(
            name, phrase, base, recipe, smoothing_hops=SMOOTHING_HOPS, refractory_s=REFRACTORY_S,
            speech_cache=cache, progress=_StageNames() if show_progress else None,
        )  # fmt: skip
    cpu_s, wall_s = clock.read()
    built = sorted(_files(default_stream_dir()) - streams_before)
    return model, {
        "phrase": phrase,
        "seconds": round(wall_s, 2),
        "cpu_seconds_in_process": round(cpu_s, 2),
        "stages_s": report["metrics"]["seconds"],
        "caches_warm": not built,
        "caches_built": built,
        "renditions_synthesized": _count_files(cache.directory) - renditions_before,
        "epochs_last_fit": int(report["metrics"]["epochs"]),
        "validation_accuracy": round(float(report["metrics"]["validation_accuracy"]), 4),
    }


def fresh_phrase(rng: np.random.Generator) -> str:
    """``"hey "`` and a random vocabulary word: a phrase the speech cache is unlikely to hold."""
    words = [w for w in load_vocabulary() if w not in (PHRASE, "hey")]
    return FRESH_PREFIX + str(rng.choice(words))
