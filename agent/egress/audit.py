"""The upload audit log: one JSON line per upload, in an owner-only file.

Every time command audio is offered to the endpoint, `agent.egress.gate.PrivacyGate` appends exactly
one entry, whatever the outcome, so the user can see what left the machine and when::

    {"time": "2025-01-01T12:00:00.000000+00:00", "wake_word": "computer", "score": 0.93,
     "seconds": 2.4, "bytes": 76844, "endpoint": "https://asr.example/upload", "kind": "http",
     "result": "ok", "status": 200, "attempts": 1, "error": null}

``result`` is ``ok`` (the endpoint accepted it), ``failed`` (every attempt failed) or ``dropped``
(cancelled, or refused before sending). The endpoint is stored without user info, query or
fragment, and no entry ever holds a token. The log holds no audio.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from agent.paths import PRIVATE_DIR, PRIVATE_FILE

_LOGGER = logging.getLogger(__name__)

RESULTS = ("ok", "failed", "dropped")
Result = Literal["ok", "failed", "dropped"]
FIELDS = (
    "time", "wake_word", "score", "seconds", "bytes", "endpoint", "kind", "result", "status",
    "attempts", "error",
)  # fmt: skip
"""Keys of every entry, in the order they are written."""


def utc_now_iso() -> str:
    """The current time as ISO 8601 in UTC, with microseconds."""
    return datetime.now(UTC).isoformat()


def make_entry(
    *,
    wake_word: str,
    score: float,
    seconds: float,
    bytes_sent: int,
    endpoint: str,
    kind: str,
    result: Result,
    status: int | None,
    attempts: int,
    error: str | None,
) -> dict[str, Any]:
    """One audit entry with every key of `FIELDS`, stamped with the current time.

    Parameters
    ----------
    seconds
        Audio seconds sent (or that would have been sent).
    bytes_sent
        Bytes written in the last attempt, headers excluded.
    endpoint
        The endpoint URL without secrets (see `agent.egress.wire.redact_url`).
    """
    return {
        "time": utc_now_iso(),
        "wake_word": wake_word,
        "score": round(float(score), 4),
        "seconds": round(float(seconds), 3),
        "bytes": int(bytes_sent),
        "endpoint": endpoint,
        "kind": kind,
        "result": result,
        "status": status,
        "attempts": int(attempts),
        "error": error,
    }


class AuditLog:
    """Append-only JSON-lines log of uploads, owner-only (directory 0700, file 0600).

    Parameters
    ----------
    path
        The log file; its parent directory is created on the first append.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path)!r})"

    def append(self, entry: dict[str, Any]) -> None:
        """Append one entry as a JSON line; safe to call from several threads.

        Raises
        ------
        OSError
            The directory or file cannot be created or written.
        """
        line = json.dumps(entry, ensure_ascii=False, separators=(", ", ": ")) + "\n"
        with self._lock:
            parent = self.path.parent
            if not parent.is_dir():
                parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
                parent.chmod(PRIVATE_DIR)  # mkdir's mode is masked by the umask
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
            fd = os.open(self.path, flags, PRIVATE_FILE)
            try:
                if os.fstat(fd).st_mode & 0o077:
                    os.fchmod(fd, PRIVATE_FILE)
                os.write(fd, line.encode("utf-8"))
            finally:
                os.close(fd)

    def entries(self) -> list[dict[str, Any]]:
        """Every well-formed entry of this log; see `read`."""
        return self.read(self.path)

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        """Every well-formed entry of the log at ``path``; [] when it does not exist.

        Lines that are not a JSON object are skipped, and their count is logged as a warning.

        Raises
        ------
        OSError
            The file exists but cannot be read.
        """
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            return []
        entries: list[dict[str, Any]] = []
        skipped = 0
        for raw in data.splitlines():
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                skipped += 1
                continue
            if isinstance(entry, dict):
                entries.append(entry)
            else:
                skipped += 1
        if skipped:
            _LOGGER.warning("%s: skipped %d malformed line(s)", path, skipped)
        return entries
