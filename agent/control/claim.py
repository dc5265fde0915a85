"""Claiming the control socket's path before binding it: its folder, and a lock beside it.

**The folder.** earshot changes the permissions of two kinds of folder only: its own runtime
folder (`agent.settings.runtime_dir`: ``$XDG_RUNTIME_DIR/earshot``, else ``/tmp/earshot-UID``),
and a folder it creates for the socket; both are made owner-only (0700). Any other folder that
already exists is used as it is, and only when it belongs to the user and nobody else can write
in it: a shared folder (writable by its group or by others, such as ``/tmp``) or a folder of
another user is refused with a `ConfigError` (exit 2) that names it and says why, and is left
untouched. Refusing was chosen over making a private sub-folder inside the shared one because a
sub-folder would move the socket away from the path the config names, the path
``earshot status`` and ``earshot events`` look for.

**The lock.** Before it looks for a stale socket, the agent takes an exclusive `fcntl.flock` on
``SOCKET.lock`` beside the socket, and holds it while it runs. A second agent configured with
the same socket cannot take it and stops with `SocketInUseError` (exit 2, like any other setting
that cannot be used as given: stop the other agent or choose another ``events.socket``), so it
can never remove the live socket of the first after judging it stale a moment earlier. The lock
file holds its owner's pid, for that message. It is removed on release; an agent that locked a
file removed meanwhile (by the owner releasing it) locks the new file instead.

Standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
from pathlib import Path

from agent.paths import PRIVATE_DIR, PRIVATE_FILE
from agent.settings import runtime_dir
from kernels.errors import ConfigError, EarshotError

_LOGGER = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"
"""The lock file is the socket's path with this appended."""
_SHARED_BITS = stat.S_IWGRP | stat.S_IWOTH
_OPEN_BITS = stat.S_IRWXG | stat.S_IRWXO
_LOCK_TRIES = 10
_PID_BYTES = 32


class SocketInUseError(ConfigError):
    """Another agent holds the control socket's lock (or answers on the socket)."""

    def __init__(self, socket_path: Path, pid: int | None = None) -> None:
        holder = f"pid {pid}" if pid is not None else "another process"
        super().__init__(
            f"events.socket: another earshot is running on {socket_path} ({holder}); stop it, "
            "or set events.socket to another path"
        )
        self.socket_path = socket_path
        self.pid = pid


def prepare_folder(folder: Path) -> None:
    """Make sure ``folder`` may hold the control socket; see the module docstring.

    Creates it (0700) when missing; makes earshot's own runtime folder owner-only; never changes
    the mode of any other folder.

    Raises
    ------
    ConfigError
        The folder belongs to another user, or is shared (writable by group or others).
    EarshotError
        It cannot be created or examined.
    """
    try:
        folder.mkdir(mode=PRIVATE_DIR, parents=True)
        created = True
    except FileExistsError:
        created = False
    except OSError as err:
        raise EarshotError(f"control socket folder {folder}: {err}") from err
    try:
        info = folder.stat()
    except OSError as err:
        raise EarshotError(f"control socket folder {folder}: {err}") from err
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"events.socket: {folder} is not a folder; set a path in a folder")
    if info.st_uid != os.getuid():
        raise ConfigError(
            f"events.socket: the socket's folder {folder} belongs to uid {info.st_uid}, not to "
            f"you (uid {os.getuid()}); set a path in a folder of your own"
        )
    mode = stat.S_IMODE(info.st_mode)
    if created or _is_runtime_folder(folder):
        if mode & _OPEN_BITS:
            _LOGGER.info("making %s owner-only (was %o)", folder, mode)
            try:
                folder.chmod(PRIVATE_DIR)
            except OSError as err:
                raise EarshotError(f"control socket folder {folder}: {err}") from err
        return
    if mode & _SHARED_BITS:
        raise ConfigError(
            f"events.socket: the socket's folder {folder} is writable by others (mode {mode:o}) "
            "and earshot never changes a folder it did not create; set a path in a folder only "
            "you can write to, or in a new folder, which earshot creates owner-only"
        )


def _is_runtime_folder(folder: Path) -> bool:
    """True when ``folder`` is earshot's own runtime folder (which it may repair).

    A symbolic link at that path is not: it may lead to any folder of the user's.
    """
    return os.path.abspath(folder) == os.path.abspath(runtime_dir()) and not folder.is_symlink()


class SocketLock:
    """The exclusive lock beside a control socket; see the module docstring.

    Parameters
    ----------
    socket_path
        The control socket; the lock is ``socket_path`` + `LOCK_SUFFIX`.
    """

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = Path(socket_path)
        self.path = self.socket_path.with_name(self.socket_path.name + LOCK_SUFFIX)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock without waiting, and write this process's pid into it.

        Raises
        ------
        SocketInUseError
            Another process holds it.
        EarshotError
            The lock file cannot be opened or locked.
        """
        for _ in range(_LOCK_TRIES):
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                pid = _read_pid(fd)
                os.close(fd)
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise SocketInUseError(self.socket_path, pid) from err
                raise EarshotError(f"control socket lock {self.path}: {err}") from err
            if self._still_linked(fd):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                self._fd = fd
                return
            os.close(fd)  # its owner removed it as it released it: lock the new file
        raise EarshotError(f"control socket lock {self.path}: replaced again and again; retry")

    def release(self) -> None:
        """Remove the lock file and release the lock; nothing happens when it is not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            if self._still_linked(fd):
                self.path.unlink()
        os.close(fd)

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            return os.open(self.path, flags, PRIVATE_FILE)
        except OSError as err:
            raise EarshotError(f"control socket lock {self.path}: {err}") from err

    def _still_linked(self, fd: int) -> bool:
        """Whether the open file ``fd`` is still the one at `path`."""
        try:
            named = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        opened = os.fstat(fd)
        return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _read_pid(fd: int) -> int | None:
    """The pid written in the lock file open as ``fd``; None when unreadable."""
    try:
        text = os.pread(fd, _PID_BYTES, 0).decode("ascii").strip()
        return int(text) if text else None
    except (OSError, UnicodeDecodeError, ValueError):
        return None
