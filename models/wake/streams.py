"""Negative streams: minutes of running speech and noise with no wake word, embedded at every hop.

A `NegativeStream` holds running synthetic speech (sentences of vocabulary words, isolated
words), noise bursts and silence, embedded at every hop exactly as the detector will see audio,
with what was said when. Streams do not depend on the wake word, so they are built once per base
model and cached; a wake word's training and calibration mask the hops near any segment that
contains its phrase. The ``train`` stream is spoken by the training voices, the ``calibration``
stream by the validation voices and the ``evaluation`` stream by the test voices
(`models.speech.dataset.split_voices`), so no voice is in two of them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from dsp.constants import SAMPLE_RATE_HZ
from dsp.features import log_mel
from models.base.geometry import Embedder, Geometry
from models.nn.checkpoint import split_rows
from models.speech.augment import Augmenter, apply_gain, colored_noise
from models.speech.cache import cache_dir
from models.speech.dataset import load_vocabulary, sample_renditions, split_voices, trim_silence
from models.speech.phonetics import phonemes
from models.speech.synth import SpeechCache, Voice, available_voices
from models.wake.examples import Progress, synthesize

StreamKind = Literal["train", "calibration", "evaluation"]
STREAM_VOICES: dict[StreamKind, str] = {
    "train": "train",
    "calibration": "validation",
    "evaluation": "test",
}
STREAM_FORMAT_VERSION = 1
"""Bump when stream construction changes, so cached streams are rebuilt."""
EPISODE_S = 300.0
"""Streams are built and embedded in independent episodes of this length (bounded memory)."""
PHRASE_MASK_S = (1.0, 2.5)
"""Hops from this long before a phrase-bearing segment to this long after it are masked."""


def words_of(text: str) -> list[str]:
    """Lower-case words of a text, punctuation stripped."""
    return [w.strip(".,!?;:\"'()").lower() for w in text.split() if w.strip(".,!?;:\"'()")]


def contains_phrase(text: str, phrase: str) -> bool:
    """Whether ``text`` says ``phrase``: its words, consecutively, or words that sound the same.

    Homophones count ("to" or "too" for the wake word "two", "ate" for "eight"): a stream cannot
    show that its "too" was not said as "two", so such a stretch is neither a negative nor a
    positive. Sounds are espeak-ng's phonemes of each word alone (`models.speech.phonetics`,
    cached per word).
    """
    t, p = words_of(text), words_of(phrase)
    if not p or len(t) < len(p):
        return False
    if any(t[i : i + len(p)] == p for i in range(len(t) - len(p) + 1)):
        return True
    sounds = dict(zip(t + p, phonemes(t + p), strict=True))
    said, wanted = [sounds[w] for w in t], [sounds[w] for w in p]
    return any(said[i : i + len(p)] == wanted for i in range(len(t) - len(p) + 1))


@dataclass(frozen=True)
class Segment:
    """Speech in a stream: what was said, and when (s from the episode's start)."""

    text: str
    start_s: float
    end_s: float
    source: str = ""
    """Where the speech came from, when known (e.g. a recording's name)."""


@dataclass
class NegativeStream:
    """A stream's per-hop embeddings, in independent episodes, with what was said when."""

    embeddings: list[np.ndarray]
    segments: list[list[Segment]]
    seconds: float
    frames: list[np.ndarray] | None = None
    """Each episode's 40-band log-mel frames (`dsp.features.log_mel`), when kept: evaluations of
    the speaker check (`models.wake.speaker`) read them."""

    @property
    def hours(self) -> float:
        """Length in hours."""
        return self.seconds / 3600.0

    def contexts(
        self, geometry: Geometry, phrase: str | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per episode: head inputs of the hops with a full context, and which to keep.

        The keep-mask is False near segments saying ``phrase`` (`contains_phrase`): those hops
        are not negatives.
        """
        if phrase is not None:  # every word's sounds in one espeak-ng run
            phonemes(sorted({w for e in self.segments for s in e for w in words_of(s.text)}))
        out = []
        for embeddings, segments in zip(self.embeddings, self.segments, strict=True):
            contexts = geometry.context_vectors(embeddings.astype(np.float32))
            times = geometry.hop_end_s(np.arange(contexts.shape[0]) + geometry.context_hops)
            keep = np.ones(contexts.shape[0], dtype=bool)
            if phrase is not None:
                for s in segments:
                    if contains_phrase(s.text, phrase):
                        near = (times >= s.start_s - PHRASE_MASK_S[0]) & (
                            times <= s.end_s + PHRASE_MASK_S[1]
                        )
                        keep &= ~near
            out.append((contexts, keep))
        return out

    def save(self, path: Path) -> None:
        """Write to ``path`` (.npz) atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        segments = [[(s.text, s.start_s, s.end_s) for s in episode] for episode in self.segments]
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with partial.open("wb") as f:
            np.savez(
                f,
                embeddings=np.concatenate(self.embeddings).astype(np.float16),
                lengths=np.array([e.shape[0] for e in self.embeddings]),
                segments=np.array(json.dumps(segments)),
                seconds=np.array(self.seconds),
            )
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> NegativeStream:
        """Read a stream written by `save`."""
        with np.load(path) as data:
            embeddings = split_rows(data["embeddings"], data["lengths"])
            segments = [
                [Segment(str(t), float(a), float(b)) for t, a, b in episode]
                for episode in json.loads(str(data["segments"]))
            ]
            return cls(embeddings, segments, float(data["seconds"]))


def default_stream_dir() -> Path:
    """``$XDG_CACHE_HOME/earshot/wake``."""
    return cache_dir("wake")


@dataclass(frozen=True)
class StreamRecipe:
    """What a negative stream holds."""

    seconds: float
    seed: int = 0
    sentence_share: float = 0.6
    words_share: float = 0.25
    noise_share: float = 0.1
    """The rest of the pieces are near-silence."""
    gap_s: tuple[float, float] = (0.1, 1.2)

    def key(self, kind: StreamKind, base_sha256: str) -> str:
        """Cache key: the recipe, the voices' split, the base model and the format."""
        text = json.dumps(
            [self.__dict__, kind, base_sha256, STREAM_FORMAT_VERSION], sort_keys=True, default=str
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _speech_pool(
    voices: Sequence[Voice],
    count: int,
    rng: np.random.Generator,
    cache: SpeechCache,
    progress: Progress | None,
) -> tuple[list[str], list[np.ndarray], list[str], list[np.ndarray]]:
    """Sentences and single words to assemble streams from (texts and audio)."""
    from models.speech.corpus import sentence_texts

    vocabulary = load_vocabulary()
    sentences = sentence_texts(vocabulary, count, rng)
    words = [str(w) for w in rng.choice(vocabulary, size=count)]
    renditions = sample_renditions(sentences + words, voices, per_word=1, rng=rng)
    audio = synthesize(renditions, cache, progress)
    return sentences, audio[:count], words, audio[count:]


def build_episode(
    recipe: StreamRecipe,
    seconds: float,
    pool: tuple[list[str], list[np.ndarray], list[str], list[np.ndarray]],
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[Segment]]:
    """``seconds`` of negative audio from a speech pool, and its segments."""
    sentences, sentence_audio, words, word_audio = pool
    augmenter = Augmenter(babble_sources=sentence_audio[:24])
    pieces: list[np.ndarray] = []
    segments: list[Segment] = []
    t = 0.0
    while t < seconds:
        u = rng.random()
        gap = np.zeros(int(rng.uniform(*recipe.gap_s) * SAMPLE_RATE_HZ), np.float32)
        text = ""
        if u < recipe.sentence_share:
            i = int(rng.integers(len(sentences)))
            text, speech = sentences[i], trim_silence(sentence_audio[i])
        elif u < recipe.sentence_share + recipe.words_share:
            picks = rng.integers(len(words), size=int(rng.integers(1, 4)))
            text = " ".join(words[i] for i in picks)
            pause = np.zeros(int(rng.uniform(0.1, 0.5) * SAMPLE_RATE_HZ), np.float32)
            speech = np.concatenate(
                [np.concatenate((trim_silence(word_audio[i]), pause)) for i in picks]
            )
        else:
            n = int(rng.uniform(0.5, 3.0) * SAMPLE_RATE_HZ)
            burst = u < recipe.sentence_share + recipe.words_share + recipe.noise_share
            level = rng.uniform(-50, -15) if burst else rng.uniform(-85, -55)
            speech = apply_gain(colored_noise(n, exponent=rng.uniform(0, 2), rng=rng), level)
        raw = np.concatenate((gap, speech))
        piece = augmenter(raw, rng) if text else raw
        stretch = piece.size / max(raw.size, 1)
        if text:
            segments.append(
                Segment(
                    text, t + gap.size * stretch / SAMPLE_RATE_HZ, t + piece.size / SAMPLE_RATE_HZ
                )
            )
        pieces.append(piece.astype(np.float32))
        t += piece.size / SAMPLE_RATE_HZ
    audio = np.concatenate(pieces)[: int(seconds * SAMPLE_RATE_HZ)]
    return audio, segments


def embed_frames(base: Embedder, frames: np.ndarray) -> np.ndarray:
    """Embedding of every hop of a stream's log-mel frames, as the streaming detector makes them."""
    return base.embed_frames(frames).astype(np.float16)


def build_stream(
    base: Embedder,
    recipe: StreamRecipe,
    kind: StreamKind,
    *,
    voices: Sequence[Voice] | None = None,
    speech_cache: SpeechCache | None = None,
    progress: Progress | None = None,
    keep_frames: bool = False,
) -> NegativeStream:
    """Synthesize, assemble and embed a negative stream (see the module's docstring).

    ``keep_frames`` keeps each episode's 40-band log-mel frames in the stream (not in its cache).
    """
    rng = np.random.default_rng([recipe.seed, list(STREAM_VOICES).index(kind)])
    part = split_voices(voices if voices is not None else available_voices(), seed=recipe.seed)
    speakers = getattr(part, STREAM_VOICES[kind])
    pieces_per_second = 1 / 2.2
    count = max(8, int(recipe.seconds * pieces_per_second * recipe.sentence_share))
    pool = _speech_pool(speakers, count, rng, speech_cache or SpeechCache(), progress)
    episodes = max(1, int(np.ceil(recipe.seconds / EPISODE_S)))
    length = recipe.seconds / episodes
    embeddings, segments, frames = [], [], []
    for i in range(episodes):
        audio, said = build_episode(recipe, length, pool, rng)
        embeddings.append(embed_frames(base, base.features(audio)))
        if keep_frames:
            frames.append(log_mel(audio))
        segments.append(said)
        if progress is not None:
            progress("negative stream", i + 1, episodes)
    return NegativeStream(embeddings, segments, recipe.seconds, frames if keep_frames else None)


def load_or_build_stream(
    base: Embedder,
    recipe: StreamRecipe,
    kind: StreamKind,
    *,
    directory: Path | None = None,
    progress: Progress | None = None,
    **options: object,
) -> NegativeStream:
    """The stream from the cache (``$XDG_CACHE_HOME/earshot/wake``), built first if needed."""
    path = (directory or default_stream_dir()) / f"{kind}-{recipe.key(kind, base.sha256)}.npz"
    if path.is_file():
        return NegativeStream.load(path)
    stream = build_stream(base, recipe, kind, progress=progress, **options)  # type: ignore[arg-type]
    stream.save(path)
    return stream
