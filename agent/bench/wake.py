"""Benchmark of wake-word detection and training: cost of many wake words, latency, training time.

In one run, with BLAS capped at one thread as the agent runs (training excepted):

1. **Ten wake words against one.** ``--seconds`` of running synthetic speech (sentences and words
   from the held-out voices, `models.wake.streams.build_episode`) over low noise are streamed in
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
gives one. The audio is made in `agent.bench.wake_audio`, the measurements are in
`agent.bench.wake_measurement`, the table in `agent.bench.wake_report`. Run ``earshot bench
wake`` or ``python -m agent.bench.wake``; ``--json`` prints one JSON document.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.bench.common import (
    CHUNK_MS,
    MEASURED_AUDIO_S,
    PHRASE,
    load_average,
    machine,
    print_json,
    say,
    suite_parser,
)
from agent.bench.wake_audio import SEED, phrase_stream, running_audio
from agent.bench.wake_measurement import (
    MANY_WAKE_WORDS,
    REFRACTORY_S,
    REPETITIONS,
    SMOOTHING_HOPS,
    fresh_phrase,
    measure_latency,
    measure_wake_words,
    train,
)
from agent.bench.wake_report import print_table
from kernels.runtime import BACKENDS, Backend
from models.base.loading import load_base
from models.speech.dataset import split_voices
from models.speech.synth import SpeechCache, available_voices
from models.wake.model import WakeWordModel
from models.wake.recipe import SMALL_RECIPE, WakeRecipe

PLACEMENTS = 36
LATENCY_THRESHOLD = 0.5
FALSE_ALARMS_PER_HOUR = 1.0
TARGET_TRAINING_S = 60.0


def run(
    *,
    seconds: float = MEASURED_AUDIO_S,
    repetitions: int = REPETITIONS,
    placements: int = PLACEMENTS,
    threshold: float = LATENCY_THRESHOLD,
    model_path: Path | None = None,
    base_spec: str | None = None,
    small: bool = False,
    skip_training: bool = False,
    backend: Backend = "auto",
    show_progress: bool = True,
) -> dict[str, Any]:
    """All three measurements; returns the figures as a dict (see the module's docstring)."""
    from threadpoolctl import threadpool_limits

    def progress(text: str) -> None:
        if show_progress:
            say(text)

    recipe = SMALL_RECIPE if small else WakeRecipe()
    recipe_name = "small" if small else "default"
    base = load_base(base_spec)
    cache = SpeechCache()
    voices = available_voices()
    held_out = split_voices(voices, seed=SEED).test
    result: dict[str, Any] = {
        "benchmark": "wake",
        "machine": machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": load_average(),
        "chunk_ms": CHUNK_MS,
        "recipe": recipe_name,
    }
    if model_path is not None:
        model = WakeWordModel.load(model_path, base_sha256=base.sha256)
        result["model"] = {"source": str(model_path), "name": model.name, "phrase": model.phrase}
    else:
        progress(f"training {PHRASE!r} ({recipe_name} recipe)")
        model, trained = train(PHRASE, PHRASE, base, recipe, cache, show_progress=show_progress)
        result["model"] = {"source": "trained", "name": PHRASE, "phrase": PHRASE, **trained}
    calibrated, _ = model.threshold_for(
        FALSE_ALARMS_PER_HOUR, smoothing_hops=SMOOTHING_HOPS, refractory_s=REFRACTORY_S
    )
    progress("synthesizing the test audio")
    audio = running_audio(seconds, held_out, cache)
    placed = phrase_stream(model.phrase, held_out, cache, placements)
    with threadpool_limits(1):
        result["engine"] = f"{base.name} base, detector backend {backend}"
        progress(f"streaming {seconds:g} s with 1 and {MANY_WAKE_WORDS} wake words")
        result["wake_words"] = measure_wake_words(
            base, model, calibrated, audio, repetitions=repetitions, backend=backend
        )
        progress(f"streaming {placements} placed phrases")
        result["latency"] = measure_latency(
            base, model, threshold, placed, calibrated_threshold=calibrated, backend=backend
        )
    if skip_training:
        result["training"] = None
    else:
        phrase = fresh_phrase(np.random.default_rng())
        progress(f"timing the training of {phrase!r} ({recipe_name} recipe)")
        _, timed = train("fresh", phrase, base, recipe, cache, show_progress=show_progress)
        result["training"] = {
            **timed,
            "target_s": TARGET_TRAINING_S,
            "meets_target": timed["seconds"] < TARGET_TRAINING_S,
        }
    result["load_average_at_end"] = load_average()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns 0."""
    parser = suite_parser("earshot bench wake", __doc__)
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
        "--base", default=None, metavar="NAME|PATH",
        help="base: speech_embedding (default), dscnn, or a base file",
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
        threshold=args.threshold, model_path=args.model, base_spec=args.base, small=args.small,
        skip_training=args.skip_training, backend=args.backend,
    )  # fmt: skip
    if args.json:
        print_json(result)
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
