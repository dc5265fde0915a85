"""``earshot receiver`` (a reference endpoint) and ``earshot audit`` (what has been sent).

The receiver speaks HTTP, for the ``http`` and ``openai-transcription`` kinds; a ``wyoming``
endpoint is a Wyoming speech-to-text server, which it does not stand in for. The audit table shows
each upload's transcript (cut to fit), ``--json`` every field.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import sys
import threading
from pathlib import Path
from typing import Any

from agent.cli.wake import add_config_option
from kernels.errors import ConfigError

DEFAULT_RECEIVER_PORT = 8765
TABLE_COLUMNS = (
    ("time", 19), ("wake word", 12), ("score", 5), ("seconds", 7), ("bytes", 8),
    ("result", 7), ("transcript", 24), ("endpoint", 0),
)  # fmt: skip
"""Column names and widths; the endpoint, last, is never cut (width 0)."""


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Add the ``receiver`` and ``audit`` sub-commands."""
    receiver = commands.add_parser(
        "receiver",
        help="run a local endpoint that saves what earshot uploads (for trying forwarding out)",
        description="Serve an endpoint that accepts earshot's HTTP uploads (kinds http and "
        "openai-transcription) and saves each as NNNN.wav and NNNN.json. Point endpoint.url at "
        "the URL it prints. (Kind wyoming needs a Wyoming speech-to-text server instead.)",
    )
    receiver.add_argument("--host", default="127.0.0.1", help="address to listen on")
    receiver.add_argument(
        "--port", type=int, default=DEFAULT_RECEIVER_PORT,
        help=f"port (default {DEFAULT_RECEIVER_PORT}; 0 picks a free one)",
    )  # fmt: skip
    receiver.add_argument(
        "--out", type=Path, default=Path("received"), help="folder for uploads (./received)"
    )
    receiver.add_argument("--token-env", help="require the bearer token in this variable")
    receiver.add_argument("--transcript", help="text of the replies to transcription requests")
    receiver.add_argument("--tls-cert", type=Path, help="PEM certificate chain: serve https")
    receiver.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")

    audit = commands.add_parser("audit", help="show the log of uploads (what left this machine)")
    add_config_option(audit)
    audit.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    audit.add_argument("--last", type=int, metavar="N", help="only the last N uploads")


def _server_tls(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None:
        raise ConfigError("--tls-key: given without --tls-cert; pass both or neither")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(
            f"--tls-cert {cert}: cannot load the certificate and key: {err}"
        ) from None
    return context


def run_receiver(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM; returns 0."""
    from agent.egress.receiver import Receiver

    token = None
    if args.token_env is not None:
        token = os.environ.get(args.token_env, "").strip()
        if not token:
            raise ConfigError(f"--token-env: environment variable {args.token_env} is not set")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port: got {args.port}, expected an integer in [0, 65535]")
    receiver = Receiver(
        args.out, host=args.host, port=args.port, token=token,
        ssl_context=_server_tls(args.tls_cert, args.tls_key), transcript=args.transcript,
    )  # fmt: skip
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        receiver.start()
    except OSError as err:
        raise ConfigError(
            f"--host/--port: cannot listen on {args.host}:{args.port}: {err}"
        ) from None
    try:
        print(f"receiving on {receiver.url} (saving to {args.out})", flush=True)
        print(f"set endpoint.url: {receiver.url}/upload", flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
        signal.signal(signal.SIGTERM, previous)
    print(f"stopped; {len(receiver.uploads)} upload(s) received", flush=True)
    return 0


def _cell(value: Any, width: int) -> str:
    text = "-" if value is None else str(value)
    if width == 0 or len(text) <= width:
        return text.ljust(width)
    return text[: width - 1] + "~"


def _row(entry: dict[str, Any]) -> list[Any]:
    when = str(entry.get("time", ""))[:19].replace("T", " ")
    score = entry.get("score")
    score_text = f"{score:.2f}" if isinstance(score, int | float) else score
    seconds = entry.get("seconds")
    seconds_text = f"{seconds:.2f}" if isinstance(seconds, int | float) else seconds
    transcript = entry.get("transcript")  # absent from the lines of older logs
    transcript_text = json.dumps(transcript, ensure_ascii=False) if transcript is not None else None
    return [
        when, entry.get("wake_word"), score_text, seconds_text, entry.get("bytes"),
        entry.get("result"), transcript_text, entry.get("endpoint"),
    ]  # fmt: skip


def run_audit(args: argparse.Namespace) -> int:
    """Print the audit log, one upload a row (or JSON line); returns 0."""
    from agent.egress.audit import SENDING, AuditLog
    from agent.settings import load_settings

    if args.last is not None and args.last < 1:
        raise ConfigError(f"--last: got {args.last}, expected a positive integer")
    path = load_settings(args.config).privacy.resolved_audit_log()
    try:
        entries = AuditLog.read(path)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the audit log: {err}") from None
    if not entries:
        print(f"no uploads recorded ({path})")
        return 0
    if args.last is not None:
        entries = entries[-args.last :]
    if args.json:
        for entry in entries:
            print(json.dumps(entry))
        return 0
    print("  ".join(name.ljust(width) for name, width in TABLE_COLUMNS).rstrip())
    for entry in entries:
        cells = (_cell(v, w) for v, (_, w) in zip(_row(entry), TABLE_COLUMNS, strict=True))
        print("  ".join(cells).rstrip())
    if any(entry.get("result") == SENDING for entry in entries):
        print(
            f"{SENDING}: no result recorded: the upload is under way, or the agent stopped before "
            "it could record one (audio may have left)"
        )
    sys.stdout.flush()
    return 0
