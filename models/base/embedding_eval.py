"""Both bases measured the same way: heads trained on synthetic speech, scored on FSDD.

Either base is wrapped as a `ContextBase`: audio in, one embedding per hop out, and a 2 s
*context* (`CLIP_SAMPLES`) read through some of those hops:

- the DS-CNN (`models.base.model.BaseModel`): 1 s windows every 100 ms; a context joins the
  3 windows 0.5 s apart that span 2 s, as its wake-word heads read them (`models.base.geometry`);
- the imported speech embedding (`models.base.speech_embedding.SpeechEmbedding`): 0.775 s
  windows every 80 ms; a context joins the 16 hop embeddings of 2 s (1,536 values), as
  openWakeWord's heads read them.

Training data is synthesized here (`ClipRecipe`); the FSDD recordings are only scored. Each
recording is centred in 2 s of silence (longer ones are kept whole) under a faint noise floor
(`recording_clip`), and embedded like a stream.

1. `zero_shot`: a softmax head on the pooled contexts (mean and maximum over the hops) of
   synthetic digits; accuracy on every recording.
2. `few_shot`: per speaker, the first ``shots`` takes of each digit are the support, the others
   the queries, matched on joined contexts to the nearest centred prototype
   (`models.base.evaluation.few_shot_digits`).
3. `detection`, the comparison protocol: one-vs-rest logistic heads per digit on joined
   contexts, trained on digits and other words from espeak-ng and flite with noise; a
   recording's score is the maximum over its contexts; per digit the AUC and the miss rates at
   1 % and at 0 false accepts among the other digits' recordings (`detection_protocol` runs it
   for one base).

The choices above (pooled or joined contexts, the heads' L2 weights, the noise floor) were made
on held-out synthetic voices rendered like FSDD (band-limited to 4 kHz, centred in silence),
never on FSDD.

Embeddings of synthetic clips and of FSDD are cached (`cache_dir("evaluation")`) under a hash of
the base's weights and of what was embedded, so a rerun only trains the heads.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dsp.audio import load_audio
from dsp.constants import SAMPLE_RATE_HZ
from dsp.embedding_features import embedding_log_mel
from dsp.features import log_mel
from models.base.architecture import WINDOW_FRAMES
from models.base.evaluation import Recording, confusion, few_shot_digits, fsdd_recordings
from models.base.model import BaseModel
from models.base.speech_embedding import SpeechEmbedding
from models.speech.augment import AugmentConfig, Augmenter, apply_gain, colored_noise
from models.speech.cache import cache_dir
from models.speech.dataset import (
    DIGIT_WORDS,
    centered_window,
    fit_to_window,
    load_vocabulary,
    sample_renditions,
    split_voices,
    trim_silence,
)
from models.speech.synth import ENGINES, Engine, SpeechCache, Voice, available_voices

Progress = Callable[[str, int, int], None]
Representation = Literal["joined", "pooled"]

CLIP_SAMPLES = 2 * SAMPLE_RATE_HZ
"""Samples of one context (2 s): training clips are this long, recordings padded to it."""
DSCNN_HOP_FRAMES = 10
"""Frames between the DS-CNN's windows (100 ms), as `models.base.model.DSCNN_GEOMETRY`."""
DSCNN_JOINED_HOPS = (0, 5, 10)
"""The DS-CNN windows a context joins: its wake-word context (3 windows, 5 hops apart)."""
OTHER = -1
"""Label of a clip of a non-digit word."""
SHOTS = 5
L2 = 1.0
"""Weight of ``0.5 * |W|^2`` against the summed log-loss of a logistic head (standardized
features): the detection heads use this, scikit-learn's default (C = 1)."""
ZERO_SHOT_L2 = 10.0
"""L2 weight of the zero-shot softmax head."""
FLOOR_RMS = 1.0 / 32768
"""White noise added over a padded recording: one 16-bit step RMS (-90 dBFS), a converter's
own noise. Digital silence, which no microphone delivers, pushes the imported embedding's
32-band features to their -8 floor, far outside anything its training heard."""
FIT_ITERATIONS = 500
GAIN_RANGE_DB = AugmentConfig().gain_range_db
"""Level of the finished clip, as the base corpus draws it."""
EMBED_CHUNK_CLIPS = 128
"""Clips featurized and embedded together (bounds the memory of their windows)."""
CHUNK_CLIPS = 32
"""Clips handed to one worker at a time."""
FORMAT_VERSION = 1
"""Bump when clip making or embedding changes, so cached embeddings are recomputed."""


