"""Streaming wake-word detection: audio chunks in, detections out, every wake word on one embedding.

::

    detector = Detector(base_network, [WakeWord(model, threshold=0.93)])
    for chunk in chunks:                      # any sizes, 16 kHz mono float
        for detection in detector.push(chunk):
            print(detection.name, detection.score, detection.start_s, detection.end_s)

Per hop (100 ms of audio, `models.wake.context`) the detector runs the base network once on the
newest 1 s of log-mel, keeps the last few embeddings, and scores the context with every wake
word's head: ten wake words cost ten tiny matrix products more than one, not ten networks.
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

from dsp.constants import LOG_FLOOR, N_MELS
from dsp.features import LogMelStream, log_mel
from kernels.errors import ModelError
from kernels.network import Network
from kernels.runtime import Backend, Engine, create_engine
from models.base.model import BaseModel
from models.wake.context import (
    CONTEXT_FRAMES,
    CONTEXT_HOPS,
    CONTEXT_STRIDE_HOPS,
    HOP_FRAMES,
    HOP_S,
    WINDOW_FRAMES,
    context_vectors,
    frame_end_s,
    hop_windows,
)
from models.wake.model import WakeHead, WakeWordModel, refractory_hops, wake_probability

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
    base : Network or Engine
        The base network (embedding output), or an engine already running it.
    wake_words : sequence of WakeWord
        What to listen for; all heads read the same embeddings.
    backend : {"auto", "numpy", "wgpu"}
        Where the base runs when ``base`` is a `Network` (see `kernels.runtime`).
    on_hop : callable, optional
        ``on_hop(time_s, scores)`` with every hop's raw scores (one per wake word), e.g. to
        write them to a CSV.
    """

    def __init__(
        self,
        base: Network | Engine,
        wake_words: Sequence[WakeWord],
        *,
        backend: Backend = "auto",
        on_hop: Callable[[float, np.ndarray], None] | None = None,
    ):
        self.engine = create_engine(base, backend=backend) if isinstance(base, Network) else base
        self.wake_words = list(wake_words)
        self.on_hop = on_hop
        names = [w.name for w in self.wake_words]
        if len(set(names)) != len(names):
            raise ValueError(f"wake words: names must differ, got {names}")
        self._heads = _StackedHeads([w.model.head for w in self.wake_words])
        self._thresholds = np.array([w.threshold for w in self.wake_words])
        self._smoothing_hops = np.array([w.smoothing_hops for w in self.wake_words], np.int64)
        self._smoothing = int(self._smoothing_hops.max(initial=1))
        self._refractory = [refractory_hops(w.refractory_s) for w in self.wake_words]
        self._silence = self._embed(np.full((WINDOW_FRAMES, N_MELS), np.log(LOG_FLOOR)))
        self.reset()

    def reset(self) -> None:
        """Start a new stream: forget audio, embeddings, scores and refractory periods."""
        self._features = LogMelStream()
        self._frames = np.zeros((0, N_MELS), np.float32)
        self._frame_offset = 0  # stream index of self._frames[0]
        self._embeddings: deque[np.ndarray] = deque(
            [self._silence] * (CONTEXT_HOPS + 1), maxlen=CONTEXT_HOPS + 1
        )
        self._recent: deque[np.ndarray] = deque(maxlen=self._smoothing)
        self._last_fired = [-(10**9)] * len(self.wake_words)
        self.hops = 0

    def _embed(self, window: np.ndarray) -> np.ndarray:
        out = self.engine.run(window[None, :, :, None].astype(np.float32))
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def push(self, chunk: np.ndarray) -> list[Detection]:
        """Feed audio (16 kHz mono float, any length); return the detections it completes."""
        new = self._features.push(chunk)
        if new.shape[0]:
            self._frames = np.concatenate((self._frames, new))
        detections: list[Detection] = []
        while True:
            end = (self.hops * HOP_FRAMES + WINDOW_FRAMES) - self._frame_offset
            if end > self._frames.shape[0]:
                break
            self._embeddings.append(self._embed(self._frames[end - WINDOW_FRAMES : end]))
            detections += self._score(end)
            self.hops += 1
        keep = CONTEXT_FRAMES  # enough frames for the next window and for timing phrases
        if self._frames.shape[0] > keep:
            drop = self._frames.shape[0] - keep
            self._frames, self._frame_offset = self._frames[drop:], self._frame_offset + drop
        return detections

    def _score(self, end: int) -> list[Detection]:
        context = np.concatenate(
            [self._embeddings[k] for k in range(0, CONTEXT_HOPS + 1, CONTEXT_STRIDE_HOPS)]
        )[None]
        scores = self._heads.scores(context)
        time_s = frame_end_s(self._frame_offset + end)
        if self.on_hop is not None:
            self.on_hop(time_s, scores)
        self._recent.append(scores)
        # Each wake word's mean over its last smoothing_hops hops (or as many as there are yet).
        newest_first = np.cumsum(np.array(self._recent)[::-1], axis=0)
        span = np.minimum(self._smoothing_hops, len(self._recent))
        smoothed = newest_first[span - 1, np.arange(span.size)] / span
        detections = []
        for i in np.flatnonzero(smoothed >= self._thresholds):
            if self.hops - self._last_fired[i] < self._refractory[i]:
                continue
            wake = self.wake_words[i]
            onset, last = self._locate(end, wake.model.phrase_duration_s)
            speaker_score = None
            if wake.verify_speaker:
                assert wake.model.speaker is not None
                phrase = self._frames[onset - self._frame_offset : last - self._frame_offset + 1]
                speaker_score = wake.model.speaker.score(phrase)
                if speaker_score < wake.model.speaker.threshold:
                    continue
            self._last_fired[i] = self.hops
            frame_s = HOP_S / HOP_FRAMES
            detections.append(
                Detection(
                    wake.name,
                    float(smoothed[i]),
                    onset * frame_s,
                    frame_end_s(last + 1),
                    time_s,
                    speaker_score,
                )  # fmt: skip
            )
        return detections

    def _locate(self, end: int, duration_s: float) -> tuple[int, int]:
        """First and last frame (stream indices) of the phrase that just fired."""
        start = max(0, end - CONTEXT_FRAMES)
        duration_frames = int(round(duration_s / HOP_S * HOP_FRAMES))
        onset, last = locate_phrase(self._frames[start:end], duration_frames)
        first = self._frame_offset + start
        return first + onset, first + last


