"""Reading a config file: YAML in, validated and path-resolved `Settings` out.

`load_settings` reads a file (by default the user's ``$XDG_CONFIG_HOME/earshot/earshot.yaml``,
else the shipped default) with ``yaml.safe_load``, the only place earshot parses YAML, and turns
an unreadable file or invalid YAML into a `ConfigError` naming the file. `parse_settings`
validates a parsed document (or the CLI's overrides) against the dataclasses of
`agent.settings.sections`, then resolves the file paths in it against the config file's folder.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from agent.settings.locations import default_config_path, user_config_path
from agent.settings.schema import build
from agent.settings.sections import Settings
from kernels.errors import ConfigError


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
    except (yaml.YAMLError, ValueError, RecursionError) as err:
        # PyYAML lets through the ValueError of an integer literal longer than Python converts
        # (4300 digits) and the RecursionError of nesting deeper than the interpreter's stack.
        raise ConfigError(f"{path}: invalid YAML: {err}") from err
    try:
        return parse_settings({} if document is None else document, base_dir=path.absolute().parent)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err


def parse_settings(document: Any, base_dir: Path | None = None) -> Settings:
    """Validate a parsed YAML document (or CLI overrides) into `Settings`.

    Parameters
    ----------
    document
        The parsed YAML: a mapping of sections.
    base_dir
        Directory that relative file paths (recordings, model paths) are resolved against: the
        config file's directory. None leaves them relative; ``~`` is expanded either way.

    Raises
    ------
    ConfigError
        A value that breaks the schema.
    """
    return _resolve_paths(build(Settings, document, ""), base_dir)


def _resolve_paths(settings: Settings, base_dir: Path | None) -> Settings:
    def resolve(text: str) -> str:
        path = Path(text).expanduser()
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        return str(path)

    def resolve_optional(text: str | None) -> str | None:
        return None if text is None else resolve(text)

    wake_words = tuple(
        replace(wake_word, recordings=tuple(resolve(r) for r in wake_word.recordings))
        for wake_word in settings.wake_words
    )
    models = replace(
        settings.models,
        directory=resolve_optional(settings.models.directory),
        base=resolve_optional(settings.models.base),
    )
    endpoint = replace(
        settings.endpoint,
        token_file=resolve_optional(settings.endpoint.token_file),
        ca_file=resolve_optional(settings.endpoint.ca_file),
    )
    events = replace(settings.events, socket=resolve_optional(settings.events.socket))
    privacy = replace(
        settings.privacy,
        audit_log=resolve_optional(settings.privacy.audit_log),
        debug_audio_dir=resolve_optional(settings.privacy.debug_audio_dir),
    )
    return replace(
        settings, wake_words=wake_words, models=models, endpoint=endpoint, events=events,
        privacy=privacy,
    )  # fmt: skip
