"""Benchmark of wake-word detection and training: cost of many wake words, latency, training time.

In one run, with BLAS capped at one thread as the agent runs (training excepted):

1. **Ten wake words against one.** ``--seconds`` of running synthetic speech (sentences and words
   from the held-out voices, `models.wake.data.build_episode`) over low noise are streamed in
   80 ms chunks through a `Detector` with one wake word, and through one with ten (copies of the
   same model under ten names: real heads are the same size). The process CPU time is scaled to
   one hour of audio. The two are measured alternately ``--repetitions`` times each and the
   medians are compared, because a shared machine is noisy.
2. **Detection latency.** ``--placements`` renditions of the phrase (several voices, trimmed,
   -20 dBFS) are placed 2-3 s apart in low noise and streamed through a one-wake-word detector
   at ``--threshold`` (the threshold for 1 false alarm per hour is shown too, but models trained
   on synthetic speech rarely reach it on this audio). A detection's latency is its decision time
   (`Detection.time_s`) minus the end of the phrase, plus the wall time of the ``push`` that
   returned it; the figure with the wait for the end of the 80 ms block is reported beside it.
3. **Time to train a wake word from text.** `train_wake_word` for ``"hey " + a random vocabulary
   word`` (a phrase the speech cache does not hold: its synthesis is timed too) with all cores,
   as ``earshot train`` does. The negative streams and the word bank are cached per base model;
   the output says whether they were on disk before (warm) or built inside the timed run (cold),
   and how many renditions were synthesized.

The model of 1 and 2 is trained for "computer" first (the same recipe as 3) unless ``--model``
gives one. Run ``earshot bench wake`` or ``python -m agent.bench.wake``; ``--json`` prints one
JSON document.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dsp.constants import SAMPLE_RATE_HZ
from kernels.runtime import BACKENDS, Backend, Engine, create_engine
from models.base.model import BaseModel
from models.paths import SHIPPED_BASE_MODEL
from models.speech.augment import apply_gain, colored_noise
from models.speech.corpus import sentence_texts
from models.speech.dataset import load_vocabulary, sample_renditions, split_voices, trim_silence
from models.speech.synth import SpeechCache, Voice, available_voices
from models.wake.data import StreamRecipe, build_episode, default_stream_dir
from models.wake.detector import Detector, WakeWord
from models.wake.metrics import smooth
from models.wake.model import WakeWordModel
from models.wake.training import SMALL_RECIPE, WakeRecipe, train_wake_word

PHRASE = "computer"
FRESH_PREFIX = "hey "
CHUNK_MS = 80
MEASURED_AUDIO_S = 600
REPETITIONS = 3
MANY_WAKE_WORDS = 10
PLACEMENTS = 36
LATENCY_THRESHOLD = 0.5
FALSE_ALARMS_PER_HOUR = 1.0
SMOOTHING_HOPS = 2
REFRACTORY_S = 2.0
GAP_S = (2.0, 3.0)
"""Low noise between placed phrases."""
MATCH_AFTER_S = 1.5
"""A detection from a phrase's start to this long after its end belongs to that phrase."""
SPEECH_DB = -20.0
NOISE_DB = -60.0
POOL_SIZE = 40
"""Sentences and words the streaming audio is assembled from."""
SEED = 0
SECONDS_PER_HOUR = 3600.0
MS_PER_S = 1000.0
P90 = 90
TARGET_RATIO = 1.2
TARGET_LATENCY_MS = 200.0
TARGET_TRAINING_S = 60.0


class _StageNames:
    """A training ``progress`` that names each stage once on stderr (cold caches take minutes)."""

    def __init__(self) -> None:
        self.stage = ""

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.stage = stage
            print(f"  ... {stage}", file=sys.stderr, flush=True)


def _noise(samples: int, rng: np.random.Generator) -> np.ndarray:
    return apply_gain(colored_noise(samples, exponent=1.0, rng=rng), NOISE_DB)


def _level(speech: np.ndarray, db: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(speech, dtype=np.float64)) + 1e-12))
    return (speech * (10 ** (db / 20) / rms)).astype(np.float32)


