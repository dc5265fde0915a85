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

Run ``earshot bench daemon`` or ``python -m agent.bench.daemon``; ``--json`` prints one JSON
document. ``--minutes 1 --skip-realtime`` takes well under a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import yaml

from agent.control.procstat import proc_cpu_s, proc_status
from agent.paths import PRIVATE_DIR, SOURCE_ROOT

MINUTES = 10.0
WAKE_WORD_COUNTS = (1, 10)
REALTIME_S = 60.0
REPEATS = 3
PHRASE = "computer"
COMMAND = "turn on the kitchen lights"
SPEECH_BEFORE_S = 8.0
SPEECH_AFTER_S = 3.0
SPEECH_FLOOR_DB = -40.0
"""Frames this far below a line's loudest count as the silence around its speech."""
SPEECH_MARGIN = 1.25
"""Speech asked of `other_speech` per second wanted (it guesses lengths from the text)."""
RSS_SAMPLE_S = 0.1
STEADY_SETTLE_S = 5.0
"""Seconds after the ``listening`` event before the steady CPU share is sampled."""
STATUS_POLL_S = 0.005
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0
KIB = 1024
MIB = 2**20
MS_PER_S = 1000.0


class BenchError(RuntimeError):
    """The daemon failed or timed out; the message holds the end of its log."""


def say(text: str) -> None:
    """Progress, on stderr."""
    print(text, file=sys.stderr, flush=True)


# ---- the workspace: a home for the daemon, its detectors, configs and audio ---------------------


@dataclass
class Workspace:
    """A temporary folder holding the daemon's XDG directories, detectors, configs and audio."""

    root: Path

    @property
    def env(self) -> dict[str, str]:
        """The current environment, with earshot's data, config and runtime under ``root``."""
        runtime = self.root / "run"
        runtime.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        return dict(
            os.environ,
            XDG_DATA_HOME=str(self.root / "data"),
            XDG_CONFIG_HOME=str(self.root / "config"),
            XDG_RUNTIME_DIR=str(runtime),
        )

    @property
    def model_dir(self) -> Path:
        """Where the wake-word detectors are saved."""
        return self.root / "wake"

    @property
    def socket(self) -> Path:
        """The daemon's control socket."""
        return self.root / "run" / "control.sock"

    def path(self, name: str) -> Path:
        """A file in the workspace."""
        return self.root / name


def wake_word_names(count: int) -> list[str]:
    """``computer`` and ``count - 1`` more names."""
    return [PHRASE] + [f"{PHRASE}-{i}" for i in range(2, count + 1)]


def write_detectors(model_dir: Path, names: Sequence[str]) -> None:
    """The shipped "computer" detector, saved under each name (a detector's name is its own)."""
    from models.wake.model import WakeWordModel, model_path, shipped_detector

    model_dir.mkdir(parents=True, exist_ok=True)
    shipped = WakeWordModel.load(shipped_detector(PHRASE))
    manifest = shipped.manifest
    assert manifest is not None
    for name in names:
        path = model_path(model_dir, name)
        if path.is_file():
            continue
        replace(shipped, name=name).save(
            path, recipe=manifest.recipe, metrics=manifest.metrics,
            curve=shipped.extra.get("calibration_curve", {}),
        )  # fmt: skip


def write_config(
    workspace: Workspace, label: str, wake_words: int, endpoint_url: str | None = None
) -> Path:
    """The shipped config with ``wake_words`` copies of its first wake word, in the workspace."""
    from agent.settings import default_config_path, load_settings

    config = yaml.safe_load(default_config_path().read_text(encoding="utf-8")) or {}
    template = (config.get("wake_words") or [{}])[0]
    config["wake_words"] = [
        {**template, "name": name, "phrase": PHRASE} for name in wake_word_names(wake_words)
    ]
    config["models"] = {**(config.get("models") or {}), "directory": str(workspace.model_dir)}
    config["privacy"] = {
        **(config.get("privacy") or {}),
        "audit_log": str(workspace.path("audit.jsonl")),
    }
    config["events"] = {**(config.get("events") or {}), "socket": str(workspace.socket)}
    endpoint = dict(config.get("endpoint") or {})
    if endpoint_url is not None:
        endpoint.update(kind="http", url=endpoint_url)
    else:
        endpoint["url"] = None
    config["endpoint"] = endpoint
    path = workspace.path(f"{label}.yaml")
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    load_settings(path)  # refuse a bad config here, with the settings' own message
    return path


