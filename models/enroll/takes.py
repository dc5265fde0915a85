"""Checking enrollment takes: whether a recording of the wake phrase is usable for fine-tuning.

`TakeChecker` judges one take on its own: clipping, presence and level of speech, and length
against the synthesized phrase. `TakeSet` keeps the accepted takes and also rejects a take that
does not sound like them, comparing the base model's view of each take: the take is placed so it
ends at the end of a context-long clip (`models.base.geometry`), as wake-word training examples
do, and the
embeddings of the context's windows, minus those of a silent clip (the part every clip shares),
are compared by cosine similarity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from dsp.constants import SAMPLE_RATE_HZ
from dsp.vad import (
    DEFAULT_VAD,
    FRAME_SAMPLES,
    SILENCE_DBFS,
    VadSettings,
    band_levels_dbfs,
    flags_to_segments,
    noise_floor_dbfs,
    speech_flags,
)
from models.base.geometry import Embedder

CLIP_LEVEL = 0.98
"""A sample at or above this share of full scale counts as clipped."""
MAX_CLIPPED_SHARE = 0.001
"""Most of a take's speech samples that may be clipped (0.1 %)."""
MIN_SPEECH_DBFS = -50.0
"""Quietest allowed speech level (RMS of the speech frames), in dBFS."""
MIN_SNR_DB = 12.0
"""Least speech-band level of the speech above the room's noise floor, in dB, when it is known."""
MAX_LENGTH_FACTOR, MAX_LENGTH_EXTRA_S = 2.5, 0.5
"""A take's speech may last at most ``2.5 x phrase + 0.5 s``: people speak slower than espeak."""
MIN_LENGTH_FACTOR = 0.3
"""... and at least ``0.3 x phrase``."""
TRIM_MARGIN_S = 0.1
UNKNOWN_ROOM_RANGE_DB = 30.0
"""Without a room recording, speech is what comes within this range of the take's loudest..."""
STANDS_OUT_DB = 6.0
"""... provided its loudest stands this far above its quietest (steady noise does not), or it
is shorter than `TIGHT_TAKE_S`."""
TIGHT_TAKE_S = 1.0
"""Audio kept before the first and after the last speech frame, in seconds."""
EMBED_LEVEL_DBFS = -23.0
"""Takes are scaled to this RMS level (dBFS) before embedding, so loudness does not count."""
MIN_SIMILARITY = {"speech_embedding": 0.31, "dscnn": 0.71}
"""Least mean similarity of a take to the accepted takes, per kind of base (`Embedder.name`).

Measured on synthetic speakers by `models.enroll.take_similarity` (`earshot eval takes`): 12
held-out voices, each in its own room and microphone, saying 10 phrases 5 times. Each value
refuses 2 % of good third takes (a take against the mean of two earlier takes of its phrase);
it then accepts 76 % (speech_embedding) and 7 % (dscnn) of pairs of different phrases by the same
speaker. The imported embedding tells a speaker's phrases apart less sharply in this view than
the DS-CNN, so it is the lenient one: the check favours never turning a good take away, and a
cough, a door or a different sentence lie far lower. Raw cosine of the context vectors separates
far worse (the silent windows every clip shares make all pairs similar), hence the silent clip's
embedding is subtracted.
"""


def _dbfs_of_power(power: float) -> float:
    return max(10.0 * float(np.log10(power)), SILENCE_DBFS) if power > 0 else SILENCE_DBFS


