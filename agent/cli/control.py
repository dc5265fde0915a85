"""``earshot status``, ``earshot events`` and ``earshot service install|uninstall``.

``status`` and ``events`` talk to a running agent over its control socket (`agent.control.server`);
``service`` writes the systemd user unit (`agent.control.service`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from agent.cli.wake import add_config_option
from agent.control import service
from kernels.errors import EarshotError

_NOT_RUNNING_HELP = (
    "exit codes: 0 success; 1 earshot is not running (nothing listens on the control socket) "
    "or the agent went away; 2 invalid configuration"
)


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Register ``status``, ``events`` and ``service``."""
    status = commands.add_parser(
        "status", help="ask the running agent how it is doing",
        description="Print the running agent's state, uptime, detections per wake word, "
        "uploads, input level, CPU and memory use, read from its control socket.",
        epilog=_NOT_RUNNING_HELP,
    )  # fmt: skip
    add_socket_options(status)
    status.add_argument("--json", action="store_true", help="print the agent's raw JSON reply")

    events = commands.add_parser(
        "events", help="print the running agent's events as JSON lines, until Ctrl-C",
        description="Subscribe to the running agent's events (wake, command, upload, ...) and "
        "print each as one JSON line as it happens.",
        epilog=_NOT_RUNNING_HELP,
    )  # fmt: skip
    add_socket_options(events)

    unit = commands.add_parser("service", help="install earshot as a systemd user service")
    actions = unit.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    install = actions.add_parser(
        "install", help="write ~/.config/systemd/user/earshot.service",
        description="Write the systemd user unit, with ExecStart pointing at this earshot "
        "(and --config FILE, when given), then print how to start it.",
    )  # fmt: skip
    add_config_option(install)
    install.add_argument(
        "--now", action="store_true", help="also run systemctl to enable and start the service"
    )
    install.add_argument(
        "--print", action="store_true", help="print the unit instead of writing it"
    )
    install.add_argument(
        "--force", action="store_true", help="replace an installed unit that differs"
    )
    uninstall = actions.add_parser("uninstall", help="remove the systemd user unit")
    uninstall.add_argument("--now", action="store_true", help="stop and disable the service first")


def add_socket_options(parser: argparse.ArgumentParser) -> None:
    """``--config`` and ``--socket``: where a command finds the running agent."""
    add_config_option(parser)
    parser.add_argument(
        "--socket", type=Path, metavar="PATH",
        help="control socket (default: the config's events.socket, else "
        "$XDG_RUNTIME_DIR/earshot/control.sock)",
    )  # fmt: skip


def socket_path(args: argparse.Namespace) -> Path:
    """The control socket ``--socket`` names, else the config's."""
    if args.socket is not None:
        return Path(args.socket)
    from agent.settings import load_settings

    return load_settings(args.config).events.resolved_socket()


def run_status(args: argparse.Namespace) -> int:
    """Print the running agent's status; exit 1 (with a message) when it is not running."""
    from agent.control.server import request

    reply = request(socket_path(args), "status")
    if args.json:
        print(json.dumps(reply, indent=2))
        return 0
    if reply.get("ok") is not True:
        raise EarshotError(f"the agent could not report its status: {reply.get('error', reply)}")
    rows = format_status(reply)
    width = max(len(label) for label, _ in rows) + len(": ") if rows else 0
    for label, text in rows:
        print(f"{label + ':':<{width}}{text}")
    return 0


def _number(unit: str, digits: int = 1) -> Callable[[object], str]:
    def show(value: object) -> str:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return f"{value:.{digits}f}{unit}"
        return str(value)

    return show