def locate_phrase(frames: np.ndarray, duration_frames: int) -> tuple[int, int]:
    """First and last frame of a phrase that ends in ``frames`` [n, mels], by loudness.

    Its end is the last frame `LOUD_DB` above the frames' quiet floor; its start the first loud
    frame at most ``duration_frames`` (the phrase's typical length) before that.
    """
    loudness = frames.mean(axis=1)
    floor = np.percentile(loudness, 10)
    loud = np.flatnonzero(loudness > floor + np.log(10 ** (LOUD_DB / 10)))
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


def stream_scores(base: BaseModel, heads: Sequence[WakeHead], audio: np.ndarray) -> np.ndarray:
    """Every hop's raw scores [hops, heads] of a whole recording, embedded in batches.

    The same scores as `Detector` (whose history before the first hop is silence) gives.
    """
    embeddings = base.embed(hop_windows(log_mel(audio)))
    silence = base.embed(np.full((1, WINDOW_FRAMES, N_MELS), np.log(LOG_FLOOR), np.float32))
    padded = np.concatenate([np.repeat(silence, CONTEXT_HOPS, axis=0), embeddings])
    contexts = context_vectors(padded)
    if not heads:
        return np.zeros((contexts.shape[0], 0), np.float32)
    return np.stack([head.scores(contexts) for head in heads], axis=1)
