"""Manifest schemas: the type and bounds of every manifest field a model loader reads.

A model file's manifest is JSON that anyone can edit, and only the weights are checksummed, so its
values are untrusted input: an architecture argument sizes the arrays a network is built with, a
calibration length divides. Loaders therefore check a manifest against a schema before building
anything from it, and refuse a file that breaks it with a `ModelError` naming the file, the
field, the value received and what is allowed::

    base.npz: manifest architecture.args.channels: got float 1000000.0, expected an integer in
    [1, 512]

A schema is made of specs: `Number` (an integer or a finite number, in bounds), `Text`,
`Exactly` (one value), `ListOf`, `MapOf` (a mapping of names to values of one spec), `Record` (a
mapping of named fields, each with its own spec), `Tagged` (one of several records, named by a
field), `Nullable` and `ANY`. This module knows nothing
of earshot's models: `models.nn.checkpoint` holds the schema every manifest meets, and the model
modules (`models.base.model`, `models.wake.model`) the schema of their kind.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from kernels.errors import ModelError

SHOWN_VALUE_CHARS = 60
"""Longest repr of a received value in a message; longer ones are cut."""


class _Invalid(Exception):
    """A value that breaks its spec: where it is and what is wrong."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where, self.problem = where, problem


def show(value: object) -> str:
    """``value`` as messages show it: its type and a repr cut to `SHOWN_VALUE_CHARS`."""
    if isinstance(value, dict | list):
        return f"{type(value).__name__} of {len(value)} items"
    try:
        text = repr(value)
    except ValueError:  # an int too long for Python to print
        text = "<a very long number>"
    if len(text) > SHOWN_VALUE_CHARS:
        text = text[: SHOWN_VALUE_CHARS - 3] + "..."
    return f"{type(value).__name__} {text}"


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


class Spec:
    """The rule one manifest value must meet."""

    def describe(self) -> str:
        """What the spec allows, as a message words it (``an integer in [1, 512]``)."""
        raise NotImplementedError

    def check(self, value: object, where: str) -> None:
        """Raise `_Invalid` naming ``where`` unless ``value`` meets the spec."""
        raise NotImplementedError

    def _refuse(self, value: object, where: str) -> _Invalid:
        return _Invalid(where, f"got {show(value)}, expected {self.describe()}")


@dataclass(frozen=True)
class Number(Spec):
    """A finite number in ``[low, high]`` (``(low, high]`` with ``low_open``), or an integer."""

    low: float
    high: float
    integer: bool = False
    low_open: bool = False

    def describe(self) -> str:  # noqa: D102
        kind = "an integer" if self.integer else "a number"
        return f"{kind} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"

    def check(self, value: object, where: str) -> None:  # noqa: D102
        allowed = int if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, allowed):
            raise self._refuse(value, where)
        assert isinstance(value, int | float)
        if isinstance(value, float) and not math.isfinite(value):
            raise self._refuse(value, where)
        above_low = value > self.low if self.low_open else value >= self.low
        if not above_low or value > self.high:
            raise self._refuse(value, where)


@dataclass(frozen=True)
class Text(Spec):
    """A string of ``min_chars`` to ``max_chars`` characters, matching ``pattern`` if given."""

    max_chars: int = 200
    min_chars: int = 1
    pattern: str | None = None
    meaning: str | None = None
    """How messages name what ``pattern`` allows (``a sha256 in lowercase hex``)."""

    def describe(self) -> str:  # noqa: D102
        if self.meaning is not None:
            return self.meaning
        return f"text of {self.min_chars} to {self.max_chars} characters"

    def check(self, value: object, where: str) -> None:  # noqa: D102
        if not isinstance(value, str) or not self.min_chars <= len(value) <= self.max_chars:
            raise self._refuse(value, where)
        if self.pattern is not None and re.fullmatch(self.pattern, value) is None:
            raise self._refuse(value, where)


@dataclass(frozen=True)
class Exactly(Spec):
    """One value, of the same type (``1`` is not ``true``, nor ``1.0``)."""

    value: object

    def describe(self) -> str:  # noqa: D102
        return repr(self.value)

    def check(self, value: object, where: str) -> None:  # noqa: D102
        if type(value) is not type(self.value) or value != self.value:
            raise self._refuse(value, where)


@dataclass(frozen=True)
class AnyValue(Spec):
    """Any JSON value (for what no loader reads: recipes, metrics, notes)."""

    def describe(self) -> str:  # noqa: D102
        return "any value"

    def check(self, value: object, where: str) -> None:  # noqa: D102
        return None


ANY = AnyValue()