# ---- one daemon process -------------------------------------------------------------------------


def _proc_memory_kb(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of a live process in KiB; None once it has exited."""
    status = proc_status(pid)
    if status is None:
        return None
    return status["VmRSS"], status.get("VmHWM", status["VmRSS"])


def event_wall_time(event: dict[str, Any]) -> float:
    """An event's ``time`` (ISO 8601, UTC) as Unix time."""
    return datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")).timestamp()


@dataclass
class Finished:
    """How a daemon process ended and what it used."""

    exit_code: int
    wall_s: float
    """From launch to exit."""
    cpu_s: float
    """User + system CPU time (rusage at exit)."""
    maxrss_kb: int
    """``ru_maxrss``: on Linux at least the parent's peak resident memory when it forked."""
    events: list[dict[str, Any]]
    listening_after_s: float | None
    cpu_at_listening_s: float | None
    rss_kb: list[int] = field(default_factory=list)
    """VmRSS samples taken after the ``listening`` event."""
    peak_kb: int = 0
    """The largest VmHWM sampled: the peak resident memory since ``exec``."""
    cpu_samples: list[tuple[float, float]] = field(default_factory=list)
    """(seconds since launch, CPU seconds) sampled after the ``listening`` event."""

    def steady_cpu_percent(self, settle_s: float = STEADY_SETTLE_S) -> float | None:
        """CPU share while running, from samples ``settle_s`` after listening to the last one.

        Unlike ``cpu_s``, this leaves out the start-up's tail and the shutdown (joining threads,
        unloading modules), which on a short run would weigh as much as a minute of listening.
        """
        if self.listening_after_s is None:
            return None
        steady = [s for s in self.cpu_samples if s[0] >= self.listening_after_s + settle_s]
        if len(steady) < 2 or steady[-1][0] - steady[0][0] <= 0:
            return None
        (t0, c0), (t1, c1) = steady[0], steady[-1]
        return 100.0 * (c1 - c0) / (t1 - t0)


class DaemonProcess:
    """``python -m agent run ARGS`` with its stdout events read and its memory sampled."""

    def __init__(self, args: Sequence[str], workspace: Workspace, log_name: str) -> None:
        self.log = workspace.path(f"{log_name}.log")
        self._log_file: IO[bytes] = open(self.log, "wb")  # closed in wait
        self.events: list[dict[str, Any]] = []
        self.listening = threading.Event()
        self.listening_after_s: float | None = None
        self.cpu_at_listening_s: float | None = None
        self.rss_kb: list[int] = []
        self.cpu_samples: list[tuple[float, float]] = []
        self.peak_kb = 0
        self._done = threading.Event()
        self.launched = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", *args], cwd=SOURCE_ROOT, env=workspace.env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log_file, text=True,
            bufsize=1,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, name="bench-events", daemon=True)
        self._sampler = threading.Thread(target=self._sample, name="bench-rss", daemon=True)
        self._reader.start()
        self._sampler.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(event, dict):
                continue
            self.events.append(event)
            if not self.listening.is_set() and event.get("state") == "listening":
                self.listening_after_s = time.perf_counter() - self.launched
                self.cpu_at_listening_s = proc_cpu_s(self.process.pid)
                self.listening.set()

    def _sample(self) -> None:
        while not self._done.wait(RSS_SAMPLE_S):
            memory = _proc_memory_kb(self.process.pid)
            if memory is None:
                return
            rss, self.peak_kb = memory[0], max(self.peak_kb, memory[1])
            cpu = proc_cpu_s(self.process.pid)
            if self.listening.is_set():
                self.rss_kb.append(rss)
                if cpu is not None:
                    self.cpu_samples.append((time.perf_counter() - self.launched, cpu))

    def terminate(self) -> None:
        """Ask the daemon to stop (SIGTERM), as a service manager does."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float) -> Finished:
        """Reap the process (killing it after ``timeout_s``) and return what it used.

        Raises
        ------
        BenchError
            It did not exit in time.
        """
        deadline = time.monotonic() + timeout_s
        timed_out = False
        while True:
            pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline and not timed_out:
                timed_out = True
                self.process.kill()
                deadline = time.monotonic() + STOP_TIMEOUT_S
            time.sleep(0.02)
        wall_s = time.perf_counter() - self.launched
        self.process.returncode = os.waitstatus_to_exitcode(status)
        self._done.set()
        self._sampler.join()
        self._reader.join(STOP_TIMEOUT_S)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log_file.close()
        if timed_out:
            raise BenchError(f"the daemon did not finish in {timeout_s:.0f} s\n{self.log_tail()}")
        return Finished(
            self.process.returncode, wall_s, usage.ru_utime + usage.ru_stime, usage.ru_maxrss,
            list(self.events), self.listening_after_s, self.cpu_at_listening_s, list(self.rss_kb),
            self.peak_kb, list(self.cpu_samples),
        )  # fmt: skip

    def close(self) -> None:
        """Kill and reap the process if it still runs (after an error elsewhere)."""
        if self.process.returncode is None:
            self.process.kill()
            try:
                self.wait(STOP_TIMEOUT_S)
            except BenchError:
                pass

    def log_tail(self, lines: int = 15) -> str:
        """The end of the daemon's log (stderr)."""
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def run_daemon(
    args: Sequence[str], workspace: Workspace, log_name: str, timeout_s: float
) -> tuple[Finished, str]:
    """Run the daemon until it exits by itself; (what it used, its whole log).

    Raises
    ------
    BenchError
        It failed, timed out or never started listening.
    """
    daemon = DaemonProcess(args, workspace, log_name)
    try:
        finished = daemon.wait(timeout_s)
    finally:
        daemon.close()
    if finished.exit_code != 0 or finished.listening_after_s is None:
        raise BenchError(
            f"`earshot run {' '.join(args)}` exited with {finished.exit_code}"
            f"{'' if finished.listening_after_s else ' without listening'}:\n{daemon.log_tail()}"
        )
    return finished, daemon.log_tail(lines=10**6)


