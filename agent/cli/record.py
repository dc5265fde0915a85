"""``earshot record``: the microphone to a 16 kHz 16-bit mono WAV file, owner-only.

The arguments and the output's folder are checked before the microphone opens; the audio is then
written to the file as it arrives (memory stays flat however long the recording), and Ctrl-C
stops the recording and keeps what was recorded. The file holds the user's voice, so it is
readable by its owner only (0600), like the enrollment takes.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from agent.paths import PRIVATE_FILE
from dsp.constants import SAMPLE_RATE_HZ
from kernels.errors import AudioError, ConfigError

if TYPE_CHECKING:
    import soundfile

DEFAULT_SECONDS = 5.0
"""Length recorded when ``--seconds`` is not given."""
MIN_SECONDS = 0.001
"""Shortest recording, in seconds (16 samples)."""
MAX_SECONDS = 24 * 3600.0
"""Longest recording, in seconds: a day, 2.8 GB of 16 kHz 16-bit audio, within the 4 GiB a WAV
file can hold."""
FILE_MODE = PRIVATE_FILE
"""The recording's permissions, 0600: it is the user's voice."""


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``record``."""
    record = commands.add_parser(
        "record", help="record the microphone to a 16 kHz WAV file",
        description="Record the microphone to a 16 kHz 16-bit mono WAV file, readable by you "
        "only (0600). Ctrl-C stops early and keeps what was recorded (exit code 130).",
    )  # fmt: skip
    record.add_argument("output", type=Path, help="WAV file to write")
    record.add_argument(
        "--seconds", type=float, default=DEFAULT_SECONDS, metavar="S",
        help=f"length to record (default {DEFAULT_SECONDS:g}; from {MIN_SECONDS:g} to "
        f"{MAX_SECONDS:g}, a day)",
    )  # fmt: skip
    record.add_argument("--device", help="microphone: name substring or index")


def run(args: argparse.Namespace) -> int:
    """Record ``args.seconds`` of the microphone to ``args.output``.

    Raises
    ------
    ConfigError
        ``--seconds`` is not a number from `MIN_SECONDS` to `MAX_SECONDS`, or the output
        cannot be written (a missing folder, a folder in its place, no permission).
    AudioError
        The microphone is missing or fails, or writing fails while recording.
    KeyboardInterrupt
        Ctrl-C, after the file was completed with what was recorded until then.
    """
    from agent.capture.sources import MicrophoneSource

    wanted = round(checked_seconds(args.seconds) * SAMPLE_RATE_HZ)
    output: Path = args.output
    check_output(output)
    with MicrophoneSource(args.device) as mic, _owner_only(output) as file:
        print(
            f"recording {args.seconds:g} s from {mic.name} (Ctrl-C stops and keeps what was "
            "recorded)", file=sys.stderr, flush=True,
        )  # fmt: skip
        written = _write_wav(output, file, mic.chunks(), wanted)
    print(f"wrote {written / SAMPLE_RATE_HZ:.2f} s to {output}", file=sys.stderr)
    return 0


def checked_seconds(seconds: float) -> float:
    """``seconds``, when it is a finite length from `MIN_SECONDS` to `MAX_SECONDS`.

    Raises
    ------
    ConfigError
        It is not (zero, negative, NaN, infinite or longer than a day).
    """
    if not (math.isfinite(seconds) and MIN_SECONDS <= seconds <= MAX_SECONDS):
        raise ConfigError(
            f"--seconds: got {seconds:g}, expected a length in seconds from {MIN_SECONDS:g} to "
            f"{MAX_SECONDS:g} (a day)"
        )
    return seconds


def check_output(path: Path) -> None:
    """Refuse an output the recording could not be written to, before anything is recorded.

    Raises
    ------
    ConfigError
        The folder is missing or not writable, or ``path`` is a folder or a read-only file.
    """
    folder = path.parent
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; expected the name of a WAV file to write")
    if not folder.exists():
        raise ConfigError(f"{path}: the folder {folder} does not exist; create it first")
    if not folder.is_dir():
        raise ConfigError(f"{path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{path}: cannot write in the folder {folder} (permission denied)")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{path}: the file exists and is not writable")


@contextmanager
def _owner_only(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened for writing, created (or truncated and changed to) `FILE_MODE`."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    except OSError as err:
        raise ConfigError(f"{path}: cannot write: {err.strerror}") from err
    try:
        os.fchmod(fd, FILE_MODE)  # an existing file keeps its mode otherwise
    except OSError as err:
        os.close(fd)
        raise ConfigError(f"{path}: cannot make it owner-only: {err.strerror}") from err
    with os.fdopen(fd, "wb") as file:
        yield file


def _write_wav(path: Path, file: BinaryIO, chunks: Iterable[np.ndarray], wanted: int) -> int:
    """Write ``chunks`` to ``file`` as they come, up to ``wanted`` samples; the samples written.

    The WAV header is completed however the recording ends, Ctrl-C (re-raised afterwards)
    included.
    """
    import soundfile

    try:
        wav = soundfile.SoundFile(
            file, "w", samplerate=SAMPLE_RATE_HZ, channels=1, subtype="PCM_16", format="WAV"
        )
    except (OSError, soundfile.LibsndfileError) as err:
        raise AudioError(f"{path}: cannot write WAV file: {err}") from err
    written = 0
    interrupted = False
    try:
        for chunk in chunks:
            part = chunk[: wanted - written]
            wav.write(part)
            written += part.size
            if written >= wanted:
                break
    except KeyboardInterrupt:
        interrupted = True
    except (OSError, soundfile.LibsndfileError) as err:
        raise AudioError(f"{path}: cannot write WAV file: {err}") from err
    finally:
        written = wav.frames  # what reached the file, whatever interrupted the loop
        _close(path, wav)  # completes the header with the length written
    if interrupted:
        print(
            f"interrupted: wrote {written / SAMPLE_RATE_HZ:.2f} s to {path}",
            file=sys.stderr, flush=True,
        )  # fmt: skip
        raise KeyboardInterrupt
    return written


def _close(path: Path, wav: soundfile.SoundFile) -> None:
    import soundfile

    try:
        wav.close()
    except (OSError, soundfile.LibsndfileError) as err:
        raise AudioError(f"{path}: cannot write WAV file: {err}") from err
