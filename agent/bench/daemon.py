"""Benchmark of the running agent: what ``earshot run`` costs and how fast it answers.

Every figure comes from the real daemon, started as a subprocess (``python -m agent run``) with
its data, config and control socket in a temporary folder, so nothing of the user's is touched:

1. **Listening cost.** ``--minutes`` of scripted everyday speech with no wake word in it
   (`models.speech.demo_stream.other_speech`) is read as fast as possible (``--file STREAM --fast``)
   with one wake word, and with ten (the shipped "computer" detector saved under ten names).
   The daemon's CPU time after start-up (its rusage at exit, less its CPU time when it printed
   ``listening``), divided by the audio's length, is the CPU share of one core that listening in
   real time costs. Resident memory is the peak (``VmHWM``) and samples of ``VmRSS`` taken
   every 0.1 s while it listens. (``ru_maxrss`` is kept in the JSON document, but Linux carries
   the benchmark's own peak into it, through the fork before ``exec``.) Then
   ``--realtime-seconds`` of the same speech are played in real time, as a microphone delivers
   them: that CPU share includes the idle wake-ups. (With ``--file`` the daemon loads the whole
   recording first, which the fast runs' memory includes; the real-time run reads a file of its
   own length.)
2. **Start-up.** From launching the process to its ``listening`` event, and to the control
   socket answering ``earshot status``; then the time SIGTERM takes to stop it. Median of
   ``--repeats`` runs.
3. **Wake word to upload**, in real time: 8 s of other speech, "computer, turn on the kitchen
   lights", 3 s more, against a local `agent.egress.receiver.Receiver`. Where the wake phrase's and
   the command's speech end is found from the audio's level. The stream's clock is mapped to the
   wall clock through the wake event (its wall time and its ``time_s``), so the figures leave
   out the wait for the capture block (up to one ``audio.block_ms``) that a microphone adds.
   Median of ``--repeats`` runs; a run whose wake word is not heard is counted, not timed.

The daemon process and its sampling are in `agent.bench.daemon_process`, the three measurements
in `agent.bench.daemon_measurement`, the table in `agent.bench.daemon_report`. Run ``earshot
bench daemon`` or ``python -m agent.bench.daemon``; ``--json`` prints one JSON document.
``--minutes 1 --skip-realtime`` takes well under a minute.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.bench.common import (
    MINUTES,
    load_average,
    machine,
    print_json,
    say,
    suite_parser,
    write_speech,
)
from agent.bench.daemon_measurement import (
    measure_latency,
    measure_listening,
    measure_startup,
    wake_word_names,
    write_detectors,
    write_wake_stream,
)
from agent.bench.daemon_process import BenchError
from agent.bench.daemon_report import print_table
from agent.bench.workspace import temporary_workspace

WAKE_WORD_COUNTS = (1, 10)
REALTIME_S = 60.0
REPEATS = 3


def run(
    *,
    minutes: float = MINUTES,
    wake_word_counts: Sequence[int] = WAKE_WORD_COUNTS,
    realtime_s: float = REALTIME_S,
    repeats: int = REPEATS,
    skip_realtime: bool = False,
    peers: bool = False,
) -> dict[str, Any]:
    """Every measurement; returns the figures as a dict (see the module's docstring).

    With ``peers``, openWakeWord and Porcupine (`agent.bench.peers`) process the same listening
    recording in the same run, and ``result["peers"]`` holds their figures with earshot's CPU
    as a ratio of each.
    """
    result: dict[str, Any] = {
        "benchmark": "daemon",
        "machine": machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_at_start": load_average(),
    }
    with temporary_workspace("earshot-bench-") as workspace:
        write_detectors(workspace.model_dir, wake_word_names(max(wake_word_counts)))
        say(f"synthesizing {minutes:g} min of speech without the wake word")
        stream = workspace.path("listening.wav")
        audio_s = write_speech(stream, minutes * 60.0)
        result["listening_audio_s"] = round(audio_s, 2)

        say(f"start-up, {repeats} runs")
        result["startup"] = measure_startup(workspace, stream, repeats)

        result["listening"] = {}
        for count in wake_word_counts:
            say(f"listening to {audio_s:g} s as fast as possible, {count} wake word(s)")
            figures = measure_listening(workspace, stream, audio_s, count, realtime=False)
            result["listening"][str(count)] = figures
        result["engine"] = next(iter(result["listening"].values()))["engine"]
        if peers:
            say("the peer engines on the same recording")
            result["peers"] = compare_peers(stream, result["listening"])

        if skip_realtime:
            result["listening_realtime"] = None
            result["latency"] = None
        else:
            # A file of its own: `--file` loads the whole recording, which a microphone doesn't.
            short = workspace.path("realtime.wav")
            seconds = write_speech(short, min(realtime_s, audio_s))
            say(f"listening to {seconds:g} s in real time, 1 wake word")
            result["listening_realtime"] = measure_listening(
                workspace, short, seconds, 1, realtime=True
            )
            say(f"wake word to upload, {repeats} runs in real time")
            wake_stream = write_wake_stream(workspace.path("wake.wav"))
            result["latency"] = measure_latency(workspace, wake_stream, repeats)
    result["load_average_at_end"] = load_average()
    return result


def compare_peers(stream: Path, listening: dict[str, Any]) -> list[dict[str, Any]]:
    """Each peer's CPU on ``stream``, with earshot's divided by it.

    ``earshot_ratio`` divides the whole daemon's CPU (per wake-word count); ``detector_ratio``
    divides that of earshot's bare detector loop, measured exactly as the peers are.
    """
    from agent.bench.peers import PEERS, peer_cpu

    results = peer_cpu(stream, ("earshot", *PEERS))
    bare = results[0].get("cpu_percent")
    for peer in results[1:]:
        if peer.get("error") or not peer.get("cpu_percent"):
            continue
        peer["earshot_ratio"] = {
            count: round(figures["cpu_percent"] / peer["cpu_percent"], 2)
            for count, figures in listening.items()
        }
        peer["detector_ratio"] = round(bare / peer["cpu_percent"], 2) if bare else None
    return results


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,10, got {text!r}") from err
    if not counts or any(c < 1 or c > 100 for c in counts):
        raise argparse.ArgumentTypeError(f"expected counts from 1 to 100, got {text!r}")
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns 0, or 1 when the daemon fails."""
    parser = suite_parser("earshot bench daemon", __doc__)
    parser.add_argument(
        "--minutes", type=float, default=MINUTES,
        help=f"speech read with --fast for the listening cost (default {MINUTES:g})",
    )  # fmt: skip
    parser.add_argument(
        "--wake-words", type=_counts, default=list(WAKE_WORD_COUNTS), metavar="N,...",
        help="wake-word counts to measure the listening cost with (default 1,10)",
    )  # fmt: skip
    parser.add_argument(
        "--realtime-seconds", type=float, default=REALTIME_S,
        help=f"speech played in real time for the real-time CPU share (default {REALTIME_S:g})",
    )  # fmt: skip
    parser.add_argument(
        "--repeats", type=int, default=REPEATS,
        help=f"runs of the start-up and latency measurements; medians count (default {REPEATS})",
    )  # fmt: skip
    parser.add_argument(
        "--skip-realtime", action="store_true",
        help="leave out the real-time runs (real-time CPU share, wake-to-upload latency)",
    )  # fmt: skip
    parser.add_argument(
        "--peers", action="store_true",
        help="also run openWakeWord and Porcupine on the same recording (the bench extra)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.minutes < 0.1 or args.minutes > 600:
        parser.error("--minutes must be between 0.1 and 600")
    if args.repeats < 1 or args.realtime_seconds < 5:
        parser.error("--repeats must be >= 1 and --realtime-seconds >= 5")
    try:
        result = run(
            minutes=args.minutes, wake_word_counts=args.wake_words,
            realtime_s=args.realtime_seconds, repeats=args.repeats,
            skip_realtime=args.skip_realtime, peers=args.peers,
        )  # fmt: skip
    except BenchError as err:
        print(f"earshot bench daemon: {err}", file=sys.stderr)
        return 1
    if args.json:
        print_json(result)
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
