"""Soak: hours of audio without the wake word through the detector and the running daemon.

The **detector soak** (``--detector-hours``, 24) pushes generated negative audio in 80 ms blocks
through one `models.wake.detector.Detector` (numpy backend) as fast as it goes; the **daemon soak**
(``--daemon-hours``, 1) feeds it as raw 16-bit PCM to ``python -m agent run --stdin`` (data,
config and socket in a temporary folder, a local `agent.egress.receiver.Receiver` as endpoint),
which must exit with 0 at EOF. Resident memory, open descriptors and threads are sampled at the end
of the warm-up (10 minutes of audio), then every hour (detector) or 10 minutes (daemon) of audio:
memory may grow by less than `RSS_LIMIT_MB`, descriptors and threads not at all. Every detection
is a false alarm; their count must stay within the 99% Poisson quantile of the count the wake
word's calibrated target rate predicts. The audio (`negative_blocks`) is made on the fly from a
few MB of synthesized sentences, so it never repeats. ``earshot bench soak`` or ``python -m
agent.bench.soak``; ``--json`` prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from agent.control.procstat import proc_status
from agent.paths import PRIVATE_DIR, SOURCE_ROOT
from dsp.constants import SAMPLE_RATE_HZ

if TYPE_CHECKING:
    from models.wake.detector import Detector

BLOCK = SAMPLE_RATE_HZ * 80 // 1000
"""Samples per generated block (80 ms)."""
WARMUP_S = 600.0
DETECTOR_EVERY_S = 3600.0
DAEMON_EVERY_S = 600.0
RSS_LIMIT_MB = 5.0
POISSON_QUANTILE = 0.99
EXTRA_SENTENCES = (
    "Let us take the long way home along the river tonight.",
    "The kettle is boiling, do you want tea or coffee?",
    "I think the shop on the corner closes at six.",
    "She left her umbrella on the bus this morning.",
    "We could try the new bakery near the station.",
    "The children built a castle out of cardboard boxes.",
)  # fmt: skip
"""More sentences for the pool; none sounds like a wake word."""
POOL_VOICES = (
    "flite:slt", "espeak-ng:en-gb+m3", "flite:rms", "espeak-ng:en-029+f2", "flite:awb",
    "espeak-ng:en-gb-scotland", "flite:kal16", "espeak-ng:en-us+m5",
)  # fmt: skip
VOICES_PER_SENTENCE = 4
PCM16_SCALE = 32767.0
MIB = 2**20


def say(text: str) -> None:
    """Progress, on stderr."""
    print(text, file=sys.stderr, flush=True)


def utterance_pool() -> list[np.ndarray]:
    """Everyday sentences, each in `VOICES_PER_SENTENCE` voices, as int16 (rendered once, cached).

    Returns
    -------
    list of numpy.ndarray
        16 kHz int16 utterances (int16 halves the pool's memory).
    """
    from models.speech.demo_stream import OTHER_SPEECH
    from models.speech.synth import Rendition, SpeechCache, Voice

    texts = [text for text, _ in OTHER_SPEECH] + list(EXTRA_SENTENCES)
    voices = [Voice.parse(v) for v in POOL_VOICES]
    renditions = [
        Rendition(text, voices[(i + k) % len(voices)])
        for i, text in enumerate(texts)
        for k in range(VOICES_PER_SENTENCE)
    ]
    audio = SpeechCache().get_many(renditions)
    return [np.round(np.clip(a, -1, 1) * PCM16_SCALE).astype(np.int16) for a in audio]


def _segment(pool: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One utterance at a random speed and gain, a random pause, maybe a noise burst; with noise."""
    speech = pool[int(rng.integers(len(pool)))].astype(np.float32) / PCM16_SCALE
    speed = rng.uniform(0.9, 1.1)
    positions = np.arange(0, speech.size - 1, speed)
    speech = np.interp(positions, np.arange(speech.size), speech).astype(np.float32)
    speech *= np.float32(10 ** (rng.uniform(-30.0, 0.0) / 20))
    pause = np.zeros(int(rng.uniform(0.2, 3.0) * SAMPLE_RATE_HZ), np.float32)
    parts = [speech, pause]
    if rng.random() < 0.15:  # a door, a fan, a tap: a short burst of loud noise
        length = int(rng.uniform(0.1, 1.5) * SAMPLE_RATE_HZ)
        burst = rng.standard_normal(length, dtype=np.float32) * np.hanning(length)
        parts += [
            burst.astype(np.float32) * np.float32(10 ** (rng.uniform(-40.0, -15.0) / 20)),
            pause[:1600],
        ]
    segment = np.concatenate(parts)
    level = np.float32(10 ** (rng.uniform(-80.0, -55.0) / 20))
    segment += rng.standard_normal(segment.size, dtype=np.float32) * level
    return np.clip(segment, -1.0, 1.0)


def negative_blocks(
    pool: Sequence[np.ndarray], seed: int = 0, block: int = BLOCK
) -> Iterator[np.ndarray]:
    """Endless audio without the wake word, in blocks of ``block`` float32 samples.

    Parameters
    ----------
    pool : sequence of numpy.ndarray
        int16 utterances (`utterance_pool`).
    seed : int
        The same seed gives the same audio.
    block : int
        Samples per yielded block.
    """
    rng = np.random.default_rng(seed)
    pending = np.zeros(0, np.float32)
    while True:
        pending = np.concatenate((pending, _segment(pool, rng)))
        count = pending.size // block
        for i in range(count):
            yield pending[i * block : (i + 1) * block].copy()
        pending = pending[count * block :]


def take(blocks: Iterator[np.ndarray], seconds: float) -> Iterator[np.ndarray]:
    """The blocks making up ``seconds`` of audio (rounded up to whole blocks)."""
    remaining = int(math.ceil(seconds * SAMPLE_RATE_HZ))
    while remaining > 0:
        chunk = next(blocks)
        remaining -= chunk.size
        yield chunk


# ---- process figures ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """A process's resources at a point of the stream."""

    audio_s: float
    rss_kb: int
    fds: int
    threads: int


def proc_sample(audio_s: float, pid: int | None = None) -> Sample:
    """Resident memory (VmRSS), open descriptors and threads of ``pid`` (this process if None)."""
    fields = proc_status(pid)
    if fields is None:
        raise RuntimeError(f"process {pid} has exited")
    fds = len(os.listdir(f"/proc/{pid if pid is not None else 'self'}/fd"))
    return Sample(audio_s, fields["VmRSS"], fds, fields["Threads"])


def poisson_quantile(mean: float, q: float) -> int:
    """The smallest k with P(X <= k) >= q for X ~ Poisson(mean)."""
    k, term = 0, math.exp(-mean)
    total = term
    while total < q:
        k += 1
        term *= mean / k
        total += term
    return k


@dataclass
class SoakResult:
    """What one soak measured."""

    name: str
    audio_s: float = 0.0
    wall_s: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    false_alarms: int = 0
    target_per_hour: float = 0.1
    python_threads: tuple[int, int] | None = None
    exit_code: int | None = None
    uploads: int | None = None

    def rss_growth_mb(self) -> float:
        """Largest resident memory after warm-up less the warm-up's, in MB."""
        first = self.samples[0].rss_kb
        return max(s.rss_kb - first for s in self.samples) * 1024 / MIB

    def expected_false_alarms(self) -> float:
        """False alarms the calibrated rate predicts for this much audio."""
        return self.target_per_hour * self.audio_s / 3600


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
    return Detector(base.inference_network(), load_wake_words(settings, base), backend="numpy")


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
    total = hours * 3600
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
        f"{result.name}: {sample.audio_s / 3600:6.2f} h of audio in {wall_s:7.1f} s "
        f"({sample.audio_s / max(wall_s, 1e-9):5.0f}x), RSS {sample.rss_kb / 1024:6.1f} MB, "
        f"{sample.fds} fds, {sample.threads} threads, {result.false_alarms} false alarms"
    )


