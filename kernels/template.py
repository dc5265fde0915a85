"""Load the WGSL kernels in ``kernels/ops/*.wgsl`` and render them into shader source.

Each op's file holds every kernel of that op (inference forward, training forward, gradients) as
sections, after a prelude they share:

- ``//! kernel NAME`` starts the kernel NAME; its source is the file's prelude (everything before
  the first section) followed by the section. Kernel names are unique across files.
- ``//! fragment NAME`` starts a fragment: WGSL written once (``shared.wgsl`` holds those used by
  several ops) that ``//! include NAME`` inserts, without the prelude of its file.
- ``//! const TYPE NAME ...`` declares each template constant NAME as a WGSL ``const`` of TYPE
  (``u32``, ``i32``, ``f32`` or ``bool``).

A kernel is plain WGSL plus two additions, so that sizes are compile-time constants and the
register-tile loops can be unrolled: every accumulator then lives in a register and every weight
offset is the same for all invocations, which llvmpipe compiles to one scalar load and a
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
from dataclasses import dataclass
from functools import cache
from importlib import resources

_SUBST = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")
_UNROLL = re.compile(r"^\s*//! unroll ([a-z_][a-z0-9_]*) (\S+)\s*$")
_END = re.compile(r"^\s*//! end\s*$")
_SECTION = re.compile(r"^//! (kernel|fragment) ([a-z_][a-z0-9_]*)\s*$")
_INCLUDE = re.compile(r"^\s*//! include ([a-z_][a-z0-9_]*)\s*$")
_CONST = re.compile(r"^//! const (u32|i32|f32|bool)((?: [A-Z_][A-Z0-9_]*)+)\s*$")
KERNEL_DIR = "ops"
"""Folder of the package that holds the WGSL files."""

Constant = int | str


@dataclass(frozen=True)
class _Section:
    """One kernel or fragment: its file, whether it is a kernel, and its lines."""

    stem: str
    is_kernel: bool
    lines: tuple[str, ...]


@cache
def load_template(stem: str) -> str:
    """Read the WGSL file ``kernels/ops/<stem>.wgsl``.

    Parameters
    ----------
    stem : str
        File name without the extension, e.g. ``"conv2d"``.

    Returns
    -------
    str
        The file's text.
    """
    path = resources.files("kernels").joinpath(KERNEL_DIR, f"{stem}.wgsl")
    return path.read_text(encoding="utf-8")


@cache
def _stems() -> tuple[str, ...]:
    folder = resources.files("kernels").joinpath(KERNEL_DIR)
    names = (p.name for p in folder.iterdir())
    return tuple(sorted(n.removesuffix(".wgsl") for n in names if n.endswith(".wgsl")))


def _split(stem: str) -> tuple[list[str], dict[str, _Section]]:
    """The prelude of a file and its sections by name."""
    prelude: list[str] = []
    bodies: dict[str, tuple[bool, list[str]]] = {}
    current = prelude
    for line in load_template(stem).splitlines():
        match = _SECTION.match(line)
        if match is None:
            current.append(line)
            continue
        current = []
        bodies[match.group(2)] = (match.group(1) == "kernel", current)
    sections = {name: _Section(stem, kind, tuple(body)) for name, (kind, body) in bodies.items()}
    return prelude, sections


@cache
def _index() -> dict[str, _Section]:
    """Every kernel and fragment of every file, by name."""
    found: dict[str, _Section] = {}
    for stem in _stems():
        for name, section in _split(stem)[1].items():
            if name in found:
                raise ValueError(f"WGSL section '{name}': defined in {found[name].stem} and {stem}")
            found[name] = section
    return found


def _expand_directives(lines: list[str] | tuple[str, ...], depth: int = 0) -> list[str]:
    """Lines with every ``//! include`` and ``//! const`` replaced by what it stands for."""
    out: list[str] = []
    for line in lines:
        include, const = _INCLUDE.match(line), _CONST.match(line)
        if include is not None:
            fragment = _index().get(include.group(1))
            if fragment is None or fragment.is_kernel or depth > len(_index()):
                raise ValueError(f"'{line.strip()}': no such fragment (or an include cycle)")
            out.extend(_expand_directives(fragment.lines, depth + 1))
        elif const is not None:
            kind = const.group(1)
            out.extend(f"const {n}: {kind} = {kind}(${{{n}}});" for n in const.group(2).split())
        else:
            out.append(line)
    return out


def kernel_source(kernel: str) -> str:
    """The template of one kernel: its file's prelude, then its section, directives expanded.

    Parameters
    ----------
    kernel : str
        Kernel name, e.g. ``"conv2d_forward"``.

    Returns
    -------
    str
        Template text for `render`.

    Raises
    ------
    KeyError
        No file defines the kernel.
    """
    section = _index().get(kernel)
    if section is None or not section.is_kernel:
        raise KeyError(f"kernel '{kernel}': no kernels/{KERNEL_DIR}/*.wgsl file defines it")
    prelude, _ = _split(section.stem)
    return "\n".join(_expand_directives([*prelude, *section.lines])) + "\n"


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
        Template text (see the module docstring for the syntax), e.g. from `kernel_source`.
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
