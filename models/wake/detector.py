"""Streaming wake-word detection: audio chunks in, detections out, every wake word on one embedding.

::

    detector = Detector(base, [WakeWord(model, threshold=0.93)])
    for chunk in chunks:                      # any sizes, 16 kHz mono float
        for detection in detector.push(chunk):
            print(detection.name, detection.score, detection.start_s, detection.end_s)

Per hop (80 ms of audio on the imported base, 100 ms on the DS-CNN; `models.base.geometry`) the
base embeds the newest window of log-mel once, the detector keeps the last few embeddings, and
scores the context with every wake word's head: ten wake words cost ten tiny matrix products
more than one, not ten networks.
Scores are averaged over ``smoothing_hops``; a wake word fires when its average reaches its
threshold, and then not again for its refractory period. A detection says where the phrase was:
its end is the last loud frame before the detection, its start the phrase's typical length
before that, moved to the first loud frame. A wake word with ``verify_speaker`` fires only when
the frames of that phrase also match its enrolled speaker (`models.wake.speaker`); a rejected
candidate starts no refractory period.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from dsp.constants import LIVE_FRONT_END
from dsp.features import LogMelStream
from kernels.errors import ModelError
from kernels.runtime import Backend
from models.base.geometry import Embedder
from models.wake.model import (
    WakeHead,
    WakeWordModel,
    context_record,
    refractory_hops,
    wake_probability,
)

LOUD_DB = 12.0
"""Frames this far above the context's quiet floor count as speech when timing a phrase."""


@dataclass(frozen=True)
class Detection:
    """A wake word heard in the stream (times in seconds from the stream's start)."""

    name: str
    score: float
    start_s: float
    end_s: float
    time_s: float
    """When the detector decided: the end of the audio it had read."""
    speaker_score: float | None = None
    """The speaker check's score, for wake words that verify the speaker."""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready fields."""
        fields: dict[str, object] = {
            "wake_word": self.name,
            "score": round(self.score, 4),
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "time_s": round(self.time_s, 3),
        }
        if self.speaker_score is not None:
            fields["speaker_score"] = round(self.speaker_score, 4)
        return fields


@dataclass(frozen=True)
class WakeWord:
    """A wake-word model with the settings it runs with."""

    model: WakeWordModel
    threshold: float
    smoothing_hops: int = 2
    refractory_s: float = 2.0
    verify_speaker: bool = False

    def __post_init__(self) -> None:
        if self.verify_speaker and self.model.speaker is None:
            raise ModelError(
                f"{self.name}: verify_speaker needs an enrolled model with a speaker profile; "
                f"run `earshot enroll {self.name}`"
            )

    @property
    def name(self) -> str:
        """The wake word's name."""
        return self.model.name


