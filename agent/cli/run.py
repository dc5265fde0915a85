"""``earshot run``: load the config and models, pick the audio source, and start the daemon.

On a terminal the daemon is drawn live (`agent.cli.live_view`); otherwise, or with ``--json``,
its events are printed as JSON lines. Without a microphone (and none named) the demo plays.

``--demo`` plays the bundled demo recording (other speech, the default wake word, a command,
more speech) through the same pipeline and, unless an endpoint is configured, forwards the
command to an `agent.egress.receiver.Receiver` started on loopback, whose folder it names at the
end.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from agent.control.claim import prepare_folder
from agent.paths import DEMO_AUDIO
from agent.settings import (
    Settings,
    data_dir,
    default_config_path,
    load_settings,
    user_config_path,
)  # fmt: skip
from kernels.errors import AudioError, ConfigError

if TYPE_CHECKING:
    import numpy as np

    from agent.capture.sources import AudioSource
    from agent.capture.stage import OpenLive
    from agent.egress.receiver import Receiver

_LOGGER = logging.getLogger(__name__)


def demo_received_dir() -> Path:
    """Where the demo's receiver saves what it gets: ``$XDG_DATA_HOME/earshot/demo``."""
    return data_dir() / "demo"


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--file``, ``--stdin``, ``--demo``, ``--fast``, ``--no-demo``, ``--json``."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--device", help="microphone: name substring or index (see `earshot devices`)"
    )
    group.add_argument("--file", type=Path, help="read audio from a file instead of the microphone")
    group.add_argument(
        "--stdin", action="store_true", help="read raw 16 kHz 16-bit mono PCM from stdin"
    )
    group.add_argument(
        "--demo", action="store_true",
        help="the bundled demo recording, forwarded to a local receiver unless an endpoint is set",
    )  # fmt: skip
    parser.add_argument(
        "--fast",
        action="store_true",
        help="with --file or --demo: read as fast as possible, not in real time",
    )
    parser.add_argument(
        "--no-demo", action="store_true",
        help="without a microphone, fail (exit 3) instead of playing the demo recording: for a "
        "service manager that should retry until the sound server is up",
    )  # fmt: skip
    parser.add_argument(
        "--json", action="store_true",
        help="print events as JSON lines even on a terminal (the default when the output is not "
        "a terminal; on one, a live view shows level, state, scores and events)",
    )  # fmt: skip


def check_seconds(seconds: float | None) -> None:
    """Refuse a ``--seconds`` that is not a positive, finite number (None: no limit).

    Raises
    ------
    ConfigError
        Zero, negative, NaN or infinite (exit 2).
    """
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(
            f"--seconds: got {seconds:g}, expected a positive, finite number of seconds of "
            "audio (leave it out for no limit)"
        )


def config_path(args: argparse.Namespace) -> Path:
    """The config file ``run`` reads (and SIGHUP rereads)."""
    if args.config is not None:
        return Path(args.config)
    return user_config_path() if user_config_path().is_file() else default_config_path()


def run(args: argparse.Namespace) -> int:
    """Start the daemon on the chosen source until it is stopped (or the recording ends)."""
    from agent.control.events import EventBus
    from agent.daemon.detectors import load_models
    from agent.daemon.loop import Daemon

    check_seconds(args.seconds)
    # A reload asked for while the models load must not kill the agent (SIGHUP's default);
    # the daemon installs its own handler once it runs.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    path = config_path(args)
    settings = load_settings(path)
    logging.getLogger().setLevel(logging.DEBUG if args.debug else settings.logging.level.upper())
    prepare_folder(settings.events.resolved_socket().parent)  # an unusable one stops us here
    if args.demo is False and _no_microphone(args, settings):
        args.demo = True
    models = load_models(settings)  # a model problem stops here, before anything starts
    recording, open_live = _source(args, settings)
    receiver = None
    if args.demo and settings.endpoint.url is None:
        receiver = _start_demo_receiver()
        endpoint = replace(settings.endpoint, kind="http", url=f"{receiver.url}/audio")
        models.settings = replace(settings, endpoint=endpoint)
    live = not args.json and sys.stdout.isatty()
    daemon = Daemon(
        models, config_path=path, open_live=open_live, recording=recording,
        max_audio_s=args.seconds, bus=EventBus(models.settings.events, quiet=live),
    )  # fmt: skip
    try:
        if live:
            from agent.cli.live_view import LiveView

            code = asyncio.run(LiveView(daemon).run(daemon.run()))
        else:
            code = asyncio.run(daemon.run())
        if daemon.interrupted:  # SIGINT ends `run` as Ctrl-C ends any command: exit 130
            raise KeyboardInterrupt
        return code
    finally:
        if receiver is not None:
            receiver.stop()
            count = len(receiver.uploads)
            print(
                f"earshot: the demo's receiver got {count} upload(s), saved in "
                f"{demo_received_dir()}",
                file=sys.stderr,
            )


def _no_microphone(args: argparse.Namespace, settings: Settings) -> bool:
    """True when no microphone exists and none was named: the demo recording plays instead.

    A device named by ``--device`` or ``audio.device`` that is missing, or ``--no-demo`` (a
    service that should fail and be restarted until the sound server is up), is an error.
    """
    if args.file is not None or args.stdin:
        return False
    from agent.capture.devices import NoInputDeviceError, find_input_device

    named = args.device or settings.audio.device
    try:
        find_input_device(named)
        return False
    except NoInputDeviceError as err:
        if named is not None or args.no_demo:
            hint = "" if args.no_demo else "; `earshot run --demo` plays the bundled recording"
            raise AudioError(f"{err}{hint}") from err
        print(
            "earshot: no microphone found: playing the bundled demo recording instead "
            "(`earshot run --demo`; `earshot devices` lists inputs)",
            file=sys.stderr, flush=True,
        )  # fmt: skip
        return True


def _start_demo_receiver() -> Receiver:
    from agent.egress.receiver import Receiver

    receiver = Receiver(demo_received_dir())
    receiver.start()
    _LOGGER.info("demo: forwarding commands to a local receiver at %s", receiver.url)
    return receiver


def _source(
    args: argparse.Namespace, settings: Settings
) -> tuple[AudioSource, None] | tuple[None, OpenLive]:
    """(recording, None) for a file, stdin or the demo; (None, open_live) for a microphone."""
    from agent.capture.devices import rescan_devices
    from agent.capture.sources import FileSource, MicrophoneSource, StdinSource

    block_ms, queue_blocks = settings.audio.block_ms, settings.audio.queue_blocks
    if args.demo or args.file is not None:
        path = DEMO_AUDIO if args.demo else args.file
        return FileSource(path, realtime=not args.fast, block_ms=block_ms), None
    if args.stdin:
        return StdinSource(block_ms=block_ms), None
    device = args.device or settings.audio.device
    opened = 0

    def open_live(on_block: Callable[[np.ndarray], None]) -> MicrophoneSource:
        nonlocal opened
        if opened:
            rescan_devices()  # the device list changes when a device or sound server comes back
        opened += 1
        return MicrophoneSource(
            device, block_ms=block_ms, queue_blocks=queue_blocks, on_block=on_block
        )

    return None, open_live
