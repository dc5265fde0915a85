"""``earshot bench``: every benchmark in one run, summed up in one short table.

Each suite runs as its own process (``python -m MODULE --json``, with the module that
`agent.bench.SUITES` names) so that one's memory and threads do not colour another's figures; the
daemon suite also runs the peer engines (openWakeWord and Porcupine) on the same recording, so
their CPU is compared in the same run. ``--json`` prints every suite's whole document under its
name.

Suites and the figures taken from them:

- frontend (`agent.bench.frontend`): CPU seconds per hour of audio of the streaming log-mel front
  end;
- engine (`agent.bench.engine`): batch-1 latency of the speech network on every backend;
- wake (`agent.bench.wake`): ten wake words against one, detection latency, training a wake
  word from text;
- enroll: a whole ``earshot enroll --from`` on synthesized takes, as a user runs it;
- daemon (`agent.bench.daemon`): CPU and memory of ``earshot run`` listening with 1 and 10 wake
  words, start-up, wake-to-upload latency, and the peers' CPU on the same audio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.bench import module_name
from agent.bench.common import MINUTES, PHRASE, print_json, say, suite_parser

SUITES = ("frontend", "engine", "wake", "enroll", "daemon")
SUITE_TIMEOUT_S = 3600
ENROLL_TAKES = 5
ENROLL_VOICE = "en-us+m1"

Row = tuple[str, str, str]


def run_module(module: str, *args: str) -> dict[str, Any]:
    """``python -m module --json args...``; its JSON document (progress goes to our stderr)."""
    result = subprocess.run(
        [sys.executable, "-m", module, "--json", *args],
        stdout=subprocess.PIPE, text=True, timeout=SUITE_TIMEOUT_S,
    )  # fmt: skip
    if result.returncode != 0:
        return {"error": f"{module} exited with {result.returncode}"}
    return dict(json.loads(result.stdout))


def measure_enroll() -> dict[str, Any]:
    """Time ``earshot enroll computer --from`` on takes synthesized in one voice."""
    import numpy as np
    import soundfile

    from dsp.constants import SAMPLE_RATE_HZ
    from models.speech.synth import Rendition, SpeechCache, Voice

    cache, rng = SpeechCache(), np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="earshot-bench-enroll-") as tmp:
        root, takes = Path(tmp), []
        for k in range(ENROLL_TAKES):
            speech = cache.get(Rendition(PHRASE, Voice("espeak-ng", ENROLL_VOICE), 0.9 + 0.05 * k))
            pad = np.zeros(SAMPLE_RATE_HZ // 2, np.float32)
            take = np.concatenate([pad, speech, pad]) + rng.normal(
                0, 1e-3, speech.size + 2 * pad.size
            )
            takes.append(root / f"take{k}.wav")
            soundfile.write(takes[-1], take.astype(np.float32), SAMPLE_RATE_HZ, subtype="PCM_16")
        env = {"XDG_DATA_HOME": str(root / "data"), "XDG_CONFIG_HOME": str(root / "config")}
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "agent", "enroll", PHRASE, "--from", *map(str, takes)],
            env={**os.environ, **env}, capture_output=True, text=True, timeout=SUITE_TIMEOUT_S,
        )  # fmt: skip
        seconds = time.perf_counter() - started
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1:] or ["enroll failed"]}
    return {"benchmark": "enroll", "takes": ENROLL_TAKES, "seconds": round(seconds, 2)}


def _get(document: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(document, dict) or key not in document:
            return None
        document = document[key]
    return document


def _num(value: Any, digits: int = 2, unit: str = "") -> str:
    return "n/a" if not isinstance(value, int | float) else f"{value:.{digits}f}{unit}"


def summary(results: dict[str, dict[str, Any]]) -> list[Row]:
    """(figure, value, note) rows: the headline figures of every suite that ran."""
    rows: list[Row] = []
    for name, builder in _ROWS.items():
        if name in results:
            document = results[name]
            if "error" in document:
                rows.append((name, "failed", str(document["error"])))
            else:
                rows += builder(document)
    return rows


def _frontend_rows(d: dict[str, Any]) -> list[Row]:
    return [("front end, CPU per audio hour", _num(d.get("cpu_s_per_hour_blas_1_thread"), 1, " s"),
             "streaming log-mel, 80 ms chunks")]  # fmt: skip


def _engine_rows(d: dict[str, Any]) -> list[Row]:
    return [
        (
            f"network latency, {e['engine']}",
            _num(e.get("latency_ms_median"), 2, " ms"),
            f"batch 1, {e.get('windows_per_s', 0):.0f} windows/s batched",
        )  # fmt: skip
        for e in d.get("engines", [])
        if "skipped" not in e
    ]


def _wake_rows(d: dict[str, Any]) -> list[Row]:
    return [
        ("ten wake words vs one", _num(_get(d, "wake_words", "ratio"), 3, "x"), "CPU ratio"),
        (
            "detection latency, median",
            _num(_get(d, "latency", "latency_median_ms"), 0, " ms"),
            "phrase end to detection",
        ),  # fmt: skip
        (
            "train a wake word from text",
            _num(_get(d, "training", "seconds"), 1, " s"),
            "fresh phrase, warm caches",
        ),  # fmt: skip
    ]


def _enroll_rows(d: dict[str, Any]) -> list[Row]:
    return [("enroll a wake word", _num(d.get("seconds"), 1, " s"), f"{d['takes']} takes, --from")]


def _daemon_rows(d: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for count, f in (d.get("listening") or {}).items():
        rss = _num(f.get("rss_median_mb"), 0, " MB")
        cpu = _num(f["cpu_percent"], 2, " % core")
        rows.append((f"daemon CPU listening, {count} wake words", cpu, f"RSS {rss} (file loaded)"))
    realtime = d.get("listening_realtime")
    if realtime:
        steady = realtime.get("cpu_percent_steady")
        rows.append(("daemon CPU in real time", _num(steady, 2, " % core"),
                     f"RSS {_num(realtime.get('rss_median_mb'), 0, ' MB')}"))  # fmt: skip
    startup = _get(d, "startup", "to_listening_median_s")
    first_byte = _get(d, "latency", "wake_end_to_first_byte_median_s")
    rows.append(("start-up to listening", _num(startup, 2, " s"), "launch to 'listening' event"))
    rows.append(("end of wake phrase to first byte", _num(first_byte, 2, " s"),
                 "at the endpoint, in real time (waits for the command's speech)"))  # fmt: skip
    for peer in d.get("peers") or []:
        if peer["peer"] == "earshot":
            bare = _num(peer.get("cpu_percent"), 2, " % core")
            rows.append(("earshot bare detector loop CPU", bare, "measured exactly as the peers"))
            continue
        if peer.get("error"):
            rows.append((f"peer {peer['peer']}", "n/a", str(peer["error"])))
            continue
        ratios = ", ".join(f"{n}: {r:g}x" for n, r in peer["earshot_ratio"].items())
        rows.append((f"peer {peer['peer']} {peer.get('version', '')} CPU",
                     _num(peer["cpu_percent"], 2, " % core"),
                     f"earshot daemon / peer by wake words {ratios}; "
                     f"bare loop / peer {peer.get('detector_ratio')}x"))  # fmt: skip
    return rows


_ROWS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "frontend": _frontend_rows, "engine": _engine_rows, "wake": _wake_rows,
    "enroll": _enroll_rows, "daemon": _daemon_rows,
}  # fmt: skip


def run(suites: Sequence[str], minutes: float) -> dict[str, dict[str, Any]]:
    """Every chosen suite's document, by name."""
    results: dict[str, dict[str, Any]] = {}
    for name in suites:
        say(f"== earshot bench: {name}")
        if name == "enroll":
            results[name] = measure_enroll()
        elif name == "daemon":
            results[name] = run_module(module_name(name), "--peers", "--minutes", f"{minutes:g}")
        else:
            results[name] = run_module(module_name(name))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suites; print the summary table, or one JSON document with ``--json``."""
    parser = suite_parser("earshot bench", __doc__)
    parser.add_argument("--only", nargs="+", choices=SUITES, default=list(SUITES),
                        help="run only these suites")  # fmt: skip
    parser.add_argument(
        "--minutes", type=float, default=MINUTES,
        help=f"audio the daemon and the peers listen to (default {MINUTES:g})",
    )  # fmt: skip
    args = parser.parse_args(argv)
    results = run(args.only, args.minutes)
    if args.json:
        print_json(results)
    else:
        rows = summary(results)
        width = max(len(r[0]) for r in rows)
        for figure, value, note in rows:
            print(f"  {figure:<{width}}  {value:>14}  {note}")
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