class Detector:
    """Detects wake words in a stream of audio chunks.

    Parameters
    ----------
    base : Embedder
        The base (`models.base.geometry`) the wake words were trained on.
    wake_words : sequence of WakeWord
        What to listen for; all heads read the same embeddings.
    backend : {"auto", "numpy", "wgpu"}
        Where the base runs, where it can (see `Embedder.hop_embedder`).
    on_hop : callable, optional
        ``on_hop(time_s, scores)`` with every hop's raw scores (one per wake word), e.g. to
        write them to a CSV.
    """

    def __init__(
        self,
        base: Embedder,
        wake_words: Sequence[WakeWord],
        *,
        backend: Backend = "auto",
        on_hop: Callable[[float, np.ndarray], None] | None = None,
    ):
        self.base, self.geometry = base, base.geometry
        self.wake_words = list(wake_words)
        self.on_hop = on_hop
        names = [w.name for w in self.wake_words]
        if len(set(names)) != len(names):
            raise ValueError(f"wake words: names must differ, got {names}")
        for wake in self.wake_words:
            check_fits(wake.model, base)
        self._embedder = base.hop_embedder(backend)
        self._heads = _StackedHeads([w.model.head for w in self.wake_words])
        self._thresholds = np.array([w.threshold for w in self.wake_words])
        self._smoothing_hops = np.array([w.smoothing_hops for w in self.wake_words], np.int64)
        self._smoothing = int(self._smoothing_hops.max(initial=1))
        hop_s = self.geometry.hop_s
        self._refractory = [refractory_hops(w.refractory_s, hop_s) for w in self.wake_words]
        self._silence = silence_embedding(base)
        # The speaker check reads 40-band log-mel; a base on other frames gets a second front end.
        self._own_speaker_frames = any(w.verify_speaker for w in self.wake_words) and (
            self.geometry.front_end != LIVE_FRONT_END
        )
        self.reset()

    def reset(self) -> None:
        """Start a new stream: forget audio, embeddings, scores and refractory periods."""
        g = self.geometry
        self._features = self.base.frame_stream()
        self._embedder.reset()
        self._frames = np.zeros((0, g.front_end.n_mels), np.float32)
        self._speaker_features = LogMelStream() if self._own_speaker_frames else None
        self._speaker_frames = np.zeros((0, LIVE_FRONT_END.n_mels), np.float32)
        self._frame_offset = 0  # stream index of self._frames[0]
        self._embeddings: deque[np.ndarray] = deque(
            [self._silence] * (g.context_hops + 1), maxlen=g.context_hops + 1
        )
        self._recent: deque[np.ndarray] = deque(maxlen=self._smoothing)
        self._last_fired = [-(10**9)] * len(self.wake_words)
        self._peaks = np.zeros(len(self.wake_words))
        self.hops = 0

    def push(self, chunk: np.ndarray) -> list[Detection]:
        """Feed audio (16 kHz mono float, any length); return the detections it completes."""
        g = self.geometry
        new = self._features.push(chunk)
        if new.shape[0]:
            self._frames = np.concatenate((self._frames, new))
        if self._speaker_features is not None:
            self._speaker_frames = np.concatenate(
                (self._speaker_frames, self._speaker_features.push(chunk))
            )
        detections: list[Detection] = []
        for embedding in self._embedder.push(new):
            self._embeddings.append(embedding)
            end = self.hops * g.hop_frames + g.window_frames - self._frame_offset
            detections += self._score(end)
            self.hops += 1
        keep = g.context_frames  # enough frames for timing phrases
        if self._frames.shape[0] > keep:
            drop = self._frames.shape[0] - keep
            self._frames, self._frame_offset = self._frames[drop:], self._frame_offset + drop
            if self._speaker_features is not None:
                self._speaker_frames = self._speaker_frames[drop:]
        return detections

    def take_peaks(self) -> np.ndarray:
        """Each wake word's highest smoothed score since the last call (0 before any hop).

        For a live display on another thread: the swap is atomic, so at worst a hop scored
        while it happens counts towards the next call.
        """
        peaks, self._peaks = self._peaks, np.zeros(len(self.wake_words))
        return peaks

    def _score(self, end: int) -> list[Detection]:
        g = self.geometry
        context = np.concatenate(
            [self._embeddings[k] for k in range(0, g.context_hops + 1, g.context_stride_hops)]
        )[None]
        scores = self._heads.scores(context)
        time_s = g.frame_end_s(self._frame_offset + end)
        if self.on_hop is not None:
            self.on_hop(time_s, scores)
        self._recent.append(scores)
        # Each wake word's mean over its last smoothing_hops hops (or as many as there are yet).
        newest_first = np.cumsum(np.array(self._recent)[::-1], axis=0)
        span = np.minimum(self._smoothing_hops, len(self._recent))
        smoothed = newest_first[span - 1, np.arange(span.size)] / span
        np.maximum(self._peaks, smoothed, out=self._peaks)
        detections = []
        for i in np.flatnonzero(smoothed >= self._thresholds):
            if self.hops - self._last_fired[i] < self._refractory[i]:
                continue
            wake = self.wake_words[i]
            onset, last = self._locate(end, wake.model.phrase_duration_s)
            speaker_score = None
            if wake.verify_speaker:
                assert wake.model.speaker is not None
                frames = self._speaker_frames if self._own_speaker_frames else self._frames
                phrase = frames[onset - self._frame_offset : last - self._frame_offset + 1]
                speaker_score = wake.model.speaker.score(phrase)
                if speaker_score < wake.model.speaker.threshold:
                    continue
            self._last_fired[i] = self.hops
            detections.append(
                Detection(
                    wake.name,
                    float(smoothed[i]),
                    onset * g.frame_s,
                    g.frame_end_s(last + 1),
                    time_s,
                    speaker_score,
                )  # fmt: skip
            )
        return detections

    def _locate(self, end: int, duration_s: float) -> tuple[int, int]:
        """First and last frame (stream indices) of the phrase that just fired."""
        start = max(0, end - self.geometry.context_frames)
        duration_frames = int(round(duration_s / self.geometry.frame_s))
        onset, last = locate_phrase(
            self._frames[start:end], duration_frames, db_per_unit=self.geometry.db_per_unit
        )
        first = self._frame_offset + start
        return first + onset, first + last


