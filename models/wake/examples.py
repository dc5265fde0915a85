"""Placed examples: speech put where the streaming detector looks for a phrase, then embedded.

An example is one clip as long as the base's context (`Geometry.context_samples`, see
`models.base.geometry`) with a clip of speech placed so it ends near the clip's end (where the
streaming detector's newest window is when a phrase has just been said), sometimes after other
speech, then noise and gain (`place_example`). `context_examples` embeds many of them with the
base into head inputs. They are made of the phrase itself (positives), of its confusables and
partial renditions (negatives, see `models.wake.phrase_examples`), of the user's recordings and
of every vocabulary word (the word bank, `models.wake.negatives`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from dsp.constants import SAMPLE_RATE_HZ
from models.base.geometry import Embedder
from models.speech.augment import AugmentConfig, Augmenter
from models.speech.dataset import trim_silence
from models.speech.synth import Rendition, SpeechCache

VOICE_ONLY = AugmentConfig(noise_prob=0.0, gain_range_db=(0.0, 0.0))
"""Speaker, room and microphone variation of a clip; noise and level come after mixing."""
NOISE_ONLY = AugmentConfig(
    speed_prob=0.0, pitch_prob=0.0, reverb_prob=0.0, mic_color_prob=0.0, band_limit_prob=0.0
)
Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: how far a long job has come."""
Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]
"""A change made to a clip (or to a placed example) with a random generator."""


@dataclass(frozen=True)
class ExampleSpec:
    """How examples are placed in their clip."""

    end_margin_s: tuple[float, float] = (0.0, 0.35)
    """Silence after the speech, at the clip's end: how long ago the phrase ended."""
    filler_prob: float = 0.5
    """Share of examples preceded by other speech."""
    filler_gap_s: tuple[float, float] = (0.05, 0.6)
    filler_level_db: tuple[float, float] = (-10.0, 3.0)
    """Level of the preceding speech relative to the example's speech."""


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def place_example(
    speech: np.ndarray,
    *,
    length: int,
    filler: np.ndarray | None,
    spec: ExampleSpec,
    voice: Augmenter,
    noise: Augmenter,
    rng: np.random.Generator,
    background: Transform | None = None,
) -> tuple[np.ndarray, float]:
    """One example clip of ``length`` samples, and how long its speech lasts (s).

    ``speech`` is trimmed, varied (``voice``), and placed to end ``end_margin_s`` before the
    clip's end (a longer clip keeps its end); ``filler`` speech may come before it; then
    ``background`` (e.g. a room's own noise) may be added, and the whole clip gets noise and
    gain (``noise``).
    """
    out = np.zeros(length, dtype=np.float32)
    x = voice(trim_silence(speech), rng)
    end = length - int(rng.uniform(*spec.end_margin_s) * SAMPLE_RATE_HZ)
    x = x[-end:]
    start = end - x.size
    out[start:end] = x
    if filler is not None and rng.random() < spec.filler_prob:
        f = voice(trim_silence(filler), rng)
        f_end = start - int(rng.uniform(*spec.filler_gap_s) * SAMPLE_RATE_HZ)
        if f_end > 0 and f.size:
            f = f[-f_end:]
            level = _rms(x) / _rms(f) * 10 ** (rng.uniform(*spec.filler_level_db) / 20)
            out[f_end - f.size : f_end] += f * level
    if background is not None:
        out = background(out, rng)
    return noise(out, rng), x.size / SAMPLE_RATE_HZ


def context_examples(
    base: Embedder,
    clips: Sequence[np.ndarray],
    *,
    copies: int,
    spec: ExampleSpec,
    fillers: Sequence[np.ndarray],
    rng: np.random.Generator,
    transform: Transform | None = None,
    background: Transform | None = None,
    voice_config: AugmentConfig = VOICE_ONLY,
    noise_config: AugmentConfig = NOISE_ONLY,
) -> tuple[np.ndarray, np.ndarray]:
    """Head inputs of ``copies`` placed examples of every clip, and their speech durations.

    ``transform`` (e.g. cutting a phrase to a part) is applied to each clip first;
    ``background`` to each placed clip before noise and gain (see `place_example`);
    ``voice_config`` varies the speech, ``noise_config`` the finished clip.

    Returns
    -------
    contexts : np.ndarray
        float32 [shape=(len(clips) * copies, context_windows * dim)].
    durations : np.ndarray
        Seconds of speech in each example.
    """
    voice = Augmenter(voice_config)
    noise = Augmenter(noise_config, babble_sources=list(fillers))
    features, durations = [], []
    for clip in clips:
        for _ in range(copies):
            source = transform(clip, rng) if transform is not None else clip
            filler = fillers[int(rng.integers(len(fillers)))] if fillers else None
            audio, seconds = place_example(
                source, length=base.geometry.context_samples, filler=filler, spec=spec,
                voice=voice, noise=noise, rng=rng, background=background,
            )  # fmt: skip
            features.append(base.features(audio).astype(np.float16))
            durations.append(seconds)
    if not features:
        return np.zeros((0, 0), np.float32), np.zeros(0)
    return base.embed_examples(np.stack(features)), np.array(durations)


def synthesize(
    renditions: Sequence[Rendition], cache: SpeechCache, progress: Progress | None
) -> list[np.ndarray]:
    """Audio of the renditions (from the cache or synthesized), with a "synthesis" progress."""
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress("synthesis", done[0], len(renditions))

    return cache.get_many(renditions, progress=tick)
