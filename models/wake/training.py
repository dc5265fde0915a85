"""Train a wake-word detector from its text, on the device, and calibrate its threshold.

``train_wake_word("mirror", "hey smart mirror", base)``:

1. renders the phrase with every local synthesizer (`models.speech.synth`, cached), and its
   confusables (`models.speech.phonetics.confusable_texts`: its parts, repetitions and phonetically
   close words and phrases);
2. makes head inputs (`models.wake.data.context_examples`): the phrase ending near the newest
   window (positives), confusables and partial phrases (negatives), each varied, mixed with
   preceding speech, noise and gain, and embedded by the base model;
3. adds every hop of a cached negative stream of running speech and noise as negatives;
4. trains a two-layer head on the base's frozen embedding (`models.nn.trainer`);
5. scores a separate cached calibration stream (voices unseen in training) and keeps those
   scores in the model, so the threshold for a false-alarm target is known.

The negative streams do not depend on the wake word: the first wake word on a base model builds
them (minutes), later ones reuse them (seconds).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kernels.errors import ModelError
from models.base.model import BaseModel
from models.nn.checkpoint import split_rows
from models.nn.layers import Sequential
from models.nn.linear_layers import Dense
from models.nn.norm_layers import ReLU
from models.nn.trainer import EpochRecord, TrainConfig, Trainer, TrainingEngine
from models.speech.corpus import Corpus
from models.speech.dataset import load_vocabulary, sample_renditions, trim_silence
from models.speech.phonetics import confusable_texts, phrase_words
from models.speech.synth import SpeechCache, Voice, available_voices
from models.wake.context import HOP_S
from models.wake.data import (
    ExampleSpec,
    NegativeStream,
    StreamKind,
    StreamRecipe,
    context_examples,
    default_stream_dir,
    load_or_build_stream,
    load_or_build_word_bank,
    synthesize,
)
from models.wake.metrics import MAX_THRESHOLD
from models.wake.model import (
    OTHER_LABEL,
    WAKE_FORMAT_VERSION,
    WakeHead,
    WakeWordModel,
    recordings_digest,
)

Progress = Callable[[str, int, int], None]
PARTIAL_SHARE = (0.3, 0.7)
"""A partial phrase keeps this share of it: from its start (mostly) or from its end."""
POSITIVE_SPEC = ExampleSpec(end_margin_s=(0.0, 0.35))
CONFUSABLE_SPEC = ExampleSpec(end_margin_s=(0.0, 0.6))
PARTIAL_SPEC = ExampleSpec(end_margin_s=(0.0, 0.3))


@dataclass(frozen=True)
class WakeRecipe:
    """How a wake word's detector is trained.

    Parameters
    ----------
    phrase_renditions : int
        Synthesized renditions of the phrase (voices, rates, pitches).
    positive_copies : int
        Placed, augmented examples of each rendition.
    confusable_renditions, confusable_copies : int
        The same for each confusable text.
    partial_copies : int
        Partial-phrase negatives per phrase rendition.
    filler_words : int
        Renditions of other words that may precede an example, and make babble.
    hidden : int
        Units of the head's hidden layer.
    train_stream_s, calibration_stream_s : float
        Lengths of the negative streams for training and calibration.
    max_stream_negatives : int
        At most this many training-stream hops are used as negatives.
    word_bank_renditions : int
        Renditions of every vocabulary word in the (cached) word bank of negatives.
    recording_copies : int
        Placed, augmented examples of each of the user's own recordings of the phrase.
    hard_negative_copies, hard_negative_share : int, float
        After a first fit, the highest-scoring share of negatives is repeated this many more
        times and the head is trained again: false alarms come from a few hard cases.
    epochs : int
        Most epochs of head training.
    seed : int
        Seeds everything.
    """

    phrase_renditions: int = 160
    positive_copies: int = 4
    confusable_renditions: int = 6
    confusable_copies: int = 2
    partial_copies: int = 1
    filler_words: int = 48
    hidden: int = 32
    train_stream_s: float = 1200.0
    calibration_stream_s: float = 3600.0
    max_stream_negatives: int = 12000
    word_bank_renditions: int = 4
    recording_copies: int = 40
    hard_negative_copies: int = 3
    hard_negative_share: float = 0.05
    epochs: int = 40
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The recipe and the wake-word format, for the manifest."""
        return {**asdict(self), "wake_format": WAKE_FORMAT_VERSION}


