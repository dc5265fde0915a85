"""``earshot feedback``: mark a false alarm or a miss for learning, list and clear what is kept.

``false-alarm`` and ``missed`` ask the running agent (over its control socket) to keep audio
from its memory; ``list`` and ``clear`` read the feedback folder directly, agent running or not
(`agent.learning.feedback`). With ``learning.enabled: false`` (the default) nothing is kept.
"""

from __future__ import annotations

import argparse
import time

from agent.cli.control import add_socket_options, socket_path
from agent.cli.wake import add_config_option
from kernels.errors import EarshotError

_EPILOG = (
    "exit codes: 0 done; 1 nothing kept (learning is off, nothing to mark) or the agent is not "
    "running; 2 invalid configuration"
)


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``feedback`` and its actions."""
    feedback = commands.add_parser(
        "feedback", help="mark a false alarm or a missed wake word, for learning on this device",
        description="Keep audio the running agent still holds in memory, so this device can "
        "learn from it (`learning:` in the config, off by default). Kept clips are owner-only "
        "and never forwarded.",
        epilog=_EPILOG,
    )  # fmt: skip
    actions = feedback.add_subparsers(dest="feedback_command", metavar="ACTION", required=True)
    false_alarm = actions.add_parser(
        "false-alarm", help="the last wake was not meant: keep the audio around it",
        epilog=_EPILOG,
    )  # fmt: skip
    add_socket_options(false_alarm)
    missed = actions.add_parser(
        "missed", help="a wake word was just said and not heard: keep the last seconds",
        epilog=_EPILOG,
    )  # fmt: skip
    add_socket_options(missed)
    missed.add_argument("--wake-word", metavar="NAME", help="which (needed when several)")
    listing = actions.add_parser("list", help="the clips kept, oldest first")
    add_config_option(listing)
    clear = actions.add_parser("clear", help="delete the clips kept")
    add_config_option(clear)
    clear.add_argument("--wake-word", metavar="NAME", help="only this wake word's clips")


def run(args: argparse.Namespace) -> int:
    """Dispatch ``earshot feedback ACTION``."""
    if args.feedback_command in ("false-alarm", "missed"):
        return _mark(args)
    from agent.learning.feedback import FeedbackStore
    from agent.settings import load_settings

    settings = load_settings(args.config)
    store = FeedbackStore(settings.learning)
    if args.feedback_command == "clear":
        count = store.clear(args.wake_word)
        print(f"deleted {count} clip(s) from {store.directory}")
        return 0
    clips = store.clips()
    state = "on" if settings.learning.enabled else "off (learning.enabled: false)"
    print(f"learning is {state}; {len(clips)} clip(s) in {store.directory}")
    for clip in clips:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(clip.kept_at))
        score = "" if clip.score is None else f"  score {clip.score:.3f}"
        print(f"{when}  {clip.kind:<11}  {clip.wake_word:<16}  {clip.seconds:4.1f} s{score}  "
              f"{clip.audio_path.name}")  # fmt: skip
    return 0


def _mark(args: argparse.Namespace) -> int:
    from agent.control.server import request

    fields: dict[str, object] = {"kind": args.feedback_command}
    if getattr(args, "wake_word", None):
        fields["wake_word"] = args.wake_word
    reply = request(socket_path(args), "feedback", fields=fields)
    if reply.get("ok") is not True:
        raise EarshotError(str(reply.get("error", reply)))
    print(f"kept {reply['seconds']:.1f} s as a {reply['kind']} of {reply['wake_word']}: "
          f"{reply['kept']}")  # fmt: skip
    return 0
