"""Speaker check for wake words: whether the voice that said the phrase is the enrolled user.

A wake word with ``verify_speaker: true`` fires only when its phrase is said *and* the voice
matches the user's enrolled takes (3-10 recordings of the phrase), so only enrolled users can make
audio leave the device. The check is text-dependent: it compares the detected phrase with the
takes of the same phrase.

Representation (chosen by measurement on the Free Spoken Digit Dataset, see
`models.enroll.speaker_eval`): the mel-cepstrum (DCT-II of the log-mel bands below ~3.7 kHz, without
c0) of the phrase's speech frames, as a sequence; two utterances are compared by the mean
frame distance along a dynamic-time-warping alignment. Dropping c0 makes the features
independent of the input gain; keeping only the bands below ~3.7 kHz keeps them comparable
between full-band microphones and narrow-band (8 kHz) recordings. Pooled statistics (mean and
standard deviation of the cepstra, or the long-term average spectrum) lost the timing and
formant trajectories that distinguish speakers saying the same words, and measured worse.

This module is on the daemon's detection path: numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dsp.constants import N_MELS
from dsp.features import log_mel
from kernels.errors import ModelError
from models.nn.checkpoint import split_rows

SPEAKER_BANDS = 30
"""Log-mel bands the check uses: the lowest 30 of 40, below ~3.75 kHz."""
N_CEPSTRA = 19
"""Cepstral coefficients per frame: c1..c19 (c0, the frame level, is dropped)."""
SPEECH_RANGE_DB = 30.0
"""Frames within this many dB of the loudest frame are speech; quieter ones are ignored."""
MIN_SPEECH_FRAMES = 5
"""Fewer speech frames than this (50 ms) cannot be compared; such input scores 0."""
MIN_TAKES = 3
MAX_TAKES = 10
IMPOSTOR_QUANTILE = 0.95
"""Quantile of the impostors' scores that marks the top of the impostor range."""
THRESHOLD_POSITION = 0.4
"""Where the threshold sits from that impostor score (0) to the lowest leave-one-out take (1)."""
STATE_VERSION = 1

_DB_PER_NEPER = 10.0 / np.log(10.0)


def _dct_matrix(n_bands: int, n_coefficients: int) -> np.ndarray:
    """Orthonormal DCT-II rows 1..n_coefficients [shape=(n_coefficients, n_bands)]."""
    k = np.arange(1, n_coefficients + 1)[:, None]
    n = np.arange(n_bands)[None, :]
    return np.sqrt(2.0 / n_bands) * np.cos(np.pi / n_bands * (n + 0.5) * k)


_DCT = _dct_matrix(SPEAKER_BANDS, N_CEPSTRA)


def speech_mask(frames: np.ndarray, *, range_db: float = SPEECH_RANGE_DB) -> np.ndarray:
    """Which frames are speech: total mel power within ``range_db`` of the loudest frame.

    Parameters
    ----------
    frames : np.ndarray
        Log-mel frames (`dsp.features.log_mel`) [shape=(n, N_MELS)].
    range_db : float
        Dynamic range kept below the loudest frame, in dB.

    Returns
    -------
    np.ndarray
        bool [shape=(n,)].
    """
    if frames.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    bands = frames[:, :SPEAKER_BANDS].astype(np.float64)
    peak = bands.max(axis=1, keepdims=True)
    level = (peak[:, 0] + np.log(np.exp(bands - peak).sum(axis=1))) * _DB_PER_NEPER
    return np.asarray(level >= level.max() - range_db)


def cepstra(frames: np.ndarray) -> np.ndarray:
    """Mel-cepstra c1..c19 of the speech frames of a log-mel sequence.

    Parameters
    ----------
    frames : np.ndarray
        Log-mel frames [shape=(n, N_MELS)].

    Returns
    -------
    np.ndarray
        float64 [shape=(k, N_CEPSTRA)], k <= n: the speech frames (`speech_mask`), in order.
    """
    frames = np.asarray(frames)
    if frames.ndim != 2 or frames.shape[1] != N_MELS:
        raise ValueError(f"frames: expected shape (n, {N_MELS}), got {frames.shape}")
    speech = frames[speech_mask(frames), :SPEAKER_BANDS].astype(np.float64)
    return speech @ _DCT.T


