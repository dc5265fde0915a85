"""The ``earshot`` command line.

User errors (bad config, missing device, unreadable file) print one line naming the problem and
exit with the error's code (2 config, 3 audio, 4 compute device, 5 model); nothing else prints a
traceback unless ``--debug`` is given. When standard output's reader goes away (``earshot audit
| head -1``) the command ends quietly with 141, as ``cat`` does; when standard output cannot be
written otherwise (a full disk) it ends with one line saying so and 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from agent import EXIT_INTERRUPTED
from agent.cli import base as model_commands
from agent.cli import control as control_commands
from agent.cli import data as data_command
from agent.cli import endpoint as endpoint_commands
from agent.cli import enroll as enroll_commands
from agent.cli import enroll_eval, fleet_eval, output
from agent.cli import feedback as feedback_command
from agent.cli import fleet as fleet_command
from agent.cli import model as import_commands
from agent.cli import record as record_command
from agent.cli import run as run_command
from agent.cli import wake as wake_commands
from agent.cli import wyoming as wyoming_command
from kernels.errors import EarshotError

if TYPE_CHECKING:
    pass

_LOGGER = logging.getLogger("earshot")


BENCH_PACKAGE = "agent.bench"
"""`earshot bench SUITE`: the package whose ``SUITES`` and ``run(suite, argv)`` it uses.

It is loaded by name: the CLI and the benchmarks do not import each other, and a suite's module is
imported only when the suite runs.
"""


def _bench() -> ModuleType:
    """The benchmarks' package: their registry, without any suite's module."""
    return importlib.import_module(BENCH_PACKAGE)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one sub-command per job."""
    parser = argparse.ArgumentParser(
        prog="earshot",
        description="Private wake-word and voice-command agent: audio stays on this machine "
        "until a wake word is heard.",
        epilog="examples:\n"
        "  earshot run                  listen to the default microphone\n"
        "  earshot run --demo           the bundled demo recording instead\n"
        "  earshot devices              pick a microphone for --device\n"
        "  earshot config check FILE    validate a configuration\n"
        "\nexit codes: 0 success, 2 invalid configuration or arguments, 3 audio problem,\n"
        "            4 compute-device problem, 5 model problem, 130 interrupted,\n"
        "            141 standard output closed by its reader",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="verbose logs and full tracebacks")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="listen and process audio (the agent's main job)")
    run.add_argument(
        "--config",
        type=Path,
        help="config file (default: ~/.config/earshot/earshot.yaml or the shipped one)",
    )
    run.add_argument("--seconds", type=float, help="stop after this many seconds of audio")
    run_command.add_source_options(run)

    commands.add_parser("devices", help="list audio input devices and their default rates")

    record_command.add_parser(commands)

    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_commands.add_parser("check", help="validate a config file and print the result")
    check.add_argument("file", type=Path)

    data_command.add_parser(commands)
    eval_what = model_commands.add_parsers(commands)
    wake_commands.add_parsers(commands, eval_what)
    enroll_commands.add_parsers(commands)
    endpoint_commands.add_parsers(commands)
    import_commands.add_parsers(commands)
    control_commands.add_parsers(commands)
    feedback_command.add_parser(commands)
    fleet_command.add_parser(commands)
    wyoming_command.add_parser(commands)
    enroll_eval.add_eval_parser(eval_what)
    fleet_eval.add_eval_parser(eval_what)

    bench = commands.add_parser("bench", help="benchmarks that print measured figures")
    bench.add_argument(
        "suite", nargs="?", default="all", choices=list(_bench().SUITES),
        help="all (the default): every suite below summed up in one table, the peers included; "
        "frontend: feature cost; engine: inference; embedding: the speech embedding per hop, "
        "streamed and whole; train: a training step, numpy vs wgpu; "
        "wake: ten wake words vs one, detection latency, training a wake word; "
        "daemon: the running agent's CPU, memory, start-up and wake-to-upload latency; "
        "peers: openWakeWord's and Porcupine's CPU; soak: hours of audio through the detector "
        "and the daemon (memory, files, threads, false alarms)",
    )  # fmt: skip
    bench.add_argument(
        "--json", action="store_true", help="print one JSON document instead of a table"
    )
    bench.add_argument(
        "options", nargs=argparse.REMAINDER, metavar="...",
        help="the suite's own options, e.g. `earshot bench daemon --realtime-seconds 60`; "
        "`earshot bench SUITE --help` lists them",
    )  # fmt: skip
    return parser


def cmd_devices(args: argparse.Namespace) -> int:
    """Print every audio input device; '*' marks the default."""
    from agent.capture.devices import list_input_devices

    devices = list_input_devices()
    if not devices:
        print("no audio input devices found (no microphone or sound server)")
        print("`earshot run --demo` runs on the bundled demo recording instead")
        return 0
    for d in devices:
        mark = "*" if d.is_default else " "
        channels, rate_hz = d.max_input_channels, d.default_samplerate_hz
        print(f"{mark} [{d.index}] {d.name} ({d.host_api}): {channels} ch, {rate_hz:.0f} Hz")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Validate a config file and print the settings it yields."""
    from agent.settings import load_settings

    settings = load_settings(args.file)
    print(f"{args.file}: valid")
    print(json.dumps(asdict(settings), indent=2))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Run a benchmark and print its figures."""
    return int(_bench().run(args.suite, [*(["--json"] if args.json else []), *args.options]))


COMMANDS = {
    "run": run_command.run,
    "devices": cmd_devices,
    "record": record_command.run,
    "config": cmd_config,
    "bench": cmd_bench,
    "data": data_command.run,
    "train": model_commands.run_train,
    "eval": model_commands.run_eval,
    "detect": wake_commands.run_detect,
    "enroll": enroll_commands.run_enroll,
    "forget": enroll_commands.run_forget,
    "receiver": endpoint_commands.run_receiver,
    "model": import_commands.run_model,
    "audit": endpoint_commands.run_audit,
    "status": control_commands.run_status,
    "events": control_commands.run_events,
    "service": control_commands.run_service,
    "feedback": feedback_command.run,
    "fleet": fleet_command.run,
    "wyoming": wyoming_command.run,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``earshot`` console command; returns the exit code.

    A standard output that cannot be written (its reader went away, as in ``earshot audit |
    head -1``, or its disk is full) ends the command as ``cat`` ends: see `agent.cli.output`.
    """
    output.install()
    try:
        try:
            code = _run(argv)
        except KeyboardInterrupt:  # before the command runs (it handles its own)
            code = EXIT_INTERRUPTED
        finally:
            sys.stdout.flush()  # a closed or full standard output fails here, not at exit
    except OSError as err:
        if not output.is_stdout_failure(err):
            raise
        return output.stdout_failed(err)
    return code


def _run(argv: list[str] | None) -> int:
    """Parse the arguments, set up logging and threads, and run the command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # An always-on agent multiplies small matrices: extra BLAS threads only spin and burn CPU.
    # threadpoolctl limits the BLAS libraries already loaded, so numpy is imported first.
    import numpy  # noqa: F401
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    """Run the command; a user error becomes one line on stderr and its exit code."""
    try:
        return COMMANDS[args.command](args)
    except EarshotError as err:
        if args.debug:
            _LOGGER.exception("failed")
        print(f"earshot: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
