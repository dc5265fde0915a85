"""The negatives a wake word trains on that do not depend on it: streams and the word bank.

`negatives_for` gathers, for one phrase, every hop of the cached training stream
(`models.wake.streams`) and the cached `WordBank` of vocabulary words, leaving out whatever says
the phrase, and hands over the calibration stream. Both are built (minutes) by the first wake
word on a base model and reused (seconds) by later ones.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.base.geometry import Embedder
from models.speech.dataset import load_vocabulary, sample_renditions, split_voices
from models.speech.phonetics import phonemes
from models.speech.synth import SpeechCache, Voice, available_voices
from models.wake.examples import ExampleSpec, Progress, context_examples, synthesize
from models.wake.recipe import WakeRecipe, phrase_seed
from models.wake.streams import (
    STREAM_FORMAT_VERSION,
    NegativeStream,
    StreamKind,
    StreamRecipe,
    contains_phrase,
    default_stream_dir,
    load_or_build_stream,
    words_of,
)


@dataclass
class WordBank:
    """Every vocabulary word, spoken by many training voices, as placed negative examples.

    Words are where false alarms come from, and running speech has too few distinct ones; the
    bank gives the head each vocabulary word ending right where the phrase would. Built once per
    base model and cached, like the streams.
    """

    contexts: np.ndarray
    texts: list[str]

    def negatives(self, phrase: str) -> np.ndarray:
        """Rows whose word is not the phrase (float32)."""
        phonemes(sorted({w for t in self.texts for w in words_of(t)}))  # one espeak-ng run
        keep = np.array([not contains_phrase(t, phrase) for t in self.texts], dtype=bool)
        return self.contexts[keep].astype(np.float32)

    def save(self, path: Path) -> None:
        """Write to ``path`` (.npz) atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with partial.open("wb") as f:
            np.savez(f, contexts=self.contexts.astype(np.float16), texts=np.array(self.texts))
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> WordBank:
        """Read a bank written by `save`."""
        with np.load(path) as data:
            return cls(data["contexts"], [str(t) for t in data["texts"]])


def build_word_bank(
    base: Embedder,
    *,
    renditions_per_word: int,
    seed: int = 0,
    voices: Sequence[Voice] | None = None,
    speech_cache: SpeechCache | None = None,
    progress: Progress | None = None,
) -> WordBank:
    """Synthesize, place and embed every vocabulary word (training voices only)."""
    rng = np.random.default_rng([seed, 7])
    part = split_voices(voices if voices is not None else available_voices(), seed=seed)
    vocabulary = load_vocabulary()
    renditions = sample_renditions(vocabulary, part.train, per_word=renditions_per_word, rng=rng)
    audio = synthesize(renditions, speech_cache or SpeechCache(), progress)
    fillers = [audio[int(i)] for i in rng.choice(len(audio), size=48, replace=False)]
    contexts = []
    for start in range(0, len(audio), 256):
        batch, _ = context_examples(
            base, audio[start : start + 256], copies=1,
            spec=ExampleSpec(end_margin_s=(0.0, 0.5)), fillers=fillers, rng=rng,
        )  # fmt: skip
        contexts.append(batch.astype(np.float16))
        if progress is not None:
            progress("word bank", min(start + 256, len(audio)), len(audio))
    return WordBank(np.concatenate(contexts), [r.text for r in renditions])


def load_or_build_word_bank(
    base: Embedder,
    *,
    renditions_per_word: int,
    seed: int = 0,
    directory: Path | None = None,
    **options: object,
) -> WordBank:
    """The word bank from the cache, built first if needed."""
    sha = base.sha256
    text = json.dumps([renditions_per_word, seed, sha, STREAM_FORMAT_VERSION, load_vocabulary()])
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = (directory or default_stream_dir()) / f"words-{key}.npz"
    if path.is_file():
        return WordBank.load(path)
    bank = build_word_bank(
        base,
        renditions_per_word=renditions_per_word,
        seed=seed,
        **options,  # type: ignore[arg-type]
    )
    bank.save(path)
    return bank


@dataclass
class Negatives:
    """The phrase-independent negatives: training rows and the calibration stream."""

    train: np.ndarray
    calibration: NegativeStream


def negatives_for(
    phrase: str,
    base: Embedder,
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
    rows = [_stream_negatives(streams["train"], base, phrase, recipe.max_stream_negatives,
                              recipe.seed)]  # fmt: skip
    if recipe.word_bank_renditions > 0:
        bank = load_or_build_word_bank(
            base, renditions_per_word=recipe.word_bank_renditions, seed=recipe.seed,
            directory=directory, progress=progress, **options,
        )  # fmt: skip
        rows.append(bank.negatives(phrase))
    return Negatives(np.concatenate(rows), streams["calibration"])


def _stream_negatives(
    stream: NegativeStream, base: Embedder, phrase: str, limit: int, seed: int
) -> np.ndarray:
    rows = [contexts[keep] for contexts, keep in stream.contexts(base.geometry, phrase)]
    negatives = np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)
    if negatives.shape[0] > limit:
        rng = np.random.default_rng([seed, phrase_seed(phrase)])
        negatives = negatives[np.sort(rng.choice(negatives.shape[0], limit, replace=False))]
    return negatives


def _streams(recipe: WakeRecipe) -> list[tuple[StreamKind, float]]:
    return [("train", recipe.train_stream_s), ("calibration", recipe.calibration_stream_s)]
