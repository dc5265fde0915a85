"""How well the speaker check (`models.wake.speaker`) tells users apart, on real speech (FSDD).

Protocol (`fsdd_speaker_check`): every FSDD speaker and digit is one user and phrase. The user
enrolls with takes ``0..enroll_takes-1`` of the digit; the impostor material is synthetic
renditions of the digit word by training voices (`models.speech.dataset.split_voices`), as a device
would synthesize at enrollment. The false-reject rate is measured on the speaker's other takes of
the digit, the false-accept rate on every take of the same digit by the other speakers. FSDD's
speakers each used their own microphone and room, so part of what separates them is the channel.

Besides the chosen representation (``"dtw"``: `models.wake.speaker.SpeakerProfile`), two pooled ones
that were measured and rejected can be evaluated under the same protocol and threshold rule:
``"cepstral_stats"`` (mean and standard deviation of the speech frames' cepstra) and ``"ltas"``
(the long-term average log-mel spectrum, level removed), both standardised by the impostors'
statistics and compared by cosine similarity to the mean of the takes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dsp.audio import load_audio
from dsp.features import log_mel
from models.base.evaluation import fsdd_recordings
from models.enroll.finetune import phrase_impostors
from models.speech.dataset import DIGIT_WORDS
from models.wake.examples import Progress
from models.wake.speaker import (
    MIN_SPEECH_FRAMES,
    SPEAKER_BANDS,
    SpeakerProfile,
    calibrated_threshold,
    cepstra,
    speech_mask,
)

Representation = Literal["dtw", "cepstral_stats", "ltas"]
REPRESENTATIONS: tuple[Representation, ...] = ("dtw", "cepstral_stats", "ltas")
IMPOSTORS_PER_DIGIT = 40
"""Synthetic renditions of each digit word used as enrollment impostors."""

Scorer = Callable[[np.ndarray], float]


def _pooled(frames: np.ndarray, representation: Representation) -> np.ndarray:
    if representation == "cepstral_stats":
        c = cepstra(frames)
        return np.concatenate((c.mean(axis=0), c.std(axis=0)))
    bands = frames[speech_mask(frames), :SPEAKER_BANDS].astype(np.float64).mean(axis=0)
    return bands - bands.mean()


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def _pooled_check(
    takes: list[np.ndarray], impostors: list[np.ndarray], representation: Representation
) -> tuple[Scorer, float]:
    """A cosine scorer on pooled vectors, and its threshold by `calibrated_threshold`."""
    pool = np.array([_pooled(f, representation) for f in impostors])
    mean, std = pool.mean(axis=0), pool.std(axis=0) + 1e-6
    enrolled = [(_pooled(f, representation) - mean) / std for f in takes]

    def score_against(vectors: list[np.ndarray], x: np.ndarray) -> float:
        return _cosine(np.mean(vectors, axis=0), x)

    loo = np.array(
        [score_against(enrolled[:i] + enrolled[i + 1 :], v) for i, v in enumerate(enrolled)]
    )

    def score(frames: np.ndarray) -> float:
        if cepstra(frames).shape[0] < MIN_SPEECH_FRAMES:
            return -1.0
        return score_against(enrolled, (_pooled(frames, representation) - mean) / std)

    fake_scores = np.array([score(f) for f in impostors])
    return score, calibrated_threshold(loo, fake_scores)


def equal_error_rate(user: np.ndarray, others: np.ndarray) -> float:
    """The rate where false rejects of ``user`` scores equal false accepts of ``others``."""
    thresholds = np.unique(np.concatenate((user, others)))
    frr = np.array([np.mean(user < t) for t in thresholds])
    far = np.array([np.mean(others >= t) for t in thresholds])
    i = int(np.argmin(np.abs(frr - far)))
    return float((frr[i] + far[i]) / 2)


def impostor_frames(
    words: tuple[str, ...], *, per_word: int, seed: int, progress: Progress | None = None
) -> dict[str, list[np.ndarray]]:
    """Log-mel of the impostors enrollment would use for each word (`phrase_impostors`)."""
    return {
        word: [
            log_mel(a)
            for a in phrase_impostors(word, per_word=per_word, seed=seed, progress=progress)
        ]
        for word in words
    }


def fsdd_speaker_check(
    directory: Path,
    *,
    enroll_takes: int = 5,
    representation: Representation = "dtw",
    digits: tuple[int, ...] = tuple(range(10)),
    speakers: tuple[str, ...] | None = None,
    impostors_per_digit: int = IMPOSTORS_PER_DIGIT,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """False-reject and false-accept rates of the speaker check on FSDD (see the module).

    Parameters
    ----------
    directory : Path
        FSDD's ``recordings`` folder.
    enroll_takes : int
        Takes 0..enroll_takes-1 of each digit are enrolled; the rest test false rejects.
    representation : {"dtw", "cepstral_stats", "ltas"}
        The chosen check, or one of the rejected pooled representations.
    digits, speakers : tuple, optional
        Subsets to evaluate (all by default); false accepts come from the listed speakers only.
    impostors_per_digit : int
        Synthetic renditions of each digit used as enrollment impostors.
    seed : int
        Voice split and rendition draw.
    progress : callable, optional
        ``progress(stage, done, total)``.

    Returns
    -------
    dict
        ``per_speaker``: speaker -> {"frr", "far", "eer", "impostor_accept"} (means over digits);
        ``mean``: the same averaged over speakers; ``representation``, ``enroll_takes``,
        ``digits``, ``trials`` (counts of user and other-speaker test utterances).
    """
    recordings = [r for r in fsdd_recordings(directory) if r.digit in digits]
    if speakers is not None:
        recordings = [r for r in recordings if r.speaker in speakers]
    frames = {(r.speaker, r.digit, r.take): log_mel(load_audio(r.path)) for r in recordings}
    names = sorted({r.speaker for r in recordings})
    words = tuple(DIGIT_WORDS[d] for d in digits)
    impostors = impostor_frames(words, per_word=impostors_per_digit, seed=seed, progress=progress)
    rows: dict[str, list[dict[str, float]]] = defaultdict(list)
    trials = [0, 0]
    for step, (name, digit) in enumerate((n, d) for n in names for d in digits):
        own = sorted((k for k in frames if k[0] == name and k[1] == digit), key=lambda k: k[2])
        takes = [frames[k] for k in own if k[2] < enroll_takes]
        tests = [frames[k] for k in own if k[2] >= enroll_takes]
        others = [f for k, f in frames.items() if k[0] != name and k[1] == digit]
        fakes = impostors[DIGIT_WORDS[digit]]
        score: Scorer
        if representation == "dtw":
            profile = SpeakerProfile.enroll(takes, fakes)
            score, threshold = profile.score, profile.threshold
            fake_accept = profile.impostor_accept
        else:
            score, threshold = _pooled_check(takes, fakes, representation)
            fake_accept = float(np.mean([score(f) >= threshold for f in fakes]))
        user = np.array([score(f) for f in tests])
        other = np.array([score(f) for f in others])
        rows[name].append(
            {
                "frr": float(np.mean(user < threshold)),
                "far": float(np.mean(other >= threshold)),
                "eer": equal_error_rate(user, other),
                "impostor_accept": fake_accept,
            }
        )
        trials[0] += user.size
        trials[1] += other.size
        if progress is not None:
            progress("speaker check", step + 1, len(names) * len(digits))
    per_speaker = {n: _mean_rows(r) for n, r in rows.items()}
    return {
        "representation": representation,
        "enroll_takes": enroll_takes,
        "digits": list(digits),
        "per_speaker": per_speaker,
        "mean": _mean_rows(list(per_speaker.values())),
        "trials": {"user": trials[0], "other_speakers": trials[1]},
    }


def _mean_rows(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