def running_audio(
    seconds: float, voices: Sequence[Voice], cache: SpeechCache, seed: int = SEED
) -> np.ndarray:
    """``seconds`` of running synthetic speech, noise bursts and pauses over low noise."""
    rng = np.random.default_rng(seed)
    sentences = sentence_texts(load_vocabulary(), POOL_SIZE, rng)
    words = [str(w) for w in rng.choice(load_vocabulary(), size=POOL_SIZE)]
    audio = cache.get_many(sample_renditions(sentences + words, voices, per_word=1, rng=rng))
    pool = (sentences, audio[:POOL_SIZE], words, audio[POOL_SIZE:])
    speech, _ = build_episode(StreamRecipe(seconds, seed=seed), seconds, pool, rng)
    return speech + _noise(speech.size, rng)


@dataclasses.dataclass
class PhraseStream:
    """Audio with a phrase placed at known times (seconds from the start)."""

    audio: np.ndarray
    starts_s: np.ndarray
    ends_s: np.ndarray


def phrase_stream(
    phrase: str, voices: Sequence[Voice], cache: SpeechCache, placements: int, seed: int = SEED
) -> PhraseStream:
    """Renditions of ``phrase`` by several voices, trimmed, 2-3 s apart in low noise."""
    rng = np.random.default_rng([seed, 1])
    renditions = sample_renditions([phrase], voices, per_word=placements, rng=rng)
    pieces, starts, ends, t = [], [], [], 0
    for clip in cache.get_many(renditions):
        gap = int(rng.uniform(*GAP_S) * SAMPLE_RATE_HZ)
        speech = _level(trim_silence(clip), SPEECH_DB)
        pieces += [np.zeros(gap, np.float32), speech]
        starts.append(t + gap)
        ends.append(t + gap + speech.size)
        t += gap + speech.size
    pieces.append(np.zeros(int(GAP_S[1] * SAMPLE_RATE_HZ), np.float32))
    audio = np.concatenate(pieces)
    audio += _noise(audio.size, rng)
    return PhraseStream(audio, np.array(starts) / SAMPLE_RATE_HZ, np.array(ends) / SAMPLE_RATE_HZ)


def _chunk_samples() -> int:
    return SAMPLE_RATE_HZ * CHUNK_MS // 1000


def stream_cpu_s(detector: Detector, audio: np.ndarray) -> tuple[float, float]:
    """Stream ``audio`` through a fresh state of ``detector``: (CPU s, wall s)."""
    detector.reset()
    step = _chunk_samples()
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, audio.size, step):
        detector.push(audio[start : start + step])
    return time.process_time() - cpu, time.perf_counter() - wall


def measure_wake_words(
    engine: Engine,
    model: WakeWordModel,
    threshold: float,
    audio: np.ndarray,
    *,
    repetitions: int = REPETITIONS,
    many: int = MANY_WAKE_WORDS,
) -> dict[str, Any]:
    """CPU time per hour of audio with one wake word and with ``many``, measured alternately."""
    copies = [dataclasses.replace(model, name=f"{model.name}-{i}") for i in range(many)]
    detectors = {
        n: Detector(engine, [WakeWord(m, threshold, SMOOTHING_HOPS, REFRACTORY_S) for m in models])
        for n, models in ((1, [model]), (many, copies))
    }
    warm_up = audio[: 10 * SAMPLE_RATE_HZ]
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
    engine: Engine,
    model: WakeWordModel,
    threshold: float,
    stream: PhraseStream,
    *,
    calibrated_threshold: float | None = None,
) -> dict[str, Any]:
    """Stream the placed phrases; latency of each detected one and the compute per hop."""
    hops: list[tuple[float, float]] = []
    detector = Detector(
        engine, [WakeWord(model, threshold, SMOOTHING_HOPS, REFRACTORY_S)],
        on_hop=lambda t, s: hops.append((t, float(s[0]))),
    )  # fmt: skip
    step = _chunk_samples()
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
    base: BaseModel,
    recipe: WakeRecipe,
    cache: SpeechCache,
    *,
    show_progress: bool = True,
) -> tuple[WakeWordModel, dict[str, Any]]:
    """Train with all cores, as ``earshot train`` does; the model and what the training took."""
    from threadpoolctl import threadpool_limits

    streams_before = _files(default_stream_dir())
    renditions_before = _count_files(cache.directory)
    clock, cpu = time.perf_counter(), time.process_time()
    with threadpool_limits(os.cpu_count() or 1):
        model, report = train_wake_word(
            name, phrase, base, recipe, smoothing_hops=SMOOTHING_HOPS, refractory_s=REFRACTORY_S,
            speech_cache=cache, progress=_StageNames() if show_progress else None,
        )  # fmt: skip
    wall_s, cpu_s = time.perf_counter() - clock, time.process_time() - cpu
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


