"""Where earshot keeps what it can rebuild: synthesized speech, corpora, negative streams."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(name: str) -> Path:
    """``$XDG_CACHE_HOME/earshot/NAME`` (``~/.cache/earshot/NAME`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "earshot" / name
