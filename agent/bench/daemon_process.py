"""One daemon under benchmark: ``python -m agent run ARGS``, its events read and its use sampled.

`DaemonProcess` starts the daemon in a `Workspace`, reads the JSON events it prints on stdout,
and samples its resident memory (``VmRSS``, ``VmHWM``) and CPU time from ``/proc`` every
`RSS_SAMPLE_S`; `DaemonProcess.wait` reaps it and returns what it used as a `Finished`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from agent.bench.workspace import LOG_TAIL_LINES, Workspace, daemon_events, log_tail
from agent.control.procstat import proc_cpu_s, proc_status
from agent.paths import SOURCE_ROOT

RSS_SAMPLE_S = 0.1
STEADY_SETTLE_S = 5.0
"""Seconds after the ``listening`` event before the steady CPU share is sampled."""
STOP_TIMEOUT_S = 10.0
REAP_POLL_S = 0.02


class BenchError(RuntimeError):
    """The daemon failed or timed out; the message holds the end of its log."""


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
        for event in daemon_events(self.process.stdout):
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
            time.sleep(REAP_POLL_S)
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

    def log_tail(self, lines: int | None = LOG_TAIL_LINES) -> str:
        """The end of the daemon's log (stderr); all of it when ``lines`` is None."""
        return log_tail(self.log, lines)


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
    return finished, daemon.log_tail(lines=None)
