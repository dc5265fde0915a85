"""What several suites share: units, the wake phrase, audio lengths, timing, speech and output.

A constant or helper lives here when two or more suites use it; one suite's own figures and
defaults stay in its module. Hours are `models.wake.metrics.SECONDS_PER_HOUR`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dsp.constants import SAMPLE_RATE_HZ

KIB = 1024
MIB = 2**20
MS_PER_S = 1000.0
CHUNK_MS = 80
"""Audio per push, as the agent's capture delivers it."""
CHUNK_SAMPLES = SAMPLE_RATE_HZ * CHUNK_MS // 1000
PHRASE = "computer"
"""The shipped detector's wake phrase."""
MINUTES = 10.0
"""Scripted everyday speech the daemon and the peers listen to, in minutes."""
SPEECH_MARGIN = 1.25
"""Speech asked of `other_speech` per second wanted (it guesses spoken lengths from the text)."""
MEASURED_AUDIO_S = 600
"""Audio streamed per in-process measurement, in seconds; the result is scaled to one hour."""


def say(text: str) -> None:
    """Progress, on stderr."""
    print(text, file=sys.stderr, flush=True)


def machine() -> str:
    """The machine's architecture and processor, as a document's ``machine``."""
    return f"{platform.machine()} {platform.processor() or ''}".strip()


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages, rounded to 0.01."""
    return [round(x, 2) for x in os.getloadavg()]


def mb(kib: float) -> float:
    """KiB (as ``/proc`` counts memory) in MB of 2**20 bytes."""
    return kib * KIB / MIB


@dataclass
class Stopwatch:
    """CPU time of this process (all its threads) and wall time since the watch was made."""

    cpu_start: float = field(default_factory=time.process_time)
    wall_start: float = field(default_factory=time.perf_counter)

    def read(self) -> tuple[float, float]:
        """(CPU s, wall s) since the start."""
        return time.process_time() - self.cpu_start, time.perf_counter() - self.wall_start


def chunks(audio: np.ndarray, samples: int = CHUNK_SAMPLES) -> Iterator[np.ndarray]:
    """``audio`` in consecutive pieces of ``samples`` (the last one may be shorter)."""
    for start in range(0, audio.size, samples):
        yield audio[start : start + samples]


def write_speech(path: Path, seconds: float) -> float:
    """``seconds`` of scripted everyday speech, no wake word, as a 16-bit WAV; returns its length.

    The speech of `models.speech.demo_stream.other_speech` is cut to length (or repeated, were it
    short).
    """
    import soundfile

    from models.speech.demo_stream import build_stream, other_speech

    samples = int(seconds * SAMPLE_RATE_HZ)
    stream = build_stream(other_speech(seconds * SPEECH_MARGIN))
    audio = np.resize(stream.audio, samples)
    soundfile.write(str(path), audio, SAMPLE_RATE_HZ, subtype="PCM_16")
    return audio.size / SAMPLE_RATE_HZ


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """The ``--json`` option every suite has."""
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def suite_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """A suite's argument parser: its docstring as the description, laid out as written."""
    parser = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_json_option(parser)
    return parser


def print_json(document: Any) -> None:
    """A suite's whole result as one JSON document on stdout."""
    print(json.dumps(document, indent=2))
