"""Build training corpora: synthesized words, augmented, in 1 s windows, as log-mel features.

A `CorpusRecipe` and its seed name a corpus exactly. Building one renders every word with voices
of the requested split (`models.speech.dataset.split_voices`), augments each rendition
(`models.speech.augment`), places it in a 1 s window and computes log-mel features. Besides the
words it adds the negatives a wake-word embedding needs: silence and noise (``_silence_``), and
running speech and partial words (``_speech_``). Built splits are cached under a hash of the
recipe, and augmentation runs on every core.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dsp.constants import SAMPLE_RATE_HZ
from dsp.features import log_mel
from models.speech.augment import AugmentConfig, Augmenter, apply_gain, colored_noise
from models.speech.cache import cache_dir
from models.speech.dataset import fit_to_window, sample_renditions, split_voices, trim_silence
from models.speech.synth import Rendition, SpeechCache, Voice, available_voices

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")
SILENCE = "_silence_"
SPEECH = "_speech_"
CLIP_SAMPLES = SAMPLE_RATE_HZ
"""Samples in one training clip: the 1 s the base network reads (not the STFT window)."""
CORPUS_FORMAT_VERSION = 4
"""Bump when augmentation or features change, so cached corpora are rebuilt."""
SENTENCE_WORDS = (4, 9)
"""Running-speech sentences are this many random vocabulary words (inclusive range)."""
PARTIAL_SHARE = (0.35, 0.6)
"""A partial word keeps this share of the word, from its start or its end."""
CHUNK_CLIPS = 64
"""Clips per task handed to an augmentation worker."""


@dataclass(frozen=True)
class CorpusRecipe:
    """What a corpus holds.

    Parameters
    ----------
    words : tuple of str
        The words to learn; each is a class.
    renditions_per_word : dict
        Renditions of every word per split.
    augmented_copies : int
        Augmented versions of each training rendition (evaluation splits get one).
    silence_share, speech_share : float
        Silence/noise clips and running-speech/partial-word clips, as a share of the word clips.
    seed : int
        Seeds voices, renditions, augmentation and placement.
    augment : AugmentConfig
        Augmentation probabilities and ranges.
    """

    words: tuple[str, ...]
    renditions_per_word: dict[str, int] = field(
        default_factory=lambda: {"train": 24, "validation": 3, "test": 4}
    )
    augmented_copies: int = 2
    silence_share: float = 0.05
    speech_share: float = 0.1
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @property
    def labels(self) -> tuple[str, ...]:
        """Class names in label order: the words, then silence, then running speech."""
        return (*self.words, SILENCE, SPEECH)

    def as_dict(self) -> dict[str, object]:
        """The recipe as plain JSON-able values (for model manifests)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> CorpusRecipe:
        """Inverse of `as_dict`."""
        augment: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in fields["augment"].items()
        }
        words = tuple(fields["words"])
        return cls(**{**fields, "words": words, "augment": AugmentConfig(**augment)})

    def key(self) -> str:
        """A stable hash of the recipe; names its cache directory."""
        text = json.dumps(asdict(self) | {"version": CORPUS_FORMAT_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Corpus:
    """Features and labels of one split.

    Attributes
    ----------
    features : np.ndarray
        Log-mel windows, float16 [shape=(n, frames, n_mels)].
    labels : np.ndarray
        Class indices into ``label_names``, int16 [shape=(n,)].
    label_names : tuple of str
        Class names.
    """

    features: np.ndarray
    labels: np.ndarray
    label_names: tuple[str, ...]

    def save(self, path: Path) -> None:
        """Write as a compressed-free .npz (atomic)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(
            partial,
            features=self.features,
            labels=self.labels,
            label_names=np.array(self.label_names),
        )
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> Corpus:
        """Read what `save` wrote."""
        with np.load(path) as data:
            return cls(data["features"], data["labels"], tuple(str(n) for n in data["label_names"]))


def default_corpus_dir() -> Path:
    """``$XDG_CACHE_HOME/earshot/corpora``."""
    return cache_dir("corpora")


def sentence_texts(words: Sequence[str], count: int, rng: np.random.Generator) -> list[str]:
    """``count`` strings of random vocabulary words, the raw material of running speech."""
    lengths = rng.integers(SENTENCE_WORDS[0], SENTENCE_WORDS[1] + 1, size=count)
    return [" ".join(rng.choice(words, size=n)) for n in lengths]


@dataclass(frozen=True)
class _Job:
    """One clip to make: its audio source, its label and its own seed."""

    kind: Literal["word", "partial", "speech", "silence"]
    audio: np.ndarray | None
    label: int
    seed: int


def _make_clip(job: _Job, augmenter: Augmenter) -> np.ndarray:
    rng = np.random.default_rng(job.seed)
    if job.kind == "silence":
        noise = colored_noise(CLIP_SAMPLES, exponent=rng.uniform(0, 2), rng=rng)
        return apply_gain(noise, rng.uniform(-75, -25))
    assert job.audio is not None
    audio = trim_silence(job.audio)
    if job.kind == "partial":
        keep = max(1, int(audio.size * rng.uniform(*PARTIAL_SHARE)))
        audio = audio[:keep] if rng.random() < 0.5 else audio[-keep:]
    if job.kind == "speech":
        audio = fit_to_window(audio, length=CLIP_SAMPLES, rng=rng)
    audio = fit_to_window(augmenter(audio, rng), length=CLIP_SAMPLES, rng=rng)
    return audio


def _features_of(jobs: list[_Job], config: AugmentConfig, babble: list[np.ndarray]) -> np.ndarray:
    """Worker: clips -> float16 log-mel [shape=(len(jobs), frames, n_mels)]."""
    augmenter = Augmenter(config, babble_sources=babble)
    return np.stack([log_mel(_make_clip(job, augmenter)) for job in jobs]).astype(np.float16)


def _babble_pool(
    sentences: list[np.ndarray], rng: np.random.Generator, size: int = 24
) -> list[np.ndarray]:
    picks = rng.choice(len(sentences), size=min(size, len(sentences)), replace=False)
    return [sentences[i] for i in picks]


def build_split(
    recipe: CorpusRecipe,
    split: Split,
    *,
    voices: Sequence[Voice] | None = None,
    speech_cache: SpeechCache | None = None,
    workers: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Corpus:
    """Synthesize, augment and featurize one split of ``recipe``.

    Parameters
    ----------
    recipe : CorpusRecipe
        What to build.
    split : {"train", "validation", "test"}
        Which voices speak (speaker-disjoint across splits) and how many renditions.
    voices : sequence of Voice, optional
        All voices to split; every installed voice by default.
    speech_cache : SpeechCache, optional
        Where synthesized audio is cached.
    workers : int, optional
        Processes for augmentation (CPU count by default).
    progress : callable, optional
        ``progress(stage, done, total)`` as work completes.
    """
    split_index = SPLITS.index(split)
    rng = np.random.default_rng([recipe.seed, split_index])
    part = split_voices(voices if voices is not None else available_voices(), seed=recipe.seed)
    split_voice_list = {"train": part.train, "validation": part.validation, "test": part.test}[
        split
    ]
    per_word = recipe.renditions_per_word[split]
    word_renditions = sample_renditions(recipe.words, split_voice_list, per_word=per_word, rng=rng)
    n_words = len(word_renditions)
    n_speech = round(recipe.speech_share * n_words)
    sentences = sentence_texts(recipe.words, max(8, n_speech // 2), rng)
    sentence_renditions = sample_renditions(sentences, split_voice_list, per_word=1, rng=rng)

    cache = speech_cache or SpeechCache()
    all_renditions = word_renditions + sentence_renditions
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress("synthesis", done[0], len(all_renditions))

    audio = cache.get_many(all_renditions, workers=workers, progress=tick)
    word_audio, sentence_audio = audio[:n_words], audio[n_words:]
    jobs = _jobs(recipe, split, word_renditions, word_audio, sentence_audio, rng)
    features = _featurize(jobs, recipe, _babble_pool(sentence_audio, rng), workers, progress)
    labels = np.array([job.label for job in jobs], dtype=np.int16)
    return Corpus(features, labels, recipe.labels)


def _jobs(
    recipe: CorpusRecipe,
    split: Split,
    renditions: list[Rendition],
    word_audio: list[np.ndarray],
    sentence_audio: list[np.ndarray],
    rng: np.random.Generator,
) -> list[_Job]:
    label_of = {word: i for i, word in enumerate(recipe.words)}
    copies = recipe.augmented_copies if split == "train" else 1
    silence_label, speech_label = len(recipe.words), len(recipe.words) + 1
    jobs = [
        _Job("word", clip, label_of[r.text], int(rng.integers(2**63)))
        for r, clip in zip(renditions, word_audio, strict=True)
        for _ in range(copies)
    ]
    n_words = len(jobs)
    for _ in range(round(recipe.speech_share * n_words)):
        if rng.random() < 0.5:
            source = sentence_audio[int(rng.integers(len(sentence_audio)))]
            jobs.append(_Job("speech", source, speech_label, int(rng.integers(2**63))))
        else:
            source = word_audio[int(rng.integers(len(word_audio)))]
            jobs.append(_Job("partial", source, speech_label, int(rng.integers(2**63))))
    jobs += [
        _Job("silence", None, silence_label, int(rng.integers(2**63)))
        for _ in range(round(recipe.silence_share * n_words))
    ]
    order = rng.permutation(len(jobs))
    return [jobs[i] for i in order]


def _featurize(
    jobs: list[_Job],
    recipe: CorpusRecipe,
    babble: list[np.ndarray],
    workers: int | None,
    progress: Callable[[str, int, int], None] | None,
) -> np.ndarray:
    chunks = [jobs[i : i + CHUNK_CLIPS] for i in range(0, len(jobs), CHUNK_CLIPS)]
    results: list[np.ndarray] = []
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        futures = [pool.submit(_features_of, chunk, recipe.augment, babble) for chunk in chunks]
        for future in futures:
            results.append(future.result())
            if progress is not None:
                progress("augmentation", sum(r.shape[0] for r in results), len(jobs))
    return np.concatenate(results)


def load_or_build(
    recipe: CorpusRecipe,
    split: Split,
    *,
    directory: Path | None = None,
    **build_options: object,
) -> Corpus:
    """The split from the corpus cache, built (and cached) first if needed."""
    path = (directory or default_corpus_dir()) / recipe.key() / f"{split}.npz"
    if path.is_file():
        return Corpus.load(path)
    corpus = build_split(recipe, split, **build_options)  # type: ignore[arg-type]
    corpus.save(path)
    return corpus
