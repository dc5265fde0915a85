"""The daemon benchmark's table: every figure with its unit and how it was measured.

`print_table` prints the document `agent.bench.daemon.run` returns, for people; ``--json``
prints the document itself.
"""

from __future__ import annotations

from typing import Any

from agent.bench.common import MS_PER_S, PHRASE
from agent.bench.daemon_measurement import SPEECH_BEFORE_S
from agent.bench.daemon_process import RSS_SAMPLE_S

Row = tuple[str, str, str, str]
"""(figure, value, unit, how measured)."""


def _fmt(value: float | None, digits: int = 1, scale: float = 1.0) -> str:
    return "n/a" if value is None else f"{value * scale:.{digits}f}"


def peer_rows(result: dict[str, Any]) -> list[Row]:
    """Rows for the peer engines, when they were measured."""
    rows = []
    for peer in result.get("peers") or []:
        name = f"{peer['peer']} {peer.get('version') or ''}".strip()
        if peer.get("error"):
            rows.append((f"CPU of {name}", "n/a", "", str(peer["error"])))
            continue
        if peer["peer"] == "earshot":
            rows.append((
                "CPU of earshot's bare detector loop", _fmt(peer["cpu_percent"], 2), "% core",
                "same recording and loop as the peers: no capture, voice activity or events",
            ))  # fmt: skip
            continue
        ratios = ", ".join(f"{n} wake word(s) {r:g}x" for n, r in peer["earshot_ratio"].items())
        rows.append((
            f"CPU of {name}", _fmt(peer["cpu_percent"], 2), "% core",
            f"same recording, {peer.get('model')}; earshot daemon / peer: {ratios}; "
            f"bare detector loop / peer: {peer.get('detector_ratio')}x",
        ))  # fmt: skip
    return rows


def table_rows(result: dict[str, Any]) -> list[Row]:
    """(figure, value, unit, how measured) for every figure."""
    rows: list[Row] = peer_rows(result)
    for count, f in result["listening"].items():
        words = f"{count} wake word{'' if count == '1' else 's'}"
        rows += [
            (
                f"CPU while listening, {words}", _fmt(f["cpu_percent"], 2), "% core",
                f"CPU s after start-up / {f['audio_s']:g} s of speech read with --fast "
                f"({f['speed_x_realtime']:g}x real time); {_fmt(f['cpu_percent_with_startup'], 2)}"
                " % with start-up",
            ),
            (
                f"  peak memory, {words}", _fmt(f["peak_rss_mb"]), "MB",
                f"VmHWM of the daemon (it loads the whole {f['audio_s']:g} s recording)",
            ),
            (
                f"  memory while listening, {words}",
                f"{_fmt(f['rss_median_mb'])} / {_fmt(f['rss_max_mb'])}", "MB",
                f"median / max of {f['rss_samples']} VmRSS samples every {RSS_SAMPLE_S:g} s; "
                f"{_fmt(f['rss_end_mb'])} MB at the end",
            ),
        ]  # fmt: skip
        if f["wake_events"]:
            rows.append((f"  false wakes, {words}", str(f["wake_events"]), "", "wake events"))
    rt = result["listening_realtime"]
    if rt is not None:
        rows += [
            (
                "CPU while listening in real time", _fmt(rt["cpu_percent_steady"], 2), "% core",
                f"sampled from /proc while {rt['audio_s']:g} s of speech play in real time, 1 "
                f"wake word; {_fmt(rt['cpu_percent'], 2)} % counting the shutdown",
            ),
            (
                "  peak memory in real time", _fmt(rt["peak_rss_mb"]), "MB",
                f"VmHWM of the daemon; median VmRSS {_fmt(rt['rss_median_mb'])} MB",
            ),
        ]  # fmt: skip
    s = result["startup"]
    rows += [
        (
            "start-up to listening", _fmt(s["to_listening_median_s"], 0, MS_PER_S), "ms",
            f"launch -> 'listening' event on stdout, median of {s['runs']}",
        ),
        (
            "start-up to `earshot status`", _fmt(s["to_status_median_s"], 0, MS_PER_S), "ms",
            f"launch -> control socket answers status, median of {s['runs']}",
        ),
        (
            "stop after SIGTERM", _fmt(s["sigterm_to_exit_median_s"], 0, MS_PER_S), "ms",
            f"SIGTERM -> process exit, median of {s['runs']}",
        ),
    ]  # fmt: skip
    lat = result["latency"]
    if lat is not None:
        if not lat["detected"]:
            rows.append(
                ("wake word detected", f"0/{lat['runs']}", "", "the wake word was never heard")
            )
            return rows
        rows += [
            (
                "wake word detected", f"{lat['detected']}/{lat['runs']}", "",
                f"{PHRASE!r} + command after {SPEECH_BEFORE_S:g} s of speech, in real time",
            ),
            (
                "  decision delay", _fmt(lat["decision_delay_median_s"], 0, MS_PER_S), "ms",
                "end of the wake phrase -> the detector's decision (stream time)",
            ),
            (
                "  upload opened -> first byte", _fmt(lat["first_byte_median_s"], 0, MS_PER_S),
                "ms", "upload event's first_byte_s: upload opened (command speech began) -> socket",
            ),
            (
                "  wake event -> first byte received",
                _fmt(lat["wake_event_to_first_byte_median_s"], 0, MS_PER_S), "ms",
                "receiver's first byte - wake event time (waits for the command's speech)",
            ),
            (
                "  end of wake phrase -> first byte",
                _fmt(lat["wake_end_to_first_byte_median_s"], 0, MS_PER_S), "ms",
                "at the receiver; stream time mapped to wall time through the wake event",
            ),
            (
                "  end of command -> upload complete",
                _fmt(lat["command_end_to_complete_median_s"], 0, MS_PER_S), "ms",
                "receiver's last byte; includes the end-of-speech silence wait",
            ),
        ]  # fmt: skip
    return rows


def print_table(result: dict[str, Any]) -> None:
    """The figures, for people."""
    print(
        f"daemon benchmark: `earshot run` as a subprocess; {result['cpu_count']} CPU cores, "
        f"1-min load average {result['load_average_at_start'][0]:g} at start, "
        f"{result['load_average_at_end'][0]:g} at end"
    )
    if result.get("engine"):
        print(f"base network: {result['engine']}")
    rows = table_rows(result)
    width = max(len(r[0]) for r in rows) + 2
    print()
    print(f"  {'figure':<{width}}{'value':>13} {'unit':<7} how measured")
    for figure, value, unit, how in rows:
        print(f"  {figure:<{width}}{value:>13} {unit:<7} {how}")
    if result["listening_realtime"] is None:
        print("\nreal-time listening and wake-to-upload latency: skipped (--skip-realtime)")
