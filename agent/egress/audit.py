"""The upload audit log: owner-only JSON lines, written ahead of every upload.

Every time command audio is offered to the endpoint, `agent.egress.gate.PrivacyGate` records it
here, whatever the outcome, so the user can see what left the machine and when. An upload that
may send anything gets two lines with the same ``upload`` id: an *attempt* line (``result`` is
``sending``), written before any byte is sent (when it cannot be written, nothing is sent), then
its *result* line::

    {"time": "2025-01-01T12:00:00.000000+00:00", "upload": "9f1c2a7e04b3d5c8",
     "wake_word": "computer", "score": 0.93, "seconds": 0.0, "bytes": 0,
     "endpoint": "https://asr.example/upload", "kind": "http", "result": "sending",
     "status": null, "attempts": 0, "error": null, "transcript": null}
    {"time": "2025-01-01T12:00:03.000000+00:00", "upload": "9f1c2a7e04b3d5c8",
     "wake_word": "computer", "score": 0.93, "seconds": 2.4, "bytes": 76844,
     "endpoint": "https://asr.example/upload", "kind": "http", "result": "ok",
     "status": 200, "attempts": 1, "error": null, "transcript": null}

``result`` is ``ok`` (the endpoint accepted it), ``failed`` (every attempt failed) or ``dropped``
(cancelled, or refused before sending; a refused upload has only this line). ``bytes`` counts
the body bytes the socket accepted in the last attempt (for a ``wyoming`` endpoint, the audio
bytes of its ``audio-chunk`` events) and ``attempts`` the requests made. ``status`` is the HTTP
status (null for ``wyoming``, which has none). ``transcript`` is the text the endpoint answered
an accepted upload with, on one line and cut to 1000 characters (``""`` when a transcription
endpoint heard nothing), and null when there is none. `read` gives one entry per upload, in the
order the uploads ended: the result line where there is one, else the attempt line, whose
``sending`` then means the upload is under way or the agent stopped before it could record the
result (audio may have left). Lines of older logs, without ``upload`` or ``transcript``, are read
as they are. The endpoint is stored without user info, query or fragment, and no entry ever
holds a token. The log holds no audio.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from agent.paths import PRIVATE_DIR, PRIVATE_FILE
from kernels.errors import ConfigError

_LOGGER = logging.getLogger(__name__)

RESULTS = ("ok", "failed", "dropped")
Result = Literal["ok", "failed", "dropped"]
SENDING: Literal["sending"] = "sending"
"""The ``result`` of an attempt line: recorded before the upload sends anything."""
Recorded = Literal["ok", "failed", "dropped", "sending"]
"""The ``result`` of any line: an outcome, or `SENDING`."""
FIELDS = (
    "time", "upload", "wake_word", "score", "seconds", "bytes", "endpoint", "kind", "result",
    "status", "attempts", "error", "transcript",
)  # fmt: skip
"""Keys of every entry, in the order they are written."""
_APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)


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
    result: Recorded,
    status: int | None,
    attempts: int,
    error: str | None,
    upload: str | None = None,
    transcript: str | None = None,
) -> dict[str, Any]:
    """One audit entry with every key of `FIELDS`, stamped with the current time.

    Parameters
    ----------
    seconds
        Audio seconds sent (or that would have been sent).
    bytes_sent
        Body bytes the socket accepted in the last attempt, headers excluded.
    endpoint
        The endpoint URL without secrets (see `agent.egress.wire.redact_url`).
    result
        The outcome, or `SENDING` for the attempt line written before anything is sent.
    upload
        The id shared by an upload's attempt and result lines.
    transcript
        The text the endpoint answered with; None when there is none.
    """
    return {
        "time": utc_now_iso(),
        "upload": upload,
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
        "transcript": transcript,
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

    def check_writable(self) -> None:
        """Check that entries can be appended, creating nothing.

        Raises
        ------
        ConfigError
            The path is a folder or not a regular file, cannot be opened for appending, or lies
            in a folder that does not exist and cannot be created.
        """
        problem = _unwritable_because(self.path)
        if problem is not None:
            raise ConfigError(
                f"privacy.audit_log: {self.path} {problem}; expected a file earshot can append "
                "to (every upload is recorded there before it is sent)"
            )

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
            fd = os.open(self.path, _APPEND_FLAGS | os.O_CREAT, PRIVATE_FILE)
            try:
                if os.fstat(fd).st_mode & 0o077:
                    os.fchmod(fd, PRIVATE_FILE)
                os.write(fd, line.encode("utf-8"))
            finally:
                os.close(fd)

    def entries(self) -> list[dict[str, Any]]:
        """One entry per upload of this log; see `read`."""
        return self.read(self.path)

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        """One entry per upload of the log at ``path``, in the order the uploads ended.

        An upload's result line stands for it; an attempt line with no result after it stands
        for itself (``result`` is ``sending``). Lines without an ``upload`` id (older logs) are
        entries of their own. [] when the log does not exist.

        Raises
        ------
        OSError
            The file exists but cannot be read.
        """
        merged: dict[object, dict[str, Any]] = {}
        for number, line in enumerate(AuditLog.lines(path)):
            upload = line.get("upload")
            key: object = upload if isinstance(upload, str) else number
            merged.pop(key, None)  # the result follows its attempt, and takes its place
            merged[key] = line
        return list(merged.values())

    @staticmethod
    def lines(path: Path) -> list[dict[str, Any]]:
        """Every well-formed line of the log at ``path``, attempts included; [] when missing.

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
        lines: list[dict[str, Any]] = []
        skipped = 0
        for raw in data.splitlines():
            if not raw.strip():
                continue
            try:
                line = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                skipped += 1
                continue
            if isinstance(line, dict):
                lines.append(line)
            else:
                skipped += 1
        if skipped:
            _LOGGER.warning("%s: skipped %d malformed line(s)", path, skipped)
        return lines


def _unwritable_because(path: Path) -> str | None:
    """Why entries cannot be appended to ``path`` (None when they can); creates nothing."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return _uncreatable_because(path)
    except OSError as err:
        return f"cannot be examined ({err.strerror or err.__class__.__name__})"
    if stat.S_ISDIR(mode):
        return "is a folder"
    if not stat.S_ISREG(mode):
        return "is not a regular file"
    try:
        os.close(os.open(path, _APPEND_FLAGS))
    except OSError as err:
        return f"cannot be opened for appending ({err.strerror or err.__class__.__name__})"
    return None


def _uncreatable_because(path: Path) -> str | None:
    """Why ``path``, which does not exist, cannot be created (None when it can)."""
    folder = path.parent
    while True:
        try:
            mode = folder.stat().st_mode
            break
        except (FileNotFoundError, NotADirectoryError):
            if folder.parent == folder:
                return "cannot be created (no folder above it exists)"
            folder = folder.parent
        except OSError as err:
            return f"cannot be created ({folder}: {err.strerror or err.__class__.__name__})"
    if not stat.S_ISDIR(mode):
        return f"cannot be created: {folder} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot be created: the folder {folder} is not writable"
    return None
