"""Built-in command words on any base: a speech-commands head trained on synthetic speech only.

The DS-CNN base carries its own ``commands`` head; the imported speech embedding has none. A
`CommandsHead` is a softmax over `SPEECH_COMMANDS_LABELS` on a *context*: the joined embeddings
of the `context_hops` consecutive hops that span about `CONTEXT_S` (4 hops, 1.0 s, on the
imported base). Its training clips, one context long, are spoken by the training voices of
`split_voices` (seed `SPLIT_SEED`, whose test voices every earshot model holds out):

- the ten command words;
- ``_unknown_``: other vocabulary words (homophones of commands left out) and parts of command
  words, so that a context holding half a word does not pass for another command;
- ``_silence_``: coloured noise from near silence to a loud room.

A word is trimmed, maybe sped up or slowed down, put at a random place, in a room (reverberation,
microphone colour, band limits), under coloured noise 5-50 dB below it, at a random gain. An
utterance is scored as the daemon scores the DS-CNN's head, by each class's highest probability
over the utterance's contexts::

    head = CommandsHead.load(SHIPPED_COMMANDS, base_sha256=base.sha256)
    head.probabilities(base, utterance)  # float32 [12], one per label

Only numpy at import time; training imports synthesis, augmentation and scipy when it runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kernels.errors import ModelError
from models.base.geometry import Embedder, Geometry
from models.nn.checkpoint import SHA256, Manifest, load_model, save_model
from models.nn.manifest import Exactly, ListOf, Number, Record, Text, validate_manifest
from models.paths import DATA_DIR
from models.speech.dataset import (
    COMMAND_WORDS,
    SILENCE_LABEL,
    SPEECH_COMMANDS_LABELS,
    UNKNOWN_LABEL,
)

Progress = Callable[[str, int, int], None]

SHIPPED_COMMANDS = DATA_DIR / "commands.npz"
"""The commands head shipped for the imported speech embedding (`models.paths`)."""
COMMANDS_KIND = "commands"
HEAD_ARCHITECTURE = "context-softmax"
LABEL_INDEX = {label: i for i, label in enumerate(SPEECH_COMMANDS_LABELS)}
CONTEXT_S = 1.0
"""Audio one context hears, about the DS-CNN's 1 s window: a command word fits in it."""
SPLIT_SEED = 0
"""Seed of the voice split: its test voices are held out of every earshot model's training."""
CLIPS_PER_WORD = 600
"""Training clips of each command word and of ``_silence_`` (with 300, held-out command accuracy
is about 5 points lower)."""
UNKNOWN_SHARE, PARTIAL_SHARE, PARTIAL_KEPT = 3, 0.15, (0.3, 0.55)
"""``_unknown_`` clips per command word's, the share of them that are parts of command words,
and the share of the word a part keeps (from its start or its end)."""
HOMOPHONES = frozenset({"know", "write", "rite", "wright"})
"""Vocabulary words that sound like a command word, kept out of ``_unknown_``."""
SNR_DB, SILENCE_DB = (5.0, 50.0), (-80.0, -25.0)
"""Word-to-noise ratio of a clip (up to 30 dB only, clean words scored lower), and the level of a
``_silence_`` clip (dBFS)."""
L2 = 10.0
"""Weight of ``0.5 * |W|^2`` against the summed log-loss (`embedding_eval.fit_logistic`); 3 and
30 did no better on held-out voices."""
TEST_CLIPS_PER_CLASS, TEST_CLIP_S = 30, 1.5
"""Held-out clips of every class for the report by default, each an utterance with the word."""
MIN_SCORE = 0.5
"""A command is accepted at this probability, the default ``min_score`` of a local command."""
DITHER_RMS = 1.0 / 32768
"""White noise added to scored audio (one 16-bit step): digital silence, which padding makes and
no microphone delivers, pushes the imported base's features to their floor."""
CHUNK_CLIPS = 32
"""Clips handed to one worker at a time."""

_ARCHITECTURE = {"name": Exactly(HEAD_ARCHITECTURE), "context_hops": Number(1, 256, integer=True),
                 "dim": Number(1, 4096, integer=True)}  # fmt: skip