def _yes_no(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _duration(value: object) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return str(value)
    minutes, seconds = divmod(int(value), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    text = f"{hours:d}:{minutes:02d}:{seconds:02d}"
    return f"{days}d {text}" if days else text


def _listing(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key} {count}" for key, count in value.items()) or "none"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "none"
    return str(value)


STATUS_FIELDS: dict[str, tuple[str, Callable[[object], str]]] = {
    "state": ("state", str),
    "uptime_s": ("uptime", _duration),
    "source": ("source", str),
    "microphone_lost": ("microphone lost", _yes_no),
    "wake_words": ("wake words", _listing),
    "detectors": ("detectors (sha256)", _listing),
    "commands": ("commands", _listing),
    "level_dbfs": ("input level", _number(" dBFS")),
    "cpu_percent": ("CPU", _number(" %")),
    "rss_mb": ("memory (RSS)", _number(" MB")),
    "audio_s": ("audio heard", _duration),
    "dropped_blocks": ("dropped blocks", str),
    "uploads_in_flight": ("uploads now", str),
    "endpoint": ("endpoint", str),
}
"""Status keys shown first, in this order, with their label and format."""
COUNT_GROUPS = {"wake": "detections", "command": "commands run", "upload": "uploads"}
"""``counts`` keys are ``GROUP:NAME`` (``wake:computer``, ``upload:ok``): one row per group."""


def format_status(reply: dict[str, object]) -> list[tuple[str, str]]:
    """(label, text) rows for a status reply: known keys first, then any others as they come."""
    rows = [
        (label, show(reply[key])) for key, (label, show) in STATUS_FIELDS.items() if key in reply
    ]
    counts = reply.get("counts")
    if isinstance(counts, dict):
        rows += _count_rows(counts)
    for key, value in reply.items():
        if key not in STATUS_FIELDS and key not in ("ok", "counts"):
            text = value if isinstance(value, str) else json.dumps(value)
            rows.append((key.replace("_", " "), text))
    return rows


def _count_rows(counts: dict[str, object]) -> list[tuple[str, str]]:
    """``{"wake:computer": 3, "upload:ok": 1}`` as rows ``detections: computer 3``, ..."""
    groups: dict[str, dict[str, object]] = {label: {} for label in COUNT_GROUPS.values()}
    for key, count in counts.items():
        group, _, name = key.partition(":")
        label = COUNT_GROUPS.get(group, group) if name else "counts"
        groups.setdefault(label, {})[name or key] = count
    return [(label, _listing(found)) for label, found in groups.items()]


def run_events(args: argparse.Namespace) -> int:
    """Print event lines until Ctrl-C (exit 0) or until the agent goes away (exit 1).

    A reader that goes away (``earshot events | head``) ends it as `agent.cli.main.main` ends
    every command whose standard output closes.
    """
    from agent.control.server import subscribe

    path = socket_path(args)
    try:
        for line in subscribe(path):
            print(line, flush=True)
    except KeyboardInterrupt:
        return 0
    print(f"earshot: the agent closed the control socket {path}", file=sys.stderr)
    return 1


def run_service(args: argparse.Namespace) -> int:
    """``earshot service install`` and ``earshot service uninstall``."""
    if args.service_command == "install":
        return _install(args)
    return _uninstall(args)


def _install(args: argparse.Namespace) -> int:
    config = args.config
    if config is not None:
        from agent.settings import load_settings

        load_settings(config)  # a unit that would fail at start is not worth installing
    text = service.render_unit(service.read_template(), config)
    if args.print:
        print(text, end="")
        return 0
    result = service.install_unit(text, force=args.force)
    print(f"{'wrote' if result.changed else 'already installed, unchanged:'} {result.path}")
    if args.now:
        return _systemctl(service.ENABLE_COMMANDS, "to start it")
    _print_commands("next, to start it now and at every login", service.ENABLE_COMMANDS)
    print("then `earshot status` shows how it is doing; `journalctl --user -u earshot -f` its logs")
    return 0


def _uninstall(args: argparse.Namespace) -> int:
    if args.now:
        failure = service.run_systemctl(service.DISABLE_COMMANDS)
        if failure is not None:
            print(f"earshot: {failure}", file=sys.stderr)
            _print_commands("stop it by hand, then run this again", service.DISABLE_COMMANDS)
            return 1
    removed = service.remove_unit()
    if removed is None:
        print(f"no unit installed at {service.unit_path()}")
        return 0
    print(f"removed {removed}")
    if args.now:
        return _systemctl(service.RELOAD_COMMANDS, "to finish")
    _print_commands("if it is running, stop it and let systemd forget it", service.STOP_COMMANDS)
    return 0


def _systemctl(commands: tuple[tuple[str, ...], ...], purpose: str) -> int:
    failure = service.run_systemctl(commands)
    if failure is None:
        print("done: " + "; ".join(" ".join(command) for command in commands))
        return 0
    print(f"earshot: {failure}", file=sys.stderr)
    _print_commands(f"run these yourself {purpose}", commands)
    return 1


def _print_commands(heading: str, commands: tuple[tuple[str, ...], ...]) -> None:
    print(f"{heading}:")
    for command in commands:
        print("  " + " ".join(command))