def run(
    *,
    seconds: float = MEASURED_AUDIO_S,
    repetitions: int = REPETITIONS,
    placements: int = PLACEMENTS,
    threshold: float = LATENCY_THRESHOLD,
    model_path: Path | None = None,
    base_path: Path = SHIPPED_BASE_MODEL,
    small: bool = False,
    skip_training: bool = False,
    backend: Backend = "auto",
    show_progress: bool = True,
) -> dict[str, Any]:
    """All three measurements; returns the figures as a dict (see the module's docstring)."""
    from threadpoolctl import threadpool_limits

    def say(text: str) -> None:
        if show_progress:
            print(text, file=sys.stderr, flush=True)

    recipe = SMALL_RECIPE if small else WakeRecipe()
    recipe_name = "small" if small else "default"
    base = BaseModel.load(base_path)
    cache = SpeechCache()
    voices = available_voices()
    held_out = split_voices(voices, seed=SEED).test
    result: dict[str, Any] = {
        "benchmark": "wake",
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "chunk_ms": CHUNK_MS,
        "recipe": recipe_name,
    }
    if model_path is not None:
        assert base.manifest is not None
        model = WakeWordModel.load(model_path, base_sha256=base.manifest.sha256)
        result["model"] = {"source": str(model_path), "name": model.name, "phrase": model.phrase}
    else:
        say(f"training {PHRASE!r} ({recipe_name} recipe)")
        model, trained = train(PHRASE, PHRASE, base, recipe, cache, show_progress=show_progress)
        result["model"] = {"source": "trained", "name": PHRASE, "phrase": PHRASE, **trained}
    calibrated, _ = model.threshold_for(
        FALSE_ALARMS_PER_HOUR, smoothing_hops=SMOOTHING_HOPS, refractory_s=REFRACTORY_S
    )
    say("synthesizing the test audio")
    audio = running_audio(seconds, held_out, cache)
    placed = phrase_stream(model.phrase, held_out, cache, placements)
    with threadpool_limits(1):
        engine = create_engine(base.inference_network(), backend=backend)
        result["engine"] = engine.description
        say(f"streaming {seconds:g} s with 1 and {MANY_WAKE_WORDS} wake words")
        result["wake_words"] = measure_wake_words(
            engine, model, calibrated, audio, repetitions=repetitions
        )
        say(f"streaming {placements} placed phrases")
        result["latency"] = measure_latency(
            engine, model, threshold, placed, calibrated_threshold=calibrated
        )
    if skip_training:
        result["training"] = None
    else:
        phrase = fresh_phrase(np.random.default_rng())
        say(f"timing the training of {phrase!r} ({recipe_name} recipe)")
        _, timed = train("fresh", phrase, base, recipe, cache, show_progress=show_progress)
        result["training"] = {
            **timed,
            "target_s": TARGET_TRAINING_S,
            "meets_target": timed["seconds"] < TARGET_TRAINING_S,
        }
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def _verdict(meets: bool) -> str:
    return "meets" if meets else "MISSES"


