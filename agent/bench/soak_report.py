"""What a soak measured, and its report: each figure with its limit and whether it holds.

Resident memory may grow by less than `RSS_LIMIT_MB` after the warm-up, open descriptors and
threads not at all; the false alarms must stay within the `POISSON_QUANTILE` quantile of the
count the wake word's calibrated target rate predicts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.bench.common import mb
from agent.control.procstat import proc_status
from models.wake.metrics import SECONDS_PER_HOUR

RSS_LIMIT_MB = 5.0
POISSON_QUANTILE = 0.99
DEFAULT_TARGET_PER_HOUR = 0.1


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
    target_per_hour: float = DEFAULT_TARGET_PER_HOUR
    python_threads: tuple[int, int] | None = None
    exit_code: int | None = None
    uploads: int | None = None

    def rss_growth_mb(self) -> float:
        """Largest resident memory after warm-up less the warm-up's, in MB."""
        first = self.samples[0].rss_kb
        return mb(max(s.rss_kb - first for s in self.samples))

    def expected_false_alarms(self) -> float:
        """False alarms the calibrated rate predicts for this much audio."""
        return self.target_per_hour * self.audio_s / SECONDS_PER_HOUR


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
    audio_h = result.audio_s / SECONDS_PER_HOUR
    out = [
        Row(result.name, "audio (h)", f"{audio_h:.2f}", f">= {hours:g}", audio_h >= hours - 1e-6),
        Row(result.name, "wall time (s)", f"{result.wall_s:.1f}", "", None),
        Row(result.name, "speed (x real time)", f"{result.audio_s / result.wall_s:.0f}", "", None),
        Row(result.name, "RSS after warm-up (MB)", f"{mb(first.rss_kb):.1f}", "", None),
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
