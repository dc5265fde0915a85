"""Soak: hours of audio without the wake word through the detector and the running daemon.

The **detector soak** (``--detector-hours``, 24) pushes generated negative audio in 80 ms blocks
through one `models.wake.detector.Detector` (numpy backend) as fast as it goes; the **daemon soak**
(``--daemon-hours``, 1) feeds it as raw 16-bit PCM to ``python -m agent run --stdin`` (data,
config and socket in a temporary folder, a local `agent.egress.receiver.Receiver` as endpoint),
which must exit with 0 at EOF. Resident memory, open descriptors and threads are sampled at the end
of the warm-up (10 minutes of audio), then every hour (detector) or 10 minutes (daemon) of audio:
memory may grow by less than `agent.bench.soak_report.RSS_LIMIT_MB`, descriptors and threads not
at all. Every detection is a false alarm; their count must stay within the 99% Poisson quantile of
the count the wake word's calibrated target rate predicts (`agent.bench.soak_report`). The audio
(`agent.bench.soak_audio.negative_blocks`) is made on the fly from a few MB of synthesized
sentences, so it never repeats. ``earshot bench soak`` or ``python -m agent.bench.soak``;
``--json`` prints one JSON document.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING

import numpy as np

from agent.bench.common import add_json_option, mb, print_json, say
from agent.bench.soak_audio import PCM16_SCALE, negative_blocks, take, utterance_pool
from agent.bench.soak_report import SoakResult, format_table, proc_sample, rows
from agent.bench.workspace import Workspace, daemon_events, log_tail, temporary_workspace
from agent.paths import SOURCE_ROOT
from dsp.constants import SAMPLE_RATE_HZ
from models.wake.metrics import SECONDS_PER_HOUR

if TYPE_CHECKING:
    from models.wake.detector import Detector

WARMUP_S = 600.0
DETECTOR_EVERY_S = SECONDS_PER_HOUR
DAEMON_EVERY_S = 600.0
DAEMON_EXIT_TIMEOUT_S = 600.0
"""The least time the daemon gets to exit after the end of its input (a tenth of it at most)."""
READER_JOIN_S = 10.0


# ---- the detector soak --------------------------------------------------------------------------


def target_rate() -> float:
    """The shipped config's first wake word's target false alarms per hour."""
    from agent.settings import DEFAULT_FALSE_ACCEPTS_PER_HOUR, load_settings

    wake_words = load_settings().wake_words
    target = wake_words[0].target_false_accepts_per_hour if wake_words else None
    return target if target is not None else DEFAULT_FALSE_ACCEPTS_PER_HOUR


def load_detector() -> Detector:
    """The shipped config's detector, on the numpy backend."""
    from agent.daemon.detectors import load_base, load_wake_words
    from agent.settings import load_settings
    from models.wake.detector import Detector

    settings = load_settings()
    base = load_base(settings)
    return Detector(base, load_wake_words(settings, base), backend="numpy")


def soak_detector(
    hours: float, *, warmup_s: float = WARMUP_S, every_s: float = DETECTOR_EVERY_S, seed: int = 0
) -> SoakResult:
    """Push ``hours`` of negative audio through one detector; sample this process as it goes.

    Parameters
    ----------
    hours : float
        Audio to push.
    warmup_s, every_s : float
        Audio before the first sample, and between samples after it.
    seed : int
        The audio's seed.
    """
    detector = load_detector()
    result = SoakResult("detector", target_per_hour=target_rate())
    blocks = negative_blocks(utterance_pool(), seed)
    total = hours * SECONDS_PER_HOUR
    started, py_start = time.perf_counter(), threading.active_count()
    checkpoints, pushed = _checkpoints(total, warmup_s, every_s), 0
    for chunk in take(blocks, total):
        result.false_alarms += len(detector.push(chunk))
        pushed += chunk.size
        result.audio_s = pushed / SAMPLE_RATE_HZ
        if checkpoints and result.audio_s >= checkpoints[0]:
            checkpoints.pop(0)
            result.samples.append(proc_sample(result.audio_s))
            _progress(result, time.perf_counter() - started)
    result.wall_s = time.perf_counter() - started
    result.samples.append(proc_sample(result.audio_s))
    result.python_threads = (py_start, threading.active_count())
    return result


def _checkpoints(total_s: float, warmup_s: float, every_s: float) -> list[float]:
    """Where to sample: the end of the warm-up, then every ``every_s`` of audio."""
    warmup_s = min(warmup_s, total_s)
    points = [warmup_s]
    at = every_s
    while at < total_s:
        if at > warmup_s:
            points.append(at)
        at += every_s
    return points