@dataclass(frozen=True)
class ContextBase:
    """A base as the protocols use it.

    Attributes
    ----------
    name : str
        Label of the base in results.
    key : str
        The weights' sha256; names cached embeddings.
    windows_of : callable
        Audio (float32, 16 kHz) [shape=(samples,)] -> the base's input windows, one per hop
        [shape=(hops, frames, bands)].
    embed : callable
        Windows [shape=(n, frames, bands)] -> embeddings, float32 [shape=(n, dim)].
    joined_hops : tuple of int
        Hops of a context (counted from its first) whose embeddings a joined context holds.
    """

    name: str
    key: str
    windows_of: Callable[[np.ndarray], np.ndarray]
    embed: Callable[[np.ndarray], np.ndarray]
    joined_hops: tuple[int, ...]

    @cached_property
    def context_hops(self) -> int:
        """Hops in one context: the hops of `CLIP_SAMPLES` of audio."""
        return int(self.windows_of(np.zeros(CLIP_SAMPLES, np.float32)).shape[0])


def dscnn_base(model: BaseModel, name: str = "dscnn") -> ContextBase:
    """The DS-CNN base: 1 s log-mel windows every 100 ms, 3 of them joined per context."""

    def windows_of(audio: np.ndarray) -> np.ndarray:
        features = log_mel(audio)
        if features.shape[0] < WINDOW_FRAMES:
            return np.zeros((0, WINDOW_FRAMES, features.shape[1]), np.float32)
        view = np.lib.stride_tricks.sliding_window_view(features, WINDOW_FRAMES, axis=0)
        return view[::DSCNN_HOP_FRAMES].transpose(0, 2, 1)

    key = model.manifest.sha256 if model.manifest else "unsaved"
    return ContextBase(name, key, windows_of, model.embed, DSCNN_JOINED_HOPS)