# ---- the streams --------------------------------------------------------------------------------


def write_listening_stream(path: Path, seconds: float) -> float:
    """``seconds`` of other speech (no wake word) as a 16-bit WAV; returns its length."""
    import soundfile

    from dsp.constants import SAMPLE_RATE_HZ
    from models.speech.demo_stream import build_stream, other_speech

    wanted = int(seconds * SAMPLE_RATE_HZ)
    audio = build_stream(other_speech(seconds * SPEECH_MARGIN)).audio
    if audio.size < wanted:  # `other_speech` guesses the length from the text
        audio = np.tile(audio, -(-wanted // audio.size))
    audio = audio[:wanted]
    soundfile.write(path, audio, SAMPLE_RATE_HZ, subtype="PCM_16")
    return audio.size / SAMPLE_RATE_HZ


@dataclass(frozen=True)
class WakeStream:
    """The latency stream's file and where its parts lie (stream seconds)."""

    path: Path
    seconds: float
    wake_end_s: float
    command_end_s: float


def write_wake_stream(path: Path) -> WakeStream:
    """Other speech, the wake phrase and a command, more speech, as a 16-bit WAV."""
    import soundfile

    from dsp.constants import SAMPLE_RATE_HZ
    from models.speech.demo_stream import build_stream, other_speech, wake_and_command

    stream = build_stream(
        [
            *other_speech(SPEECH_BEFORE_S),
            *wake_and_command(PHRASE, COMMAND),
            *other_speech(SPEECH_AFTER_S, offset=3),
        ]
    )
    soundfile.write(path, stream.audio, SAMPLE_RATE_HZ, subtype="PCM_16")
    wake_end = speech_end_s(stream.audio, *stream.span("wake"))
    command_end = speech_end_s(stream.audio, *stream.span("command"))
    return WakeStream(path, stream.audio.size / SAMPLE_RATE_HZ, wake_end, command_end)


def speech_end_s(audio: np.ndarray, start_s: float, end_s: float) -> float:
    """Where speech ends in a line's span: its last 10 ms frame within 40 dB of its loudest.

    A synthesizer's rendition ends with silence, so the span's end is later than the speech's.
    """
    from dsp.constants import SAMPLE_RATE_HZ

    frame = SAMPLE_RATE_HZ // 100
    first = int(start_s * SAMPLE_RATE_HZ)
    part = audio[first : int(end_s * SAMPLE_RATE_HZ)]
    n = part.size // frame
    if n == 0:
        return end_s
    energy = np.square(part[: n * frame].reshape(n, frame), dtype=np.float64).mean(axis=1)
    loud = np.flatnonzero(energy > energy.max() * 10 ** (SPEECH_FLOOR_DB / 10))
    return (first + (int(loud[-1]) + 1) * frame) / SAMPLE_RATE_HZ


# ---- the measurements ---------------------------------------------------------------------------


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _mb(kib: float) -> float:
    return round(kib * KIB / MIB, 1)


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 4) if present else None


def measure_listening(
    workspace: Workspace, stream: Path, audio_s: float, wake_words: int, *, realtime: bool
) -> dict[str, Any]:
    """CPU and memory of the daemon over ``audio_s`` of the stream with ``wake_words``."""
    config = write_config(workspace, f"listen-{wake_words}", wake_words)
    args = ["--config", str(config), "--file", str(stream)]
    if realtime:
        args += ["--seconds", f"{audio_s:g}"]
    else:
        args.append("--fast")
    timeout = audio_s + START_TIMEOUT_S if realtime else 2 * audio_s + START_TIMEOUT_S
    label = f"listen-{wake_words}-{'realtime' if realtime else 'fast'}"
    finished, log = run_daemon(args, workspace, label, timeout)
    startup_cpu = finished.cpu_at_listening_s or 0.0
    listening_cpu = max(finished.cpu_s - startup_cpu, 0.0)
    assert finished.listening_after_s is not None
    listening_wall = finished.wall_s - finished.listening_after_s
    rss = finished.rss_kb
    return {
        "wake_words": wake_words,
        "mode": "realtime" if realtime else "fast",
        "audio_s": round(audio_s, 2),
        "wall_s": round(finished.wall_s, 3),
        "listening_wall_s": round(listening_wall, 3),
        "cpu_s": round(finished.cpu_s, 3),
        "cpu_s_startup": round(startup_cpu, 3),
        "cpu_s_listening": round(listening_cpu, 3),
        "cpu_percent": round(100.0 * listening_cpu / audio_s, 3),
        "cpu_percent_steady": _round(finished.steady_cpu_percent() if realtime else None, 3),
        "cpu_percent_with_startup": round(100.0 * finished.cpu_s / audio_s, 3),
        "speed_x_realtime": round(audio_s / max(listening_wall, 1e-6), 1),
        "peak_rss_mb": _mb(finished.peak_kb) if finished.peak_kb else None,
        "ru_maxrss_mb": _mb(finished.maxrss_kb),
        "rss_median_mb": _mb(statistics.median(rss)) if rss else None,
        "rss_max_mb": _mb(max(rss)) if rss else None,
        "rss_end_mb": _mb(rss[-1]) if rss else None,
        "rss_samples": len(rss),
        "wake_events": sum(1 for e in finished.events if e.get("event") == "wake"),
        "engine": _engine_line(log),
    }


def _engine_line(log: str) -> str | None:
    """What the daemon's log says about where the base network runs."""
    for line in log.splitlines():
        if "kernels.runtime:" in line:
            return line.split("kernels.runtime:", 1)[1].strip()
    return None


def measure_startup(workspace: Workspace, stream: Path, repeats: int) -> dict[str, Any]:
    """Launch -> ``listening`` event, launch -> control socket answers, SIGTERM -> exit."""
    from agent.control.server import request
    from kernels.errors import EarshotError

    config = write_config(workspace, "startup", 1)
    to_listening: list[float] = []
    to_status: list[float | None] = []
    to_stop: list[float] = []
    for run in range(repeats):
        say(f"  start-up {run + 1}/{repeats}")
        daemon = DaemonProcess(
            ["--config", str(config), "--file", str(stream)], workspace, f"startup-{run}"
        )
        try:
            answered = None
            deadline = daemon.launched + START_TIMEOUT_S
            while time.perf_counter() < deadline and daemon.process.poll() is None:
                try:
                    request(workspace.socket, "status", timeout_s=1.0)
                except EarshotError:
                    time.sleep(STATUS_POLL_S)
                    continue
                answered = time.perf_counter() - daemon.launched
                break
            daemon.listening.wait(max(deadline - time.perf_counter(), 0.0))
            stop_from = time.perf_counter()
            daemon.terminate()
            finished = daemon.wait(STOP_TIMEOUT_S)
            stopped = time.perf_counter() - stop_from
        finally:
            daemon.close()
        if finished.listening_after_s is None:
            raise BenchError(f"the daemon never started listening:\n{daemon.log_tail()}")
        to_listening.append(finished.listening_after_s)
        to_status.append(answered)
        to_stop.append(stopped)
    return {
        "runs": repeats,
        "to_listening_s": [round(v, 3) for v in to_listening],
        "to_listening_median_s": _median(to_listening),
        "to_status_s": [None if v is None else round(v, 3) for v in to_status],
        "to_status_median_s": _median(to_status),
        "sigterm_to_exit_s": [round(v, 3) for v in to_stop],
        "sigterm_to_exit_median_s": _median(to_stop),
    }


def measure_latency(workspace: Workspace, stream: WakeStream, repeats: int) -> dict[str, Any]:
    """Play the wake stream in real time ``repeats`` times against a local receiver."""
    from agent.egress.receiver import Receiver

    receiver = Receiver(workspace.path("received"))
    receiver.start()
    runs: list[dict[str, Any]] = []
    try:
        config = write_config(workspace, "latency", 1, endpoint_url=f"{receiver.url}/audio")
        for run in range(repeats):
            say(f"  wake word to upload {run + 1}/{repeats} ({stream.seconds:.1f} s in real time)")
            before = len(receiver.uploads)
            finished, _ = run_daemon(
                ["--config", str(config), "--file", str(stream.path)], workspace,
                f"latency-{run}", stream.seconds + START_TIMEOUT_S,
            )  # fmt: skip
            runs.append(_latency_run(finished, receiver.uploads[before:], stream))
    finally:
        receiver.stop()
    detected = [r for r in runs if r["detected"]]
    keys = (
        "first_byte_s", "wake_event_to_first_byte_s", "wake_end_to_first_byte_s",
        "command_end_to_complete_s", "decision_delay_s",
    )  # fmt: skip
    return {
        "runs": repeats,
        "detected": len(detected),
        "uploaded": sum(1 for r in runs if r.get("upload_result") == "ok"),
        "stream_s": round(stream.seconds, 2),
        "wake_end_s": round(stream.wake_end_s, 3),
        "command_end_s": round(stream.command_end_s, 3),
        **{f"{k.removesuffix('_s')}_median_s": _median([r.get(k) for r in detected]) for k in keys},
        "each_run": runs,
    }


def _latency_run(finished: Finished, uploads: list[Any], stream: WakeStream) -> dict[str, Any]:
    wake = next((e for e in finished.events if e.get("event") == "wake"), None)
    if wake is None:
        return {"detected": False}
    wake_wall = event_wall_time(wake)
    decision_s = float(wake["time_s"])

    def wall(stream_s: float) -> float:
        return wake_wall - (decision_s - stream_s)

    upload = next((e for e in finished.events if e.get("event") == "upload"), None)
    received = next(
        (u for u in uploads if (u.metadata.get("first_byte_at") or 0.0) >= wake_wall - 1.0), None
    )
    result: dict[str, Any] = {
        "detected": True,
        "wake_score": wake.get("score"),
        "decision_delay_s": round(decision_s - stream.wake_end_s, 4),
        "upload_result": None if upload is None else upload.get("result"),
        "first_byte_s": None if upload is None else upload.get("first_byte_s"),
    }
    if received is not None:
        first, last = received.metadata.get("first_byte_at"), received.metadata["last_byte_at"]
        if first is not None:
            result["wake_event_to_first_byte_s"] = round(first - wake_wall, 4)
            result["wake_end_to_first_byte_s"] = round(first - wall(stream.wake_end_s), 4)
        result["command_end_to_complete_s"] = round(last - wall(stream.command_end_s), 4)
        result["received_audio_s"] = received.metadata.get("seconds")
    return result


# ---- the whole run ------------------------------------------------------------------------------


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
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    root = Path(tempfile.mkdtemp(prefix="earshot-bench-"))
    try:
        workspace = Workspace(root)
        write_detectors(workspace.model_dir, wake_word_names(max(wake_word_counts)))
        say(f"synthesizing {minutes:g} min of speech without the wake word")
        stream = workspace.path("listening.wav")
        audio_s = write_listening_stream(stream, minutes * 60.0)
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
            seconds = write_listening_stream(short, min(realtime_s, audio_s))
            say(f"listening to {seconds:g} s in real time, 1 wake word")
            result["listening_realtime"] = measure_listening(
                workspace, short, seconds, 1, realtime=True
            )
            say(f"wake word to upload, {repeats} runs in real time")
            wake_stream = write_wake_stream(workspace.path("wake.wav"))
            result["latency"] = measure_latency(workspace, wake_stream, repeats)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
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


# ---- output -------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1, scale: float = 1.0) -> str:
    return "n/a" if value is None else f"{value * scale:.{digits}f}"


def peer_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
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


def table_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, value, unit, how measured) for every figure."""
    rows: list[tuple[str, str, str, str]] = peer_rows(result)
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
    parser = argparse.ArgumentParser(
        prog="earshot bench daemon", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON document")
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
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