def print_table(result: dict[str, Any]) -> None:
    """The figures with their targets, for people."""
    model, ww, lat = result["model"], result["wake_words"], result["latency"]
    tr = result["training"]
    source = model["source"]
    if source == "trained":
        source = f"trained, {result['recipe']} recipe, {model['seconds']:.1f} s"
        if model["caches_built"]:
            source += ", building " + ", ".join(model["caches_built"])
    print(f"wake-word benchmark: model {model['phrase']!r} ({source})")
    print(
        f"base network on {result['engine']}, BLAS 1 thread; {result['cpu_count']} CPU cores, "
        f"1-min load average {result['load_average_at_start'][0]:g} at start, "
        f"{result['load_average_at_end'][0]:g} at end"
    )
    row = "  {:<36}{:>24}   {}"
    n = str(ww["wake_words"][1])
    print(
        f"\nten vs one wake word: {ww['audio_seconds']:g} s of speech and noise in "
        f"{result['chunk_ms']} ms chunks, median of {ww['repetitions']} alternated runs"
    )
    print(row.format("1 wake word", f"{ww['cpu_s_per_hour']['1']:.2f} s CPU/h", ""))
    print(row.format(f"{n} wake words", f"{ww['cpu_s_per_hour'][n]:.2f} s CPU/h", ""))
    print(
        row.format(
            f"{n} / 1", f"{ww['ratio']:.3f}x",
            f"target <= {ww['target_ratio']}x: {_verdict(ww['meets_target'])}",
        )
    )  # fmt: skip
    rtf = ww["real_time_factor"]
    print(row.format("real-time factor (1 / 10)", f"{rtf['1']:.4f} / {rtf[n]:.4f}", ""))
    print(
        f"\ndetection latency: {lat['placements']} placed phrases ({lat['audio_seconds']:g} s), "
        f"threshold {lat['threshold']:g}"
    )
    print(
        row.format(
            "detected", f"{lat['detected']}/{lat['placements']} ({lat['hit_rate']:.0%})",
            f"{lat['false_alarms']} false alarms",
        )
    )  # fmt: skip
    if "threshold_1_per_hour" in lat:
        print(
            row.format(
                f"detected at 1 false alarm/h ({lat['threshold_1_per_hour']:.4f})",
                f"{lat['hit_rate_at_1_per_hour']:.0%}", "",
            )
        )  # fmt: skip
    if lat["detected"]:
        print(
            row.format(
                "latency median / p90",
                f"{lat['latency_median_ms']:.0f} / {lat['latency_p90_ms']:.0f} ms",
                f"target median < {lat['target_latency_median_ms']:g} ms: "
                f"{_verdict(lat['meets_target'])}",
            )
        )
        print(
            row.format(
                f"  with the {result['chunk_ms']} ms block wait",
                f"{lat['latency_with_block_wait_median_ms']:.0f} / "
                f"{lat['latency_with_block_wait_p90_ms']:.0f} ms",
                "",
            )
        )
    print(row.format("compute per hop (mean)", f"{lat['compute_ms_per_hop']:.2f} ms", ""))
    if tr is None:
        print("\ntraining: skipped (--skip-training)")
        return
    print(f"\ntraining a wake word from text: {tr['phrase']!r}, {result['recipe']} recipe")
    print(
        row.format(
            "time (wall)", f"{tr['seconds']:.1f} s",
            f"target < {tr['target_s']:g} s: {_verdict(tr['meets_target'])}",
        )
    )  # fmt: skip
    caches = "warm" if tr["caches_warm"] else "cold: built " + ", ".join(tr["caches_built"])
    print(row.format("negative-stream caches", caches.split(":")[0], caches.partition(": ")[2]))
    print(row.format("renditions synthesized", str(tr["renditions_synthesized"]), ""))
    stages = ", ".join(f"{k} {v:g} s" for k, v in tr["stages_s"].items())
    print(f"  stages: {stages}; {tr['epochs_last_fit']} epochs in the last fit")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns 0."""
    parser = argparse.ArgumentParser(
        prog="earshot bench wake", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--seconds", type=float, default=MEASURED_AUDIO_S,
        help=f"audio streamed per run of part 1, in s (default {MEASURED_AUDIO_S})",
    )  # fmt: skip
    parser.add_argument(
        "--repetitions", type=int, default=REPETITIONS,
        help=f"runs of each detector in part 1; the median counts (default {REPETITIONS})",
    )  # fmt: skip
    parser.add_argument(
        "--placements", type=int, default=PLACEMENTS,
        help=f"phrases placed in the latency stream (default {PLACEMENTS})",
    )  # fmt: skip
    parser.add_argument(
        "--threshold", type=float, default=LATENCY_THRESHOLD,
        help=f"detection threshold of the latency stream (default {LATENCY_THRESHOLD})",
    )  # fmt: skip
    parser.add_argument(
        "--model", type=Path, metavar="PATH",
        help=f"a wake-word model file instead of training {PHRASE!r} first",
    )  # fmt: skip
    parser.add_argument(
        "--base", type=Path, default=SHIPPED_BASE_MODEL, metavar="PATH",
        help="base model (default: the shipped one)",
    )  # fmt: skip
    parser.add_argument(
        "--small", action="store_true",
        help="train with the small recipe of `earshot train --small` (seconds, not a minute)",
    )  # fmt: skip
    parser.add_argument(
        "--skip-training", action="store_true", help="leave out part 3 (training time)"
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, default="auto", help="where the base network runs"
    )
    args = parser.parse_args(argv)
    if args.seconds < 10 or args.repetitions < 1 or args.placements < 1:
        parser.error("--seconds must be >= 10, --repetitions and --placements >= 1")
    result = run(
        seconds=args.seconds, repetitions=args.repetitions, placements=args.placements,
        threshold=args.threshold, model_path=args.model, base_path=args.base, small=args.small,
        skip_training=args.skip_training, backend=args.backend,
    )  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
