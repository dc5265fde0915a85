"""``earshot train --feedback``: improve a wake word's detector from the feedback kept for it.

The detector in use before learning (the enrolled one, else the one trained from text) is
fine-tuned as enrollment does (`models.enroll.finetune.enroll_wake_word`), with two more kinds of
example: the phrases of the misses the user reported (each clip cut to its speech, as a take),
and every hop of the false alarms they marked, as negatives. The result replaces the detector in
use only if it is no worse on the device's own material (`models.enroll.feedback_check`): at
each detector's threshold for the configured false-alarm rate, it hears at least as many kept
phrases (enrollment takes and misses) and fires on no more marked false alarms. Otherwise it is
refused and the reason printed. An accepted detector is written owner-only beside the clips
(`agent.learning.feedback.learned_models_dir`); the agent uses it, with learning enabled, as long
as the detector it was fine-tuned from is still the one in use.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.daemon.detectors import base_detector_model, threshold_of
from agent.enroll.store import enrollment
from agent.learning.feedback import FeedbackClip, FeedbackStore, learned_models_dir
from agent.paths import PRIVATE_FILE
from agent.private_files import private_dir
from agent.settings import Settings, WakeWordSettings, enrollment_dir
from dsp.audio import load_audio
from models.base.geometry import Embedder
from models.enroll.feedback_check import FeedbackScore, feedback_score, padded
from models.enroll.finetune import EnrollRecipe, enroll_wake_word
from models.enroll.takes import TakeChecker
from models.wake.examples import Progress
from models.wake.model import WakeWordModel, model_path


@dataclass(frozen=True)
class Improvement:
    """What learning from feedback did for one wake word."""

    name: str
    accepted: bool
    before: FeedbackScore
    after: FeedbackScore
    path: Path | None
    """Where the accepted detector was written; None when refused."""
    seconds: float
    unusable_misses: int
    """Reported misses in which no phrase-like speech was found (not learned from)."""

    def __str__(self) -> str:
        verdict = f"accepted, written to {self.path}" if self.accepted else "refused: it " + (
            "hears fewer kept phrases" if self.after.heard < self.before.heard
            else "fires on more marked false alarms"
        )  # fmt: skip
        return (
            f"{self.name}: before {self.before}; after {self.after}; {verdict} "
            f"({self.seconds:.1f} s)"
        )


def improve_wake_word(
    settings: Settings,
    wake: WakeWordSettings,
    base: Embedder,
    *,
    recipe: EnrollRecipe | None = None,
    progress: Progress | None = None,
) -> Improvement | None:
    """Learn ``wake``'s detector from its kept feedback; None when nothing is kept for it."""
    started = time.perf_counter()
    clips = FeedbackStore(settings.learning).clips(wake.name)
    if not clips:
        return None
    start = base_detector_model(wake, base.sha256, settings.models.resolved_directory())
    kept = kept_material(wake.name, base, start, clips)
    takes, misses, false_alarms = kept.enrolled_takes, kept.misses, kept.false_alarms
    result = enroll_wake_word(
        start, base, kept.takes, room=kept.room, false_alarms=false_alarms, min_takes=0,
        recipe=recipe or EnrollRecipe(hold_out=False), smoothing_hops=wake.smoothing_hops,
        refractory_s=wake.refractory_s, progress=progress,
    )  # fmt: skip
    learned = result.model
    learned.speaker = start.speaker  # the speaker check stays the enrolled one
    phrases = [padded(t) for t in takes] + misses
    scores = []
    for model in (start, learned):
        threshold, _ = threshold_of(wake, model)
        scores.append(feedback_score(
            base, model.head, threshold, phrases=phrases, false_alarms=false_alarms,
            smoothing_hops=wake.smoothing_hops,
        ))  # fmt: skip
    before, after = scores
    accepted = after.no_worse_than(before)
    path = None
    if accepted:
        folder = private_dir(learned_models_dir(settings.learning))
        path = model_path(folder, wake.name)
        result.report["metrics"] |= {"feedback_before": before.as_dict(),
                                     "feedback_after": after.as_dict()}  # fmt: skip
        learned.save(path, **result.report)
        for written in folder.glob(f"{wake.name}.*"):
            written.chmod(PRIVATE_FILE)
    return Improvement(
        wake.name, accepted, before, after, path, time.perf_counter() - started,
        kept.unusable_misses,
    )  # fmt: skip


@dataclass(frozen=True)
class KeptMaterial:
    """What a device keeps of its user for one wake word, ready to learn from."""

    enrolled_takes: list[np.ndarray]
    """The enrollment's takes, when the enrolled detector is the one learning starts from."""
    room: np.ndarray | None
    misses: list[np.ndarray]
    """Reported misses, as kept."""
    miss_takes: list[np.ndarray]
    """... cut to their speech (those in which the take check finds a phrase)."""
    false_alarms: list[np.ndarray]

    @property
    def takes(self) -> list[np.ndarray]:
        """Every phrase to learn from: enrollment takes and the misses' speech."""
        return self.enrolled_takes + self.miss_takes

    @property
    def unusable_misses(self) -> int:
        """Reported misses in which no phrase-like speech was found."""
        return len(self.misses) - len(self.miss_takes)


def kept_material(
    name: str, base: Embedder, start: WakeWordModel, clips: list[FeedbackClip]
) -> KeptMaterial:
    """The takes, misses and false alarms kept for ``name``, learning from detector ``start``.

    Used by `earshot train --feedback` and by a fleet device's round (`agent.fleet.device`).
    """
    misses = [load_audio(c.audio_path) for c in clips if c.kind == "missed"]
    false_alarms = [load_audio(c.audio_path) for c in clips if c.kind == "false-alarm"]
    takes, room = _enrollment_takes(name, start.manifest.sha256 if start.manifest else None)
    checker = TakeChecker(base, start.phrase_duration_s)
    verdicts = [checker.check(clip) for clip in misses]
    miss_takes = [v.speech for v in verdicts if v.ok]
    return KeptMaterial(takes, room, misses, miss_takes, false_alarms)


def _enrollment_takes(
    name: str, start_sha256: str | None
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The enrollment's takes and room when the detector in use is the enrolled one."""
    enrolled = enrollment(enrollment_dir(), name)
    if enrolled is None or not enrolled.model_path.is_file():
        return [], None
    enrolled_model = WakeWordModel.load(enrolled.model_path)
    if enrolled_model.manifest is None or enrolled_model.manifest.sha256 != start_sha256:
        return [], None
    takes = [load_audio(p) for p in enrolled.take_paths]
    room_path = enrolled.directory / "room.wav"
    return takes, load_audio(room_path) if room_path.is_file() else None
