"""The systemd user unit: rendered from the shipped ``config/earshot.service``, installed, removed.

`render_unit` takes the shipped unit and points its ``ExecStart`` at the earshot that is running
now (`earshot_command`), so the service runs the same installation the user just tried. The unit
goes to ``$XDG_CONFIG_HOME/systemd/user/earshot.service`` (`unit_path`). Standard library only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from agent.paths import PRIVATE_DIR, shipped_config_file
from agent.settings import data_dir
from kernels.errors import EarshotError

UNIT_NAME = "earshot"
UNIT_FILE = f"{UNIT_NAME}.service"
ENABLE_COMMANDS = (
    ("systemctl", "--user", "daemon-reload"),
    ("systemctl", "--user", "enable", "--now", UNIT_NAME),
)
"""What makes systemd pick up a new unit and start it now and at every login."""
DISABLE_COMMANDS = (("systemctl", "--user", "disable", "--now", UNIT_NAME),)
RELOAD_COMMANDS = (("systemctl", "--user", "daemon-reload"),)
STOP_COMMANDS = (("systemctl", "--user", "stop", UNIT_NAME), *RELOAD_COMMANDS)
"""What stops a service whose unit was removed, and makes systemd forget it."""
_WANTED_BY = "default.target.wants"
INSTALLED_HEADER = "# Written by `earshot service install`: ExecStart runs the earshot that did.\n"
SERVICE_RUN_OPTIONS = ("--no-demo", "--json")
"""A service without a microphone fails (and is restarted) instead of playing the demo, and
prints JSON lines to the journal."""
_EXEC_START = re.compile(r"^ExecStart=.*$", re.MULTILINE)
_NEEDS_QUOTES = re.compile(r"[\s\"'\\;]")
_SYSTEMCTL_TIMEOUT_S = 60.0


def template_path() -> Path:
    """The shipped unit: beside the source tree, or installed under share/earshot."""
    return shipped_config_file(UNIT_FILE)


def unit_path() -> Path:
    """``$XDG_CONFIG_HOME/systemd/user/earshot.service`` (``~/.config/systemd/user/...``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "systemd" / "user" / UNIT_FILE


def earshot_command() -> list[str]:
    """An absolute command line that starts this earshot.

    The ``earshot`` script being run, else the one beside this Python (a virtual environment's
    ``bin/earshot``), else the one on ``PATH``, else ``python -m agent`` with this Python.
    """
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    candidates = [
        argv0 if argv0 is not None and argv0.name == "earshot" else None,
        Path(sys.executable).parent / "earshot",
    ]
    for candidate in candidates:
        if candidate is not None and candidate.is_file() and os.access(candidate, os.X_OK):
            return [os.path.abspath(candidate)]
    found = shutil.which("earshot")
    if found:
        return [os.path.abspath(found)]
    return [os.path.abspath(sys.executable), "-m", "agent"]


def systemd_quote(word: str) -> str:
    """``word`` as one argument of a systemd command line (``%`` and ``$`` escaped)."""
    word = word.replace("%", "%%").replace("$", "$$")
    if _NEEDS_QUOTES.search(word):
        word = '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def render_unit(template: str, config: Path | None = None) -> str:
    """The shipped unit ``template`` with ``ExecStart`` running this earshot.

    Raises
    ------
    EarshotError
        The template has no ``ExecStart=`` line.
    """
    words = [*earshot_command(), "run", *SERVICE_RUN_OPTIONS]
    if config is not None:
        words += ["--config", os.path.abspath(config)]
    exec_start = "ExecStart=" + " ".join(systemd_quote(word) for word in words)
    rendered, count = _EXEC_START.subn(lambda _match: exec_start, template, count=1)
    if count != 1:
        raise EarshotError(f"{template_path()}: no ExecStart= line to point at earshot")
    return INSTALLED_HEADER + rendered


def read_template() -> str:
    """The shipped unit's text.

    Raises
    ------
    EarshotError
        It cannot be read.
    """
    path = template_path()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise EarshotError(f"{path}: cannot read the shipped systemd unit: {err}") from err


def writable_directories() -> list[Path]:
    """Directories the unit lets the agent write (ReadWritePaths); they must exist at start."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "earshot"
    return [data_dir(), cache]


@dataclass(frozen=True)
class InstallResult:
    """What `install_unit` did."""

    path: Path
    changed: bool
    """False when the same unit was already installed."""


def install_unit(text: str, *, force: bool = False) -> InstallResult:
    """Write the unit to `unit_path` and create the directories it makes writable.

    Raises
    ------
    EarshotError
        A different unit is installed and ``force`` is false, or writing fails.
    """
    path = unit_path()
    try:
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old == text:
            return InstallResult(path, changed=False)
        if old is not None and not force:
            raise EarshotError(
                f"{path}: a different unit is installed; `earshot service install --force` "
                "replaces it (`--print` shows the new one)"
            )
        for directory in writable_directories():
            directory.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    except OSError as err:
        raise EarshotError(f"{path}: cannot install the systemd unit: {err}") from err
    return InstallResult(path, changed=True)


def remove_unit() -> Path | None:
    """Delete the installed unit and its enablement link; the unit's path, None if not installed.

    The ``default.target.wants`` link that ``systemctl enable`` made is removed too, so a unit
    deleted without ``systemctl disable`` leaves no dangling link behind.

    Raises
    ------
    EarshotError
        It exists and cannot be removed.
    """
    path = unit_path()
    link = path.parent / _WANTED_BY / path.name
    try:
        if link.is_symlink():
            link.unlink()
        path.unlink()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise EarshotError(f"{path}: cannot remove the systemd unit: {err}") from err
    return path


def run_systemctl(commands: tuple[tuple[str, ...], ...]) -> str | None:
    """Run each command in turn; None when all succeed, else why the first one failed."""
    if shutil.which("systemctl") is None:
        return "systemctl is not installed"
    for command in commands:
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=_SYSTEMCTL_TIMEOUT_S,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"`{' '.join(command)}` failed: {err}"
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            reason = detail[-1] if detail else f"exit code {done.returncode}"
            return f"`{' '.join(command)}` failed: {reason}"
    return None
