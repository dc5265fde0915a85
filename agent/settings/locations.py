"""Where earshot keeps its files by default, following the XDG base directories.

The config file the agent reads when none is named (`user_config_path`, else the shipped
`default_config_path`), and the defaults of the settings that name a place: trained detectors
(`default_model_dir`), the audit log (`default_audit_path`), kept feedback
(`default_feedback_dir`), the control socket (`default_socket_path`), and the user's enrollment
takes (`enrollment_dir`). Each function reads the
environment when called, so a changed ``XDG_*`` variable takes effect at once.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.paths import shipped_config_file


def default_config_path() -> Path:
    """The shipped default config: beside the source tree, or installed under share/earshot."""
    return shipped_config_file("earshot.yaml")


def user_config_path() -> Path:
    """``$XDG_CONFIG_HOME/earshot/earshot.yaml`` (``~/.config/earshot/earshot.yaml``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "earshot" / "earshot.yaml"


def data_dir() -> Path:
    """``$XDG_DATA_HOME/earshot`` (``~/.local/share/earshot``): what earshot keeps for the user."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "earshot"


def default_model_dir() -> Path:
    """``$XDG_DATA_HOME/earshot/wake`` (``~/.local/share/earshot/wake``)."""
    return data_dir() / "wake"


def enrollment_dir() -> Path:
    """``$XDG_DATA_HOME/earshot/enrollment``: the user's enrollment takes, owner-only."""
    return data_dir() / "enrollment"


def default_feedback_dir() -> Path:
    """``$XDG_DATA_HOME/earshot/feedback``: false alarms and misses the user kept, owner-only."""
    return data_dir() / "feedback"


def default_audit_path() -> Path:
    """``$XDG_DATA_HOME/earshot/audit.jsonl``: JSON lines of every upload, owner-only."""
    return data_dir() / "audit.jsonl"


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/earshot`` (else ``/tmp/earshot-UID``): the control socket's home."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    return Path(base) / "earshot" if base else Path(f"/tmp/earshot-{os.getuid()}")


def default_socket_path() -> Path:
    """The control socket `earshot status` talks to."""
    return runtime_dir() / "control.sock"
