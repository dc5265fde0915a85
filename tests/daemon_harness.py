"""Running the real daemon in tests: a config, a subprocess, its events, and audio checks."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
import yaml

from agent.control.server import request
from dsp.constants import SAMPLE_RATE_HZ
from models.speech.demo_stream import Line, Stream, build_stream, other_speech, wake_and_command
from tests.conftest import EARSHOT, REPO

COMMAND_TEXT = "turn on the kitchen lights"


def conversation(before_s: float = 20.0, after_s: float = 6.0) -> list[Line]:
    """Other talk, the wake word and a command, then more talk."""
    return [
        *other_speech(before_s),
        *wake_and_command("computer", COMMAND_TEXT),
        *other_speech(after_s, offset=3),
    ]


def write_stream(path: Path, script: list[Line]) -> Stream:
    """Render ``script`` to a 16-bit WAV file at ``path``."""
    stream = build_stream(script)
    soundfile.write(path, stream.audio, SAMPLE_RATE_HZ, subtype="PCM_16")
    return stream


def write_config(path: Path, **sections: object) -> Path:
    """A YAML config of the given sections (the rest default)."""
    path.write_text(yaml.safe_dump(sections, sort_keys=False))
    return path


@dataclass
class RunningAgent:
    """``earshot run`` as a subprocess, with its stdout events collected on a thread."""

    process: subprocess.Popen[str]
    socket: Path
    events: list[dict] = field(default_factory=list)
    _lines: queue.Queue[dict] = field(default_factory=queue.Queue)

    @classmethod
    def start(cls, *args: str, env: dict[str, str], socket: Path) -> RunningAgent:
        process = subprocess.Popen(
            [*EARSHOT, "run", *args], cwd=REPO, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        agent = cls(process, socket)
        threading.Thread(target=agent._read, daemon=True).start()
        return agent

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            event = json.loads(line)
            self.events.append(event)
            self._lines.put(event)

    def wait_for(self, kind: str, timeout_s: float, **fields: object) -> dict:
        """The first event of ``kind`` (with these field values) seen from now on."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                event = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if event["event"] == kind and all(event.get(k) == v for k, v in fields.items()):
                return event
        raise AssertionError(f"no {kind} event {fields} within {timeout_s} s: {self.events}")

    def wait_until_hearing(self, timeout_s: float = 15.0) -> dict:
        """Wait until the daemon has processed some audio; its status then."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                status = request(self.socket, "status")
                if float(status["audio_s"]) > 0.5:  # type: ignore[arg-type]
                    return status
            except Exception:  # noqa: BLE001  (not up yet)
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"the agent never heard audio: {self.stop()[1]}")

    def of(self, kind: str) -> list[dict]:
        """Every event of ``kind`` so far."""
        return [e for e in self.events if e["event"] == kind]

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> tuple[int, str, float]:
        """Signal the agent; (exit code, stderr, seconds it took to exit)."""
        start = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        took = time.monotonic() - start
        assert self.process.stderr is not None
        return self.process.returncode, self.process.stderr.read(), took


def best_alignment(needle: np.ndarray, haystack: np.ndarray) -> tuple[int, float]:
    """Offset in ``haystack`` where ``needle`` fits best, and the correlation coefficient there.

    Full normalised cross-correlation by FFT: at each offset the dot product is divided by both
    segments' norms.
    """
    needle = needle.astype(np.float64) - needle.mean()
    haystack = haystack.astype(np.float64)
    n, m = needle.size, haystack.size
    if m < n:
        haystack = np.pad(haystack, (0, n - m))
        m = n
    size = 1 << int(np.ceil(np.log2(n + m)))
    dots = np.fft.irfft(np.fft.rfft(haystack, size) * np.conj(np.fft.rfft(needle, size)), size)
    dots = dots[: m - n + 1]
    sums = np.concatenate(([0.0], np.cumsum(haystack)))
    squares = np.concatenate(([0.0], np.cumsum(haystack**2)))
    window_sum = sums[n:] - sums[:-n]
    window_var = np.maximum(squares[n:] - squares[:-n] - window_sum**2 / n, 1e-12)
    scores = dots / (np.sqrt(window_var) * np.linalg.norm(needle))
    best = int(np.argmax(scores))
    return best, float(scores[best])
