"""Measure wake-word detectors: DET curves from recordings, and the FSDD wake-word protocol.

Positives are recordings that should each trigger the wake word once; a positive counts as
detected at a threshold when its smoothed score reaches it during the recording (or within
`POSITIVE_TAIL_S` after it). Negatives are audio without the phrase; their detections per hour
are false alarms. See `models.wake.metrics` for the counting.

The FSDD protocol (`fsdd_stream`, `fsdd_det`): all real recordings of the Free Spoken Digit
Dataset are joined into one stream per speaker, with short pauses. For a digit's wake word, its
own recordings in the stream are the positives, and the rest of the stream (the other digits,
masked around the positives) plus a synthetic stream of unseen voices with noise is the
negative stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from dsp.audio import load_audio
from dsp.constants import SAMPLE_RATE_HZ
from dsp.features import log_mel
from models.base.evaluation import Recording, fsdd_recordings
from models.base.geometry import Embedder, Geometry
from models.speech.dataset import DIGIT_WORDS
from models.wake.detector import stream_scores
from models.wake.metrics import DetCurve, count_events, det_curve, smooth
from models.wake.model import WakeHead, WakeWordModel, refractory_hops
from models.wake.streams import NegativeStream, Segment, embed_frames

LEAD_S = 1.0
"""Quiet audio before each positive recording, so the detector has settled."""
POSITIVE_TAIL_S = 0.6
Gate = Callable[[int, np.ndarray], np.ndarray]
"""A detection this long after a positive recording's end still counts for it."""
PAUSE_S = (0.3, 1.0)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def audio_files(paths: Sequence[Path]) -> list[Path]:
    """Files named, and audio files inside folders named, in order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
        else:
            files.append(path)
    return files


def _quiet(seconds: float, rng: np.random.Generator) -> np.ndarray:
    return (rng.standard_normal(int(seconds * SAMPLE_RATE_HZ)) * 3e-4).astype(np.float32)


def peak_score(
    base: Embedder,
    head: WakeHead,
    speech: np.ndarray,
    *,
    smoothing_hops: int,
    rng: np.random.Generator | None = None,
) -> float:
    """Highest smoothed score while ``speech`` is heard (after `LEAD_S` of quiet) or just after.

    The detector's view of one recording said on its own: how far it is above a threshold.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    audio = np.concatenate([_quiet(LEAD_S, rng), speech, _quiet(POSITIVE_TAIL_S, rng)])
    scores = smooth(stream_scores(base, [head], audio)[:, 0], smoothing_hops)
    during = base.geometry.hop_end_s(np.arange(scores.size)) >= LEAD_S
    return float(scores[during].max()) if during.any() else 0.0


def positive_peaks(
    base: Embedder, model: WakeWordModel, files: Sequence[Path], *, smoothing_hops: int
) -> np.ndarray:
    """`peak_score` of each positive recording."""
    rng = np.random.default_rng(0)
    return np.array(
        [
            peak_score(base, model.head, load_audio(f), smoothing_hops=smoothing_hops, rng=rng)
            for f in files
        ]
    )


def negative_scores(
    base: Embedder, model: WakeWordModel, files: Sequence[Path]
) -> tuple[list[np.ndarray], float]:
    """Raw per-hop scores of each negative file, and their total length in hours."""
    episodes, seconds = [], 0.0
    for file in files:
        audio = load_audio(file)
        episodes.append(stream_scores(base, [model.head], audio)[:, 0])
        seconds += audio.size / SAMPLE_RATE_HZ
    return episodes, seconds / 3600.0


