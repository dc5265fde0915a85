"""``earshot wyoming``: serve the configured wake words to Home Assistant over Wyoming.

The command checks ``--uri``, loads the config and its models once (a problem with either ends it
here, with the usual message and exit code), then listens (`agent.wyoming_service`) until SIGTERM
(exit 0) or SIGINT (exit 130, as Ctrl-C ends every command).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from agent import EXIT_INTERRUPTED
from agent.cli.run import config_path
from agent.settings import load_settings
from agent.wyoming_service import DEFAULT_URI
from kernels.errors import ConfigError

if TYPE_CHECKING:
    from wyoming.server import AsyncServer

    from agent.wyoming_service.service import WakeService


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The ``wyoming`` sub-command and its options."""
    parser = commands.add_parser(
        "wyoming", help="serve the wake words to Home Assistant (Wyoming protocol)",
        description="Run a Wyoming wake-word service for Home Assistant's Wyoming integration\n"
        "(Settings > Devices & services > Add integration > Wyoming Protocol, with this\n"
        "machine's address and the port) or any other Wyoming client.\n\n"
        "The wake words are the config's (`wake_words`), detected on this machine. The service\n"
        "only receives audio and answers with detection events: audio never leaves it, and no\n"
        "endpoint is contacted.",
        epilog="examples:\n"
        "  earshot wyoming                             loopback only, port 10400\n"
        "  earshot wyoming --uri tcp://0.0.0.0:10400   reachable from Home Assistant on the LAN\n"
        "  earshot wyoming --uri unix:///run/user/1000/earshot-wyoming.sock",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument(
        "--uri", default=DEFAULT_URI,
        help=f"where to listen: tcp://HOST:PORT or unix://PATH (default {DEFAULT_URI}; "
        "tcp://0.0.0.0:10400 to accept connections from other machines)",
    )  # fmt: skip
    parser.add_argument(
        "--config",
        type=Path,
        help="config file (default: ~/.config/earshot/earshot.yaml or the shipped one)",
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM (0) or SIGINT (130).

    Raises
    ------
    ConfigError
        A bad ``--uri``, config, or an address the service cannot listen on.
    ModelError
        A wake word's model is missing or stale.
    """
    from agent.daemon.detectors import load_models
    from agent.wyoming_service.address import server_for_uri
    from agent.wyoming_service.service import WakeService

    server = server_for_uri(args.uri)  # a bad --uri stops here, before anything loads
    settings = load_settings(config_path(args))
    logging.getLogger().setLevel(logging.DEBUG if args.debug else settings.logging.level.upper())
    if not settings.wake_words:
        raise ConfigError(
            "wake_words: the config lists none; `earshot wyoming` serves the configured wake "
            "words, so it needs at least one"
        )
    models = load_models(settings)  # a model problem stops here, before listening
    service = WakeService(
        models.detector.base, models.detector.wake_words, backend=settings.detection.backend
    )
    try:
        signum = asyncio.run(_serve_until_signal(service, server, args.uri))
    finally:
        service.close()
    return EXIT_INTERRUPTED if signum == signal.SIGINT else 0


async def _serve_until_signal(
    service: WakeService, server: AsyncServer, uri: str
) -> signal.Signals | None:
    """Serve until SIGTERM or SIGINT; the signal that ended it."""
    from agent.wyoming_service.service import serve

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[signal.Signals] = []

    def on_signal(signum: signal.Signals) -> None:
        received.append(signum)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await serve(service, server, uri, stop)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return received[0] if received else None
