"""What Linux's /proc says about a process: its status fields and its CPU time.

The daemon's status, the benchmarks and the soak read their own or a child's resident memory,
threads and CPU through these; off Linux, or once the process is gone, they answer None.
"""

from __future__ import annotations

import os


def proc_status(pid: int | None = None) -> dict[str, int] | None:
    """The numeric fields of ``/proc/PID/status`` (``VmRSS`` and ``VmHWM`` in KiB, ``Threads``).

    None for a process that has exited (or a zombie, which has no ``VmRSS``) or without /proc.
    """
    fields: dict[str, int] = {}
    try:
        with open(f"/proc/{'self' if pid is None else pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                parts = value.split()
                if parts and parts[0].isdigit():
                    fields[key] = int(parts[0])
    except OSError:
        return None
    return fields if "VmRSS" in fields else None


def proc_cpu_s(pid: int | None = None) -> float | None:
    """User + system CPU time of a process (all its threads) in seconds; None once it is gone."""
    try:
        with open(f"/proc/{'self' if pid is None else pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None
