"""Fine-tune a wake word to its user's voice from a few recorded takes (enrollment).

``enroll_wake_word(model, base, takes, room=room)`` starts from the wake word's detector
trained from text (`models.wake.training`) and trains its head further on:

- the user's takes, each placed and augmented many times (speed, pitch, reverb, microphone
  colour; then noise from the user's own room at varied levels, other noise, gain);
- the same synthetic positives and negatives as the text training (cached, so nothing is
  synthesized again), so the head keeps what it knew about other voices and false alarms.

Then it scores the calibration stream again, so the threshold for the configured false alarms
per hour holds for the new head. One take is first held out of a trial fine-tune to show what
enrollment changed: its score before and after.

The base model stays as it is: every wake word shares its embedding, which is what keeps ten
wake words as cheap as one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from dsp.constants import SAMPLE_RATE_HZ
from kernels.errors import ModelError
from models.base.geometry import Embedder
from models.nn.trainer import TrainingEngine
from models.speech.dataset import sample_renditions, split_voices
from models.speech.synth import SpeechCache, Voice, available_voices
from models.wake.calibration import calibration_report, calibration_scores
from models.wake.detector import stream_contexts
from models.wake.evaluation import peak_score
from models.wake.examples import Progress, context_examples, synthesize
from models.wake.head_training import fit_wake_head
from models.wake.model import OTHER_LABEL, WakeHead, WakeWordModel, recordings_digest
from models.wake.negatives import Negatives, negatives_for
from models.wake.phrase_examples import POSITIVE_SPEC, PhraseExamples, phrase_examples
from models.wake.recipe import WakeRecipe
from models.wake.speaker import MIN_TAKES
from models.wake.training import StageTimer


def phrase_impostors(
    phrase: str, *, per_word: int, seed: int = 0, progress: Progress | None = None
) -> list[np.ndarray]:
    """Audio of ``per_word`` renditions of ``phrase`` by synthetic training voices.

    What the speaker check (`models.wake.speaker`) is calibrated against: the same phrase said by
    voices that are not the user's.
    """
    voices = split_voices(available_voices(), seed=seed).train
    rng = np.random.default_rng([seed, 11])
    renditions = sample_renditions([phrase], voices, per_word=per_word, rng=rng)
    return synthesize(renditions, SpeechCache(), progress)


TAKE_RECIPE_FIELDS = ("take_copies", "room_share", "room_gain_db", "seed")
"""What of an `EnrollRecipe` the takes' examples depend on."""


def _own_examples(
    model: WakeWordModel,
    base: Embedder,
    takes: Sequence[np.ndarray],
    room: np.ndarray | None,
    examples: PhraseExamples,
    recipe: EnrollRecipe,
    cache: Path | None,
) -> np.ndarray:
    """`take_examples` of ``takes``, read from ``cache`` when they were made there before.

    They are seeded, so the same takes give the same examples: a device that fine-tunes again
    from other weights (a fleet's rounds) need not place and embed them again.
    """
    if not takes:
        return examples.positives[:0]

    def make() -> np.ndarray:
        rng = np.random.default_rng([recipe.seed, len(takes)])
        return take_examples(
            base, takes, room=room, fillers=examples.fillers, recipe=recipe, rng=rng
        )

    if cache is None:
        return make()
    digest = hashlib.sha256(json.dumps([
        base.sha256, model.phrase, text_recipe(model).as_dict(),
        {k: getattr(recipe, k) for k in TAKE_RECIPE_FIELDS},
    ]).encode())  # fmt: skip
    for clip in (*takes, *(() if room is None else (room,))):
        digest.update(np.ascontiguousarray(clip, np.float32).tobytes())
    path = cache / f"takes-{digest.hexdigest()[:32]}.npy"
    if path.is_file():
        return np.load(path)
    own = make()
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    with partial.open("wb") as f:
        np.save(f, own)
    partial.replace(path)
    return own


@dataclass(frozen=True)
class EnrollRecipe:
    """How a wake word is fine-tuned on the user's takes.

    Parameters
    ----------
    take_copies : int
        Placed, augmented examples of each take.
    room_share : float
        Share of those examples mixed with a stretch of the user's room recording.
    room_gain_db : tuple of float
        Level of that room noise relative to how it was recorded.
    epochs : int
        Most epochs of fine-tuning.
    lr : float
        Peak learning rate (the head starts trained, so lower than from scratch).
    engine : {"auto", "numpy", "wgpu"}
        Where training steps run: ``"auto"`` is the wgpu engine where a real GPU exists, the
        numpy one otherwise (`models.nn.trainer.Trainer`).
    hold_out : bool
        Hold one take out of a trial fine-tune to report its score before and after.
    false_alarm_copies : int
        Times each hop of a false alarm the user marked is repeated among the negatives: they
        are few, and exactly what the head must learn not to do.
    seed : int
        Seeds everything.
    """

    take_copies: int = 80
    room_share: float = 0.7
    room_gain_db: tuple[float, float] = (-6.0, 10.0)
    epochs: int = 20
    lr: float = 1e-3
    engine: TrainingEngine = "auto"
    hold_out: bool = True
    false_alarm_copies: int = 20
    seed: int = 0