def fsdd_stream(
    base: Embedder, directory: Path, *, seed: int = 0, keep_frames: bool = False
) -> NegativeStream:
    """Every FSDD recording in one stream per speaker, embedded at every hop.

    Its segments name the digit said (and the recording), like a synthetic negative stream's
    name their words. ``keep_frames`` keeps each episode's 40-band log-mel frames too (for the
    speaker check, `models.wake.speaker`).
    """
    rng = np.random.default_rng(seed)
    by_speaker: dict[str, list[Recording]] = {}
    for recording in fsdd_recordings(directory):
        by_speaker.setdefault(recording.speaker, []).append(recording)
    embeddings, segments, frames, total = [], [], [], 0.0
    for speaker in sorted(by_speaker):
        recordings = by_speaker[speaker]
        pieces, said, t = [], [], 0.0
        for i in rng.permutation(len(recordings)):
            recording = recordings[i]
            pause = _quiet(rng.uniform(*PAUSE_S), rng)
            speech = load_audio(recording.path)
            start = t + pause.size / SAMPLE_RATE_HZ
            t = start + speech.size / SAMPLE_RATE_HZ
            said.append(Segment(DIGIT_WORDS[recording.digit], start, t, recording.path.stem))
            pieces += [pause, speech]
        audio = np.concatenate(pieces)
        embeddings.append(embed_frames(base, base.features(audio)))
        if keep_frames:
            frames.append(log_mel(audio))
        segments.append(said)
        total += t
    return NegativeStream(embeddings, segments, total, frames if keep_frames else None)


def stream_det(
    geometry: Geometry,
    model: WakeWordModel,
    labelled: NegativeStream,
    negatives: Sequence[NegativeStream],
    *,
    smoothing_hops: int,
    refractory_s: float,
    positive: Callable[[Segment], bool] | None = None,
    gates: Sequence[Gate | None] = (),
) -> DetCurve:
    """DET curve of ``model`` on a stream whose segments saying its phrase are the positives.

    The streams are embedded by the base of ``geometry``, the model's.

    The rest of ``labelled`` (masked around every segment saying the phrase) and all of
    ``negatives`` (likewise) are the negative stream. ``positive`` narrows the positives
    (e.g. to one speaker's recordings); other segments saying the phrase are neither.
    ``gates``, one per stream (``labelled`` first, then ``negatives``; missing or None for
    none), are called as ``gate(episode, smoothed)`` and may zero the smoothed scores where a
    second check (e.g. the speaker check) would refuse a detection.
    """
    peaks: list[float] = []
    episodes: list[np.ndarray] = []
    kept_hops = 0
    streams = [labelled, *negatives]
    for number, stream in enumerate(streams):
        labelled_stream = number == 0
        gate = gates[number] if number < len(gates) else None
        for index, ((contexts, keep), said) in enumerate(
            zip(stream.contexts(geometry, model.phrase), stream.segments, strict=True)
        ):
            smoothed = smooth(model.head.scores(contexts), smoothing_hops)
            if gate is not None:
                smoothed = gate(index, smoothed)
            times = geometry.hop_end_s(np.arange(smoothed.size) + geometry.context_hops)
            if labelled_stream:
                for s in said:
                    if s.text == model.phrase and (positive is None or positive(s)):
                        during = (times >= s.start_s) & (times <= s.end_s + POSITIVE_TAIL_S)
                        peaks.append(float(smoothed[during].max()) if during.any() else 0.0)
            episodes.append(np.where(keep, smoothed, 0.0))
            kept_hops += int(keep.sum())
    # Scores are smoothed (and gated) already: counted as they are.
    return det_curve(
        np.array(peaks), episodes, hours=kept_hops * geometry.hop_s / 3600.0,
        smoothing_hops=1, refractory_hops=refractory_hops(refractory_s, geometry.hop_s),
    )  # fmt: skip


def false_alarm_rate(
    geometry: Geometry,
    model: WakeWordModel,
    stream: NegativeStream,
    threshold: float,
    *,
    smoothing_hops: int,
    refractory_s: float,
) -> float:
    """Detections per hour at ``threshold`` on a stream, hops near the phrase left out.

    With the threshold the model's calibration gives for a target rate, this checks that the
    calibration holds on other audio (real speech, unseen voices).
    """
    events, kept = 0, 0
    refractory = refractory_hops(refractory_s, geometry.hop_s)
    for contexts, keep in stream.contexts(geometry, model.phrase):
        smoothed = np.where(keep, smooth(model.head.scores(contexts), smoothing_hops), 0.0)
        events += count_events([smoothed], threshold, refractory)
        kept += int(keep.sum())
    hours = kept * geometry.hop_s / 3600.0
    return events / hours if hours > 0 else 0.0
