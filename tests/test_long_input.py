"""``earshot run`` on input without end: a very long file, and standard input that stays silent."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import soundfile

from dsp.constants import SAMPLE_RATE_HZ
from tests.conftest import EARSHOT, REPO

LONG_HOURS = 2
AUDIO_S = 60
"""Both runs stop after this much audio (``--seconds``): a whole-file decode happens before it."""
STOP_PROMISE_S = 2.0
"""The README: SIGTERM to exit within 2 s."""
STOP_SLACK_S = 1.0
"""For a loaded 2-core machine."""
RUN_TIMEOUT_S = 120.0
"""A run that has not ended by then is killed (and fails)."""


def write_silence(path: Path, seconds: int) -> Path:
    """A 16 kHz mono FLAC of digital silence, written a minute at a time (small and quick)."""
    minute = np.zeros(SAMPLE_RATE_HZ * 60, np.int16)
    with soundfile.SoundFile(path, "w", SAMPLE_RATE_HZ, 1, subtype="PCM_16") as f:
        for start in range(0, seconds, 60):
            f.write(minute[: SAMPLE_RATE_HZ * min(60, seconds - start)])
    return path


def peak_rss_bytes(audio: Path, env: dict[str, str], log: Path) -> int:
    """Run ``earshot run --file audio --fast`` for `AUDIO_S` of audio; its peak RSS, in bytes."""
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [*EARSHOT, "run", "--file", str(audio), "--fast", "--seconds", str(AUDIO_S)],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
        watchdog = threading.Timer(RUN_TIMEOUT_S, process.kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)  # the rusage of this child alone
        finally:
            watchdog.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.returncode == 0, f"exit {process.returncode}: {log.read_text()[-2000:]}"
    assert f"stopped after {AUDIO_S}" in log.read_text()
    return usage.ru_maxrss * 1024  # kilobytes on Linux


def test_a_long_file_runs_in_the_memory_of_a_short_one(tmp_path, agent_env):
    """Two hours of audio would be 461 MB of float32 if the file were decoded at once."""
    short = write_silence(tmp_path / "short.flac", 2 * AUDIO_S)
    long = write_silence(tmp_path / "long.flac", LONG_HOURS * 3600)
    whole_file_bytes = LONG_HOURS * 3600 * SAMPLE_RATE_HZ * np.dtype(np.float32).itemsize
    short_peak = peak_rss_bytes(short, agent_env, tmp_path / "short.log")
    long_peak = peak_rss_bytes(long, agent_env, tmp_path / "long.log")
    grew = long_peak - short_peak
    assert grew < whole_file_bytes / 10, (
        f"peak RSS {long_peak / 1e6:.0f} MB on {LONG_HOURS} h of audio against "
        f"{short_peak / 1e6:.0f} MB on {2 * AUDIO_S} s"
    )


def test_sigterm_stops_the_agent_while_its_stdin_stays_open_and_silent(agent_env):
    agent = subprocess.Popen(
        [*EARSHOT, "run", "--stdin"], cwd=REPO, env=agent_env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    stderr: list[str] = []

    def read_stderr() -> None:
        assert agent.stderr is not None
        for line in agent.stderr:
            stderr.append(line)
            lines.put(line)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any("listening for" in line for line in stderr):
            assert agent.poll() is None, "".join(stderr)
            try:
                lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the agent never listened: {''.join(stderr)}") from None
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=STOP_PROMISE_S + STOP_SLACK_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"still running {STOP_PROMISE_S + STOP_SLACK_S:g} s after SIGTERM, its stdin open"
            ) from None
    finally:
        assert agent.stdin is not None
        agent.stdin.close()  # what the defect waited for
        if agent.poll() is None:
            agent.kill()
        agent.wait(timeout=10)
    reader.join(timeout=10)
    assert agent.returncode == 0, "".join(stderr)
    assert "stopped after" in "".join(stderr)
    assert "Traceback" not in "".join(stderr)
