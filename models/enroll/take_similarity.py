"""How alike a speaker's takes of one phrase are, next to other phrases, on synthetic voices.

`TakeSet` refuses a take whose context vector is too unlike the accepted takes. Where that line
lies depends on the base (each base embeds differently), so it is measured per base here, on
synthetic speakers only: every voice is one speaker in one room with one microphone, saying each
phrase several times at slightly different rates and pitches, with a little noise. Pairs of takes
by the same speaker are compared (`models.enroll.takes.similarity`): same phrase against
different phrases. The threshold refuses a small, stated share of the same-phrase pairs
(`REFUSED_SHARE`): a good take should almost never be turned away; a different phrase, a cough or
a door lie far lower.

`earshot eval takes` prints these figures; the constants in `models.enroll.takes` come from it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsp.audio import load_audio
from models.base.evaluation import fsdd_recordings
from models.base.geometry import Embedder
from models.enroll.takes import TakeChecker, similarity
from models.speech.augment import (
    color_microphone,
    colored_noise,
    mix_at_snr,
    reverberate,
    synthetic_rir,
)
from models.speech.dataset import split_voices
from models.speech.synth import Rendition, SpeechCache, Voice, available_voices
from models.wake.examples import Progress

PHRASES = (
    "computer", "hey jarvis", "lights on", "seven", "okay house", "music",
    "good morning", "stop", "hello there", "weather",
)  # fmt: skip
"""Phrases of the kinds people pick as wake words: one to three words, some sharing sounds."""
REFUSED_SHARE = 0.02
"""Share of good third takes (see `SimilarityStats.third_take`) the threshold may refuse."""


@dataclass(frozen=True)
class SimilarityStats:
    """Similarities of pairs of takes by the same synthetic speaker.

    Attributes
    ----------
    same, different : np.ndarray
        Pairs of the same phrase, and of different phrases [shape=(pairs,)].
    third_take : np.ndarray
        A take's mean similarity to two other takes of its phrase by its speaker: what
        `TakeSet.offer` compares when a third take arrives [shape=(triples,)].
    speakers : int
        Synthetic speakers (voices) measured.
    """

    same: np.ndarray
    different: np.ndarray
    third_take: np.ndarray
    speakers: int

    def threshold(self, refused_share: float = REFUSED_SHARE) -> float:
        """The similarity that refuses ``refused_share`` of good third takes."""
        return float(np.quantile(self.third_take, refused_share))

    def errors(self, threshold: float) -> tuple[float, float, float]:
        """Shares refused: same-phrase pairs, good third takes; accepted: different-phrase pairs."""
        return (
            float(np.mean(self.same < threshold)),
            float(np.mean(self.third_take < threshold)),
            float(np.mean(self.different >= threshold)),
        )

    def summary(self, threshold: float | None = None) -> dict[str, float]:
        """The figures `earshot eval takes` prints."""
        threshold = self.threshold() if threshold is None else threshold
        refused, third_refused, accepted = self.errors(threshold)
        q = np.quantile
        return {
            "speakers": self.speakers,
            "same_pairs": int(self.same.size),
            "different_pairs": int(self.different.size),
            "same_median": float(np.median(self.same)),
            "same_p5": float(q(self.same, 0.05)),
            "different_median": float(np.median(self.different)),
            "different_p95": float(q(self.different, 0.95)),
            "threshold": threshold,
            "same_refused": refused,
            "third_take_refused": third_refused,
            "different_accepted": accepted,
        }


def speaker_voices(count: int, *, seed: int = 0) -> list[Voice]:
    """``count`` voices spread over the engines, from the test split (never trained on)."""
    voices = list(split_voices(available_voices(), seed=seed).test)
    rng = np.random.default_rng(seed)
    by_engine: dict[str, list[Voice]] = {}
    for v in rng.permutation(np.array(voices, dtype=object)).tolist():
        by_engine.setdefault(v.engine, []).append(v)
    chosen: list[Voice] = []
    while len(chosen) < count and any(by_engine.values()):
        for engine in sorted(by_engine):
            if by_engine[engine] and len(chosen) < count:
                chosen.append(by_engine[engine].pop())
    return chosen


def speaker_takes(
    voice: Voice,
    phrases: tuple[str, ...],
    takes: int,
    rng: np.random.Generator,
    cache: SpeechCache,
) -> list[tuple[str, np.ndarray]]:
    """Each phrase said ``takes`` times by one voice in one room, through one microphone."""
    renditions = [
        Rendition(p, voice, rate=round(float(rng.uniform(0.85, 1.2)), 2),
                  pitch=int(rng.integers(40, 61)))
        for p in phrases for _ in range(takes)
    ]  # fmt: skip
    rir = synthetic_rir(rt60_s=float(rng.uniform(0.2, 0.6)), rng=rng)
    mic_seed = int(rng.integers(2**31))
    out = []
    for r, audio in zip(renditions, cache.get_many(renditions), strict=True):
        x = color_microphone(reverberate(audio, rir), rng=np.random.default_rng(mic_seed))
        pad = np.zeros(int(0.3 * 16000), np.float32)
        x = np.concatenate([pad, x, pad])
        noise = colored_noise(x.size, exponent=float(rng.uniform(0.5, 2.0)), rng=rng)
        out.append((r.text, mix_at_snr(x, noise, float(rng.uniform(15, 35)))))
    return out


def take_similarities(
    base: Embedder,
    *,
    speakers: int = 12,
    takes: int = 5,
    phrases: tuple[str, ...] = PHRASES,
    seed: int = 0,
    progress: Progress | None = None,
) -> SimilarityStats:
    """Pairwise similarities of synthetic speakers' takes, as `TakeChecker` computes them."""
    rng = np.random.default_rng(seed)
    checker = TakeChecker(base, None)
    cache = SpeechCache()
    speakers_takes = []
    voices = speaker_voices(speakers, seed=seed)
    for i, voice in enumerate(voices):
        speakers_takes.append(_contexts(checker, speaker_takes(voice, phrases, takes, rng, cache)))
        if progress is not None:
            progress("speakers", i + 1, len(voices))
    return _stats(speakers_takes)


