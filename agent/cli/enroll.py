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
    from models.base.model import BaseModel
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


def add_eval_parser(eval_what: argparse._SubParsersAction) -> None:
    """Register ``eval enroll``."""
    from agent.cli.wake import add_config_option

    evaluate = eval_what.add_parser(
        "enroll", help="what enrollment buys on real voices (FSDD per-speaker protocol)",
        description="For every FSDD speaker and digit: enroll the digit's wake word (trained "
        "from text) with the speaker's first takes, then measure the miss rate at 1 false alarm "
        "per hour on their other takes, against the other digits of every speaker plus "
        "synthetic speech: text-only, enrolled, and enrolled with the speaker check.",
    )  # fmt: skip
    evaluate.add_argument(
        "--fsdd", type=Path, default=Path(), metavar="DIR",
        help="FSDD recordings folder (default ../shared/data/fsdd/recordings)",
    )  # fmt: skip
    evaluate.add_argument("--takes", type=int, default=5, help="takes to enroll with (default 5)")
    evaluate.add_argument("--speakers", nargs="+", metavar="NAME", help="only these speakers")
    evaluate.add_argument("--digits", nargs="+", metavar="WORD", help="only these digit words")
    add_config_option(evaluate)
    evaluate.add_argument("--json", action="store_true", help="print one JSON document")


def run_eval_enroll(args: argparse.Namespace) -> int:
    """``earshot eval enroll``: the FSDD per-speaker enrollment protocol."""
    import json

    from threadpoolctl import threadpool_limits

    from agent.cli.progress import StageProgress
    from agent.cli.wake import fsdd_text_models
    from agent.daemon.detectors import load_base
    from agent.paths import DEFAULT_FSDD
    from agent.settings import load_settings
    from models.enroll.evaluation import fsdd_enrollment
    from models.speech.dataset import DIGIT_WORDS
    from models.wake.evaluation import fsdd_stream
    from models.wake.recipe import WakeRecipe
    from models.wake.streams import StreamRecipe, build_stream

    directory = DEFAULT_FSDD if args.fsdd == Path() else args.fsdd
    if not directory.is_dir():
        raise ConfigError(f"--fsdd: {directory} is not a folder of FSDD recordings")
    digits = args.digits or list(DIGIT_WORDS)
    unknown = sorted(set(digits) - set(DIGIT_WORDS))
    if unknown:
        raise ConfigError(f"--digits: got {unknown}, expected digit words {list(DIGIT_WORDS)}")
    if args.takes < 3:
        raise ConfigError(f"--takes: got {args.takes}, expected at least 3")
    settings = load_settings(args.config)
    base = load_base(settings)
    with StageProgress(unit="step") as progress, threadpool_limits(os.cpu_count() or 1):
        text_models = fsdd_text_models(base, digits, progress)
        labelled = fsdd_stream(base, directory, keep_frames=True)
        synthetic = build_stream(  # not the cached one: the speaker check needs its frames
            base, StreamRecipe(WakeRecipe().calibration_stream_s), "evaluation",
            progress=progress, keep_frames=True,
        )  # fmt: skip
        results = fsdd_enrollment(
            base, directory, text_models, labelled, synthetic, takes=args.takes,
            speakers=args.speakers, digits=digits, progress=progress,
        )  # fmt: skip
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    head = ("text only", "enrolled", "+ speaker", "spk FRR", "spk FAR")
    print(f"{'speaker':<12}" + "".join(f"{h:>12}" for h in head))
    keys = ("text", "enrolled", "enrolled_speaker_check", "speaker_false_reject",
            "speaker_false_accept")  # fmt: skip
    for name, row in [*results["per_speaker"].items(), ("mean", results["mean"])]:
        print(f"{name:<12}" + "".join(f"{row[k]:>12.1%}" for k in keys))
    print("(miss rates at 1 false alarm per hour; speaker check: false rejects of the speaker's")
    print(" other takes, false accepts of other speakers' takes of the same digit)")
    return 0


# ---- enroll --------------------------------------------------------------------------------------


def run_enroll(args: argparse.Namespace) -> int:
    """``earshot enroll``: record or read takes, fine-tune, store, summarize."""
    from agent.cli.wake import trainable_phrases
    from agent.enroll.store import enrollment, list_enrollments, save_enrollment
    from agent.settings import enrollment_dir, load_settings

    root = enrollment_dir()
    if args.list:
        return _list(root, list_enrollments(root))
    if not args.name:
        raise ConfigError("enroll: name a configured wake word (or use --list)")
    settings = load_settings(args.config)
    phrases = trainable_phrases(settings)  # wake words and phrase commands alike
    wake = phrases[args.name] if args.name in phrases else settings.wake_word(args.name)
    base = _base(settings)
    text_model = _text_model(settings, wake, base)

    from models.enroll.takes import TakeChecker

    if args.again:
        stored = enrollment(root, wake.name)
        if stored is None:
            raise ConfigError(f"enroll --again: {wake.name!r} has no stored takes; enroll first")
        takes, room, rejected = stored.takes(), stored.room(), []
    else:
        checker = TakeChecker(base, text_model.phrase_duration_s)
        audio = _takes(args, wake.phrase, checker)
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


def _base(settings: Settings) -> BaseModel:
    from agent.daemon.detectors import load_base

    return load_base(settings)


def _text_model(settings: Settings, wake: WakeWordSettings, base: BaseModel) -> WakeWordModel:
    """The wake word's detector trained from text, trained first when missing or stale."""
    from agent.cli.wake import train_one
    from models.wake.model import WakeWordModel, model_path, stale_reason

    assert base.manifest is not None
    path = model_path(settings.models.resolved_directory(), wake.name)
    if stale_reason(path, wake.phrase, base.manifest.sha256) is not None:
        print(f"{wake.name}: first, its detector from text", file=sys.stderr)
        train_one(settings, wake, base, force=True)
    return WakeWordModel.load(path, base_sha256=base.manifest.sha256)


def _takes(args: argparse.Namespace, phrase: str, checker: Any) -> Any:
    from agent.enroll.capture import enrollment_from_files, record_enrollment

    if args.files:
        return enrollment_from_files(args.files, checker)
    if args.room_seconds < 1 or args.countdown < 0:
        raise ConfigError(
            f"--room-seconds {args.room_seconds:g} / --countdown {args.countdown:g}: expected "
            "at least 1 s of room and a countdown of 0 s or more"
        )
    return record_enrollment(
        phrase, checker, samples=args.samples, device=args.device,
        room_seconds=args.room_seconds, countdown_s=args.countdown,
    )  # fmt: skip


def _fine_tune(
    text_model: WakeWordModel,
    base: BaseModel,
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

    after = result.model
    t_before, _ = threshold_of(wake, before)
    t_after, source = threshold_of(wake, after)
    rate_before = _rate_at(before, wake, t_before)
    rate_after = _rate_at(after, wake, t_after)
    print(f"{wake.name}: enrolled {result.report['metrics']['takes']} takes in {seconds:.1f} s")
    print(f"  {'':30}{'text only':>22}{'enrolled':>22}")
    print(f"  {'threshold':30}{t_before:>22.4f}{t_after:>22.4f}")
    print(f"  {'expected false alarms per hour':30}{rate_before:>22.3g}{rate_after:>22.3g}")
    print(
        f"  {'held-out take score':30}{_detected(result.held_out_before, t_before):>22}"
        f"{_detected(result.held_out_after, t_after):>22}"
    )
    print(f"  (threshold: {source}; the held-out take was left out of a trial fine-tune)")
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