COMMANDS_SCHEMA = Record(
    {"architecture": Record(_ARCHITECTURE), "labels": ListOf(Text(), 64, min_items=2),
     "extra": Record({"base": Text(), "base_sha256": SHA256}, open=True)},
    open=True,
)  # fmt: skip
"""The fields of a commands head's manifest that `CommandsHead.load` builds from."""


def context_hops(geometry: Geometry) -> int:
    """Consecutive hops whose windows span about `CONTEXT_S` of audio (at least one)."""
    frames = CONTEXT_S / geometry.frame_s
    return max(1, 1 + round((frames - geometry.window_frames) / geometry.hop_frames))


def context_samples(geometry: Geometry, hops: int) -> int:
    """Samples of audio that make exactly the frames of ``hops`` consecutive hops."""
    frames = geometry.window_frames + (hops - 1) * geometry.hop_frames
    return (frames - 1) * geometry.front_end.hop_samples + geometry.front_end.n_fft


@dataclass
class CommandsHead:
    """A softmax over `labels` on `context_hops` joined hop embeddings of one base.

    Attributes
    ----------
    labels : list of str
        Classes, in the order of the logits.
    base_sha256, base : str
        Checksum and name of the base the head was trained on; it refuses any other.
    context_hops : int
        Consecutive hops of one context, joined oldest first.
    mean, scale : np.ndarray
        Standardization of a context, float32 [shape=(context_hops * dim,)].
    weights, bias : np.ndarray
        float32 [shape=(context_hops * dim, len(labels))] and [shape=(len(labels),)].
    front_end, recipe, metrics : dict
        The base's `FrontEndSettings`, how the head was trained and what was measured then
        (kept in the manifest, for people reading it).
    """

    labels: list[str]
    base_sha256: str
    base: str
    context_hops: int
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    front_end: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def logits(self, contexts: np.ndarray) -> np.ndarray:
        """Logits of contexts [n, context_hops * dim] -> float32 [n, len(labels)]."""
        return (((contexts - self.mean) / self.scale) @ self.weights + self.bias).astype(np.float32)

    def probabilities(self, base: Embedder, audio: np.ndarray) -> np.ndarray:
        """The highest probability of each label over every context of a recording.

        Parameters
        ----------
        base : Embedder
            The base the head was trained on.
        audio : np.ndarray
            16 kHz mono float [shape=(samples,)]; shorter than a context, it is centred in
            silence.

        Returns
        -------
        np.ndarray
            float32 [shape=(len(labels),)], each in [0, 1].

        Raises
        ------
        ModelError
            ``base`` is not the base the head was trained on.
        """
        if base.sha256 != self.base_sha256:
            raise ModelError(
                f"commands head: trained on base {self.base} ({self.base_sha256[:12]}...), the "
                f"base in use is {base.name} ({base.sha256[:12]}...); run `earshot train commands`"
            )
        audio = np.asarray(audio, np.float32).reshape(-1)
        short = max(0, context_samples(base.geometry, self.context_hops) - audio.size)
        audio = np.pad(audio, (short // 2, short - short // 2))
        audio = audio + np.random.default_rng(0).standard_normal(audio.size) * DITHER_RMS
        hops = base.embed_frames(base.features(audio.astype(np.float32)))
        n = hops.shape[0] - self.context_hops + 1
        logits = self.logits(np.concatenate([hops[i : i + n] for i in range(self.context_hops)], 1))
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (p / p.sum(axis=1, keepdims=True)).max(axis=0).astype(np.float32)

    def save(self, path: Path) -> Manifest:
        """Write the head with a manifest of kind ``commands`` (see `models.nn.checkpoint`)."""
        arrays = {"mean": self.mean, "scale": self.scale, "weights": self.weights,
                  "bias": self.bias}  # fmt: skip
        architecture = {"name": HEAD_ARCHITECTURE, "context_hops": self.context_hops,
                        "dim": int(self.mean.size // self.context_hops)}  # fmt: skip
        manifest = Manifest(
            COMMANDS_KIND, architecture, list(self.labels), front_end=dict(self.front_end),
            recipe=self.recipe, metrics=self.metrics,
            extra={"base": self.base, "base_sha256": self.base_sha256},
        )  # fmt: skip
        return save_model(path, {k: np.asarray(v, np.float32) for k, v in arrays.items()}, manifest)

    @classmethod
    def load(cls, path: Path, *, base_sha256: str | None = None) -> CommandsHead:
        """Read and check a commands head file.

        Raises
        ------
        ModelError
            Missing or corrupt file (see `models.nn.checkpoint.load_model`), a manifest that
            breaks `COMMANDS_SCHEMA`, weights not finite or of other shapes than it says, or a
            head trained on another base than ``base_sha256``.
        """
        path = Path(path)
        arrays, manifest = load_model(path, kind=COMMANDS_KIND, front_end=None)
        validate_manifest(path, manifest.__dict__, COMMANDS_SCHEMA)
        extra, architecture, n = manifest.extra, manifest.architecture, len(manifest.labels)
        if base_sha256 is not None and extra["base_sha256"] != base_sha256:
            raise ModelError(
                f"{path}: trained on base {extra['base']} ({extra['base_sha256'][:12]}...), the "
                f"base in use is {base_sha256[:12]}...; run `earshot train commands`"
            )
        inputs = architecture["context_hops"] * architecture["dim"]
        expected = {"mean": (inputs,), "scale": (inputs,), "weights": (inputs, n), "bias": (n,)}
        for name, shape in expected.items():
            array = arrays.get(name)
            if array is None or array.shape != shape or array.dtype.kind != "f":
                got = "nothing" if array is None else f"shape {array.shape} ({array.dtype})"
                raise ModelError(
                    f"{path}: {name!r}: got {got}, expected floats of shape {shape} (manifest "
                    f"architecture {architecture}, {n} labels)"
                )
            if not np.all(np.isfinite(array)) or (name == "scale" and np.any(array <= 0)):
                raise ModelError(f"{path}: {name!r} holds values that are not finite and > 0")
        w = {k: arrays[k].astype(np.float32) for k in expected}
        return cls(
            list(manifest.labels), extra["base_sha256"], extra["base"],
            architecture["context_hops"], w["mean"], w["scale"], w["weights"], w["bias"],
            front_end=dict(manifest.front_end), recipe=manifest.recipe, metrics=manifest.metrics,
        )  # fmt: skip


# --- clips --------------------------------------------------------------------------------------


def _make_clips(jobs: list[tuple[str, np.ndarray | None, int]], length: int) -> list[np.ndarray]:
    """Worker: (kind, audio, seed) -> a ``word``, ``part`` or ``silence`` clip of ``length``."""
    from dataclasses import replace

    from models.base.embedding_eval import _ROOM_STAGE, _WORD_STAGE, GAIN_RANGE_DB
    from models.speech.augment import Augmenter, apply_gain, colored_noise
    from models.speech.dataset import fit_to_window, trim_silence

    word_stage, room_stage = Augmenter(replace(_WORD_STAGE, pitch_prob=0.0)), Augmenter(_ROOM_STAGE)
    clips = []
    for kind, audio, seed in jobs:
        rng = np.random.default_rng(seed)
        noise = colored_noise(length, exponent=rng.uniform(0.0, 2.0), rng=rng)
        if audio is None:
            clips.append(apply_gain(noise, rng.uniform(*SILENCE_DB)))
            continue
        word = trim_silence(audio)
        if kind == "part":
            keep = max(1, int(word.size * rng.uniform(*PARTIAL_KEPT)))
            word = word[:keep] if rng.random() < 0.5 else word[-keep:]
        word = word_stage(word, rng)
        clip = room_stage(fit_to_window(word, length=length, rng=rng), rng)
        level = float(np.sqrt(np.mean(np.square(word, dtype=np.float64)))) if word.size else 0.0
        clip = clip + noise * (level / 10 ** (rng.uniform(*SNR_DB) / 20))
        clips.append(np.clip(apply_gain(clip, rng.uniform(*GAIN_RANGE_DB)), -1.0, 1.0))
    return clips


def commands_clips(
    voices: Sequence[Any],
    per_word: int,
    *,
    length: int,
    unknown: int,
    silence: int,
    seed: int = 0,
    workers: int | None = None,
    progress: Progress | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Synthesize and degrade clips of the twelve classes, ``length`` samples each.

    ``per_word`` clips of each command word, ``unknown`` of ``_unknown_`` (a `PARTIAL_SHARE` of
    them parts of command words) and ``silence`` of ``_silence_``, spoken by ``voices`` (engines
    in equal shares) and seeded by ``seed``. Returns the clips (float32) and the index of each
    one's class in `SPEECH_COMMANDS_LABELS` (int64 [shape=(n,)]).
    """
    from concurrent.futures import ProcessPoolExecutor

    from models.base.embedding_eval import _counter
    from models.speech.dataset import load_vocabulary, sample_renditions
    from models.speech.synth import SpeechCache

    rng = np.random.default_rng(seed)
    parts = round(PARTIAL_SHARE * unknown)
    pool = [w for w in load_vocabulary() if w not in COMMAND_WORDS and w not in HOMOPHONES]
    words = [str(w) for w in rng.choice(pool, unknown - parts)]
    words += [str(w) for w in rng.choice(COMMAND_WORDS, parts)]
    renditions = sample_renditions(COMMAND_WORDS, voices, per_word=per_word, rng=rng)
    renditions += sample_renditions(words, voices, per_word=1, rng=rng)
    kinds = ["word"] * (len(renditions) - parts) + ["part"] * parts + ["silence"] * silence
    labels = [i for i in range(len(COMMAND_WORDS)) for _ in range(per_word)]
    labels += [LABEL_INDEX[UNKNOWN_LABEL]] * unknown + [LABEL_INDEX[SILENCE_LABEL]] * silence
    tick = _counter(progress, "synthesis", len(renditions))
    audio = [*SpeechCache().get_many(renditions, workers=workers, progress=tick)] + [None] * silence
    jobs = [(k, a, int(s)) for k, a, s in zip(kinds, audio, rng.integers(2**63, size=len(audio)),
                                                strict=True)]  # fmt: skip
    chunks = [jobs[i : i + CHUNK_CLIPS] for i in range(0, len(jobs), CHUNK_CLIPS)]
    clips: list[np.ndarray] = []
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as executor:
        for future in [executor.submit(_make_clips, c, length) for c in chunks]:
            clips += future.result()
            if progress is not None:
                progress("clips", len(clips), len(jobs))
    return clips, np.array(labels, np.int64)


# --- training and measuring ---------------------------------------------------------------------


def commands_accuracy(
    base: Embedder, head: CommandsHead, clips: Sequence[np.ndarray], labels: np.ndarray
) -> dict[str, Any]:
    """How well a head names clips, deciding as the daemon does.

    A clip is taken for the command word of highest `CommandsHead.probabilities` when that is
    at least `MIN_SCORE`, and for no command otherwise: right for ``_silence_`` and ``_unknown_``.

    Parameters
    ----------
    clips : sequence of np.ndarray
        Recordings (16 kHz mono float).
    labels : np.ndarray
        Index of each clip's class in ``head.labels`` [shape=(n,)].

    Returns
    -------
    dict
        ``accuracy`` (decisions right), ``command_accuracy`` (command clips whose word scores
        highest among the commands, with no threshold), ``false_accepts`` (other clips taken
        for a command), ``per_class`` (label -> decisions right), ``confusion`` (counts
        [true label][command word, then "none"]) and ``clips``.
    """
    commands = [i for i, label in enumerate(head.labels) if label in COMMAND_WORDS]
    scores = np.stack([head.probabilities(base, c)[commands] for c in clips])
    best = np.asarray(commands)[scores.argmax(axis=1)]
    decided = np.where(scores.max(axis=1) >= MIN_SCORE, best, -1)
    truth = np.asarray(labels, np.int64)
    is_command = np.isin(truth, commands)
    right = np.where(is_command, decided == truth, decided == -1)
    columns = [*commands, -1]
    confusion = [[int(np.sum((truth == t) & (decided == d))) for d in columns]
                 for t in range(len(head.labels))]  # fmt: skip
    return {
        "accuracy": float(right.mean()),
        "command_accuracy": float(np.mean(best[is_command] == truth[is_command])),
        "false_accepts": float(np.mean(decided[~is_command] != -1)),
        "per_class": {head.labels[t]: float(right[truth == t].mean()) for t in np.unique(truth)},
        "confusion": confusion,
        "clips": int(truth.size),
    }


def train_commands_head(
    base: Embedder,
    *,
    clips_per_word: int = CLIPS_PER_WORD,
    test_clips_per_class: int = TEST_CLIPS_PER_CLASS,
    seed: int = 0,
    workers: int | None = None,
    progress: Progress | None = None,
) -> tuple[CommandsHead, dict[str, Any]]:
    """Train a commands head for ``base`` on synthetic speech and measure it on held-out voices.

    Parameters
    ----------
    base : Embedder
        The base whose embeddings the head reads.
    clips_per_word : int
        Training clips of each command word and of ``_silence_`` (`UNKNOWN_SHARE` times as many
        of ``_unknown_``), one context long each; >= 1.
    test_clips_per_class : int
        Held-out clips of each class, `TEST_CLIP_S` long, spoken by the test voices; >= 1.
    seed : int
        Seeds the clips (the voice split is always `SPLIT_SEED`'s).
    workers : int, optional
        Synthesizers and clip makers in parallel; the CPU count by default.
    progress : callable, optional
        ``progress(stage, done, total)``.

    Returns
    -------
    head : CommandsHead
    report : dict
        ``clips`` (per label, train and test), ``voices`` (train and test), ``test``
        (`commands_accuracy` on the held-out clips) and ``seconds`` (clips, fit, test, total).
    """
    from threadpoolctl import threadpool_limits

    from dsp.constants import SAMPLE_RATE_HZ
    from models.base.embedding_eval import fit_logistic
    from models.speech.dataset import split_voices
    from models.speech.synth import available_voices

    for name, value in (("clips_per_word", clips_per_word), ("test_clips_per_class",
                                                            test_clips_per_class)):  # fmt: skip
        if value < 1:
            raise ValueError(f"{name}: got {value}, expected >= 1")
    start = time.perf_counter()
    split = split_voices(available_voices(), seed=SPLIT_SEED)
    if not split.train or not split.test:
        raise ModelError("no synthesizer voices to train and test with (install espeak-ng)")
    hops = context_hops(base.geometry)
    clips, labels = commands_clips(
        split.train, clips_per_word, length=context_samples(base.geometry, hops),
        unknown=UNKNOWN_SHARE * clips_per_word, silence=clips_per_word, seed=seed,
        workers=workers, progress=progress,
    )  # fmt: skip
    made = time.perf_counter()
    with threadpool_limits(1):  # a streamed hop is many small products: threads only wait
        x = np.stack([base.embed_frames(base.features(c))[:hops].reshape(-1) for c in clips])
    fit = fit_logistic(x, np.eye(len(SPEECH_COMMANDS_LABELS))[labels], softmax=True, l2=L2)
    w = [np.asarray(a, np.float32) for a in (fit.mean, fit.scale, fit.weights, fit.bias)]
    head = CommandsHead(
        list(SPEECH_COMMANDS_LABELS), base.sha256, base.name, hops, w[0], w[1], w[2], w[3],
        front_end=base.geometry.front_end.as_dict(),
        recipe={"clips_per_word": clips_per_word, "seed": seed, "split_seed": SPLIT_SEED,
                "context_s": CONTEXT_S, "l2": L2, "train_voices": len(split.train)},
    )  # fmt: skip
    fitted = time.perf_counter()
    n = test_clips_per_class
    test_clips, test_labels = commands_clips(
        split.test, n, length=round(TEST_CLIP_S * SAMPLE_RATE_HZ), unknown=n, silence=n,
        seed=seed + 1, workers=workers, progress=progress,
    )  # fmt: skip
    test = commands_accuracy(base, head, test_clips, test_labels)
    head.metrics = {f"test_{k}": test[k] for k in ("accuracy", "command_accuracy",
                                                    "false_accepts")}  # fmt: skip
    done = time.perf_counter()
    report = {
        "clips": {part: {label: int(np.sum(y == i)) for label, i in LABEL_INDEX.items()}
                  for part, y in (("train", labels), ("test", test_labels))},
        "voices": {"train": len(split.train), "test": len(split.test)},
        "test": test,
        "seconds": {"clips": made - start, "fit": fitted - made, "test": done - fitted,
                    "total": done - start},
    }  # fmt: skip
    return head, report
