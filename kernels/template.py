"""Render the WGSL kernel templates in ``kernels/wgsl/`` into shader source.

A kernel template is plain WGSL plus two additions, so that sizes are compile-time constants and
the register-tile loops can be unrolled: every accumulator then lives in a register and every
weight offset is the same for all invocations, which llvmpipe compiles to one scalar load and a
broadcast instead of a per-invocation gather (and which a real GPU serves from its constant
cache):

- ``${NAME}`` is replaced by the value of the constant ``NAME`` (an int is written as a WGSL
  ``u32`` literal such as ``64u``; a string is inserted verbatim).
- A block between ``//! unroll VAR COUNT`` and ``//! end`` is repeated COUNT times with every
  ``{VAR}`` replaced by the iteration number as a ``u32`` literal. COUNT is an integer or a
  ``${NAME}``. When VAR is in the renderer's ``rolled`` set the block becomes a WGSL ``for`` loop
  over a ``u32`` variable named VAR instead; the kernel plans keep reduction loops rolled, which
  keeps shaders small and pipeline creation quick. Blocks nest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Set
from functools import cache
from importlib import resources

_SUBST = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")
_UNROLL = re.compile(r"^\s*//! unroll ([a-z_][a-z0-9_]*) (\S+)\s*$")
_END = re.compile(r"^\s*//! end\s*$")

Constant = int | str


@cache
def load_template(stem: str) -> str:
    """Read the template ``kernels/wgsl/<stem>.wgsl``.

    Parameters
    ----------
    stem : str
        Kernel name, e.g. ``"conv2d"``.

    Returns
    -------
    str
        The template text.
    """
    return resources.files("kernels").joinpath("wgsl", f"{stem}.wgsl").read_text(encoding="utf-8")


def _literal(value: Constant) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"template constant: got {value}, expected a non-negative integer")
        return f"{value}u"
    return value


def substitute(text: str, constants: Mapping[str, Constant]) -> str:
    """Replace every ``${NAME}`` in ``text`` by its constant.

    Parameters
    ----------
    text : str
        Template text.
    constants : Mapping[str, int | str]
        Values by name; ints become ``u32`` literals.

    Returns
    -------
    str
        The text with all placeholders replaced.

    Raises
    ------
    KeyError
        A placeholder has no constant.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in constants:
            raise KeyError(f"template constant ${{{name}}} has no value")
        return _literal(constants[name])

    return _SUBST.sub(replace, text)


def _block_end(lines: list[str], start: int) -> int:
    """Index of the ``//! end`` that closes the block opened at ``start``."""
    depth = 0
    for index in range(start, len(lines)):
        if _UNROLL.match(lines[index]):
            depth += 1
        elif _END.match(lines[index]):
            depth -= 1
            if depth == 0:
                return index
    raise ValueError(f"template line {start + 1}: '//! unroll' without '//! end'")


def _expand(lines: list[str], rolled: Set[str]) -> list[str]:
    out: list[str] = []
    index = 0
    while index < len(lines):
        match = _UNROLL.match(lines[index])
        if match is None:
            if _END.match(lines[index]):
                raise ValueError(f"template line {index + 1}: '//! end' without '//! unroll'")
            out.append(lines[index])
            index += 1
            continue
        var, count_text = match.group(1), match.group(2)
        count = int(count_text.rstrip("u"))
        end = _block_end(lines, index)
        body = _expand(lines[index + 1 : end], rolled)
        token = "{" + var + "}"
        if var in rolled:
            out.append(f"for (var {var}: u32 = 0u; {var} < {count}u; {var}++) {{")
            out.extend(line.replace(token, var) for line in body)
            out.append("}")
        else:
            for step in range(count):
                out.extend(line.replace(token, f"{step}u") for line in body)
        index = end + 1
    return out


def render(text: str, constants: Mapping[str, Constant], rolled: Set[str] = frozenset()) -> str:
    """Render a kernel template into WGSL source.

    Parameters
    ----------
    text : str
        Template text (see the module docstring for the syntax).
    constants : Mapping[str, int | str]
        Values for the ``${NAME}`` placeholders.
    rolled : Set[str], optional
        Unroll variables to emit as ``for`` loops instead of straight-line code.

    Returns
    -------
    str
        WGSL source.
    """
    return "\n".join(_expand(substitute(text, constants).splitlines(), rolled)) + "\n"
