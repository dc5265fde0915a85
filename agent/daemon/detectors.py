"""The one place the running agent builds its detectors from the settings.

`load_models` turns a validated config into everything the daemon swaps at once on SIGHUP: the
streaming `models.wake.detector.Detector` over every wake word, and the local commands'
`CommandMatcher`. For each wake word or phrase command the detector file is chosen by
`load_detector_model`: with learning enabled, the one learned from the user's feedback
(``earshot train --feedback``) while it still derives from the detector in use; else the user's
enrollment when it is usable, else the one trained from text (``earshot train``), else the one
shipped with the package. The CLI's ``train``, ``detect``,
``enroll`` and ``eval`` load through the same functions, so they see what the agent sees.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from agent.daemon.local_commands import CommandMatcher, as_wake_word
from agent.enroll.store import enrollment
from agent.learning.feedback import learned_models_dir
from agent.settings import LocalCommandSettings, Settings, WakeWordSettings, enrollment_dir
from kernels.errors import ModelError
from models.base.geometry import Embedder, WordsHead
from models.base.loading import load_base as load_base_file
from models.base.model import BaseModel
from models.wake.detector import Detector, WakeWord
from models.wake.model import (
    NO_MODEL,
    WakeWordModel,
    model_path,
    shipped_detector,
    stale_reason,
)

_LOGGER = logging.getLogger(__name__)


@dataclass
class Models:
    """What a config loads: everything SIGHUP swaps at once."""

    settings: Settings
    detector: Detector
    matcher: CommandMatcher


def load_models(settings: Settings) -> Models:
    """Load the base model, wake-word detectors and local commands a config names.

    Raises
    ------
    ModelError
        A model is missing, stale or corrupt; nothing is half-loaded.
    """
    base = load_base(settings)
    wake_words = load_wake_words(settings, base)
    detector = Detector(base, wake_words, backend=settings.detection.backend)
    return Models(settings, detector, load_matcher(settings, base))


def load_base(settings: Settings) -> Embedder:
    """The base the config names (`models.base.loading`; the imported embedding by default)."""
    return load_base_file(settings.models.base)


def threshold_of(wake: WakeWordSettings, model: WakeWordModel) -> tuple[float, str]:
    """The wake word's threshold, and where it came from (for messages)."""
    if wake.threshold is not None:
        return wake.threshold, "configured threshold"
    target = wake.target_false_accepts_per_hour
    assert target is not None
    threshold, extrapolated = model.threshold_for(
        target, smoothing_hops=wake.smoothing_hops, refractory_s=wake.refractory_s
    )
    how = "extrapolated from" if extrapolated else "measured on"
    return threshold, (
        f"{target:g} false alarms/h, {how} {model.calibration_hours:.2f} h of negative audio"
    )


def load_wake_words(
    settings: Settings, base: Embedder, names: list[str] | None = None
) -> list[WakeWord]:
    """The configured wake words (or ``names``) as runnable `WakeWord`s.

    Raises
    ------
    ModelError
        A model is missing or stale; the message says which command makes it.
    """
    directory = settings.models.resolved_directory()
    chosen = [settings.wake_word(n) for n in names] if names else list(settings.wake_words)
    loaded = []
    learned = learned_models_dir(settings.learning) if settings.learning.enabled else None
    for wake in chosen:
        model = load_detector_model(wake, base.sha256, directory, learned)
        threshold, _ = threshold_of(wake, model)
        loaded.append(
            WakeWord(model, threshold, wake.smoothing_hops, wake.refractory_s, wake.verify_speaker)
        )
    return loaded


def load_matcher(settings: Settings, base: Embedder) -> CommandMatcher:
    """The configured local commands with their detectors.

    Raises
    ------
    ModelError
        A phrase command's detector is missing or stale; the message names `earshot train`.
    """
    directory: Path = settings.models.resolved_directory()
    loaded: list[tuple[LocalCommandSettings, WakeWordModel | None]] = []
    for command in settings.commands:
        model = None
        if command.phrase is not None:
            model = load_detector_model(as_wake_word(command), base.sha256, directory)
        loaded.append((command, model))
    words = load_words_head(base) if any(c.builtin for c in settings.commands) else None
    return CommandMatcher(base, loaded, words)


def load_words_head(base: Embedder) -> WordsHead:
    """The speech-commands head for built-in command words on ``base``.

    The DS-CNN carries its own; other bases read the head shipped for them
    (`models.base.commands`).

    Raises
    ------
    ModelError
        No head for this base; the message says which command trains one.
    """
    if isinstance(base, BaseModel):
        head = base.commands_head()
        if head is None:
            raise ModelError(f"base {base.name}: it has no speech-commands head for built-in words")
        return head
    from models.base.commands import SHIPPED_COMMANDS, CommandsHead

    return CommandsHead.load(SHIPPED_COMMANDS, base_sha256=base.sha256)


def load_detector_model(
    wake: WakeWordSettings, base_sha256: str, model_dir: Path, learned_dir: Path | None = None
) -> WakeWordModel:
    """The wake word's detector: learned from feedback, else enrolled, else trained from text.

    A detector learned from the user's feedback (`agent.learning.improve`, in ``learned_dir``)
    is used while the detector it was fine-tuned from is still the one in use.

    Raises
    ------
    ModelError
        Nothing usable; the message says which command makes a detector.
    """
    start = base_detector_model(wake, base_sha256, model_dir)
    if learned_dir is None:
        return start
    learned = model_path(learned_dir, wake.name)
    if stale_reason(learned, wake.phrase, base_sha256) is not None:
        return start
    model = WakeWordModel.load(learned, base_sha256=base_sha256)
    start_sha = start.manifest.sha256 if start.manifest is not None else None
    if model.extra.get("text_model_sha256") != start_sha:
        _LOGGER.warning(
            "%s: the detector learned from feedback is not used (it was fine-tuned from another "
            "detector than the one now in use); run `earshot train --feedback %s`",
            wake.name, wake.name,
        )  # fmt: skip
        return start
    return model


def base_detector_model(wake: WakeWordSettings, base_sha256: str, model_dir: Path) -> WakeWordModel:
    """The wake word's detector before learning: the enrolled one when usable, else from text.

    Raises
    ------
    ModelError
        Neither is usable; the message says which command makes one.
    """
    enrolled = enrollment(enrollment_dir(), wake.name)
    if enrolled is not None:
        reason = stale_reason(enrolled.model_path, wake.phrase, base_sha256)
        if reason is None:
            return WakeWordModel.load(enrolled.model_path, base_sha256=base_sha256)
        _LOGGER.warning(
            "%s: enrollment not used (%s); run `earshot enroll %s --again` or `earshot forget %s`",
            wake.name, reason, wake.name, wake.name,
        )  # fmt: skip
    if wake.verify_speaker:
        raise ModelError(
            f"{wake.name}: verify_speaker is on, but there is no usable enrollment; run "
            f"`earshot enroll {wake.name}`"
        )
    path = model_path(model_dir, wake.name)
    reason = stale_reason(path, wake.phrase, base_sha256)
    shipped = shipped_detector(wake.name)
    if reason == NO_MODEL and stale_reason(shipped, wake.phrase, base_sha256) is None:
        return WakeWordModel.load(shipped, base_sha256=base_sha256)
    if reason is not None:
        raise ModelError(f"{path}: {reason}; run `earshot train {wake.name}`")
    return WakeWordModel.load(path, base_sha256=base_sha256)
