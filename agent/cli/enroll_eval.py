"""``earshot eval enroll`` and ``earshot eval takes``: enrollment on real and synthetic voices.

``eval enroll``: every FSDD speaker enrolls every digit's wake word (trained from text) with
their first takes; the miss rate at 1 false alarm per hour on their other takes is measured
text-only, enrolled, and enrolled with the speaker check (`models.enroll.evaluation`).

``eval takes``: how alike one speaker's takes of a phrase are next to other phrases, on
synthetic speakers (where `models.enroll.takes.MIN_SIMILARITY` comes from) and, with ``--fsdd``,
on real ones (`models.enroll.take_similarity`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from kernels.errors import ConfigError


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

    takes = eval_what.add_parser(
        "takes", help="how alike a speaker's takes of a phrase are (the take check's threshold)",
        description="Measure, on the configured base, the similarity of takes of one phrase by "
        "one speaker against takes of other phrases, on synthetic speakers (each voice in its "
        "own room), and print the threshold that refuses 2%% of good third takes: the value "
        "models.enroll.takes.MIN_SIMILARITY holds for the base. With --fsdd, also on FSDD's "
        "real speakers at that threshold (evaluation only).",
    )  # fmt: skip
    takes.add_argument(
        "--fsdd", type=Path, nargs="?", const=Path(), metavar="DIR",
        help="also measure FSDD's speakers (default folder ../shared/data/fsdd/recordings)",
    )  # fmt: skip
    takes.add_argument("--speakers", type=int, default=12, help="synthetic speakers (default 12)")
    add_config_option(takes)
    takes.add_argument("--json", action="store_true", help="print one JSON document")


def run_eval_takes(args: argparse.Namespace) -> int:
    """``earshot eval takes``: the take check's similarity figures on synthetic and real voices."""
    import json

    from agent.cli.progress import StageProgress
    from agent.daemon.detectors import load_base
    from agent.paths import DEFAULT_FSDD
    from agent.settings import load_settings
    from models.enroll.take_similarity import fsdd_take_similarities, take_similarities
    from models.enroll.takes import base_min_similarity

    directory = None
    if args.fsdd is not None:
        directory = DEFAULT_FSDD if args.fsdd == Path() else args.fsdd
        if not directory.is_dir():
            raise ConfigError(f"--fsdd: {directory} is not a folder of FSDD recordings")
    if args.speakers < 2:
        raise ConfigError(f"--speakers: got {args.speakers}, expected at least 2")
    base = load_base(load_settings(args.config))
    in_use = base_min_similarity(base)
    with StageProgress(unit="speaker") as progress:
        synthetic = take_similarities(base, speakers=args.speakers, progress=progress)
        rows = {"synthetic": synthetic.summary()}
        if directory is not None:
            real = fsdd_take_similarities(base, directory, progress=progress)
            rows["fsdd"] = real.summary(in_use)
    result = {"base": base.name, "min_similarity_in_use": in_use, **rows}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"base {base.name}: take check threshold in use {in_use:.2f}")
    print(f"{'speakers':<12}{'threshold':>10}{'same med':>10}{'other med':>10}"
          f"{'3rd refused':>12}{'pairs refused':>14}{'other accepted':>15}")  # fmt: skip
    for name, row in rows.items():
        print(f"{name:<12}{row['threshold']:>10.2f}{row['same_median']:>10.2f}"
              f"{row['different_median']:>10.2f}{row['third_take_refused']:>12.1%}"
              f"{row['same_refused']:>14.1%}{row['different_accepted']:>15.1%}")  # fmt: skip
    print("(synthetic: the threshold that refuses 2% of good third takes; fsdd: at the threshold")
    print(" in use. Pairs are takes by one speaker: same phrase refused, other phrase accepted)")
    return 0


def run_eval_enroll(args: argparse.Namespace) -> int:
    """``earshot eval enroll``: the FSDD per-speaker enrollment protocol."""
    import json

    from threadpoolctl import threadpool_limits

    from agent.cli.progress import StageProgress
    from agent.cli.wake_eval import fsdd_text_models
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
