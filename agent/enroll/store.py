"""The user's enrollments: their takes, their room and the detector fine-tuned on them.

Everything made from the user's voice lives in one owner-only folder per wake word, under the
user's data directory (`agent.settings.enrollment_dir`), and nowhere else::

    ~/.local/share/earshot/enrollment/        drwx------
        computer/                             drwx------
            take-1.wav ... take-5.wav         -rw-------   16 kHz 16-bit mono, trimmed takes
            room.wav                          -rw-------   the room with nobody speaking
            model.npz                         -rw-------   the enrolled detector
            enrollment.json                   -rw-------   phrase, date, summary

Nothing here is ever forwarded. `forget` deletes the folder, and with it every trace of the
enrollment; the wake word falls back to its detector trained from text.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.paths import PRIVATE_FILE
from agent.private_files import private_dir, wav_bytes, write_private
from kernels.errors import AudioError, ConfigError

INFO_FILE = "enrollment.json"
MODEL_FILE = "model.npz"
ROOM_FILE = "room.wav"


@dataclass(frozen=True)
class Enrollment:
    """One wake word's enrollment folder."""

    name: str
    directory: Path

    @property
    def model_path(self) -> Path:
        """The enrolled detector."""
        return self.directory / MODEL_FILE

    @property
    def take_paths(self) -> list[Path]:
        """The takes, in the order they were recorded."""
        paths = self.directory.glob("take-*.wav")
        return sorted(paths, key=lambda p: int(p.stem.removeprefix("take-")))

    def info(self) -> dict[str, Any]:
        """What `save_enrollment` recorded about it ({} when unreadable)."""
        try:
            return dict(json.loads((self.directory / INFO_FILE).read_text()))
        except (OSError, ValueError):
            return {}

    def takes(self) -> list[np.ndarray]:
        """The takes' audio."""
        from dsp.audio import load_audio

        return [load_audio(p) for p in self.take_paths]

    def room(self) -> np.ndarray | None:
        """The room recording, if one was made."""
        from dsp.audio import load_audio

        path = self.directory / ROOM_FILE
        return load_audio(path) if path.is_file() else None

    def size_bytes(self) -> int:
        """Bytes on disk."""
        return sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())


def enrollment(root: Path, name: str) -> Enrollment | None:
    """The enrollment of wake word ``name`` under ``root``, or None."""
    directory = root / name
    return Enrollment(name, directory) if (directory / INFO_FILE).is_file() else None


def list_enrollments(root: Path) -> list[Enrollment]:
    """Every enrollment under ``root``, by name."""
    if not root.is_dir():
        return []
    found = (enrollment(root, p.name) for p in sorted(root.iterdir()) if p.is_dir())
    return [e for e in found if e is not None]


def save_enrollment(
    root: Path,
    name: str,
    *,
    takes: Sequence[np.ndarray],
    room: np.ndarray | None,
    info: dict[str, Any],
    write_model: Any,
) -> Enrollment:
    """Store an enrollment, replacing any earlier one of ``name`` only once all is written.

    ``write_model(path)`` writes the enrolled detector to ``path``.
    """
    private_dir(root)
    staging = private_dir(root / f".{name}.{os.getpid()}.tmp")
    try:
        for index, take in enumerate(takes, start=1):
            write_private(staging / f"take-{index}.wav", wav_bytes(take))
        if room is not None and room.size:
            write_private(staging / ROOM_FILE, wav_bytes(room))
        write_model(staging / MODEL_FILE)
        (staging / MODEL_FILE).chmod(PRIVATE_FILE)
        record = {**info, "name": name, "takes": len(takes), "created": time.time()}
        write_private(staging / INFO_FILE, json.dumps(record, indent=2).encode())
        final = root / name
        if final.exists():
            old = root / f".{name}.{os.getpid()}.old"
            final.rename(old)
            staging.rename(final)
            shutil.rmtree(old)
        else:
            staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Enrollment(name, final)


def forget(root: Path, name: str) -> Enrollment:
    """Delete wake word ``name``'s enrollment: takes, room recording and enrolled detector.

    Raises
    ------
    ConfigError
        There is no such enrollment.
    """
    found = enrollment(root, name)
    if found is None:
        enrolled = [e.name for e in list_enrollments(root)]
        raise ConfigError(
            f"forget: no enrollment of {name!r} in {root}; enrolled wake words: "
            f"{enrolled or 'none'}"
        )
    try:
        shutil.rmtree(found.directory)
    except OSError as err:
        raise AudioError(f"{found.directory}: cannot delete: {err}") from err
    return found