@dataclass(frozen=True)
class TakeVerdict:
    """What a take check found.

    Parameters
    ----------
    ok : bool
        Whether the take is usable.
    reason : str or None
        Why not, in a short sentence naming the measured value and what is allowed.
    speech : np.ndarray
        The take trimmed to its speech, with `TRIM_MARGIN_S` on each side [shape=(n,)];
        empty when no speech was found.
    peak_dbfs : float
        Loudest sample, in dBFS.
    speech_dbfs : float
        RMS level of the speech frames, in dBFS (`SILENCE_DBFS` without speech).
    speech_s : float
        Seconds from the first speech frame to the end of the last.
    clipped_share : float
        Share of the speech's samples at or above `CLIP_LEVEL`, in [0, 1].
    snr_db : float or None
        Speech-band level of the speech above the room's noise floor, when the floor is known.
    similarity : float or None
        Mean similarity to the accepted takes, when compared (`TakeSet.offer`).
    note : str or None
        Something else the user should know (an earlier take was dropped).
    """

    ok: bool
    reason: str | None
    speech: np.ndarray = field(repr=False, compare=False)
    peak_dbfs: float
    speech_dbfs: float
    speech_s: float
    clipped_share: float
    snr_db: float | None = None
    similarity: float | None = None
    note: str | None = None
    context: np.ndarray | None = field(default=None, repr=False, compare=False)
    """The take's context vector (see the module's docstring); None when the take failed."""

    def summary(self) -> str:
        """One line of measurements, e.g. for a progress display."""
        parts = [f"{self.speech_s:.2f} s of speech", f"level {self.speech_dbfs:.1f} dBFS"]
        parts.append(f"peak {self.peak_dbfs:.1f} dBFS")
        if self.snr_db is not None:
            parts.append(f"{self.snr_db:.0f} dB above the room")
        if self.similarity is not None:
            parts.append(f"similarity {self.similarity:.2f}")
        return ", ".join(parts)