SMALL_RECIPE = WakeRecipe(
    phrase_renditions=32, positive_copies=2, confusable_renditions=2, confusable_copies=1,
    filler_words=16, train_stream_s=60.0, calibration_stream_s=60.0, word_bank_renditions=0,
    max_stream_negatives=2000, epochs=20,
)  # fmt: skip
"""``earshot train --small``: seconds of work instead of a minute, for trials and tests."""


def _streams(recipe: WakeRecipe) -> list[tuple[StreamKind, float]]:
    return [("train", recipe.train_stream_s), ("calibration", recipe.calibration_stream_s)]


def _phrase_seed(phrase: str) -> int:
    return int.from_bytes(hashlib.sha256(phrase.encode()).digest()[:4], "little")


def _partial(clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    speech = trim_silence(clip)
    keep = max(1, int(speech.size * rng.uniform(*PARTIAL_SHARE)))
    return speech[:keep] if rng.random() < 0.7 else speech[-keep:]


@dataclass
class PhraseExamples:
    """A phrase's own training material: what depends on the phrase, not on the user.

    Attributes
    ----------
    positives : np.ndarray
        Head inputs of placed, augmented renditions of the phrase [n, inputs].
    negatives : np.ndarray
        Head inputs of its confusables and partial renditions.
    durations : np.ndarray
        Seconds of speech in each positive.
    fillers : list of np.ndarray
        Other words' audio, to put before examples and to make babble from.
    confusable_texts : list of str
        What the confusables say.
    """

    positives: np.ndarray
    negatives: np.ndarray
    durations: np.ndarray
    fillers: list[np.ndarray]
    confusable_texts: list[str]

    def save(self, path: Path) -> None:
        """Write to ``path`` (.npz) atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with partial.open("wb") as f:
            np.savez(
                f,
                positives=self.positives.astype(np.float16),
                negatives=self.negatives.astype(np.float16),
                durations=self.durations,
                fillers=np.concatenate(self.fillers),
                filler_lengths=np.array([x.size for x in self.fillers]),
                confusable_texts=np.array(self.confusable_texts),
            )
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> PhraseExamples:
        """Read what `save` wrote."""
        with np.load(path) as data:
            fillers = split_rows(data["fillers"], data["filler_lengths"])
            return cls(
                data["positives"].astype(np.float32), data["negatives"].astype(np.float32),
                data["durations"], fillers, [str(t) for t in data["confusable_texts"]],
            )  # fmt: skip


def _synthesize(
    phrase: str,
    recipe: WakeRecipe,
    voices: Sequence[Voice],
    cache: SpeechCache,
    rng: np.random.Generator,
    progress: Progress | None,
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[str]]:
    """Audio of the phrase's renditions, of its confusables and of filler words; their texts."""
    vocabulary = load_vocabulary()
    confusables = confusable_texts(phrase, vocabulary)
    own = set(phrase_words(phrase))
    others = [w for w in vocabulary if w not in own]
    fillers = [str(w) for w in rng.choice(others, size=recipe.filler_words, replace=False)]
    renditions = [
        *sample_renditions([phrase], voices, per_word=recipe.phrase_renditions, rng=rng),
        *sample_renditions(confusables, voices, per_word=recipe.confusable_renditions, rng=rng),
        *sample_renditions(fillers, voices, per_word=1, rng=rng),
    ]
    audio = synthesize(renditions, cache, progress)
    n_phrase = recipe.phrase_renditions
    n_confusable = len(confusables) * recipe.confusable_renditions
    return (
        audio[:n_phrase],
        audio[n_phrase : n_phrase + n_confusable],
        audio[n_phrase + n_confusable :],
        confusables,
    )


def _build_phrase_examples(
    phrase: str,
    base: BaseModel,
    recipe: WakeRecipe,
    voices: Sequence[Voice],
    cache: SpeechCache,
    progress: Progress | None,
) -> PhraseExamples:
    rng = np.random.default_rng([recipe.seed, _phrase_seed(phrase)])
    said, confusables, fillers, texts = _synthesize(phrase, recipe, voices, cache, rng, progress)
    jobs = [
        ("positives", said, recipe.positive_copies, POSITIVE_SPEC, None),
        ("confusables", confusables, recipe.confusable_copies, CONFUSABLE_SPEC, None),
        ("partials", said, recipe.partial_copies, PARTIAL_SPEC, _partial),
    ]
    made: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    total = sum(len(clips) * copies for _, clips, copies, _, _ in jobs)
    done = 0
    for name, clips, copies, spec, transform in jobs:
        made[name] = context_examples(
            base, clips, copies=copies, spec=spec, fillers=fillers, rng=rng, transform=transform
        )
        done += len(clips) * copies
        if progress is not None:
            progress("examples", done, total)
    negatives = np.concatenate([made[k][0] for k in ("confusables", "partials") if made[k][0].size])
    positives, durations = made["positives"]
    return PhraseExamples(positives, negatives, durations, fillers, texts)


def phrase_examples(
    phrase: str,
    base: BaseModel,
    recipe: WakeRecipe,
    *,
    voices: Sequence[Voice],
    speech_cache: SpeechCache | None = None,
    directory: Path | None = None,
    progress: Progress | None = None,
) -> PhraseExamples:
    """The phrase's examples from the cache (``$XDG_CACHE_HOME/earshot/wake``), made if needed.

    Keyed by the phrase, the base model, the recipe and the voices: enrollment, which fine-tunes
    a trained wake word, finds the very examples its training used.
    """
    sha = base.manifest.sha256 if base.manifest is not None else "unsaved"
    key_text = json.dumps(
        [phrase, sha, recipe.as_dict(), sorted(str(v) for v in voices)], sort_keys=True
    )
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    path = (directory or default_stream_dir()) / f"examples-{key}.npz"
    if path.is_file():
        try:
            return PhraseExamples.load(path)
        except (OSError, ValueError, KeyError, EOFError):
            pass  # half-written or from an older layout: make it again
    examples = _build_phrase_examples(
        phrase, base, recipe, voices, speech_cache or SpeechCache(), progress
    )
    examples.save(path)
    return examples


@dataclass
class Negatives:
    """The phrase-independent negatives: training rows and the calibration stream."""

    train: np.ndarray
    calibration: NegativeStream


def negatives_for(
    phrase: str,
    base: BaseModel,
    recipe: WakeRecipe,
    *,
    voices: Sequence[Voice],
    speech_cache: SpeechCache | None = None,
    directory: Path | None = None,
    progress: Progress | None = None,
) -> Negatives:
    """Training negatives from the cached stream and word bank, and the calibration stream.

    Hops near anything saying ``phrase`` are left out. Streams and the word bank are built
    (minutes) by the first wake word on a base model and cached.
    """
    options: dict[str, Any] = {"voices": voices, "speech_cache": speech_cache}
    streams = {}
    for kind, length in _streams(recipe):
        recipe_ = StreamRecipe(length, seed=recipe.seed)
        streams[kind] = load_or_build_stream(
            base, recipe_, kind, directory=directory, progress=progress, **options
        )
    rows = [_stream_negatives(streams["train"], phrase, recipe.max_stream_negatives, recipe.seed)]
    if recipe.word_bank_renditions > 0:
        bank = load_or_build_word_bank(
            base, renditions_per_word=recipe.word_bank_renditions, seed=recipe.seed,
            directory=directory, progress=progress, **options,
        )  # fmt: skip
        rows.append(bank.negatives(phrase))
    return Negatives(np.concatenate(rows), streams["calibration"])


def _stream_negatives(stream: NegativeStream, phrase: str, limit: int, seed: int) -> np.ndarray:
    rows = [contexts[keep] for contexts, keep in stream.contexts(phrase)]
    negatives = np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)
    if negatives.shape[0] > limit:
        rng = np.random.default_rng([seed, _phrase_seed(phrase)])
        negatives = negatives[np.sort(rng.choice(negatives.shape[0], limit, replace=False))]
    return negatives


