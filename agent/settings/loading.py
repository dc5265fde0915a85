"""Reading a config file: YAML in, validated and path-resolved `Settings` out.

`load_settings` reads a file (by default the user's ``$XDG_CONFIG_HOME/earshot/earshot.yaml``,
else the shipped default) with PyYAML's safe loader, the only place earshot parses YAML, and turns
an unreadable file or invalid YAML into a one-line `ConfigError` naming the file, the line and the
column. A key written twice in one mapping is refused too (YAML forbids it; PyYAML would keep the
last silently). `parse_settings` validates a parsed document (or the CLI's overrides) against the
dataclasses of `agent.settings.sections`, then resolves the file paths in it against the config
file's folder. A ``token_file`` that others may read is worth a warning, once per file and mode.
"""

from __future__ import annotations

import logging
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from agent.settings.locations import default_config_path, user_config_path
from agent.settings.schema import build, show
from agent.settings.sections import BASE_NAMES, Settings
from kernels.errors import ConfigError

_LOGGER = logging.getLogger(__name__)

_MERGE_TAG = "tag:yaml.org,2002:merge"
_warned_token_files: set[tuple[str, int]] = set()
"""(path, mode) of the token files already warned about in this process."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that holds the same key twice.

    Keys brought in by a merge (``<<: *defaults``) may be overridden, as YAML allows.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """The mapping of ``node``, after checking that no key is written twice in it."""
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                seen = first_line.get(key)
            except TypeError:  # an unhashable key: the base class refuses it
                continue
            line = key_node.start_mark.line + 1
            if seen is not None:
                raise yaml.constructor.ConstructorError(
                    None, None,
                    f"duplicate key {_shown_key(key)} "
                    f"({f'twice on line {line}' if seen == line else f'lines {seen} and {line}'})"
                    "; a key may appear only once in a mapping",
                    key_node.start_mark,
                )  # fmt: skip
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def _shown_key(key: Any) -> str:
    """A mapping key as a message shows it: its repr, cut like `show`'s."""
    shown = show(key)
    return shown.split(" ", 1)[1] if isinstance(key, str) else shown


def _where_and_what(err: Exception, text: str) -> str:
    """A YAML error as the end of one line: `` at line L, column C: problem (context)``."""
    where, what = "", str(err)
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = err.problem or err.context or "invalid syntax"
        if err.problem and err.context:
            start = err.context_mark
            begun = f" at line {start.line + 1}, column {start.column + 1}" if start else ""
            what += f" ({err.context}{begun})"
    elif isinstance(err, yaml.reader.ReaderError):
        line = text.count("\n", 0, err.position) + 1
        column = err.position - (text.rfind("\n", 0, err.position) + 1) + 1
        char = err.character
        shown = f"#x{char:04x}" if isinstance(char, int) else repr(char)
        where, what = f" at line {line}, column {column}", f"character {shown}: {err.reason}"
    return f"{where}: {' '.join(what.split())}"


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
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except (yaml.YAMLError, ValueError, RecursionError) as err:
        # PyYAML lets through the ValueError of an integer literal longer than Python converts
        # (4300 digits) and the RecursionError of nesting deeper than the interpreter's stack.
        raise ConfigError(f"{path}: invalid YAML{_where_and_what(err, text)}") from err
    try:
        settings = parse_settings(
            {} if document is None else document, base_dir=path.absolute().parent
        )
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
    _warn_if_others_read(settings.endpoint.token_file)
    return settings


def _warn_if_others_read(token_file: str | None) -> None:
    """Warn (once per file and mode) when the token file may be read by its group or others."""
    if token_file is None:
        return
    try:
        mode = stat.S_IMODE(Path(token_file).stat().st_mode)
    except OSError:
        return  # a missing or unreadable file is refused when the endpoint is set up
    if mode & (stat.S_IRGRP | stat.S_IROTH) and (token_file, mode) not in _warned_token_files:
        _warned_token_files.add((token_file, mode))
        _LOGGER.warning(
            "endpoint.token_file %s is readable by %s (mode %04o); the token should be the "
            "owner's only: chmod 600 %s",
            token_file, "everyone" if mode & stat.S_IROTH else "its group", mode, token_file,
        )  # fmt: skip


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
        base=(
            settings.models.base
            if settings.models.base in BASE_NAMES
            else resolve_optional(settings.models.base)
        ),
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
