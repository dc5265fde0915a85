"""Owner-only folders and files for what earshot keeps of the user's voice.

Enrollment takes (`agent.enroll.store`) and kept feedback (`agent.learning.feedback`) are written
through these, so every such folder is 0700 and every file 0600 from the moment it exists.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from agent.paths import PRIVATE_DIR, PRIVATE_FILE
from dsp.constants import SAMPLE_RATE_HZ


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) and make it owner-only; return it."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    path.chmod(PRIVATE_DIR)  # mkdir's mode is masked by the umask, and exist_ok keeps old modes
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, created 0600 (never readable by others, even for an instant)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    path.chmod(PRIVATE_FILE)


def wav_bytes(samples: np.ndarray) -> bytes:
    """16 kHz mono float audio as a 16-bit WAV file's bytes."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, SAMPLE_RATE_HZ, subtype="PCM_16", format="WAV")
    return buffer.getvalue()
