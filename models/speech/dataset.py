"""Synthetic speech data sets: which words, which voices, which renditions, seeded.

The base model learns from words rendered by local synthesizers (`models.speech.synth`). Voices are
split so that the test set speaks with voices never heard in training: whole espeak-ng variants (in
every accent) and whole flite/festival voices are held out. Everything is drawn from one seeded
generator, so a recipe and a seed name a data set exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsp.constants import SAMPLE_RATE_HZ
from models.paths import VOCABULARY_FILE
from models.speech.synth import Rendition, Voice

COMMAND_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
"""The ten command words of the Speech Commands benchmark."""

SILENCE_LABEL = "_silence_"
UNKNOWN_LABEL = "_unknown_"
SPEECH_COMMANDS_LABELS = (*COMMAND_WORDS, SILENCE_LABEL, UNKNOWN_LABEL)
"""The 12 classes of the Speech Commands benchmark, in label order."""

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


RATE_RANGE = (0.8, 1.25)
"""Speaking-rate multipliers drawn uniformly for each rendition."""
PITCH_RANGE = (25, 75)
"""espeak-ng base pitch range (0-99) drawn uniformly for each rendition."""


def load_vocabulary(path: Path = VOCABULARY_FILE) -> tuple[str, ...]:
    """Words of a vocabulary file: one per line, ``#`` comments, duplicates dropped, order kept."""
    words = (line.strip().lower() for line in path.read_text(encoding="utf-8").splitlines())
    return tuple(dict.fromkeys(w for w in words if w and not w.startswith("#")))


def speaker_of(voice: Voice) -> str:
    """The identity a voice split keeps together: an espeak-ng variant across all its accents."""
    if voice.engine == "espeak-ng":
        return "espeak-ng:+" + (voice.name.partition("+")[2] or "default")
    return str(voice)


@dataclass(frozen=True)
class VoiceSplit:
    """Voices for training, validation and testing; no speaker appears in two of them."""

    train: tuple[Voice, ...]
    validation: tuple[Voice, ...]
    test: tuple[Voice, ...]


def split_voices(
    voices: Sequence[Voice],
    *,
    validation_share: float = 0.1,
    test_share: float = 0.15,
    seed: int = 0,
) -> VoiceSplit:
    """Split by speaker (`speaker_of`), per engine, so each engine is represented in every part.

    Every engine with at least three speakers gives at least one to validation and one to test.
    """
    rng = np.random.default_rng(seed)
    parts: dict[str, list[Voice]] = {"train": [], "validation": [], "test": []}
    for engine in sorted({v.engine for v in voices}):
        speakers = sorted({speaker_of(v) for v in voices if v.engine == engine})
        rng.shuffle(speakers)
        n_test = max(1, round(test_share * len(speakers))) if len(speakers) >= 3 else 0
        n_val = max(1, round(validation_share * len(speakers))) if len(speakers) >= 3 else 0
        assignment = {s: "test" for s in speakers[:n_test]}
        assignment |= {s: "validation" for s in speakers[n_test : n_test + n_val]}
        for voice in voices:
            if voice.engine == engine:
                parts[assignment.get(speaker_of(voice), "train")].append(voice)
    return VoiceSplit(*(tuple(sorted(parts[k])) for k in ("train", "validation", "test")))


def balanced_voices(voices: Sequence[Voice], count: int, rng: np.random.Generator) -> list[Voice]:
    """Draw ``count`` voices giving each engine an equal share (espeak-ng has 700+, festival 3)."""
    by_engine: dict[str, list[Voice]] = {}
    for voice in voices:
        by_engine.setdefault(voice.engine, []).append(voice)
    engines = sorted(by_engine)
    picks = rng.integers(0, len(engines), size=count)
    return [by_engine[engines[e]][int(rng.integers(0, len(by_engine[engines[e]])))] for e in picks]


def sample_renditions(
    words: Sequence[str], voices: Sequence[Voice], *, per_word: int, rng: np.random.Generator
) -> list[Rendition]:
    """``per_word`` renditions of every word, with engine-balanced voices, rates and pitches."""
    renditions = []
    for word in words:
        for voice in balanced_voices(voices, per_word, rng):
            rate = round(float(rng.uniform(*RATE_RANGE)), 2)  # rounded: fewer distinct cache keys
            pitch = (
                int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1))
                if voice.engine == "espeak-ng"
                else 50
            )
            renditions.append(Rendition(word, voice, rate=rate, pitch=pitch))
    return renditions


def trim_silence(x: np.ndarray, *, threshold_db: float = -40.0, frame: int = 160) -> np.ndarray:
    """Cut leading and trailing frames quieter than ``threshold_db`` below the loudest frame."""
    n = x.size // frame
    if n == 0:
        return x
    energy = np.square(x[: n * frame].reshape(n, frame), dtype=np.float64).mean(axis=1)
    loud = np.flatnonzero(energy > energy.max() * 10 ** (threshold_db / 10))
    return x[loud[0] * frame : (loud[-1] + 1) * frame] if loud.size else x[:0]


def fit_to_window(x: np.ndarray, *, length: int, rng: np.random.Generator) -> np.ndarray:
    """Place a clip at a random offset in ``length`` samples; longer clips keep a random part."""
    out = np.zeros(length, dtype=np.float32)
    if x.size <= length:
        start = int(rng.integers(0, length - x.size + 1))
        out[start : start + x.size] = x
    else:
        start = int(rng.integers(0, x.size - length + 1))
        out[:] = x[start : start + length]
    return out


def centered_window(samples: np.ndarray, length: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """The clip centred in ``length`` samples of silence (centre-cropped when longer), float32."""
    out = np.zeros(length, dtype=np.float32)
    if samples.size >= length:
        start = (samples.size - length) // 2
        return samples[start : start + length].astype(np.float32)
    start = (length - samples.size) // 2
    out[start : start + samples.size] = samples
    return out
