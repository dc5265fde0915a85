"""Where the agent finds the files it ships and the evaluation data beside the source tree.

Each path is defined here once; settings, the service installer, the CLI and the benchmarks
import it. The model files the package ships are named in `models.paths`.
"""

from __future__ import annotations

import sys
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parent.parent
"""The checkout's root folder (the one holding ``agent/``, ``config/`` and ``models/``)."""
INSTALLED_SHARE = Path(sys.prefix) / "share" / "earshot"
"""Where ``pip install`` puts the files of ``config/`` (pyproject's data-files)."""
DEMO_AUDIO = Path(__file__).resolve().parent / "data" / "demo.wav"
"""The bundled demo recording of ``earshot run --demo``."""
DEFAULT_FSDD = SOURCE_ROOT.parent / "shared" / "data" / "fsdd" / "recordings"
"""The Free Spoken Digit Dataset's recordings, when a checkout has them beside it."""
PRIVATE_DIR = 0o700
"""Mode of every folder earshot creates for the user's data, sockets and uploads."""
PRIVATE_FILE = 0o600
"""Mode of every file (and the control socket) that holds the user's data or controls the agent."""


def shipped_config_file(name: str) -> Path:
    """A file of ``config/``: beside the source tree, or installed under share/earshot.

    Returns the source-tree path when neither exists, so that messages name the expected place.
    """
    candidates = (SOURCE_ROOT / "config" / name, INSTALLED_SHARE / name)
    for path in candidates:
        if path.is_file():
            return path
    return candidates[0]
