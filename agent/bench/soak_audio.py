"""The soak's audio: endless talk without the wake word, made on the fly so it never repeats.

A pool of everyday sentences, each rendered once in several voices (`utterance_pool`), is drawn
from at random speeds, gains and pauses, with noise bursts and a noise floor (`negative_blocks`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np

from agent.bench.common import CHUNK_SAMPLES
from dsp.constants import SAMPLE_RATE_HZ

BLOCK = CHUNK_SAMPLES
"""Samples per generated block (80 ms)."""
EXTRA_SENTENCES = (
    "Let us take the long way home along the river tonight.",
    "The kettle is boiling, do you want tea or coffee?",
    "I think the shop on the corner closes at six.",
    "She left her umbrella on the bus this morning.",
    "We could try the new bakery near the station.",
    "The children built a castle out of cardboard boxes.",
)  # fmt: skip
"""More sentences for the pool; none sounds like a wake word."""
POOL_VOICES = (
    "flite:slt", "espeak-ng:en-gb+m3", "flite:rms", "espeak-ng:en-029+f2", "flite:awb",
    "espeak-ng:en-gb-scotland", "flite:kal16", "espeak-ng:en-us+m5",
)  # fmt: skip
VOICES_PER_SENTENCE = 4
PCM16_SCALE = 32767.0


def utterance_pool() -> list[np.ndarray]:
    """Everyday sentences, each in `VOICES_PER_SENTENCE` voices, as int16 (rendered once, cached).

    Returns
    -------
    list of numpy.ndarray
        16 kHz int16 utterances (int16 halves the pool's memory).
    """
    from models.speech.demo_stream import OTHER_SPEECH
    from models.speech.synth import Rendition, SpeechCache, Voice

    texts = [text for text, _ in OTHER_SPEECH] + list(EXTRA_SENTENCES)
    voices = [Voice.parse(v) for v in POOL_VOICES]
    renditions = [
        Rendition(text, voices[(i + k) % len(voices)])
        for i, text in enumerate(texts)
        for k in range(VOICES_PER_SENTENCE)
    ]
    audio = SpeechCache().get_many(renditions)
    return [np.round(np.clip(a, -1, 1) * PCM16_SCALE).astype(np.int16) for a in audio]


def _segment(pool: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One utterance at a random speed and gain, a random pause, maybe a noise burst; with noise."""
    speech = pool[int(rng.integers(len(pool)))].astype(np.float32) / PCM16_SCALE
    speed = rng.uniform(0.9, 1.1)
    positions = np.arange(0, speech.size - 1, speed)
    speech = np.interp(positions, np.arange(speech.size), speech).astype(np.float32)
    speech *= np.float32(10 ** (rng.uniform(-30.0, 0.0) / 20))
    pause = np.zeros(int(rng.uniform(0.2, 3.0) * SAMPLE_RATE_HZ), np.float32)
    parts = [speech, pause]
    if rng.random() < 0.15:  # a door, a fan, a tap: a short burst of loud noise
        length = int(rng.uniform(0.1, 1.5) * SAMPLE_RATE_HZ)
        burst = rng.standard_normal(length, dtype=np.float32) * np.hanning(length)
        parts += [
            burst.astype(np.float32) * np.float32(10 ** (rng.uniform(-40.0, -15.0) / 20)),
            pause[:1600],
        ]
    segment = np.concatenate(parts)
    level = np.float32(10 ** (rng.uniform(-80.0, -55.0) / 20))
    segment += rng.standard_normal(segment.size, dtype=np.float32) * level
    return np.clip(segment, -1.0, 1.0)


def negative_blocks(
    pool: Sequence[np.ndarray], seed: int = 0, block: int = BLOCK
) -> Iterator[np.ndarray]:
    """Endless audio without the wake word, in blocks of ``block`` float32 samples.

    Parameters
    ----------
    pool : sequence of numpy.ndarray
        int16 utterances (`utterance_pool`).
    seed : int
        The same seed gives the same audio.
    block : int
        Samples per yielded block.
    """
    rng = np.random.default_rng(seed)
    pending = np.zeros(0, np.float32)
    while True:
        pending = np.concatenate((pending, _segment(pool, rng)))
        count = pending.size // block
        for i in range(count):
            yield pending[i * block : (i + 1) * block].copy()
        pending = pending[count * block :]


def take(blocks: Iterator[np.ndarray], seconds: float) -> Iterator[np.ndarray]:
    """The blocks making up ``seconds`` of audio (rounded up to whole blocks)."""
    remaining = int(math.ceil(seconds * SAMPLE_RATE_HZ))
    while remaining > 0:
        chunk = next(blocks)
        remaining -= chunk.size
        yield chunk