def locate_phrase(
    frames: np.ndarray, duration_frames: int, *, db_per_unit: float = 10 / np.log(10)
) -> tuple[int, int]:
    """First and last frame of a phrase that ends in ``frames`` [n, mels], by loudness.

    Its end is the last frame `LOUD_DB` above the frames' quiet floor; its start the first loud
    frame at most ``duration_frames`` (the phrase's typical length) before that. Frame values are
    ``db_per_unit`` decibels apart (natural-log power, as `dsp.features.log_mel`, by default).
    """
    loudness = frames.mean(axis=1)
    floor = np.percentile(loudness, 10)
    loud = np.flatnonzero(loudness > floor + LOUD_DB / db_per_unit)
    if loud.size == 0:
        last = loudness.size - 1
        return max(0, last - duration_frames), last
    last = int(loud[-1])
    return int(loud[np.searchsorted(loud, max(last - duration_frames, 0))]), last


class _StackedHeads:
    """Every wake word's head as one pair of matrix products.

    A hop costs two small matmuls whatever the number of wake words (the second layer is
    block-diagonal).
    """

    def __init__(self, heads: Sequence[WakeHead]):
        self.count = len(heads)
        if not heads:
            return
        self.w1 = np.concatenate([h.w1 for h in heads], axis=1)
        self.b1 = np.concatenate([h.b1 for h in heads])
        self.w2 = np.zeros((self.w1.shape[1], 2 * self.count), np.float32)
        row = 0
        for i, h in enumerate(heads):
            self.w2[row : row + h.w2.shape[0], 2 * i : 2 * i + 2] = h.w2
            row += h.w2.shape[0]
        self.b2 = np.concatenate([h.b2 for h in heads])

    def scores(self, context: np.ndarray) -> np.ndarray:
        """Wake-class probability of every head for one context [1, inputs] -> [heads]."""
        if self.count == 0:
            return np.zeros(0, np.float32)
        hidden = np.maximum(context.astype(np.float32) @ self.w1 + self.b1, 0.0)
        return wake_probability((hidden @ self.w2 + self.b2).reshape(self.count, 2))


def check_fits(model: WakeWordModel, base: Embedder) -> None:
    """Refuse a wake-word model trained on another base, or for another geometry of it.

    Raises
    ------
    ModelError
        The message names both bases and the command that retrains the model.
    """
    retrain = f"run `earshot train {model.name}`"
    if model.base_sha256 != base.sha256:
        raise ModelError(
            f"{model.name}: trained on base {model.base} ({model.base_sha256[:12]}...), not on "
            f"the {base.name} in use ({base.sha256[:12]}...); {retrain}"
        )
    expected = context_record(base.geometry)
    inputs = base.geometry.context_windows * base.dim
    if model.context != expected or model.head.inputs != inputs:
        raise ModelError(
            f"{model.name}: its head reads context {model.context} ({model.head.inputs} values), "
            f"the {base.name} base gives {expected} ({inputs} values); {retrain}"
        )


def silence_embedding(base: Embedder) -> np.ndarray:
    """The embedding of a window of digital silence [dim]: the detector's history at start."""
    return base.embed(base.silence_frames(base.geometry.window_frames)[None])[0]


def stream_contexts(base: Embedder, audio: np.ndarray) -> np.ndarray:
    """Every hop's head input [hops, context] of a whole recording, as `Detector` builds them.

    The context before the first hop is silence, as in a detector that starts with the recording.
    """
    g = base.geometry
    embeddings = base.embed_frames(base.features(audio))
    silence = silence_embedding(base)[None]
    padded = np.concatenate([np.repeat(silence, g.context_hops, axis=0), embeddings])
    return g.context_vectors(padded)


def stream_scores(base: Embedder, heads: Sequence[WakeHead], audio: np.ndarray) -> np.ndarray:
    """Every hop's raw scores [hops, heads] of a whole recording, embedded in batches.

    The same scores as `Detector` (whose history before the first hop is silence) gives.
    """
    contexts = stream_contexts(base, audio)
    if not heads:
        return np.zeros((contexts.shape[0], 0), np.float32)
    return np.stack([head.scores(contexts) for head in heads], axis=1)