def _split(
    x: np.ndarray, y: np.ndarray, share: float, rng: np.random.Generator
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    order = rng.permutation(y.size)
    n_val = max(1, int(share * y.size))
    val, train = order[:n_val], order[n_val:]
    return (x[train], y[train]), (x[val], y[val])


def _fit_once(
    x_train: np.ndarray,
    y_train: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray],
    labels: tuple[str, str],
    recipe: WakeRecipe,
    init: WakeHead | None,
    lr: float,
    engine: TrainingEngine,
    progress: Progress | None,
) -> tuple[WakeHead, list[EpochRecord]]:
    rng = np.random.default_rng(recipe.seed)
    hidden = init.w1.shape[1] if init is not None else recipe.hidden
    head = Sequential(
        [
            Dense(x_train.shape[1], hidden, rng=rng),
            ReLU(),
            Dense(hidden, 2, rng=rng, init="lecun"),
        ]
    )
    if init is not None:
        head.load_state_dict(init.state())
    config = TrainConfig(
        epochs=recipe.epochs, batch_size=256, lr=lr, warmup_epochs=0, patience=10,
        time_masks=0, freq_masks=0, seed=recipe.seed,
    )  # fmt: skip
    trainer = Trainer(
        head, config, architecture={"name": "wake-head", "args": {}}, labels=list(labels),
        engine=engine,
    )  # fmt: skip

    def on_epoch(record: EpochRecord) -> None:
        if progress is not None:
            progress("training", record.epoch, recipe.epochs)

    x_val, y_val = validation
    history = trainer.fit(
        Corpus(x_train, y_train, labels), Corpus(x_val, y_val, labels), on_epoch=on_epoch
    )
    return WakeHead.from_state(head.state_dict()), history