def _aligned_cost(longer: np.ndarray, shorter: np.ndarray) -> float:
    """Mean frame distance when every frame of ``longer`` is matched, in order, to ``shorter``.

    The match advances 0, 1 or 2 frames in ``shorter`` per frame of ``longer`` (so a frame of
    the shorter sequence may be skipped), starting and ending at both sequences' ends.
    """
    cost = np.sqrt(np.square(longer[:, None, :] - shorter[None, :, :]).sum(axis=-1))
    n, m = cost.shape
    total = np.full(m + 2, np.inf)  # two padding columns: the steps back by 1 and by 2
    total[2] = cost[0, 0]
    for i in range(1, n):
        previous = total
        total = np.full(m + 2, np.inf)
        total[2:] = cost[i] + np.minimum(np.minimum(previous[2:], previous[1:-1]), previous[:-2])
    return float(total[m + 1] / n)


def alignment_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean cepstral distance of two utterances along their time alignment; symmetric, >= 0.

    Every frame of the longer sequence is matched to a frame of the shorter one (dynamic time
    warping); for equal lengths both directions are averaged, so ``d(a, b) == d(b, a)``.

    Parameters
    ----------
    a, b : np.ndarray
        Cepstra (`cepstra`) [shape=(n, N_CEPSTRA)] and [shape=(m, N_CEPSTRA)], n, m >= 1.
    """
    if a.shape[0] == 0 or b.shape[0] == 0:
        raise ValueError("alignment_distance: both sequences need at least one frame")
    if a.shape[0] > b.shape[0]:
        return _aligned_cost(a, b)
    if b.shape[0] > a.shape[0]:
        return _aligned_cost(b, a)
    return 0.5 * (_aligned_cost(a, b) + _aligned_cost(b, a))


def similarity(distance: float, scale: float) -> float:
    """Map a distance in [0, inf) to a similarity in (0, 1]: ``2 ** (-distance / scale)``.

    1 means identical, 0.5 means as far apart as a typical impostor (``scale``).
    """
    return float(2.0 ** (-distance / scale))


@dataclass
class SpeakerProfile:
    """A user's enrolled voice for one phrase, with its own calibrated threshold.

    The score of an utterance is ``similarity(mean distance to the enrolled takes, scale)``, in
    (0, 1]: 1 for an utterance identical to every take, 0.5 at ``scale``, the median distance of
    the synthetic impostors to the takes. It is symmetric in the sense that the distance under it
    is (`alignment_distance`).

    Calibration (`enroll`): each take is scored leave-one-out, against the other takes only, which
    is what an unseen utterance of the user looks like to the profile; the synthetic impostors are
    scored against all takes. The threshold is placed `THRESHOLD_POSITION` (0.4) of the way from
    the impostors' `IMPOSTOR_QUANTILE` (95th-percentile) score up to the lowest leave-one-out
    score, and never above that lowest score, so every take would have been accepted by the
    profile built from the others. Sitting nearer the impostors than the takes favours a low
    false-reject rate on the user: later utterances of a user score lower than takes recorded in
    one sitting, and real other people score higher than synthetic voices (on FSDD, 0.4 gave
    ~4 % false rejects and ~20 % false accepts; 0.5 gave 7 % and 13 %). ``impostor_accept`` is
    the share of impostors the profile accepts, for enrollment to warn about.

    Attributes
    ----------
    templates : list of np.ndarray
        The takes' cepstra [shape=(k_i, N_CEPSTRA)].
    scale : float
        Distance at which the similarity is 0.5.
    threshold : float
        Lowest accepted score, in (0, 1).
    impostor_accept : float
        Share of the enrollment impostors the profile accepts, in [0, 1].
    """

    templates: list[np.ndarray]
    scale: float
    threshold: float
    impostor_accept: float = 0.0

    @classmethod
    def enroll(cls, takes: Sequence[np.ndarray], impostors: Sequence[np.ndarray]) -> SpeakerProfile:
        """Enroll from the user's takes and impostor renditions of the phrase, as log-mel frames.

        Parameters
        ----------
        takes : sequence of np.ndarray
            `MIN_TAKES` to `MAX_TAKES` log-mel sequences of the user saying the phrase
            [shape=(n_i, N_MELS)].
        impostors : sequence of np.ndarray
            Log-mel sequences of the same phrase by other (synthetic) voices, at least one.

        Raises
        ------
        ModelError
            Too few or too many takes, no impostors, or a take without enough speech.
        """
        if not MIN_TAKES <= len(takes) <= MAX_TAKES:
            raise ModelError(
                f"speaker enrollment: got {len(takes)} takes, expected {MIN_TAKES}-{MAX_TAKES}"
            )
        templates = [cepstra(t).astype(np.float32) for t in takes]
        for i, template in enumerate(templates):
            if template.shape[0] < MIN_SPEECH_FRAMES:
                raise ModelError(
                    f"speaker enrollment: take {i} has {template.shape[0]} speech frames, "
                    f"expected at least {MIN_SPEECH_FRAMES}"
                )
        others = [c for c in (cepstra(f) for f in impostors) if c.shape[0] >= MIN_SPEECH_FRAMES]
        if not others:
            raise ModelError("speaker enrollment: no impostor rendition has enough speech")
        impostor_distances = np.array([_mean_distance(templates, c) for c in others])
        scale = float(np.median(impostor_distances))
        loo = np.array(
            [
                similarity(_mean_distance(templates[:i] + templates[i + 1 :], t), scale)
                for i, t in enumerate(templates)
            ]
        )
        fakes = np.array([similarity(d, scale) for d in impostor_distances])
        threshold = calibrated_threshold(loo, fakes)
        return cls(templates, scale, threshold, float(np.mean(fakes >= threshold)))

    @classmethod
    def enroll_audio(
        cls, takes: Sequence[np.ndarray], impostors: Sequence[np.ndarray]
    ) -> SpeakerProfile:
        """`enroll` from audio (16 kHz mono float32 [shape=(n,)]) instead of log-mel frames."""
        return cls.enroll([log_mel(t) for t in takes], [log_mel(x) for x in impostors])

    def score(self, frames: np.ndarray) -> float:
        """Similarity of an utterance to the enrolled takes, in [0, 1] (0: too little speech).

        Parameters
        ----------
        frames : np.ndarray
            Log-mel frames covering the phrase [shape=(n, N_MELS)].
        """
        c = cepstra(frames)
        if c.shape[0] < MIN_SPEECH_FRAMES:
            return 0.0
        return similarity(_mean_distance(self.templates, c), self.scale)

    def accepts(self, frames: np.ndarray) -> bool:
        """Whether the utterance's voice is the enrolled user's: ``score >= threshold``."""
        return self.score(frames) >= self.threshold

    def score_audio(self, audio: np.ndarray) -> float:
        """`score` of audio (16 kHz mono float32 [shape=(n,)])."""
        return self.score(log_mel(audio))

    def accepts_audio(self, audio: np.ndarray) -> bool:
        """`accepts` for audio (16 kHz mono float32 [shape=(n,)])."""
        return self.accepts(log_mel(audio))

    def state(self) -> dict[str, np.ndarray]:
        """Arrays to store with a wake-word model (``np.savez``); `from_state` reads them back."""
        return {
            "version": np.array(STATE_VERSION),
            "settings": np.array([SPEAKER_BANDS, N_CEPSTRA, SPEECH_RANGE_DB]),
            "templates": np.concatenate(self.templates).astype(np.float32),
            "lengths": np.array([t.shape[0] for t in self.templates], dtype=np.int64),
            "scale": np.array(self.scale),
            "threshold": np.array(self.threshold),
            "impostor_accept": np.array(self.impostor_accept),
        }

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> SpeakerProfile:
        """Rebuild a profile from `state`'s arrays, checking its version and feature settings."""
        version = int(state["version"])
        if version != STATE_VERSION:
            raise ModelError(f"speaker profile: version {version}, expected {STATE_VERSION}")
        settings = [float(v) for v in state["settings"]]
        expected = [SPEAKER_BANDS, N_CEPSTRA, SPEECH_RANGE_DB]
        if settings != expected:
            raise ModelError(f"speaker profile: feature settings {settings}, expected {expected}")
        templates = split_rows(state["templates"].astype(np.float32), state["lengths"])
        return cls(
            templates, float(state["scale"]), float(state["threshold"]),
            float(state["impostor_accept"]),
        )  # fmt: skip


def calibrated_threshold(loo_scores: np.ndarray, impostor_scores: np.ndarray) -> float:
    """The threshold rule of `SpeakerProfile` (see its docstring).

    ``t = q + THRESHOLD_POSITION * (min(loo_scores) - q)`` with ``q`` the `IMPOSTOR_QUANTILE`
    of ``impostor_scores``, then ``min(t, min(loo_scores))``.
    """
    lowest = float(np.min(loo_scores))
    top = float(np.quantile(impostor_scores, IMPOSTOR_QUANTILE))
    return min(top + THRESHOLD_POSITION * (lowest - top), lowest)


def _mean_distance(templates: Sequence[np.ndarray], c: np.ndarray) -> float:
    return float(np.mean([alignment_distance(t, c) for t in templates]))