def fsdd_take_similarities(
    base: Embedder, folder: Path, *, takes: int = 10, progress: Progress | None = None
) -> SimilarityStats:
    """The same figures on FSDD's real speakers (takes ``0..takes-1`` of each digit).

    Evaluation only: nothing here chooses a threshold.
    """
    checker = TakeChecker(base, None)
    by_speaker: dict[str, list[tuple[str, np.ndarray]]] = defaultdict(list)
    for r in fsdd_recordings(folder):
        if r.take < takes:
            by_speaker[r.speaker].append((str(r.digit), load_audio(r.path)))
    speakers_takes = []
    for i, speaker in enumerate(sorted(by_speaker)):
        speakers_takes.append(_contexts(checker, by_speaker[speaker]))
        if progress is not None:
            progress("speakers", i + 1, len(by_speaker))
    return _stats(speakers_takes)


def _contexts(
    checker: TakeChecker, takes: list[tuple[str, np.ndarray]]
) -> list[tuple[str, np.ndarray]]:
    """(phrase, context vector) of every take the checker finds speech in."""
    out = []
    for phrase, audio in takes:
        verdict = checker.check(audio)
        if verdict.speech.size:
            out.append((phrase, checker.context(verdict.speech)))
    return out


def _stats(speakers_takes: list[list[tuple[str, np.ndarray]]]) -> SimilarityStats:
    """Pairs and third takes within each speaker's takes."""
    same: list[float] = []
    different: list[float] = []
    third: list[float] = []
    for labelled in speakers_takes:
        said = [phrase for phrase, _ in labelled]
        n = len(labelled)
        pairs = np.array([[similarity(x, y) for _, y in labelled] for _, x in labelled])
        for a in range(n):
            for b in range(a + 1, n):
                (same if said[a] == said[b] else different).append(pairs[a, b])
                if said[a] != said[b]:
                    continue
                for c in range(n):
                    if c not in (a, b) and said[c] == said[a]:
                        third.append((pairs[c, a] + pairs[c, b]) / 2)
    return SimilarityStats(
        np.array(same), np.array(different), np.array(third), len(speakers_takes)
    )
