"""What enrollment buys on real voices: the FSDD per-speaker protocol.

For every speaker and digit of the Free Spoken Digit Dataset, the speaker "enrolls" the digit's
wake word (trained from text only) with their first ``takes`` recordings of it
(`models.enroll.finetune.enroll_wake_word`), and the detector is tested with that speaker's other
recordings of the digit as positives, against a negative stream of every other digit by every
speaker plus synthetic speech and noise of unseen voices (`models.wake.evaluation.stream_det`).

Three detectors are compared at 1 false alarm per hour: the text-only one, the enrolled one,
and the enrolled one with the speaker check (`verify_speaker`), applied to both streams (their
log-mel frames are kept for it) where the detector would apply it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from dsp.audio import load_audio
from models.base.evaluation import fsdd_recordings
from models.base.geometry import Embedder, Geometry
from models.enroll.finetune import EnrollRecipe, enroll_wake_word, phrase_impostors
from models.speech.dataset import DIGIT_WORDS
from models.wake.detector import locate_phrase
from models.wake.evaluation import stream_det
from models.wake.model import WakeWordModel
from models.wake.speaker import SpeakerProfile
from models.wake.streams import NegativeStream

Progress = Callable[[str, int, int], None]
GATE_FLOOR = 0.5
"""The speaker check runs on hops whose smoothed score reaches this (a detector runs it only
on detections, at its threshold; every threshold the DET curve reads is above this)."""
IMPOSTORS = 40


def speaker_gate(
    geometry: Geometry, model: WakeWordModel, stream: NegativeStream, profile: SpeakerProfile
) -> Callable[[int, np.ndarray], np.ndarray]:
    """A `stream_det` gate: zero the hops at which the speaker check refuses the phrase.

    The phrase is located in the frames ending at the hop as the detector does
    (`models.wake.detector.locate_phrase`).
    """
    assert stream.frames is not None, "the stream must keep its frames"
    frames_of = stream.frames
    g = geometry
    duration = int(round(model.phrase_duration_s / g.frame_s))
    scores: dict[tuple[int, int, int], float] = {}

    def gate(episode: int, smoothed: np.ndarray) -> np.ndarray:
        frames = frames_of[episode]
        out = smoothed.copy()
        for i in np.flatnonzero(smoothed >= GATE_FLOOR):
            end = (int(i) + g.context_hops) * g.hop_frames + g.window_frames
            start = max(0, end - g.context_frames)
            onset, last = locate_phrase(frames[start:end], duration)
            key = (episode, start + onset, start + last)
            if key not in scores:
                scores[key] = profile.score(frames[start + onset : start + last + 1])
            if scores[key] < profile.threshold:
                out[i] = 0.0
        return out

    return gate


def miss_rate(
    geometry: Geometry,
    model: WakeWordModel,
    labelled: NegativeStream,
    synthetic: NegativeStream,
    test: set[str],
    options: dict[str, Any],
    gates: Sequence[Callable[[int, np.ndarray], np.ndarray] | None] = (),
) -> float:
    """Miss rate at 1 false alarm per hour with ``test`` recordings as the positives."""
    curve = stream_det(
        geometry, model, labelled, [synthetic], positive=lambda s: s.source in test,
        gates=gates, **options,
    )  # fmt: skip
    return curve.miss_rate_at(1.0)[0]


def fsdd_enrollment(
    base: Embedder,
    directory: Path,
    text_models: dict[str, WakeWordModel],
    labelled: NegativeStream,
    synthetic: NegativeStream,
    *,
    takes: int = 5,
    speakers: Sequence[str] | None = None,
    digits: Sequence[str] = DIGIT_WORDS,
    recipe: EnrollRecipe | None = None,
    smoothing_hops: int = 2,
    refractory_s: float = 2.0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the protocol (see the module docstring).

    Parameters
    ----------
    base : Embedder
        The base model the text-only detectors were trained on.
    directory : Path
        FSDD's ``recordings`` folder.
    text_models : dict
        Each digit word's detector trained from text only.
    labelled : NegativeStream
        `models.wake.evaluation.fsdd_stream` of ``directory``, with its frames kept.
    synthetic : NegativeStream
        Synthetic negatives of unseen voices, with their frames kept.
    takes : int
        Recordings each speaker enrolls with (their first, by take number).

    Returns
    -------
    dict
        ``rows`` (one per speaker and digit: miss rates at 1 false alarm per hour for
        ``text``, ``enrolled`` and ``enrolled_speaker_check``, held-out score, seconds),
        ``per_speaker`` and ``mean`` of those rates, and ``speaker_check`` (its false-reject
        rate on the speaker's test takes and false-accept rate on other speakers' takes of the
        digit, each scored on the recording alone).
    """
    recipe = recipe or EnrollRecipe(hold_out=False)
    recordings = fsdd_recordings(directory)
    speakers = list(speakers) if speakers is not None else sorted({r.speaker for r in recordings})
    options = {"smoothing_hops": smoothing_hops, "refractory_s": refractory_s}
    rows: list[dict[str, Any]] = []
    total = len(speakers) * len(digits)
    for d_index, word in enumerate(digits):
        digit = DIGIT_WORDS.index(word)
        text = text_models[word]
        impostors = phrase_impostors(word, per_word=IMPOSTORS)
        same_digit = [r for r in recordings if r.digit == digit]
        for s_index, speaker in enumerate(speakers):
            mine = sorted((r for r in same_digit if r.speaker == speaker), key=lambda r: r.take)
            enrolled_takes = [load_audio(r.path) for r in mine[:takes]]
            test = {r.path.stem for r in mine[takes:]}
            result = enroll_wake_word(
                text, base, enrolled_takes, recipe=recipe, smoothing_hops=smoothing_hops,
                refractory_s=refractory_s,
            )  # fmt: skip
            profile = SpeakerProfile.enroll_audio(enrolled_takes, impostors)
            model = replace(result.model, speaker=profile)

            others = [r for r in same_digit if r.speaker != speaker]
            rows.append(
                {
                    "speaker": speaker,
                    "digit": word,
                    "text": miss_rate(base.geometry, text, labelled, synthetic, test, options),
                    "enrolled": miss_rate(base.geometry, model, labelled, synthetic, test, options),
                    "enrolled_speaker_check": miss_rate(
                        base.geometry,
                        model,
                        labelled,
                        synthetic,
                        test,
                        options,
                        gates=[
                            speaker_gate(base.geometry, model, st, profile)
                            for st in (labelled, synthetic)
                        ],
                    ),  # fmt: skip
                    "speaker_false_reject": float(
                        np.mean(
                            [not profile.accepts_audio(load_audio(r.path)) for r in mine[takes:]]
                        )
                    ),
                    "speaker_false_accept": float(
                        np.mean([profile.accepts_audio(load_audio(r.path)) for r in others])
                    ),
                    "training_s": result.report["metrics"]["seconds"],
                }
            )
            if progress is not None:
                progress("enrollments", d_index * len(speakers) + s_index + 1, total)
    keys = ("text", "enrolled", "enrolled_speaker_check", "speaker_false_reject",
            "speaker_false_accept")  # fmt: skip
    per_speaker = {
        s: {k: round(float(np.mean([r[k] for r in rows if r["speaker"] == s])), 4) for k in keys}
        for s in speakers
    }
    mean = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in keys}
    return {"rows": rows, "per_speaker": per_speaker, "mean": mean, "takes": takes}