class TakeChecker:
    """Judges single takes of a wake phrase.

    Parameters
    ----------
    base : Embedder
        The base model whose embeddings compare takes.
    phrase_duration_s : float or None
        Typical length of the phrase, in seconds (the median of its synthesized renditions);
        None while it is not known (no detector for the phrase yet): takes are then judged on
        everything but their length.
    noise_floor_dbfs : float, optional
        The room's noise floor (`dsp.vad.noise_floor_dbfs` of a recording of the room); when
        None each take's own quietest stretches stand in for it and the SNR is not checked.
    vad : VadSettings
        Voice-activity settings used to find the speech.
    """

    def __init__(
        self,
        base: Embedder,
        phrase_duration_s: float | None,
        *,
        noise_floor_dbfs: float | None = None,
        vad: VadSettings = DEFAULT_VAD,
    ) -> None:
        if phrase_duration_s is not None and not phrase_duration_s > 0:
            raise ValueError(f"phrase_duration_s: got {phrase_duration_s}, expected > 0 seconds")
        self.base = base
        self.phrase_duration_s = phrase_duration_s
        self.noise_floor_dbfs = noise_floor_dbfs
        self.vad = vad
        self._silence = self._embed(np.zeros(base.geometry.context_samples, np.float32))

    def with_noise_floor(self, noise_floor_dbfs: float | None) -> TakeChecker:
        """The same checker for a room with this noise floor (dBFS)."""
        checker = TakeChecker.__new__(TakeChecker)
        checker.__dict__.update(self.__dict__)
        checker.noise_floor_dbfs = noise_floor_dbfs
        return checker

    @property
    def allowed_s(self) -> tuple[float, float]:
        """Shortest and longest allowed speech, in seconds; (0, inf) for an unknown phrase."""
        p = self.phrase_duration_s
        if p is None:
            return 0.0, math.inf
        return MIN_LENGTH_FACTOR * p, MAX_LENGTH_FACTOR * p + MAX_LENGTH_EXTRA_S

    def check(self, audio: np.ndarray) -> TakeVerdict:
        """Judge one take on its own (not against other takes: see `TakeSet.offer`).

        Parameters
        ----------
        audio : np.ndarray
            Mono float audio at 16 kHz [shape=(n,)], a little silence around the phrase.
        """
        audio = np.asarray(audio, dtype=np.float32).ravel()
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        peak_dbfs = 20 * float(np.log10(peak)) if peak > 0 else SILENCE_DBFS
        floor = self.noise_floor_dbfs
        if floor is None and audio.size >= 10 * FRAME_SAMPLES:
            # Unknown room: the take's quietest stretch. A take that is all speech (a file cut
            # tight around the phrase) has none: when it is too short to hold any room, or
            # something in it stands out at all, the floor is put no closer than
            # UNKNOWN_ROOM_RANGE_DB to its loudest.
            loudest = float(np.max(band_levels_dbfs(audio)))
            floor = noise_floor_dbfs(audio)
            tight = audio.size < TIGHT_TAKE_S * SAMPLE_RATE_HZ
            if tight or loudest - floor >= STANDS_OUT_DB:
                floor = min(floor, loudest - UNKNOWN_ROOM_RANGE_DB)
        flags = speech_flags(audio, noise_floor_dbfs=floor, settings=self.vad)
        segments = flags_to_segments(flags)
        if not segments:
            return TakeVerdict(
                False, "no speech heard", audio[:0], peak_dbfs, SILENCE_DBFS, 0.0,
                float(np.mean(np.abs(audio) >= CLIP_LEVEL)) if audio.size else 0.0,
            )  # fmt: skip
        start_s, end_s = segments[0][0], segments[-1][1]
        start = max(0, round((start_s - TRIM_MARGIN_S) * SAMPLE_RATE_HZ))
        speech = audio[start : round((end_s + TRIM_MARGIN_S) * SAMPLE_RATE_HZ)]
        in_speech = np.repeat(flags, FRAME_SAMPLES)
        power = np.mean(np.square(audio[: in_speech.size][in_speech], dtype=np.float64))
        snr = None
        if self.noise_floor_dbfs is not None:
            band = 10 ** (band_levels_dbfs(audio)[flags] / 10)
            snr = _dbfs_of_power(float(np.mean(band))) - self.noise_floor_dbfs
        verdict = TakeVerdict(
            True, None, speech, peak_dbfs, _dbfs_of_power(float(power)), end_s - start_s,
            float(np.mean(np.abs(speech) >= CLIP_LEVEL)), snr,
        )  # fmt: skip
        reason = self._problem(verdict)
        if reason is not None:
            return replace(verdict, ok=False, reason=reason)
        return replace(verdict, context=self.context(speech))

    def _problem(self, v: TakeVerdict) -> str | None:
        """Why a take with speech is unusable, or None."""
        if v.clipped_share > MAX_CLIPPED_SHARE:
            return (
                f"clipped: {100 * v.clipped_share:.1f}% of the speech is at full scale (allowed "
                f"{100 * MAX_CLIPPED_SHARE:.1f}%); speak further from the microphone or lower "
                "its gain"
            )
        if v.speech_dbfs < MIN_SPEECH_DBFS:
            return (
                f"too quiet: speech at {v.speech_dbfs:.0f} dBFS (need at least "
                f"{MIN_SPEECH_DBFS:.0f} dBFS); speak up or move closer to the microphone"
            )
        if v.snr_db is not None and v.snr_db < MIN_SNR_DB:
            return (
                f"too quiet for this room: speech only {v.snr_db:.0f} dB above the background "
                f"noise (need at least {MIN_SNR_DB:.0f} dB)"
            )
        return None if self.phrase_duration_s is None else self._length_problem(v)

    def _length_problem(self, v: TakeVerdict) -> str | None:
        """Why a take is too long or too short for the phrase, or None."""
        shortest, longest = self.allowed_s
        if v.speech_s > longest:
            return (
                f"too long: {v.speech_s:.1f} s of speech (the phrase takes about "
                f"{self.phrase_duration_s:.1f} s; allowed up to {longest:.1f} s)"
            )
        if v.speech_s < shortest:
            return (
                f"too short: {v.speech_s:.2f} s of speech (the phrase takes about "
                f"{self.phrase_duration_s:.1f} s; need at least {shortest:.2f} s)"
            )
        return None

    def context(self, speech: np.ndarray) -> np.ndarray:
        """The take's context vector: placed at a clip's end, embedded, minus a silent clip's.

        Returns
        -------
        np.ndarray
            float64 [shape=(context_windows * dim,)].
        """
        rms = float(np.sqrt(np.mean(np.square(speech, dtype=np.float64)))) if speech.size else 0
        scale = 10 ** (EMBED_LEVEL_DBFS / 20) / rms if rms > 0 else 0.0
        length = self.base.geometry.context_samples
        x = (speech[-length:] * scale).astype(np.float32)
        clip = np.zeros(length, np.float32)
        clip[length - x.size :] = x
        return self._embed(clip) - self._silence

    def _embed(self, clip: np.ndarray) -> np.ndarray:
        features = self.base.features(clip)[None]
        return self.base.embed_examples(features).reshape(-1).astype(np.float64)