# ---- the daemon soak ----------------------------------------------------------------------------


def daemon_env(root: Path) -> dict[str, str]:
    """The environment with earshot's data, config and runtime folders under ``root``."""
    runtime = root / "run"
    runtime.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    return dict(
        os.environ,
        XDG_DATA_HOME=str(root / "data"),
        XDG_CONFIG_HOME=str(root / "config"),
        XDG_RUNTIME_DIR=str(runtime),
    )


def write_config(root: Path, url: str) -> Path:
    """The shipped config, uploading to ``url``, with its audit log and socket under ``root``."""
    from agent.settings import default_config_path, load_settings

    config = yaml.safe_load(default_config_path().read_text(encoding="utf-8")) or {}
    config["endpoint"] = {**(config.get("endpoint") or {}), "kind": "http", "url": url}
    config["privacy"] = {**(config.get("privacy") or {}), "audit_log": str(root / "audit.jsonl")}
    config["events"] = {**(config.get("events") or {}), "socket": str(root / "control.sock")}
    path = root / "soak.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    load_settings(path)  # refuse a bad config here, with the settings' own message
    return path


def _read_events(stream: Iterator[bytes], counts: dict[str, int]) -> None:
    """Count the daemon's stdout events by kind until EOF (keeps the pipe from filling)."""
    for line in stream:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
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
    with tempfile.TemporaryDirectory(prefix="earshot-soak-") as tmp:
        root = Path(tmp)
        receiver = Receiver(root / "received").start()
        try:
            _run_daemon(root, f"{receiver.url}/audio", hours * 3600, warmup_s, every_s, result)
        finally:
            result.uploads = len(receiver.uploads)
            receiver.stop()
    return result


