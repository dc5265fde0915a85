"""The daemon benchmark's measurements: listening cost, start-up, and wake word to upload.

Each runs the real daemon (`agent.bench.daemon_process`) in a `Workspace` that holds its
detectors (the shipped "computer" detector under as many names as wake words are wanted), its
configs and its audio, and returns its figures as a dict; `agent.bench.daemon` describes them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from agent.bench.common import PHRASE, mb, say
from agent.bench.daemon_process import (
    STOP_TIMEOUT_S,
    BenchError,
    DaemonProcess,
    Finished,
    event_wall_time,
    run_daemon,
)
from agent.bench.workspace import Workspace
from dsp.constants import SAMPLE_RATE_HZ

COMMAND = "turn on the kitchen lights"
SPEECH_BEFORE_S = 8.0
SPEECH_AFTER_S = 3.0
SPEECH_FLOOR_DB = -40.0
"""Frames this far below a line's loudest count as the silence around its speech."""
SPEECH_FRAMES_PER_S = 100
"""`speech_end_s` looks at 10 ms frames."""
STATUS_POLL_S = 0.005
STATUS_TIMEOUT_S = 1.0
START_TIMEOUT_S = 120.0
UPLOAD_CLOCK_SLACK_S = 1.0
"""An upload whose first byte came this long before the wake event still belongs to it."""


# ---- the workspace's detectors and configs ------------------------------------------------------


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
    config = workspace.config(endpoint_url=endpoint_url)
    template = (config.get("wake_words") or [{}])[0]
    config["wake_words"] = [
        {**template, "name": name, "phrase": PHRASE} for name in wake_word_names(wake_words)
    ]
    config["models"] = {**(config.get("models") or {}), "directory": str(workspace.model_dir)}
    return workspace.save_config(config, label)


# ---- the latency stream -------------------------------------------------------------------------


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
    frame = SAMPLE_RATE_HZ // SPEECH_FRAMES_PER_S
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
    return round(mb(kib), 1)


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
            answered = _until_status_answers(workspace, daemon)
            daemon.listening.wait(max(daemon.launched + START_TIMEOUT_S - time.perf_counter(), 0))
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


def _until_status_answers(workspace: Workspace, daemon: DaemonProcess) -> float | None:
    """Ask for ``status`` until the control socket answers: seconds since launch, or None."""
    from agent.control.server import request
    from kernels.errors import EarshotError

    deadline = daemon.launched + START_TIMEOUT_S
    while time.perf_counter() < deadline and daemon.process.poll() is None:
        try:
            request(workspace.socket, "status", timeout_s=STATUS_TIMEOUT_S)
        except EarshotError:
            time.sleep(STATUS_POLL_S)
            continue
        return time.perf_counter() - daemon.launched
    return None


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
        (
            u for u in uploads
            if (u.metadata.get("first_byte_at") or 0.0) >= wake_wall - UPLOAD_CLOCK_SLACK_S
        ),
        None,
    )  # fmt: skip
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
