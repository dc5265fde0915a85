"""Benchmarks behind ``earshot bench SUITE``: each prints measured figures, never asserts them.

One module per suite, named after it; each has ``main(argv) -> int`` and runs as
``python -m agent.bench.SUITE``. May import anything below the CLI; nothing imports it.

The suites, in `SUITES` (``earshot bench`` loads this package by name and calls `run`):

- all (`agent.bench.summary`, the default): every suite below summed up in one table;
- frontend: CPU cost of the streaming log-mel front end;
- engine: batch-1 latency and throughput of the speech network on every backend;
- embedding: the imported speech embedding's cost per 80 ms hop, streamed and whole-window;
- train: a training step of the base network, numpy against wgpu;
- wake: ten wake words against one, detection latency, training a wake word from text;
- daemon: the running agent's CPU, memory, start-up and wake-to-upload latency;
- peers: openWakeWord's and Porcupine's CPU on the same audio;
- soak: hours of audio through the detector and the daemon (memory, files, threads, false alarms).

A large suite keeps its parts in modules named after it (``daemon_process``, ``wake_report``,
...); what several suites share is in `agent.bench.common` and `agent.bench.workspace`. Listing
the suites imports nothing else: `run` imports a suite's module only when it runs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

SUITES: dict[str, str] = {
    "all": "summary",
    "frontend": "frontend",
    "engine": "engine",
    "embedding": "embedding",
    "train": "train",
    "wake": "wake",
    "daemon": "daemon",
    "peers": "peers",
    "soak": "soak",
}
"""``earshot bench SUITE``: the module within `agent.bench` whose ``main(argv)`` runs it."""


def module_name(suite: str) -> str:
    """The full name of the module that runs ``suite`` (one of `SUITES`)."""
    return f"{__name__}.{SUITES[suite]}"


def run(suite: str, argv: Sequence[str]) -> int:
    """Import the module of ``suite`` and run its ``main(argv)``; returns its exit code."""
    return int(importlib.import_module(module_name(suite)).main(list(argv)))
