"""A home for the daemon under benchmark, and what it writes: its events and its log.

The daemon benchmark and the soak start ``python -m agent run`` with earshot's data, config and
runtime folders (the control socket included), its config, detectors, audio and log in a temporary
`Workspace`, so nothing of the user's is touched.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.paths import PRIVATE_DIR

LOG_TAIL_LINES = 15


@dataclass
class Workspace:
    """A folder holding the daemon's XDG directories, detectors, configs, audio and logs."""

    root: Path

    @property
    def env(self) -> dict[str, str]:
        """The current environment, with earshot's data, config and runtime under ``root``."""
        runtime = self.root / "run"
        runtime.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        return dict(
            os.environ,
            XDG_DATA_HOME=str(self.root / "data"),
            XDG_CONFIG_HOME=str(self.root / "config"),
            XDG_RUNTIME_DIR=str(runtime),
        )

    @property
    def model_dir(self) -> Path:
        """Where the wake-word detectors are saved."""
        return self.root / "wake"

    @property
    def socket(self) -> Path:
        """The daemon's control socket."""
        return self.root / "run" / "control.sock"

    def path(self, name: str) -> Path:
        """A file in the workspace."""
        return self.root / name

    def config(self, *, endpoint_url: str | None = None) -> dict[str, Any]:
        """The shipped config, with its audit log and control socket in the workspace.

        It uploads over HTTP to ``endpoint_url``, or nowhere when that is None.
        """
        from agent.settings import default_config_path

        config = yaml.safe_load(default_config_path().read_text(encoding="utf-8")) or {}
        config["privacy"] = {
            **(config.get("privacy") or {}),
            "audit_log": str(self.path("audit.jsonl")),
        }
        config["events"] = {**(config.get("events") or {}), "socket": str(self.socket)}
        endpoint = dict(config.get("endpoint") or {})
        if endpoint_url is not None:
            endpoint.update(kind="http", url=endpoint_url)
        else:
            endpoint["url"] = None
        config["endpoint"] = endpoint
        return config

    def save_config(self, config: dict[str, Any], label: str) -> Path:
        """``config`` as ``LABEL.yaml`` in the workspace; one the settings refuse fails here."""
        from agent.settings import load_settings

        path = self.path(f"{label}.yaml")
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        load_settings(path)  # refuse a bad config here, with the settings' own message
        return path


@contextmanager
def temporary_workspace(prefix: str) -> Iterator[Workspace]:
    """A new workspace in the system's temporary folder, removed with all it holds at the end."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield Workspace(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def daemon_events(lines: Iterable[str | bytes]) -> Iterator[dict[str, Any]]:
    """The JSON objects among the daemon's stdout lines; any other line is skipped."""
    for line in lines:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            yield event


def log_tail(path: Path, lines: int | None = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file (all of it if None); empty when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    every = text.splitlines()
    return "\n".join(every if lines is None else every[-lines:])
