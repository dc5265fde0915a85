"""Validating a tree of frozen dataclasses from parsed YAML, with messages that say what to fix.

`build` turns a mapping (what ``yaml.safe_load`` returns) into an instance of a frozen dataclass,
recursing into fields whose types are dataclasses themselves. The field annotations are the
schema:

- keys the dataclass does not declare are errors with a "did you mean" hint, and declared keys
  without a default are required;
- ``int``, ``float``, ``str`` and ``bool`` are checked strictly (``true`` is not a number, ``1``
  is a number but not a string; ints are accepted for floats and become floats); unions try
  each member in turn and ``Literal`` lists the allowed values;
- a number bounded with ``field(metadata=in_range(low, high))`` must lie in ``[low, high]``;
- ``tuple[X, ...]`` fields are YAML lists checked item by item, with paths such as
  ``wake_words[1].phrase``; a null list is empty, and a null section uses its defaults;
- after construction, a dataclass's ``_validate(self, path)`` (when it defines one) checks what
  spans several of its fields, using `join_path` and `show` to word its messages alike.

Every error is a `ConfigError` naming the field path, the value received (its type and a short
repr) and what is allowed, e.g. ``audio.block_ms: got 5, expected an integer in [10, 1000]``.
Nothing here knows earshot's settings; those live in `agent.settings`.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from typing import Any, Literal, TypeVar, get_args, get_origin

from kernels.errors import ConfigError

T = TypeVar("T")


def in_range(low: float, high: float) -> dict[str, tuple[float, float]]:
    """Field metadata bounding a number: ``field(default=..., metadata=in_range(0, 1))``."""
    return {"range": (low, high)}


def build(cls: type[T], value: Any, path: str) -> T:
    """An instance of the dataclass ``cls`` from the mapping ``value`` found at ``path``.

    Parameters
    ----------
    cls
        A frozen dataclass whose type hints (and ``in_range`` metadata) are the schema.
    value
        The parsed YAML for it: a mapping of keys.
    path
        Where ``value`` sits in the document (``""`` for the root, ``"endpoint"``,
        ``"wake_words[1]"``); it prefixes every error message.

    Raises
    ------
    ConfigError
        An unknown or missing key, a value of the wrong type or out of range, or a failed
        ``_validate`` check.
    """
    if not isinstance(value, dict):
        raise ConfigError(f"{path or 'config'}: got {show(value)}, expected a mapping of keys")
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    for key in value:
        if key not in known:
            hint = difflib.get_close_matches(str(key), known, n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            where = join_path(path, _key_text(key))
            raise ConfigError(f"{where}: unknown key; allowed keys are {sorted(known)}{suggestion}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, spec in known.items():
        if name in value:
            kwargs[name] = _coerce(hints[name], value[name], join_path(path, name), spec.metadata)
        elif spec.default is MISSING and spec.default_factory is MISSING:
            raise ConfigError(f"{join_path(path, name)}: required key is missing")
    result = cls(**kwargs)
    validate = getattr(result, "_validate", None)
    if validate is not None:
        validate(path)
    return result


def _coerce(kind: Any, value: Any, path: str, meta: Any) -> Any:
    origin, args = get_origin(kind), get_args(kind)
    if is_dataclass(kind):
        # A section heading whose keys are all commented out parses as null: use its defaults.
        return build(kind, {} if value is None else value, path)  # type: ignore[arg-type]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _coerce_list(args[0], value, path, meta)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _coerce(option, value, path, meta)
            except ConfigError:
                continue
        allowed = " or ".join(_describe(a, meta) for a in args)
        raise ConfigError(f"{path}: got {show(value)}, expected {allowed}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{path}: got {show(value)}, expected one of {list(args)}")
    if kind is type(None):
        if value is None:
            return None
        raise ConfigError(f"{path}: got {show(value)}, expected null")
    return _scalar(kind, value, path, meta)


def _coerce_list(item: Any, value: Any, path: str, meta: Any) -> tuple[Any, ...]:
    # A key whose items are all commented out parses as null: an empty list.
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{path}: got {show(value)}, expected a list of {_plural(item)}")
    if is_dataclass(item):
        # A null item is an error, not an all-defaults mapping as for a section heading.
        build_item: Any = build
        return tuple(build_item(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    return tuple(_coerce(item, v, f"{path}[{i}]", meta) for i, v in enumerate(value))


def _scalar(kind: Any, value: Any, path: str, meta: Any) -> Any:
    numeric = kind in (int, float)
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind) and not isinstance(value, bool)
    if not ok:
        raise ConfigError(f"{path}: got {show(value)}, expected {_type_name(kind)}")
    if numeric and "range" in meta:
        low, high = meta["range"]
        if not low <= value <= high:
            raise ConfigError(
                f"{path}: got {_repr(value)}, expected {_type_name(kind)} in [{low}, {high}]"
            )
    return float(value) if kind is float else value


def _type_name(kind: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if is_dataclass(kind):
        return "a mapping of keys"
    return "null" if kind is type(None) else names.get(kind, getattr(kind, "__name__", str(kind)))


def _describe(kind: Any, meta: Any) -> str:
    """`_type_name`, with the allowed range of a number."""
    if kind in (int, float) and "range" in meta:
        low, high = meta["range"]
        return f"{_type_name(kind)} in [{low}, {high}]"
    return _type_name(kind)


def _plural(kind: Any) -> str:
    names = {int: "integers", float: "numbers", str: "strings", bool: "true or false values"}
    if is_dataclass(kind):
        return "mappings"
    return names.get(kind, _type_name(kind))


_SHOWN_VALUE_CHARS = 60


def show(value: Any) -> str:
    """``value`` as error messages show it: its type and a repr cut to 60 characters."""
    if isinstance(value, dict | list):
        return type(value).__name__
    text = _repr(value)
    if len(text) > _SHOWN_VALUE_CHARS:
        text = text[: _SHOWN_VALUE_CHARS - 3] + "..."
    return f"{type(value).__name__} {text}"


def _repr(value: Any) -> str:
    """``repr(value)``, or ``<about N digits>`` for an int too long for Python to convert to text.

    Python refuses to convert ints longer than `sys.get_int_max_str_digits` (4300 by default) to
    text, with a ValueError, and such ints can reach the schema through `agent.settings`'s
    ``parse_settings``.
    """
    try:
        return repr(value)
    except ValueError:
        if not isinstance(value, int):
            raise
        return f"<about {int(abs(value).bit_length() * math.log10(2)) + 1} digits>"


def _key_text(key: Any) -> str:
    """An unknown key as a field path shows it, so that a message stays one line.

    As written when printable and short, else its repr cut like `show`'s.
    """
    text = str(key)
    if text.isprintable() and len(text) <= _SHOWN_VALUE_CHARS:
        return text
    shown = repr(text)
    return shown if len(shown) <= _SHOWN_VALUE_CHARS else shown[: _SHOWN_VALUE_CHARS - 3] + "..."


def join_path(path: str, key: str) -> str:
    """The path of ``key`` inside ``path``: ``audio`` and ``block_ms`` give ``audio.block_ms``."""
    return f"{path}.{key}" if path else key