def _progress(result: SoakResult, wall_s: float) -> None:
    sample = result.samples[-1]
    say(
        f"{result.name}: {sample.audio_s / SECONDS_PER_HOUR:6.2f} h of audio in {wall_s:7.1f} s "
        f"({sample.audio_s / max(wall_s, 1e-9):5.0f}x), RSS {mb(sample.rss_kb):6.1f} MB, "
        f"{sample.fds} fds, {sample.threads} threads, {result.false_alarms} false alarms"
    )


# ---- the daemon soak ----------------------------------------------------------------------------


def _count_events(stream: Iterator[bytes], counts: dict[str, int]) -> None:
    """Count the daemon's stdout events by kind until EOF (keeps the pipe from filling)."""
    for event in daemon_events(stream):
        kind = str(event.get("event"))
        counts[kind] = counts.get(kind, 0) + 1


def _feed(
    process: subprocess.Popen[bytes], result: SoakResult, checkpoints: list[float], started: float
) -> None:
    """Write the audio to the daemon's stdin as s16le, sampling it at the checkpoints."""
    assert process.stdin is not None
    pipe = process.stdin
    blocks, written = negative_blocks(utterance_pool(), seed=1), 0
    try:
        for chunk in take(blocks, checkpoints[-1]):
            pipe.write(np.round(chunk * PCM16_SCALE).astype("<i2").tobytes())
            written += chunk.size
            result.audio_s = written / SAMPLE_RATE_HZ
            if checkpoints and result.audio_s >= checkpoints[0]:
                checkpoints.pop(0)
                pipe.flush()
                result.samples.append(proc_sample(result.audio_s, process.pid))
                _progress(result, time.perf_counter() - started)
        pipe.close()
    except BrokenPipeError:
        say("daemon: it stopped reading its standard input early")


def soak_daemon(
    hours: float, *, warmup_s: float = WARMUP_S, every_s: float = DAEMON_EVERY_S
) -> SoakResult:
    """Feed ``hours`` of negative audio to ``earshot run --stdin``; sample it as it goes.

    Parameters
    ----------
    hours : float
        Audio to feed.
    warmup_s, every_s : float
        Audio before the first sample, and between samples after it.
    """
    from agent.egress.receiver import Receiver

    result = SoakResult("daemon", target_per_hour=target_rate())
    with temporary_workspace("earshot-soak-") as workspace:
        receiver = Receiver(workspace.path("received")).start()
        try:
            url, total_s = f"{receiver.url}/audio", hours * SECONDS_PER_HOUR
            _run_daemon(workspace, url, total_s, warmup_s, every_s, result)
        finally:
            result.uploads = len(receiver.uploads)
            receiver.stop()
    return result


def _run_daemon(
    workspace: Workspace,
    url: str,
    total_s: float,
    warmup_s: float,
    every_s: float,
    result: SoakResult,
) -> None:
    """Start the daemon, feed it, wait for it to exit; fills ``result``."""
    config = workspace.save_config(workspace.config(endpoint_url=url), "soak")
    counts: dict[str, int] = {}
    checkpoints = _checkpoints(total_s, warmup_s, every_s) + [total_s]
    log_path = workspace.path("daemon.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(config), "--stdin"],
            cwd=SOURCE_ROOT, env=workspace.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=log,
        )  # fmt: skip
        assert process.stdout is not None
        reader = threading.Thread(target=_count_events, args=(process.stdout, counts), daemon=True)
        reader.start()
        started = time.perf_counter()
        try:
            _feed(process, result, checkpoints, started)
            result.exit_code = process.wait(timeout=max(DAEMON_EXIT_TIMEOUT_S, total_s / 10))
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        result.wall_s = time.perf_counter() - started
        reader.join(READER_JOIN_S)
    result.false_alarms = counts.get("wake", 0)
    if result.exit_code != 0:
        say(f"daemon exited with {result.exit_code}:\n{log_tail(log_path)}")


def main(argv: list[str] | None = None) -> int:
    """Run the soaks the options ask for and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector-hours", type=float, default=24.0, help="0 skips it")
    parser.add_argument("--daemon-hours", type=float, default=1.0, help="0 skips it")
    add_json_option(parser)
    args = parser.parse_args(argv)
    soaks: list[tuple[float, Callable[[float], SoakResult]]] = [
        (args.detector_hours, soak_detector),
        (args.daemon_hours, soak_daemon),
    ]
    results, table = [], []
    for hours, soak in soaks:
        if hours > 0:
            results.append(soak(hours))
            table += rows(results[-1], hours)
    passed = all(r.ok is not False for r in table)
    if args.json:
        document = {
            "results": [asdict(r) for r in results],
            "rows": [asdict(r) for r in table],
            "passed": passed,
        }
        print_json(document)
    else:
        print(format_table(table))
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
