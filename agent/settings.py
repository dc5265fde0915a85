"""earshot's settings: the one place YAML is read, validated into frozen dataclasses.

Unknown keys are errors with a "did you mean" hint, types and ranges are checked, and every message
names the field path, the value received and what is allowed, e.g.
``audio.block_ms: got 5, expected an integer in [10, 1000]``. Lower layers never see YAML: they
take the typed values as keyword arguments.
"""

from __future__ import annotations

import difflib
import os
import sys
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

from kernels.errors import ConfigError

T = TypeVar("T")


def _range(low: float, high: float) -> dict[str, tuple[float, float]]:
    return {"range": (low, high)}


@dataclass(frozen=True)
class AudioSettings:
    """Where audio comes from and how it is chunked."""

    device: str | int | None = None
    """Microphone: None for the system default, a name substring, or a PortAudio index."""
    block_ms: int = field(default=80, metadata=_range(10, 1000))
    """Capture block length, in milliseconds."""
    queue_blocks: int = field(default=25, metadata=_range(2, 1000))
    """Blocks buffered between capture and processing before the oldest is dropped."""


@dataclass(frozen=True)
class LoggingSettings:
    """What the agent logs."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    status_interval_s: float = field(default=5.0, metadata=_range(0.5, 3600))
    """Seconds between status lines while running without a terminal."""


@dataclass(frozen=True)
class Settings:
    """The whole configuration file."""

    audio: AudioSettings = field(default_factory=AudioSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)


def default_config_path() -> Path:
    """The shipped default config: beside the source tree, or installed under share/earshot."""
    candidates = (
        Path(__file__).resolve().parent.parent / "config" / "earshot.yaml",
        Path(sys.prefix) / "share" / "earshot" / "earshot.yaml",
    )
    for path in candidates:
        if path.is_file():
            return path
    return candidates[0]


def user_config_path() -> Path:
    """``$XDG_CONFIG_HOME/earshot/earshot.yaml`` (``~/.config/earshot/earshot.yaml``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "earshot" / "earshot.yaml"


def load_settings(path: str | Path | None = None) -> Settings:
    """Read and validate a config file; None means the user's file if present, else the default.

    Raises
    ------
    ConfigError
        Unreadable file, invalid YAML, or a value that breaks the schema.
    """
    if path is None:
        path = user_config_path() if user_config_path().is_file() else default_config_path()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read config file: {err}") from err
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from err
    try:
        return parse_settings({} if document is None else document)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err


def parse_settings(document: Any) -> Settings:
    """Validate a parsed YAML document (or CLI overrides) into `Settings`."""
    return _build(Settings, document, "")


def _build(cls: type[T], value: Any, path: str) -> T:
    if not isinstance(value, dict):
        raise ConfigError(f"{path or 'config'}: got {_show(value)}, expected a mapping of keys")
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    for key in value:
        if key not in known:
            hint = difflib.get_close_matches(str(key), known, n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            where = _join(path, str(key))
            raise ConfigError(f"{where}: unknown key; allowed keys are {sorted(known)}{suggestion}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, spec in known.items():
        if name in value:
            kwargs[name] = _coerce(hints[name], value[name], _join(path, name), spec.metadata)
        elif spec.default is MISSING and spec.default_factory is MISSING:
            raise ConfigError(f"{_join(path, name)}: required key is missing")
    return cls(**kwargs)


def _coerce(kind: Any, value: Any, path: str, meta: Any) -> Any:
    origin, args = get_origin(kind), get_args(kind)
    if is_dataclass(kind):
        # A section heading whose keys are all commented out parses as null: use its defaults.
        return _build(kind, {} if value is None else value, path)  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _coerce(option, value, path, meta)
            except ConfigError:
                continue
        allowed = " or ".join(_type_name(a) for a in args)
        raise ConfigError(f"{path}: got {_show(value)}, expected {allowed}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{path}: got {_show(value)}, expected one of {list(args)}")
    if kind is type(None):
        if value is None:
            return None
        raise ConfigError(f"{path}: got {_show(value)}, expected null")
    return _scalar(kind, value, path, meta)


def _scalar(kind: Any, value: Any, path: str, meta: Any) -> Any:
    numeric = kind in (int, float)
    ok = (
        isinstance(value, kind) and not isinstance(value, bool)
        if kind is not float
        else isinstance(value, int | float) and not isinstance(value, bool)
    )
    if not ok:
        raise ConfigError(f"{path}: got {_show(value)}, expected {_type_name(kind)}")
    if numeric and "range" in meta:
        low, high = meta["range"]
        if not low <= value <= high:
            raise ConfigError(
                f"{path}: got {value!r}, expected {_type_name(kind)} in [{low}, {high}]"
            )
    return float(value) if kind is float else value


def _type_name(kind: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return "null" if kind is type(None) else names.get(kind, getattr(kind, "__name__", str(kind)))


_SHOWN_VALUE_CHARS = 60


def _show(value: Any) -> str:
    if isinstance(value, dict | list):
        return type(value).__name__
    text = repr(value)
    if len(text) > _SHOWN_VALUE_CHARS:
        text = text[: _SHOWN_VALUE_CHARS - 3] + "..."
    return f"{type(value).__name__} {text}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
