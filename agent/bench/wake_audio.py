"""The wake benchmark's audio: running speech over low noise, and a phrase placed at known times.

Both are assembled from renditions of the held-out voices in the speech cache, seeded, so two
runs stream the same audio.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from dsp.constants import SAMPLE_RATE_HZ
from models.speech.augment import apply_gain, colored_noise
from models.speech.corpus import sentence_texts
from models.speech.dataset import load_vocabulary, sample_renditions, trim_silence
from models.speech.synth import SpeechCache, Voice
from models.wake.streams import StreamRecipe, build_episode

GAP_S = (2.0, 3.0)
"""Low noise between placed phrases."""
SPEECH_DB = -20.0
NOISE_DB = -60.0
POOL_SIZE = 40
"""Sentences and words the streaming audio is assembled from."""
SEED = 0


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
