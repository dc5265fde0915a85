"""``earshot enroll NAME`` and ``earshot forget NAME``: fit a wake word to the user's voice.

Enrollment records a few takes of the wake phrase (or reads them from files), checks each
(`models.enroll.takes`), fine-tunes the wake word's detector on them (`models.enroll.finetune`),
builds the optional speaker check (`models.wake.speaker`), and stores all of it owner-only
(`agent.enroll.store`). The agent then prefers the enrolled detector
(`agent.daemon.detectors.load_detector_model`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernels.errors import ConfigError

if TYPE_CHECKING:
    from agent.settings import Settings, WakeWordSettings
    from models.base.geometry import Embedder
    from models.wake.model import WakeWordModel

_LOGGER = logging.getLogger(__name__)
IMPOSTOR_RENDITIONS = 40
"""Synthetic renditions of the phrase the speaker check is calibrated against."""
HIGH_IMPOSTOR_ACCEPT = 0.2
"""Warn when the speaker check accepts more than this share of synthetic voices."""


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Register ``enroll`` and ``forget``."""
    from agent.cli.wake import add_config_option

    enroll = commands.add_parser(
        "enroll", help="fit a wake word to your voice with a few recorded takes",
        description="Record a few takes of a configured wake word's phrase (and 10 s of your "
        "room, quiet), then fine-tune its detector on them and re-calibrate its threshold. "
        "Takes stay on this machine, owner-only, under ~/.local/share/earshot/enrollment; "
        "`earshot forget NAME` deletes them.",
        epilog="examples:\n"
        "  earshot enroll computer                 5 takes from the microphone\n"
        "  earshot enroll computer --samples 8\n"
        "  earshot enroll computer --from a.wav b.wav c.wav\n"
        "  earshot enroll computer --again         re-train from the stored takes\n"
        "  earshot enroll --list",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    enroll.add_argument(
        "name", nargs="?", metavar="NAME", help="a configured wake word or phrase command"
    )
    source = enroll.add_mutually_exclusive_group()
    source.add_argument(
        "--from", dest="files", type=Path, nargs="+", metavar="FILE",
        help="enroll from these recordings of the phrase instead of the microphone",
    )  # fmt: skip
    source.add_argument(
        "--again", action="store_true",
        help="fine-tune again from the stored takes (after the base model or detector changed)",
    )  # fmt: skip
    source.add_argument("--list", action="store_true", help="list enrollments and exit")
    enroll.add_argument(
        "--samples", type=int, default=5, metavar="N", help="takes to record (default 5, min 3)"
    )
    enroll.add_argument("--device", help="microphone: name substring or index")
    enroll.add_argument(
        "--room-seconds", type=float, default=10.0, metavar="S",
        help="length of the quiet room recording (default 10)",
    )  # fmt: skip
    enroll.add_argument(
        "--countdown", type=float, default=3.0, metavar="S",
        help="countdown before each take (default 3; 0 for none)",
    )  # fmt: skip
    add_config_option(enroll)

    forget = commands.add_parser(
        "forget", help="delete a wake word's enrollment (takes, room recording, detector)",
        description="Delete everything `earshot enroll NAME` stored: the takes, the room "
        "recording and the enrolled detector. The wake word goes back to its detector trained "
        "from text.",
    )  # fmt: skip
    forget.add_argument("name", metavar="NAME", help="an enrolled wake word")


# ---- enroll --------------------------------------------------------------------------------------


def run_enroll(args: argparse.Namespace) -> int:
    """``earshot enroll``: record or read takes, fine-tune, store, summarize.

    Everything that can be checked without training is checked first: the options, and for
    ``--from`` every file (that it exists, holds audio and is a usable take). The detector to
    fine-tune is the wake word's trained one, else the one shipped with earshot, else one
    trained from text here, only once the takes have passed.
    """
    from agent.cli.wake import trainable_phrases
    from agent.enroll.store import enrollment, list_enrollments, save_enrollment
    from agent.settings import enrollment_dir, load_settings

    root = enrollment_dir()
    if args.list:
        return _list(root, list_enrollments(root))
    if not args.name:
        raise ConfigError("enroll: name a configured wake word (or use --list)")
    if not (args.files or args.again):
        _check_recording_options(args)
    settings = load_settings(args.config)
    phrases = trainable_phrases(settings)  # wake words and phrase commands alike
    wake = phrases[args.name] if args.name in phrases else settings.wake_word(args.name)
    base = _base(settings)

    if args.again:
        stored = enrollment(root, wake.name)
        if stored is None:
            raise ConfigError(f"enroll --again: {wake.name!r} has no stored takes; enroll first")
        text_model = _text_model(settings, wake, base)
        takes, room, rejected = stored.takes(), stored.room(), []
    else:
        if args.files:
            text_model, audio = _takes_from_files(args.files, settings, wake, base)
        else:
            text_model = _text_model(settings, wake, base)
            audio = _record_takes(args, wake.phrase, base, text_model)
        takes, rejected = audio.takes, audio.rejected
        room = audio.room if audio.room.size else None
    print(f"{wake.name}: fine-tuning on {len(takes)} takes", file=sys.stderr, flush=True)
    result, speaker, seconds = _fine_tune(text_model, base, takes, room, wake)
    info = {
        "phrase": wake.phrase,
        "rejected_takes": rejected,
        "held_out_score_before": result.held_out_before,
        "held_out_score_after": result.held_out_after,
        "training_s": round(seconds, 2),
    }
    stored = save_enrollment(
        root, wake.name, takes=takes, room=room, info=info,
        write_model=lambda path: result.model.save(path, **result.report),
    )  # fmt: skip
    _summary(wake, text_model, result, speaker, seconds, stored.directory)
    return 0


def _check_recording_options(args: argparse.Namespace) -> None:
    """Refuse bad microphone options before anything is loaded or trained."""
    from agent.enroll.capture import MIN_SAMPLES

    if args.samples < MIN_SAMPLES:
        raise ConfigError(f"samples: got {args.samples}, expected at least {MIN_SAMPLES}")
    if args.room_seconds < 1 or args.countdown < 0:
        raise ConfigError(
            f"--room-seconds {args.room_seconds:g} / --countdown {args.countdown:g}: expected "
            "at least 1 s of room and a countdown of 0 s or more"
        )


def _base(settings: Settings) -> Embedder:
    from agent.daemon.detectors import load_base

    return load_base(settings)


def _ready_text_model(
    settings: Settings, wake: WakeWordSettings, base: Embedder
) -> WakeWordModel | None:
    """The wake word's detector from text when one is ready: trained, else shipped; or None.

    The same choice the agent makes (`agent.daemon.detectors.load_detector_model`), enrollment
    aside: the shipped detector stands in only where none was ever trained.
    """
    from models.wake.model import (
        NO_MODEL,
        WakeWordModel,
        model_path,
        shipped_detector,
        stale_reason,
    )

    sha256 = base.sha256
    path = model_path(settings.models.resolved_directory(), wake.name)
    reason = stale_reason(path, wake.phrase, sha256)
    if reason is None:
        return WakeWordModel.load(path, base_sha256=sha256)
    shipped = shipped_detector(wake.name)
    if reason == NO_MODEL and stale_reason(shipped, wake.phrase, sha256) is None:
        print(f"{wake.name}: starting from the detector shipped with earshot", file=sys.stderr)
        return WakeWordModel.load(shipped, base_sha256=sha256)
    return None


def _text_model(settings: Settings, wake: WakeWordSettings, base: Embedder) -> WakeWordModel:
    """The wake word's detector from text (`_ready_text_model`), trained first when none is."""
    from agent.cli.wake import train_one
    from models.wake.model import WakeWordModel

    ready = _ready_text_model(settings, wake, base)
    if ready is not None:
        return ready
    print(f"{wake.name}: first, its detector from text", file=sys.stderr)
    path = train_one(settings, wake, base, force=True)
    return WakeWordModel.load(path, base_sha256=base.sha256)


def _takes_from_files(
    files: list[Path], settings: Settings, wake: WakeWordSettings, base: Embedder
) -> tuple[WakeWordModel, Any]:
    """The detector to fine-tune and the checked takes of ``files``, read and checked first.

    Without a ready detector the takes are checked on everything but their length (which needs
    the phrase's length, known once its detector is trained), then checked again in full.
    """
    from agent.enroll.capture import check_take_files, read_take_files
    from models.enroll.takes import TakeChecker

    recordings = read_take_files(files)
    text_model = _ready_text_model(settings, wake, base)
    if text_model is None:
        check_take_files(files, recordings, TakeChecker(base, None))
        text_model = _text_model(settings, wake, base)
    checker = TakeChecker(base, text_model.phrase_duration_s)
    return text_model, check_take_files(files, recordings, checker)


def _record_takes(
    args: argparse.Namespace, phrase: str, base: Embedder, text_model: WakeWordModel
) -> Any:
    from agent.enroll.capture import record_enrollment
    from models.enroll.takes import TakeChecker

    return record_enrollment(
        phrase, TakeChecker(base, text_model.phrase_duration_s), samples=args.samples,
        device=args.device, room_seconds=args.room_seconds, countdown_s=args.countdown,
    )  # fmt: skip


def _fine_tune(
    text_model: WakeWordModel,
    base: Embedder,
    takes: list[Any],
    room: Any,
    wake: WakeWordSettings,
) -> tuple[Any, Any, float]:
    from threadpoolctl import threadpool_limits

    from agent.cli.progress import StageProgress
    from models.enroll.finetune import enroll_wake_word, phrase_impostors
    from models.wake.speaker import SpeakerProfile

    started = time.perf_counter()
    with StageProgress(unit="step") as progress, threadpool_limits(os.cpu_count() or 1):
        result = enroll_wake_word(
            text_model, base, takes, room=room, smoothing_hops=wake.smoothing_hops,
            refractory_s=wake.refractory_s, progress=progress,
        )  # fmt: skip
        impostors = phrase_impostors(wake.phrase, per_word=IMPOSTOR_RENDITIONS, progress=progress)
    speaker = SpeakerProfile.enroll_audio(takes, impostors)
    result.model.speaker = speaker
    return result, speaker, time.perf_counter() - started


def _detected(score: float | None, threshold: float) -> str:
    if score is None:
        return "not measured"
    return f"{score:.3f} ({'detected' if score >= threshold else 'missed'})"


def _summary(
    wake: WakeWordSettings,
    before: WakeWordModel,
    result: Any,
    speaker: Any,
    seconds: float,
    directory: Path,
) -> None:
    from agent.daemon.detectors import threshold_of
    from models.wake.metrics import threshold_text

    after = result.model
    t_before, _ = threshold_of(wake, before)
    t_after, source = threshold_of(wake, after)
    rate_before = _rate_at(before, wake, t_before)
    rate_after = _rate_at(after, wake, t_after)
    print(f"{wake.name}: enrolled {result.report['metrics']['takes']} takes in {seconds:.1f} s")
    print(f"  {'':30}{'text only':>22}{'enrolled':>22}")
    print(f"  {'threshold':30}{threshold_text(t_before):>22}{threshold_text(t_after):>22}")
    print(f"  {'expected false alarms per hour':30}{rate_before:>22.3g}{rate_after:>22.3g}")
    print(
        f"  {'held-out take score':30}{_detected(result.held_out_before, t_before):>22}"
        f"{_detected(result.held_out_after, t_after):>22}"
    )
    print(f"  (threshold: {source}; the held-out take was left out of a trial fine-tune)")
    for label, model, threshold, rate in (
        ("text-only", before, t_before, rate_before), ("enrolled", after, t_after, rate_after)
    ):  # fmt: skip
        note = _target_missed(wake, label, model, threshold, rate)
        if note is not None:
            print(f"  {note}")
    check = "on" if wake.verify_speaker else "off (verify_speaker: false)"
    print(
        f"  speaker check {check}: threshold {speaker.threshold:.3f}, accepts "
        f"{speaker.impostor_accept:.0%} of {IMPOSTOR_RENDITIONS} synthetic voices"
    )
    if speaker.impostor_accept > HIGH_IMPOSTOR_ACCEPT:
        print(
            "  warning: the speaker check tells your voice from synthetic ones poorly; "
            "more takes, or takes in a quieter room, would help"
        )
    print(f"  stored (owner-only) in {directory}; `earshot forget {wake.name}` deletes it")


def _target_missed(
    wake: WakeWordSettings, label: str, model: WakeWordModel, threshold: float, rate: float
) -> str | None:
    """Why a detector's expected false alarms exceed the configured target, or None.

    The threshold for a target is read from the detector's calibration curve, but never above
    `models.wake.metrics.MAX_THRESHOLD`: a detector that scores speech without the wake word
    that high fires more often than the target even there, and runs at that threshold.
    """
    from models.wake.metrics import MAX_THRESHOLD, threshold_text

    target = wake.target_false_accepts_per_hour
    if target is None or rate <= target:
        return None
    where = "even at the highest threshold" if threshold >= MAX_THRESHOLD else "at the threshold"
    return (
        f"the {label} detector cannot reach the target of {target:g} false alarms/h: "
        f"{where}, {threshold_text(threshold)}, its calibration ({model.calibration_hours:.2f} h "
        f"of speech without the wake word) gives {rate:.3g} per hour"
    )


def _rate_at(model: WakeWordModel, wake: WakeWordSettings, threshold: float) -> float:
    """Calibrated false alarms per hour at ``threshold`` (extrapolated below one per stream)."""
    from models.wake.metrics import rate_at_threshold

    curve = model.false_alarm_curve(wake.smoothing_hops, wake.refractory_s)
    return rate_at_threshold(curve, threshold)


def _list(root: Path, found: list[Any]) -> int:
    if not found:
        print(f"no enrollments in {root}")
        return 0
    for e in found:
        info = e.info()
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.get("created", 0)))
        print(
            f"{e.name}: {info.get('takes', '?')} takes of {info.get('phrase', '?')!r}, "
            f"{when}, {e.size_bytes() / 1024:.0f} KiB in {e.directory}"
        )
    return 0


# ---- forget --------------------------------------------------------------------------------------


def run_forget(args: argparse.Namespace) -> int:
    """``earshot forget NAME``: delete the enrollment."""
    from agent.enroll.store import forget
    from agent.settings import enrollment_dir

    gone = forget(enrollment_dir(), args.name)
    print(f"{args.name}: deleted its enrollment ({gone.directory}); it uses its text-only detector")
    return 0