def _run_daemon(
    root: Path, url: str, total_s: float, warmup_s: float, every_s: float, result: SoakResult
) -> None:
    """Start the daemon, feed it, wait for it to exit; fills ``result``."""
    config = write_config(root, url)
    counts: dict[str, int] = {}
    checkpoints = _checkpoints(total_s, warmup_s, every_s) + [total_s]
    with open(root / "daemon.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(config), "--stdin"],
            cwd=SOURCE_ROOT, env=daemon_env(root), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=log,
        )  # fmt: skip
        assert process.stdout is not None
        reader = threading.Thread(target=_read_events, args=(process.stdout, counts), daemon=True)
        reader.start()
        started = time.perf_counter()
        try:
            _feed(process, result, checkpoints, started)
            result.exit_code = process.wait(timeout=max(600.0, total_s / 10))
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        result.wall_s = time.perf_counter() - started
        reader.join(10)
    result.false_alarms = counts.get("wake", 0)
    if result.exit_code != 0:
        tail = (root / "daemon.log").read_text(errors="replace").splitlines()[-15:]
        say("daemon exited with {}:\n{}".format(result.exit_code, "\n".join(tail)))


# ---- the report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the report."""

    soak: str
    figure: str
    value: str
    limit: str
    ok: bool | None


def rows(result: SoakResult, hours: float) -> list[Row]:
    """The figures of one soak, each with its limit and whether it holds."""
    first, last = result.samples[0], result.samples[-1]
    expected = result.expected_false_alarms()
    bound = poisson_quantile(expected, POISSON_QUANTILE)
    growth = result.rss_growth_mb()
    audio_h = result.audio_s / 3600
    out = [
        Row(result.name, "audio (h)", f"{audio_h:.2f}", f">= {hours:g}", audio_h >= hours - 1e-6),
        Row(result.name, "wall time (s)", f"{result.wall_s:.1f}", "", None),
        Row(result.name, "speed (x real time)", f"{result.audio_s / result.wall_s:.0f}", "", None),
        Row(result.name, "RSS after warm-up (MB)", f"{first.rss_kb / 1024:.1f}", "", None),
        Row(result.name, "RSS growth (MB)", f"{growth:.2f}", f"< {RSS_LIMIT_MB:g}",
            growth < RSS_LIMIT_MB),
        Row(result.name, "open fds", f"{first.fds} -> {last.fds}", "no growth",
            last.fds <= first.fds),
        Row(result.name, "threads", f"{first.threads} -> {last.threads}", "no growth",
            last.threads <= first.threads),
        Row(result.name, "false alarms", str(result.false_alarms),
            f"<= {bound} (expected {expected:.2f})", result.false_alarms <= bound),
        Row(result.name, "false alarms per hour", f"{result.false_alarms / audio_h:.3f}",
            f"target {result.target_per_hour:g}", None),
    ]  # fmt: skip
    if result.exit_code is not None:
        out.append(Row(result.name, "exit code", str(result.exit_code), "0", result.exit_code == 0))
    if result.uploads is not None:
        out.append(Row(result.name, "uploads received", str(result.uploads), "", None))
    return out


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else "pass" if ok else "FAIL"


def format_table(table: Sequence[Row]) -> str:
    """The rows as an aligned text table."""
    lines = [("soak", "figure", "value", "limit", "result")]
    for r in table:
        lines.append((r.soak, r.figure, r.value, r.limit, _verdict(r.ok)))
    widths = [max(len(line[i]) for line in lines) for i in range(5)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def main(argv: list[str] | None = None) -> int:
    """Run the soaks the options ask for and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector-hours", type=float, default=24.0, help="0 skips it")
    parser.add_argument("--daemon-hours", type=float, default=1.0, help="0 skips it")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
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
        print(json.dumps(document, indent=2))
    else:
        print(format_table(table))
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