def fit_wake_head(
    positives: np.ndarray,
    negatives: np.ndarray,
    *,
    labels: tuple[str, str],
    recipe: WakeRecipe,
    init: WakeHead | None = None,
    lr: float = 3e-3,
    engine: TrainingEngine = "numpy",
    progress: Progress | None = None,
) -> tuple[WakeHead, dict[str, Any]]:
    """Train a head on positive and negative contexts, then again with the hard negatives.

    A tenth of the rows is held out for early stopping. ``init`` starts from a trained head
    (fine-tuning) instead of random weights; ``engine`` is where the steps run
    (`models.nn.trainer.Trainer`: ``"auto"`` is wgpu where a real GPU exists). Returns the head
    and training metrics.
    """
    rng = np.random.default_rng(recipe.seed)
    x = np.concatenate([positives, negatives]).astype(np.float32)
    y = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))]).astype(np.int16)
    (x_train, y_train), validation = _split(x, y, 0.1, rng)
    head, history = _fit_once(
        x_train, y_train, validation, labels, recipe, init, lr, engine, progress
    )
    if recipe.hard_negative_copies > 0:
        scores = head.scores(x_train)
        negative = np.flatnonzero(y_train == 0)
        hard = negative[np.argsort(scores[negative])[::-1]]
        hard = hard[: max(1, int(recipe.hard_negative_share * hard.size))]
        extra = np.tile(hard, recipe.hard_negative_copies)
        x_train = np.concatenate([x_train, x_train[extra]])
        y_train = np.concatenate([y_train, y_train[extra]])
        head, history = _fit_once(
            x_train, y_train, validation, labels, recipe, init, lr, engine, progress
        )
    x_val, y_val = validation
    val_scores = head.scores(x_val)
    return head, {
        "validation_accuracy": max(r.val_accuracy for r in history),
        "validation_positive_recall_at_0.5": float(np.mean(val_scores[y_val == 1] >= 0.5)),
        "epochs": len(history),
    }


def calibration_scores(head: WakeHead, stream: NegativeStream, phrase: str) -> list[np.ndarray]:
    """Raw per-hop scores over a negative stream; hops near the phrase itself score 0."""
    return [
        np.where(keep, head.scores(contexts), 0.0).astype(np.float32)
        for contexts, keep in stream.contexts(phrase)
    ]


def train_wake_word(
    name: str,
    phrase: str,
    base: BaseModel,
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
    base : BaseModel
        The base model; its embedding is frozen.
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
    if base.manifest is None:
        raise ModelError("base model: train wake words on a saved (loaded) base model")
    recipe = recipe or WakeRecipe()
    rng = np.random.default_rng([recipe.seed, _phrase_seed(phrase)])
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
        name, phrase, head, calibration_scores(head, negatives.calibration, phrase),
        negatives.calibration.hours, float(np.median(examples.durations)), base.manifest.sha256,
        extra={
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


def calibration_report(
    model: WakeWordModel, smoothing_hops: int, refractory_s: float
) -> dict[str, Any]:
    """The false-alarm curve at the given settings, as stored in the model's manifest."""
    curve = model.false_alarm_curve(smoothing_hops, refractory_s)
    useful = curve.per_hour <= 100
    return {
        "smoothing_hops": smoothing_hops,
        "refractory_s": refractory_s,
        "hop_s": HOP_S,
        "hours": curve.hours,
        "thresholds": [round(float(t), 6) for t in curve.thresholds[useful]],
        "false_alarms_per_hour": [round(float(r), 4) for r in curve.per_hour[useful]],
        "max_threshold": MAX_THRESHOLD,
    }