@dataclass(frozen=True)
class ListOf(Spec):
    """A list of ``min_items`` to ``max_items`` values, each meeting ``item``."""

    item: Spec
    max_items: int
    min_items: int = 0

    def describe(self) -> str:  # noqa: D102
        count = (
            f"{self.min_items}" if self.min_items == self.max_items
            else f"{self.min_items} to {self.max_items}"
        )  # fmt: skip
        return f"a list of {count} items, each {self.item.describe()}"

    def check(self, value: object, where: str) -> None:  # noqa: D102
        if not isinstance(value, list) or not self.min_items <= len(value) <= self.max_items:
            raise self._refuse(value, where)
        for index, item in enumerate(value):
            self.item.check(item, f"{where}[{index}]")


@dataclass(frozen=True)
class MapOf(Spec):
    """A mapping of up to ``max_items`` names (meeting ``key``) to values meeting ``value``."""

    value: Spec
    max_items: int
    key: Text = field(default_factory=Text)

    def describe(self) -> str:  # noqa: D102
        return f"a mapping of at most {self.max_items} names, each to {self.value.describe()}"

    def check(self, value: object, where: str) -> None:  # noqa: D102
        if not isinstance(value, dict) or len(value) > self.max_items:
            raise self._refuse(value, where)
        for key, item in value.items():
            try:
                self.key.check(key, where)
            except _Invalid:
                raise _Invalid(
                    where, f"got the name {show(key)}, expected {self.key.describe()}"
                ) from None
            self.value.check(item, _join(where, key))


@dataclass(frozen=True)
class Record(Spec):
    """A mapping of named fields, each meeting its own spec.

    Parameters
    ----------
    fields : mapping of str to Spec
        The fields and their specs; all are required but ``optional`` ones.
    optional : frozenset of str
        Fields that may be left out.
    open : bool
        Whether fields not in ``fields`` are allowed (unchecked); otherwise they are refused.
    """

    fields: Mapping[str, Spec]
    optional: frozenset[str] = frozenset()
    open: bool = False

    def describe(self) -> str:  # noqa: D102
        return f"a mapping with the keys {sorted(self.fields)}"

    def check(self, value: object, where: str) -> None:  # noqa: D102
        if not isinstance(value, dict):
            raise self._refuse(value, where)
        if not self.open:
            for key in value:
                if key not in self.fields:
                    raise _Invalid(
                        _join(where, str(key)),
                        f"unknown key; allowed keys are {sorted(self.fields)}",
                    )
        for key, spec in self.fields.items():
            if key in value:
                spec.check(value[key], _join(where, key))
            elif key not in self.optional:
                raise _Invalid(_join(where, key), "required key is missing")


@dataclass(frozen=True)
class Nullable(Spec):
    """``null``, or a value meeting ``spec``."""

    spec: Spec

    def describe(self) -> str:  # noqa: D102
        return f"null or {self.spec.describe()}"

    def check(self, value: object, where: str) -> None:  # noqa: D102
        if value is not None:
            self.spec.check(value, where)


@dataclass(frozen=True)
class Tagged(Spec):
    """A mapping whose ``tag`` field names its variant, and which meets that variant's `Record`."""

    tag: str
    variants: Mapping[str, Record]

    def describe(self) -> str:  # noqa: D102
        return f"a mapping whose {self.tag!r} is one of {sorted(self.variants)}"

    def check(self, value: object, where: str) -> None:  # noqa: D102
        if not isinstance(value, dict):
            raise self._refuse(value, where)
        name = value.get(self.tag)
        if not isinstance(name, str) or name not in self.variants:
            raise _Invalid(
                _join(where, self.tag), f"got {show(name)}, expected one of {sorted(self.variants)}"
            )
        fields = {self.tag: Exactly(name), **self.variants[name].fields}
        Record(fields, self.variants[name].optional).check(value, where)


def validate_manifest(path: str | os.PathLike[str], manifest: object, schema: Spec) -> None:
    """Check a model file's manifest (as parsed JSON) against ``schema``.

    Parameters
    ----------
    path : path
        The model file, for messages.
    manifest : object
        The parsed manifest JSON (a mapping of fields, if it is valid).
    schema : Spec
        What they must meet (usually a `Record`).

    Raises
    ------
    ModelError
        ``"<path>: manifest <field>: got <value>, expected <what is allowed>"`` for the first
        field that breaks the schema.
    """
    try:
        schema.check(manifest, "")
    except _Invalid as err:
        where = f" {err.where}" if err.where else ""
        raise ModelError(f"{path}: manifest{where}: {err.problem}") from None