def base_min_similarity(base: Embedder) -> float:
    """`MIN_SIMILARITY` of ``base``'s kind."""
    return MIN_SIMILARITY.get(base.name, min(MIN_SIMILARITY.values()))


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two context vectors, in [-1, 1] (0 when either is all zeros)."""
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / norms if norms > 0 else 0.0


class TakeSet:
    """Accepted takes of one phrase; a new take must sound like them.

    A take that passes `TakeChecker.check` but not the comparison is remembered as a stray.
    When a new take and earlier strays agree with each other and outnumber the accepted takes,
    they become the accepted takes and the old ones are dropped: a user whose first take was
    the odd one out is never stuck.

    Parameters
    ----------
    checker : TakeChecker
        Judges each take on its own and computes its context vector.
    min_similarity : float
        Least mean similarity to the accepted takes; by default the base's `MIN_SIMILARITY`
        (the lowest of them for a kind of base not listed there).
    """

    def __init__(self, checker: TakeChecker, *, min_similarity: float | None = None) -> None:
        self.checker = checker
        self.min_similarity = (
            min_similarity if min_similarity is not None else base_min_similarity(checker.base)
        )
        self.accepted: list[TakeVerdict] = []
        self._strays: list[TakeVerdict] = []

    def __len__(self) -> int:
        return len(self.accepted)

    @property
    def takes(self) -> list[np.ndarray]:
        """The accepted takes' speech, oldest first."""
        return [v.speech for v in self.accepted]

    def offer(self, audio: np.ndarray) -> TakeVerdict:
        """Check a take on its own and against the accepted ones; keep it when it passes."""
        verdict = self.checker.check(audio)
        if not verdict.ok or verdict.context is None:
            return verdict
        if not self.accepted:
            self.accepted.append(verdict)
            return verdict
        context = verdict.context
        mean = self._mean_similarity(context, self.accepted)
        verdict = replace(verdict, similarity=mean)
        if mean >= self.min_similarity:
            self.accepted.append(verdict)
            return verdict
        agreeing = [
            s
            for s in self._strays
            if s.context is not None and similarity(s.context, context) >= self.min_similarity
        ]
        if len(agreeing) + 1 > len(self.accepted):
            return self._switch(verdict, agreeing)
        self._strays.append(verdict)
        return replace(
            verdict,
            ok=False,
            reason=(
                f"does not sound like the other takes (similarity {mean:.2f}, need at least "
                f"{self.min_similarity:.2f}); say the same phrase the same way"
            ),
        )

    def _switch(self, verdict: TakeVerdict, agreeing: list[TakeVerdict]) -> TakeVerdict:
        """Make ``agreeing`` strays and ``verdict`` the accepted takes; the old ones are strays."""
        dropped = self.accepted
        self._strays = [s for s in self._strays if all(s is not a for a in agreeing)] + dropped
        self.accepted = [*agreeing, verdict]
        n = len(dropped)
        note = (
            f"dropped {'the earlier take' if n == 1 else f'{n} earlier takes'}: this take and "
            f"{len(agreeing)} rejected one(s) agree with each other but not with "
            f"{'it' if n == 1 else 'them'}; keeping those {len(self.accepted)} instead"
        )
        return replace(verdict, note=note)

    @staticmethod
    def _mean_similarity(context: np.ndarray, others: list[TakeVerdict]) -> float:
        return float(
            np.mean([similarity(context, o.context) for o in others if o.context is not None])
        )
