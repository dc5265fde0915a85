"""Standard output that says when it fails, so a closed pipe or a full disk ends earshot cleanly.

`earshot audit | head -1` closes the pipe after one line, and `earshot config check a.yaml >
/dev/full` has nowhere to write: the next write to standard output fails. `install` routes
``sys.stdout`` through a file object that marks such failures, so that the entry point
(`agent.cli.main.main`) can tell them from any other error and end as ``cat`` does: silently on
a closed pipe, with one line on standard error for anything else (a full disk).
"""

from __future__ import annotations

import errno
import io
import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
"""Exit status after standard output's reader went away: a shell's status for ``cat`` killed by
SIGPIPE (141)."""
EXIT_OUTPUT_FAILED = 1
"""Exit status after standard output could not be written for another reason (a full disk)."""
_MARK = "earshot_stdout_failure"
"""Attribute set (to True) on an `OSError` raised by a write to standard output."""


class _MarkingFile(io.FileIO):
    """File descriptor 1, whose failed writes are marked as standard output's.

    The `OSError` keeps its type (a closed pipe is still a `BrokenPipeError`).
    """

    def write(self, data: ReadableBuffer, /) -> int:
        try:
            return super().write(data)
        except OSError as err:
            setattr(err, _MARK, True)
            raise


def install() -> None:
    """Route ``sys.stdout`` through `_MarkingFile`, keeping its encoding and buffering.

    Nothing changes when ``sys.stdout`` is not the interpreter's own (a test capturing it) or
    has no file descriptor.
    """
    current = sys.__stdout__
    if current is None or sys.stdout is not current:
        return
    try:
        fd = current.fileno()
        current.flush()
    except (OSError, ValueError, AttributeError):
        return
    raw = _MarkingFile(fd, "w", closefd=False)
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(raw), encoding=current.encoding, errors=current.errors,
        line_buffering=current.line_buffering,
    )  # fmt: skip


def is_stdout_failure(err: BaseException) -> bool:
    """Whether ``err`` (or an error it was raised from) is a failed write to standard output."""
    seen: BaseException | None = err
    while seen is not None:
        if getattr(seen, _MARK, False):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def stdout_failed(err: OSError) -> int:
    """End after a failed write to standard output: the exit status, after one line if needed.

    Standard output is pointed at /dev/null first, so that the interpreter's final flush of
    what is still buffered does not fail again. A closed pipe (the reader went away) is not an
    error and prints nothing; any other failure prints one line naming standard output.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    if err.errno == errno.EPIPE:
        return EXIT_BROKEN_PIPE
    reason = err.strerror or os.strerror(err.errno or 0)
    try:
        print(f"earshot: error: cannot write to standard output: {reason}", file=sys.stderr)
    except OSError:
        pass
    return EXIT_OUTPUT_FAILED