def imported_base(base: SpeechEmbedding, name: str = "speech_embedding") -> ContextBase:
    """The imported embedding: 0.775 s windows every 80 ms, all 16 of a context joined."""

    def windows_of(audio: np.ndarray) -> np.ndarray:
        return base.hop_windows(embedding_log_mel(audio))

    key = base.manifest.sha256 if base.manifest else "unsaved"
    span = (CLIP_SAMPLES // base.front_end.hop_samples - base.window_frames) // base.hop_frames
    return ContextBase(name, key, windows_of, base.embed, tuple(range(span + 1)))


def contexts(base: ContextBase, hops: np.ndarray, representation: Representation) -> np.ndarray:
    """Every context of a stream's embeddings [hops, dim] -> [positions, features].

    ``joined`` concatenates the `ContextBase.joined_hops` embeddings (oldest first); ``pooled``
    concatenates the mean and the maximum over all hops of the context (2 * dim values).
    """
    span = base.context_hops
    n = hops.shape[0] - span + 1
    if n <= 0:
        raise ValueError(f"contexts: got {hops.shape[0]} hops, a context needs {span}")
    if representation == "joined":
        return np.concatenate([hops[o : o + n] for o in base.joined_hops], axis=1)
    view = np.lib.stride_tricks.sliding_window_view(hops, span, axis=0)  # [n, dim, span]
    return np.concatenate([view.mean(axis=-1), view.max(axis=-1)], axis=1)


def embed_clips(
    base: ContextBase, clips: Sequence[np.ndarray], progress: Callable[[int], None] | None = None
) -> list[np.ndarray]:
    """Every hop's embedding of each clip, [hops_i, dim] each, featurized and run in batches."""
    out: list[np.ndarray] = []
    for start in range(0, len(clips), EMBED_CHUNK_CLIPS):
        windows = [base.windows_of(c) for c in clips[start : start + EMBED_CHUNK_CLIPS]]
        embedded = base.embed(np.concatenate(windows))
        bounds = np.cumsum([w.shape[0] for w in windows])[:-1]
        out += np.split(embedded, bounds)
        if progress is not None:
            progress(len(windows))
    return out


# --- synthetic training clips -------------------------------------------------------------------


@dataclass(frozen=True)
class ClipRecipe:
    """Synthetic training clips: which words, spoken by which voices, degraded how.

    Parameters
    ----------
    digit_clips : int
        Clips of each digit, >= 1.
    other_words : int
        Clips of other vocabulary words, one word each (repeated only past the vocabulary).
    engines : tuple of Engine
        Synthesizers whose voices speak.
    voices : {"all", "train", "validation", "test"}
        All installed voices of ``engines``, or one part of their speaker split.
    augment : {"noise", "full"}
        ``noise``: the trimmed word at a random place in the clip, coloured noise over the whole
        clip at ``snr_db`` below the word's level, a random gain. ``full``: also the base
        corpus's speed and pitch changes on the word and its reverberation, microphone colour
        and band limits on the clip, before the noise.
    snr_db : tuple of float
        Range of the word-to-noise ratio, in dB.
    seed : int
        Seeds words, voices, renditions and degradation.
    """

    digit_clips: int = 100
    other_words: int = 260
    engines: tuple[Engine, ...] = ("espeak-ng", "flite")
    voices: Literal["all", "train", "validation", "test"] = "all"
    augment: Literal["noise", "full"] = "noise"
    snr_db: tuple[float, float] = (5.0, 30.0)
    seed: int = 0

    def key(self, voices: Sequence[Voice]) -> str:
        """A stable hash of the recipe and the voices it draws from."""
        fields = asdict(self) | {"voices_used": [str(v) for v in voices], "v": FORMAT_VERSION}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


DETECTION_RECIPE = ClipRecipe()
"""The comparison protocol's clips: 100 per digit and 260 other words, espeak-ng and flite."""
ZERO_SHOT_RECIPE = ClipRecipe(digit_clips=200, other_words=0, engines=ENGINES, augment="full")
"""The zero-shot head's clips: digits from every synthesizer, fully augmented."""

_WORD_STAGE = AugmentConfig(
    reverb_prob=0.0, band_limit_prob=0.0, mic_color_prob=0.0, noise_prob=0.0,
    gain_range_db=(0.0, 0.0),
)  # fmt: skip
_ROOM_STAGE = replace(_WORD_STAGE, speed_prob=0.0, pitch_prob=0.0, reverb_prob=0.4,
                      band_limit_prob=0.3, mic_color_prob=0.5)  # fmt: skip


def recipe_voices(recipe: ClipRecipe) -> list[Voice]:
    """The installed voices a recipe draws from (`split_voices` part when asked)."""
    voices = available_voices(recipe.engines)
    if not voices:
        raise ValueError(f"no voices of {list(recipe.engines)} are installed")
    if recipe.voices == "all":
        return voices
    return list(getattr(split_voices(voices, seed=recipe.seed), recipe.voices))


def _make_clip(
    audio: np.ndarray, augment: str, snr_db: tuple[float, float], seed: int
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    word = trim_silence(audio)
    if augment == "full":
        word = Augmenter(_WORD_STAGE)(word, rng)
    clip = fit_to_window(word, length=CLIP_SAMPLES, rng=rng)
    if augment == "full":
        clip = Augmenter(_ROOM_STAGE)(clip, rng)
    level = float(np.sqrt(np.mean(np.square(word, dtype=np.float64)))) if word.size else 0.0
    noise = colored_noise(CLIP_SAMPLES, exponent=rng.uniform(0.0, 2.0), rng=rng)
    clip = clip + noise * (level / 10 ** (rng.uniform(*snr_db) / 20))
    return np.clip(apply_gain(clip, rng.uniform(*GAIN_RANGE_DB)), -1.0, 1.0)


def _make_clips(
    jobs: list[tuple[np.ndarray, int]], augment: str, snr: tuple[float, float]
) -> list[np.ndarray]:
    """Worker: (audio, seed) pairs -> finished clips."""
    return [_make_clip(audio, augment, snr, seed) for audio, seed in jobs]


def synthetic_clips(
    recipe: ClipRecipe,
    *,
    workers: int | None = None,
    progress: Progress | None = None,
    speech_cache: SpeechCache | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Synthesize and degrade a recipe's clips.

    Returns
    -------
    clips : list of np.ndarray
        float32 [shape=(CLIP_SAMPLES,)] each, digits first.
    labels : np.ndarray
        The digit of each clip, or `OTHER`, int64 [shape=(n,)].
    """
    rng = np.random.default_rng(recipe.seed)
    voices = recipe_voices(recipe)
    renditions = sample_renditions(DIGIT_WORDS, voices, per_word=recipe.digit_clips, rng=rng)
    pool = [w for w in load_vocabulary() if w not in DIGIT_WORDS]
    words = rng.choice(pool, size=recipe.other_words, replace=recipe.other_words > len(pool))
    renditions += sample_renditions([str(w) for w in words], voices, per_word=1, rng=rng)
    labels = np.array(
        [d for d in range(len(DIGIT_WORDS)) for _ in range(recipe.digit_clips)]
        + [OTHER] * recipe.other_words
    )
    seeds = rng.integers(2**63, size=len(renditions))
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress("synthesis", done[0], len(renditions))

    audio = (speech_cache or SpeechCache()).get_many(renditions, workers=workers, progress=tick)
    jobs = [(a, int(s)) for a, s in zip(audio, seeds, strict=True)]
    chunks = [jobs[i : i + CHUNK_CLIPS] for i in range(0, len(jobs), CHUNK_CLIPS)]
    clips: list[np.ndarray] = []
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as executor:
        futures = [executor.submit(_make_clips, c, recipe.augment, recipe.snr_db) for c in chunks]
        for future in futures:
            clips += future.result()
            if progress is not None:
                progress("clips", len(clips), len(jobs))
    return clips, labels


def clip_embeddings(
    recipe: ClipRecipe,
    bases: Sequence[ContextBase],
    *,
    workers: int | None = None,
    progress: Progress | None = None,
    directory: Path | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Hop embeddings of a recipe's clips for each base, from the cache or made once for all.

    Returns
    -------
    embeddings : dict
        Base name -> float32 [shape=(clips, context_hops, dim)].
    labels : np.ndarray
        As `synthetic_clips`.
    """
    directory = directory or cache_dir("evaluation")
    key = recipe.key(recipe_voices(recipe))
    paths = {b.name: directory / f"clips-{key}-{b.key[:16]}.npz" for b in bases}
    found: dict[str, np.ndarray] = {}
    labels: np.ndarray | None = None
    for base in bases:
        if paths[base.name].is_file():
            with np.load(paths[base.name]) as data:
                found[base.name], labels = data["hops"], data["labels"]
    missing = [b for b in bases if b.name not in found]
    if missing:
        clips, labels = synthetic_clips(recipe, workers=workers, progress=progress)
        for base in missing:
            found[base.name] = np.stack(embed_clips(base, clips, _counter(progress, base.name,
                                                                          len(clips))))  # fmt: skip
            _save(paths[base.name], hops=found[base.name], labels=labels)
    assert labels is not None
    return found, labels


def _counter(progress: Progress | None, stage: str, total: int) -> Callable[[int], None]:
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(stage, done[0], total)

    return tick


def _save(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(partial, **arrays)  # type: ignore[arg-type]
    partial.replace(path)


# --- real recordings ----------------------------------------------------------------------------


def recording_clip(audio: np.ndarray) -> np.ndarray:
    """A recording centred in `CLIP_SAMPLES` of silence, plus `FLOOR_RMS` white noise (seeded).

    Longer recordings are kept whole.
    """
    clip = audio if audio.size >= CLIP_SAMPLES else centered_window(audio, CLIP_SAMPLES)
    floor = np.random.default_rng(0).standard_normal(clip.size) * FLOOR_RMS
    return (clip + floor).astype(np.float32)


def recording_embeddings(
    base: ContextBase,
    recordings: Sequence[Recording],
    *,
    progress: Progress | None = None,
    directory: Path | None = None,
) -> list[np.ndarray]:
    """Hop embeddings of each recording (`recording_clip`), [hops_i, dim] each, cached."""
    listing = [(r.path.name, r.path.stat().st_size) for r in recordings]
    digest = hashlib.sha256(json.dumps([base.key, listing, FORMAT_VERSION]).encode()).hexdigest()
    path = (directory or cache_dir("evaluation")) / f"recordings-{digest[:16]}.npz"
    if path.is_file():
        with np.load(path) as data:
            return np.split(data["hops"], np.cumsum(data["counts"])[:-1])
    out: list[np.ndarray] = []
    tick = _counter(progress, f"FSDD {base.name}", len(recordings))
    for start in range(0, len(recordings), EMBED_CHUNK_CLIPS):
        part = recordings[start : start + EMBED_CHUNK_CLIPS]
        out += embed_clips(base, [recording_clip(load_audio(r.path)) for r in part], tick)
    _save(path, hops=np.concatenate(out), counts=np.array([h.shape[0] for h in out]))
    return out


def centre_contexts(
    base: ContextBase, hops: Sequence[np.ndarray], representation: Representation
) -> np.ndarray:
    """The middle context of each stream [shape=(n, features)]."""
    rows = []
    for h in hops:
        every = contexts(base, h, representation)
        rows.append(every[every.shape[0] // 2])
    return np.stack(rows)


# --- heads and metrics --------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearHead:
    """Standardization, then a linear map to logits.

    Attributes
    ----------
    mean, scale : np.ndarray
        Per-feature mean and standard deviation of the training features [shape=(d,)].
    weights : np.ndarray
        [shape=(d, k)].
    bias : np.ndarray
        [shape=(k,)].
    """

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: np.ndarray

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Logits of features [shape=(n, d)] -> [shape=(n, k)]."""
        return ((features - self.mean) / self.scale) @ self.weights + self.bias


def fit_logistic(
    features: np.ndarray, targets: np.ndarray, *, softmax: bool, l2: float = L2
) -> LinearHead:
    """Logistic regression by L-BFGS on standardized features (deterministic).

    Parameters
    ----------
    features : np.ndarray
        [shape=(n, d)].
    targets : np.ndarray
        0/1 [shape=(n, k)]: one-hot rows for ``softmax``, else one independent sigmoid per
        column (one-vs-rest heads).
    softmax : bool
        One softmax over the k classes, or k sigmoids.
    l2 : float
        Weight of ``0.5 * |W|^2`` against the summed log-loss; >= 0.
    """
    from scipy.optimize import minimize
    from scipy.special import expit, log_softmax

    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
    z = ((features - mean) / scale).astype(np.float64)
    t = targets.astype(np.float64)
    d, k = z.shape[1], t.shape[1]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: d * k].reshape(d, k), theta[d * k :]
        logits = z @ w + b
        if softmax:
            log_p = log_softmax(logits, axis=1)
            value, error = -float(np.sum(t * log_p)), np.exp(log_p) - t
        else:
            value = float(np.sum(np.logaddexp(0.0, logits) - t * logits))
            error = expit(logits) - t
        value += 0.5 * l2 * float(np.sum(w * w))
        return value, np.concatenate([(z.T @ error + l2 * w).ravel(), error.sum(axis=0)])

    theta = minimize(loss, np.zeros(d * k + k), jac=True, method="L-BFGS-B",
                     options={"maxiter": FIT_ITERATIONS}).x  # fmt: skip
    return LinearHead(mean, scale, theta[: d * k].reshape(d, k), theta[d * k :])


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve: P(positive score > negative score), ties counting one half."""
    ordered = np.sort(np.asarray(negative))
    below = np.searchsorted(ordered, positive, side="left")
    tied = np.searchsorted(ordered, positive, side="right") - below
    return float(np.sum(below + 0.5 * tied) / (np.size(positive) * ordered.size))


def miss_rate_at(positive: np.ndarray, negative: np.ndarray, false_accept_rate: float) -> float:
    """Share of positives missed at the lowest threshold that keeps false accepts in the rate.

    A score is accepted when above the threshold; at most ``floor(rate * negatives)`` negatives
    may be, so the threshold is the next-highest negative score (ties rejected together).
    """
    ordered = np.sort(np.asarray(negative))[::-1]
    allowed = int(np.floor(false_accept_rate * ordered.size + 1e-9))
    threshold = ordered[allowed] if allowed < ordered.size else -np.inf
    return float(np.mean(np.asarray(positive) <= threshold))


# --- the protocols ------------------------------------------------------------------------------

ZERO_SHOT_REPRESENTATION: Representation = "pooled"
FEW_SHOT_REPRESENTATION: Representation = "joined"


def zero_shot(
    base: ContextBase,
    train_hops: np.ndarray,
    train_labels: np.ndarray,
    real_hops: Sequence[np.ndarray],
    recordings: Sequence[Recording],
    representation: Representation = ZERO_SHOT_REPRESENTATION,
) -> dict[str, Any]:
    """Accuracy on the recordings of a softmax head trained on the synthetic digit clips."""
    digits = train_labels >= 0
    x = centre_contexts(base, list(train_hops[digits]), representation)
    one_hot = np.eye(len(DIGIT_WORDS))[train_labels[digits]]
    head = fit_logistic(x, one_hot, softmax=True, l2=ZERO_SHOT_L2)
    predicted = np.argmax(head.logits(centre_contexts(base, real_hops, representation)), axis=1)
    true = np.array([r.digit for r in recordings])
    return {
        "accuracy": float(np.mean(predicted == true)),
        "confusion": confusion(true, predicted, len(DIGIT_WORDS)).tolist(),
        "train_clips": int(digits.sum()),
        "representation": representation,
    }


def few_shot(
    base: ContextBase,
    real_hops: Sequence[np.ndarray],
    recordings: Sequence[Recording],
    shots: int = SHOTS,
    representation: Representation = FEW_SHOT_REPRESENTATION,
) -> dict[str, Any]:
    """Per-speaker nearest-prototype accuracy (`models.base.evaluation.few_shot_digits`)."""
    vectors = centre_contexts(base, real_hops, representation)
    per_speaker = few_shot_digits(vectors, list(recordings), shots)
    return {
        "per_speaker": per_speaker,
        "mean": float(np.mean(list(per_speaker.values()))),
        "shots": shots,
        "representation": representation,
    }


FALSE_ACCEPT_RATE = 0.01


def detection(
    base: ContextBase,
    train_hops: np.ndarray,
    train_labels: np.ndarray,
    real_hops: Sequence[np.ndarray],
    recordings: Sequence[Recording],
) -> dict[str, Any]:
    """One-vs-rest logistic heads per digit on joined contexts; per-digit detection figures.

    A recording's score for a digit is the head's largest logit over the recording's contexts;
    the negatives of a digit are the recordings of the other digits.
    """
    x = centre_contexts(base, list(train_hops), "joined")
    targets = train_labels[:, None] == np.arange(len(DIGIT_WORDS))
    head = fit_logistic(x, targets, softmax=False)
    scores = np.stack([head.logits(contexts(base, h, "joined")).max(axis=0) for h in real_hops])
    truth = np.array([r.digit for r in recordings])
    per_digit = {}
    for d in range(len(DIGIT_WORDS)):
        positive, negative = scores[truth == d, d], scores[truth != d, d]
        per_digit[str(d)] = {
            "auc": auc(positive, negative),
            "miss_at_1pct_fa": miss_rate_at(positive, negative, FALSE_ACCEPT_RATE),
            "miss_at_0_fa": miss_rate_at(positive, negative, 0.0),
        }
    mean = {m: float(np.mean([v[m] for v in per_digit.values()])) for m in per_digit["0"]}
    return {"per_digit": per_digit, "mean": mean, "train_clips": int(train_labels.size)}


def detection_protocol(
    base: ContextBase,
    fsdd: Path,
    *,
    recipe: ClipRecipe = DETECTION_RECIPE,
    workers: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The comparison protocol for one base, end to end (synthesis, heads, FSDD scores)."""
    recordings = fsdd_recordings(fsdd)
    train, labels = clip_embeddings(recipe, [base], workers=workers, progress=progress)
    real = recording_embeddings(base, recordings, progress=progress)
    return detection(base, train[base.name], labels, real, recordings)


@dataclass(frozen=True)
class Protocols:
    """Sizes of the three protocols (see the module docstring)."""

    zero_shot: ClipRecipe = ZERO_SHOT_RECIPE
    detection: ClipRecipe = DETECTION_RECIPE
    shots: int = SHOTS


def compare_bases(
    bases: Sequence[ContextBase],
    fsdd: Path,
    *,
    protocols: Protocols | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> dict[str, dict[str, Any]]:
    """All three protocols for each base; synthetic clips are made once for all bases."""
    protocols = protocols or Protocols()
    recordings = fsdd_recordings(fsdd)
    digits, digit_labels = clip_embeddings(
        protocols.zero_shot, bases, workers=workers, progress=progress
    )
    words, word_labels = clip_embeddings(
        protocols.detection, bases, workers=workers, progress=progress
    )
    results = {}
    for base in bases:
        real = recording_embeddings(base, recordings, progress=progress)
        results[base.name] = {
            "zero_shot": zero_shot(base, digits[base.name], digit_labels, real, recordings),
            "few_shot": few_shot(base, real, recordings, protocols.shots),
            "detection": detection(base, words[base.name], word_labels, real, recordings),
        }
    return results
