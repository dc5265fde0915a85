"""Train a wake-word detector from its text, on the device, and calibrate its threshold.

``train_wake_word("mirror", "hey smart mirror", base)``:

1. renders the phrase with every local synthesizer (`models.speech.synth`, cached), and its
   confusables (`models.speech.phonetics.confusable_texts`: its parts, repetitions and phonetically
   close words and phrases);
2. makes head inputs (`models.wake.phrase_examples`, by `models.wake.examples.context_examples`):
   the phrase ending near the newest window (positives), confusables and partial phrases
   (negatives), each varied, mixed with preceding speech, noise and gain, and embedded by the
   base model;
3. adds every hop of a cached negative stream of running speech and noise, and a cached bank of
   vocabulary words, as negatives (`models.wake.negatives`);
4. trains a two-layer head on the base's frozen embedding (`models.wake.head_training`);
5. scores a separate cached calibration stream (voices unseen in training) and keeps those
   scores in the model, so the threshold for a false-alarm target is known
   (`models.wake.calibration`).

The negative streams do not depend on the wake word: the first wake word on a base model builds
them (minutes), later ones reuse them (seconds). How much of everything is made is a
`models.wake.recipe.WakeRecipe`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kernels.errors import ModelError
from models.base.geometry import Embedder
from models.speech.synth import SpeechCache, Voice, available_voices
from models.wake.calibration import calibration_report, calibration_scores
from models.wake.examples import Progress, context_examples
from models.wake.head_training import fit_wake_head
from models.wake.model import OTHER_LABEL, WakeWordModel, context_record, recordings_digest
from models.wake.negatives import negatives_for
from models.wake.phrase_examples import POSITIVE_SPEC, phrase_examples
from models.wake.recipe import WakeRecipe, phrase_seed


def train_wake_word(
    name: str,
    phrase: str,
    base: Embedder,
    recipe: WakeRecipe | None = None,
    *,
    smoothing_hops: int = 2,
    refractory_s: float = 2.0,
    recordings: Sequence[np.ndarray] = (),
    voices: Sequence[Voice] | None = None,
    speech_cache: SpeechCache | None = None,
    stream_dir: Path | None = None,
    progress: Progress | None = None,
) -> tuple[WakeWordModel, dict[str, Any]]:
    """Train and calibrate the detector of one wake word; see the module's docstring.

    Parameters
    ----------
    name, phrase : str
        The wake word's name and what is said.
    base : Embedder
        The base (`models.base.geometry`); its embedding is frozen.
    recipe : WakeRecipe, optional
        Amounts of data and training; `WakeRecipe()` by default.
    smoothing_hops, refractory_s
        The detection settings the stored calibration curve is drawn for.
    recordings : sequence of np.ndarray
        The user's own recordings of the phrase (16 kHz mono float): extra positives, each
        placed and augmented ``recipe.recording_copies`` times.
    voices : sequence of Voice, optional
        Synthesizer voices to use (all installed ones by default).
    speech_cache : SpeechCache, optional
        Synthesized-speech cache.
    stream_dir : Path, optional
        Negative-stream cache (``$XDG_CACHE_HOME/earshot/wake`` by default).
    progress : callable, optional
        ``progress(stage, done, total)``.

    Returns
    -------
    model : WakeWordModel
        The trained, calibrated detector (not yet saved).
    report : dict
        ``recipe``, ``metrics`` (accuracies, counts, seconds per stage) and ``curve`` (false
        alarms per hour against threshold on the calibration stream), for `WakeWordModel.save`.
    """
    if base.sha256 == "unsaved":
        raise ModelError("base model: train wake words on a saved (loaded) base model")
    recipe = recipe or WakeRecipe()
    rng = np.random.default_rng([recipe.seed, phrase_seed(phrase)])
    voices = list(voices) if voices is not None else available_voices()
    timer = StageTimer()
    negatives = negatives_for(
        phrase, base, recipe, voices=voices, speech_cache=speech_cache, directory=stream_dir,
        progress=progress,
    )  # fmt: skip
    timer.lap("negative streams")
    examples = phrase_examples(
        phrase, base, recipe, voices=voices, speech_cache=speech_cache, directory=stream_dir,
        progress=progress,
    )  # fmt: skip
    positives = examples.positives
    if recordings:
        own, _ = context_examples(
            base, list(recordings), copies=recipe.recording_copies, spec=POSITIVE_SPEC,
            fillers=examples.fillers, rng=rng,
        )  # fmt: skip
        positives = np.concatenate([positives, own])
    timer.lap("examples")
    head, metrics = fit_wake_head(
        positives, np.concatenate([examples.negatives, negatives.train]),
        labels=(OTHER_LABEL, name), recipe=recipe, progress=progress,
    )  # fmt: skip
    timer.lap("training")
    model = WakeWordModel(
        name, phrase, head, calibration_scores(head, negatives.calibration, phrase, base.geometry),
        negatives.calibration.hours, float(np.median(examples.durations)), base.sha256,
        base.name, context_record(base.geometry), extra={
            "recordings": len(recordings),
            "recordings_sha256": recordings_digest(list(recordings)),
        },
    )  # fmt: skip
    curve = calibration_report(model, smoothing_hops, refractory_s)
    timer.lap("calibration")
    metrics |= {
        "examples": {
            "positives": int(len(positives)),
            "confusable_and_partial": int(len(examples.negatives)),
            "stream": int(len(negatives.train)),
        },
        "confusables": examples.confusable_texts,
        "seconds": timer.seconds,
    }
    return model, {"recipe": recipe.as_dict(), "metrics": metrics, "curve": curve}


class StageTimer:
    """Seconds spent in each stage of a job, for its report."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = time.perf_counter()

    def lap(self, stage: str) -> None:
        """Record the time since the last lap under ``stage``."""
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._clock, 2)
        self._clock = now