@dataclass
class EnrollmentResult:
    """An enrolled model and what enrollment changed.

    Attributes
    ----------
    model : WakeWordModel
        The fine-tuned, re-calibrated detector (not yet saved).
    report : dict
        ``recipe``, ``metrics`` and ``curve``, for `WakeWordModel.save`.
    held_out_before, held_out_after : float or None
        Peak smoothed score of the held-out take under the text-only head and under a head
        fine-tuned without that take (None when ``hold_out`` is off).
    """

    model: WakeWordModel
    report: dict[str, Any]
    held_out_before: float | None
    held_out_after: float | None


def text_recipe(model: WakeWordModel) -> WakeRecipe:
    """The recipe the text-only model was trained with (default for an unsaved model)."""
    stored = model.manifest.recipe if model.manifest is not None else {}
    known = {f.name for f in fields(WakeRecipe)}
    return WakeRecipe(**{k: v for k, v in stored.items() if k in known})


def take_examples(
    base: Embedder,
    takes: Sequence[np.ndarray],
    *,
    room: np.ndarray | None,
    fillers: Sequence[np.ndarray],
    recipe: EnrollRecipe,
    rng: np.random.Generator,
) -> np.ndarray:
    """Head inputs of ``recipe.take_copies`` placed, augmented examples of every take."""
    usable_room = room if room is not None and room.size >= SAMPLE_RATE_HZ // 2 else None

    def with_room(clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if usable_room is None or rng.random() >= recipe.room_share:
            return clip
        start = int(rng.integers(0, max(1, usable_room.size - clip.size)))
        stretch = np.resize(usable_room[start : start + clip.size], clip.shape)
        return (clip + stretch * 10 ** (rng.uniform(*recipe.room_gain_db) / 20)).astype(np.float32)

    contexts, _ = context_examples(
        base, list(takes), copies=recipe.take_copies, spec=POSITIVE_SPEC, fillers=fillers,
        rng=rng, background=with_room,
    )  # fmt: skip
    return contexts


def false_alarm_contexts(base: Embedder, clips: Sequence[np.ndarray]) -> np.ndarray:
    """Head inputs of every hop of the user's marked false alarms [hops, context]."""
    rows = [stream_contexts(base, clip) for clip in clips]
    dim = base.geometry.context_windows * base.dim
    return np.concatenate(rows) if rows else np.zeros((0, dim), np.float32)


def _fine_tune(
    model: WakeWordModel,
    base: Embedder,
    takes: Sequence[np.ndarray],
    room: np.ndarray | None,
    examples: PhraseExamples,
    negatives: Negatives,
    wake_recipe: WakeRecipe,
    recipe: EnrollRecipe,
    progress: Progress | None,
    false_alarms: np.ndarray,
    take_cache: Path | None = None,
) -> tuple[WakeHead, dict[str, Any], int]:
    own = _own_examples(model, base, takes, room, examples, recipe, take_cache)
    marked = np.repeat(false_alarms, recipe.false_alarm_copies, axis=0)
    head, metrics = fit_wake_head(
        np.concatenate([examples.positives, own]),
        np.concatenate([examples.negatives, negatives.train, marked.astype(own.dtype)]),
        labels=(OTHER_LABEL, model.name),
        recipe=replace(wake_recipe, epochs=recipe.epochs, seed=recipe.seed),
        init=model.head, lr=recipe.lr, engine=recipe.engine, progress=progress,
    )  # fmt: skip
    return head, metrics, len(own)


def enroll_wake_word(
    model: WakeWordModel,
    base: Embedder,
    takes: Sequence[np.ndarray],
    *,
    room: np.ndarray | None = None,
    false_alarms: Sequence[np.ndarray] = (),
    min_takes: int = MIN_TAKES,
    recipe: EnrollRecipe | None = None,
    smoothing_hops: int = 2,
    refractory_s: float = 2.0,
    voices: Sequence[Voice] | None = None,
    speech_cache: SpeechCache | None = None,
    take_cache: Path | None = None,
    progress: Progress | None = None,
) -> EnrollmentResult:
    """Fine-tune ``model`` (trained from text) on the user's ``takes``; see the module docstring.

    Parameters
    ----------
    model : WakeWordModel
        The wake word's text-only detector, trained on ``base``.
    base : Embedder
        The base model (frozen).
    takes : sequence of np.ndarray
        The user's recordings of the phrase (16 kHz mono float32), checked and trimmed.
    room : np.ndarray, optional
        A recording of the user's room with nobody speaking, mixed into the examples.
    false_alarms : sequence of np.ndarray
        Audio the user marked as false alarms (`agent.learning.feedback`); every hop of it is a
        negative, repeated `EnrollRecipe.false_alarm_copies` times.
    min_takes : int
        Fewest takes accepted (learning from feedback may have none, only false alarms).
    recipe : EnrollRecipe, optional
        Amounts of augmentation and training.
    smoothing_hops, refractory_s
        The detection settings the stored calibration curve is drawn for.
    voices, speech_cache
        As for `models.wake.training.train_wake_word` (its cached material is reused).
    take_cache : Path, optional
        A folder (owner-only: they come from the user's voice) where the takes' examples are
        kept for the next fine-tune from the same takes.
    progress : callable, optional
        ``progress(stage, done, total)``.

    Raises
    ------
    ModelError
        Fewer than ``min_takes`` takes, or a model trained on another base model.
    """
    if len(takes) < min_takes:
        raise ModelError(f"enrollment: {len(takes)} takes, at least {min_takes} needed")
    if model.base_sha256 != base.sha256:
        raise ModelError(
            f"{model.name}: its detector was trained on base {model.base}, not on the {base.name} "
            f"in use; run `earshot train {model.name}`"
        )
    recipe = recipe or EnrollRecipe()
    wake_recipe = text_recipe(model)
    voices = list(voices) if voices is not None else available_voices()
    timer = StageTimer()
    cached: dict[str, Any] = {"voices": voices, "speech_cache": speech_cache}
    examples = phrase_examples(model.phrase, base, wake_recipe, progress=progress, **cached)
    negatives = negatives_for(model.phrase, base, wake_recipe, progress=progress, **cached)
    marked = false_alarm_contexts(base, false_alarms)
    timer.lap("cached material")

    before = after = None
    if recipe.hold_out and len(takes) >= 2:
        held_out = takes[-1]
        trial, _, _ = _fine_tune(
            model, base, takes[:-1], room, examples, negatives, wake_recipe, recipe, progress,
            marked,
        )  # fmt: skip
        before = peak_score(base, model.head, held_out, smoothing_hops=smoothing_hops)
        after = peak_score(base, trial, held_out, smoothing_hops=smoothing_hops)
        timer.lap("held-out trial")
    head, metrics, n_own = _fine_tune(
        model, base, takes, room, examples, negatives, wake_recipe, recipe, progress, marked,
        take_cache,
    )  # fmt: skip
    timer.lap("fine-tuning")

    text_sha = model.manifest.sha256 if model.manifest is not None else None
    enrolled = WakeWordModel(
        model.name, model.phrase, head,
        calibration_scores(head, negatives.calibration, model.phrase, base.geometry),
        negatives.calibration.hours, model.phrase_duration_s, model.base_sha256, model.base,
        model.context, extra={
            **model.extra,
            "enrolled_takes": len(takes),
            "takes_sha256": recordings_digest(list(takes)),
            "room_s": round(room.size / SAMPLE_RATE_HZ, 2) if room is not None else 0.0,
            "false_alarms": len(false_alarms),
            "text_model_sha256": text_sha,
        },
    )  # fmt: skip
    curve = calibration_report(enrolled, smoothing_hops, refractory_s)
    timer.lap("calibration")
    metrics |= {
        "takes": len(takes),
        "take_examples": n_own,
        "held_out_score_before": before,
        "held_out_score_after": after,
        "seconds": timer.seconds,
    }
    report = {
        "recipe": {**wake_recipe.as_dict(), "enrollment": asdict(recipe)},
        "metrics": metrics,
        "curve": curve,
    }
    return EnrollmentResult(enrolled, report, before, after)


def with_head(
    model: WakeWordModel,
    head: WakeHead,
    base: Embedder,
    *,
    extra: dict[str, Any] | None = None,
    smoothing_hops: int = 2,
    refractory_s: float = 2.0,
    voices: Sequence[Voice] | None = None,
    speech_cache: SpeechCache | None = None,
    progress: Progress | None = None,
) -> tuple[WakeWordModel, dict[str, Any]]:
    """``model`` with another ``head`` (a fleet's), calibrated again; and its calibration curve.

    The threshold for a false-alarm rate belongs to a head: the new one scores the same cached
    calibration stream as enrollment's (`negatives_for`). ``extra`` is added to the model's.

    Raises
    ------
    ModelError
        ``head``'s arrays differ in shape from ``model``'s.
    """
    shapes = {k: v.shape for k, v in head.state().items()}
    expected = {k: v.shape for k, v in model.head.state().items()}
    if shapes != expected:
        raise ModelError(f"{model.name}: a head of shapes {shapes} does not fit this detector's "
                         f"{expected}")  # fmt: skip
    voices = list(voices) if voices is not None else available_voices()
    negatives = negatives_for(
        model.phrase, base, text_recipe(model), voices=voices, speech_cache=speech_cache,
        progress=progress,
    )  # fmt: skip
    changed = replace(
        model,
        head=head,
        calibration=calibration_scores(head, negatives.calibration, model.phrase, base.geometry),
        calibration_hours=negatives.calibration.hours,
        manifest=None,
        extra={**model.extra, **(extra or {})},
    )
    return changed, calibration_report(changed, smoothing_hops, refractory_s)
