"""``earshot eval fleet``: fleet learning on real voices, FSDD leave one speaker out.

FSDD's speakers are devices that enrolled the digits' wake words; for each test speaker the
others federate the heads over real Flower processes, with and without differential privacy, and
the test speaker's miss rate at 1 false alarm per hour is measured for text-only, each device
alone, federated, central and DP heads (`agent.fleet.evaluation`).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from kernels.errors import ConfigError

COLUMNS = ("text", "alone", "federated", "central")


def add_eval_parser(eval_what: argparse._SubParsersAction) -> None:
    """Register ``eval fleet``."""
    from agent.cli.wake import add_config_option

    evaluate = eval_what.add_parser(
        "fleet", help="what fleet learning buys on real voices (FSDD, leave one speaker out)",
        description="Leave one speaker out: FSDD's speakers as devices, each enrolled in "
        "every digit with its first takes. For each test speaker the others federate the "
        "digits' heads through a real Flower SuperLink and SuperNodes on loopback (without and "
        "with differential privacy); the test speaker, never trained on, gives each detector's "
        "miss rate at 1 false alarm per hour: text-only, each device alone (mean), federated, "
        "central (all takes pooled), and federated with DP at each epsilon. Needs the fleet "
        "extra. Results are kept per test speaker in the work folder, so a stopped run resumes.",
        epilog="exit codes: 0 done; 2 invalid arguments or no FSDD folder",
    )  # fmt: skip
    evaluate.add_argument(
        "--fsdd", type=Path, default=Path(), metavar="DIR",
        help="FSDD recordings folder (default ../shared/data/fsdd/recordings)",
    )  # fmt: skip
    evaluate.add_argument("--takes", type=int, default=5, help="takes per digit (default 5)")
    evaluate.add_argument("--rounds", type=int, default=2, help="fleet rounds (default 2)")
    evaluate.add_argument(
        "--epsilons", type=float, nargs="*", default=[1.0, 10.0], metavar="EPS",
        help="DP runs at these epsilons (delta 1e-5; default 1 10; none: no DP runs)",
    )  # fmt: skip
    evaluate.add_argument("--speakers", nargs="+", metavar="NAME", help="only these test speakers")
    evaluate.add_argument("--digits", nargs="+", metavar="WORD", help="only these digit words")
    evaluate.add_argument(
        "--work", type=Path, metavar="DIR",
        help="work folder (devices, runs, results; default a folder in the cache per digits)",
    )  # fmt: skip
    add_config_option(evaluate)
    evaluate.add_argument("--json", action="store_true", help="print one JSON document")


def run_eval_fleet(args: argparse.Namespace) -> int:
    """``earshot eval fleet``: the FSDD leave-one-speaker-out fleet protocol."""
    from threadpoolctl import threadpool_limits

    from agent.cli.wake_eval import fsdd_text_models, fsdd_text_models_dir
    from agent.daemon.detectors import load_base
    from agent.fleet.flower import require_flower
    from agent.paths import DEFAULT_FSDD
    from agent.settings import load_settings
    from models.base.evaluation import fsdd_recordings
    from models.speech.cache import cache_dir
    from models.speech.dataset import DIGIT_WORDS
    from models.wake.evaluation import fsdd_stream
    from models.wake.recipe import WakeRecipe
    from models.wake.streams import StreamRecipe, load_or_build_stream

    require_flower()
    directory = DEFAULT_FSDD if args.fsdd == Path() else args.fsdd
    if not directory.is_dir():
        raise ConfigError(f"--fsdd: {directory} is not a folder of FSDD recordings")
    digits = args.digits or list(DIGIT_WORDS)
    unknown = sorted(set(digits) - set(DIGIT_WORDS))
    if unknown:
        raise ConfigError(f"--digits: got {unknown}, expected digit words {list(DIGIT_WORDS)}")
    speakers = sorted({r.speaker for r in fsdd_recordings(directory)})
    strangers = sorted(set(args.speakers or ()) - set(speakers))
    if strangers:
        raise ConfigError(f"--speakers: got {strangers}, expected FSDD speakers {speakers}")
    for name, value, least in (("--takes", args.takes, 1), ("--rounds", args.rounds, 1)):
        if value < least:
            raise ConfigError(f"{name}: got {value}, expected at least {least}")
    if any(eps <= 0 for eps in args.epsilons):
        raise ConfigError(f"--epsilons: got {args.epsilons}, expected numbers above 0")
    from agent.cli.progress import StageProgress
    from agent.fleet.evaluation import fsdd_fleet

    base = load_base(load_settings(args.config))
    key = f"{base.name}-{'-'.join(digits)}-t{args.takes}-r{args.rounds}"
    work = args.work or cache_dir("fleet-eval") / key
    say = (lambda text: None) if args.json else (lambda text: print(text, flush=True))
    with StageProgress(unit="step") as progress, threadpool_limits(os.cpu_count() or 1):
        text_models = fsdd_text_models(base, digits, progress)
        labelled = fsdd_stream(base, directory)
        synthetic = load_or_build_stream(
            base, StreamRecipe(WakeRecipe().calibration_stream_s), "evaluation",
            progress=progress,
        )  # fmt: skip
        results = fsdd_fleet(
            base, directory, work, text_models, fsdd_text_models_dir(base), labelled, synthetic,
            test_speakers=args.speakers, takes=args.takes, rounds=args.rounds,
            epsilons=args.epsilons, say=say,
        )  # fmt: skip
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    columns = [*COLUMNS, *(f"dp_eps_{eps:g}" for eps in args.epsilons)]
    print(f"{'test speaker':<14}{'digit':<8}" + "".join(f"{c:>12}" for c in columns))
    for row in results["rows"]:
        print(f"{row['test_speaker']:<14}{row['digit']:<8}"
              + "".join(f"{row[c]:>12.1%}" for c in columns))  # fmt: skip
    print(f"{'mean':<22}" + "".join(f"{results['mean'][c]:>12.1%}" for c in columns))
    mean = results["mean"]
    print(f"(miss rates at 1 false alarm per hour on the unseen speaker; {results['rounds']} "
          f"round(s) of {results['devices_per_run']} devices, {results['takes']} takes each)")
    print(f"federated / text-only {mean['federated'] / max(mean['text'], 1e-9):.2f} (target "
          f"<= 0.5); federated / central {mean['federated'] / max(mean['central'], 1e-9):.2f} "
          "(target <= 1.2)")  # fmt: skip
    return 0
