"""Column sums: the two-pass reduction behind every weight gradient, bias gradient and loss.

A first pass sums chunks of `REDUCE_CHUNK` rows into partial rows, a second adds the partials,
so a reduction stays parallel, exact in order and correct for any batch size. Kernel:
``column_sum.wgsl``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from kernels.launch import Constant, Launch, Slice, f32_literal, read, write
from kernels.ops.layout import f32

REDUCE_CHUNK = 256
"""Rows (or positions) each invocation of a first reduction pass sums."""


def splits(rows: int) -> int:
    """Partial sums a first reduction pass over ``rows`` rows makes."""
    return math.ceil(rows / REDUCE_CHUNK)


def column_sum_ref(x: np.ndarray, chunk: int, scale: float = 1.0) -> np.ndarray:
    """Sums of consecutive chunks of rows: the first pass of a two-pass column reduction.

    Parameters
    ----------
    x : np.ndarray [shape=(m, n)]
        Rows to reduce, m >= 1.
    chunk : int
        Rows per partial sum, at least 1.
    scale : float
        Multiplies every sum.

    Returns
    -------
    np.ndarray [shape=(ceil(m / chunk), n)], float32
        Row s holds ``scale * x[s * chunk : (s + 1) * chunk].sum(axis=0)``.
    """
    x = f32(x)
    parts = math.ceil(x.shape[0] / chunk)
    return np.stack(
        [x[s * chunk : (s + 1) * chunk].sum(axis=0) * np.float32(scale) for s in range(parts)]
    )


def column_sum(
    x: Slice, rows: int, cols: int, out: Slice, chunk: int, scale: float = 1.0
) -> Launch:
    """``out[s, j] = scale * sum of x[r, j]`` over the rows r of chunk s (``chunk`` rows each).

    Parameters
    ----------
    x : Slice
        [rows, cols] float32.
    rows, cols : int
        Its shape.
    out : Slice
        [ceil(rows / chunk), cols] float32.
    chunk : int
        Rows per sum; ``chunk >= rows`` sums whole columns.
    scale : float
        Multiplies every sum.

    Returns
    -------
    Launch
    """
    count = math.ceil(rows / chunk) * cols
    constants: dict[str, Constant] = dict(
        ROWS=rows, COLS=cols, CHUNK=chunk, SCALE=f32_literal(scale)
    )
    return Launch("column_sum", constants, (read(x), write(out)), count)


def sum_partials(
    first: Callable[[Slice], Launch], parts: int, cols: int, out: Slice, scratch: Slice
) -> list[Launch]:
    """A first pass writing ``parts`` partial rows, then their sum into ``out``.

    Parameters
    ----------
    first : Callable[[Slice], Launch]
        Builds the first pass writing [parts, cols] partial sums into the slice it is given.
    parts : int
        Partial rows; with one, the first pass writes ``out`` directly.
    cols : int
        Values per row.
    out : Slice
        [cols] float32: the sums.
    scratch : Slice
        At least ``parts * cols`` words when ``parts > 1``.

    Returns
    -------
    list[Launch]
        One or two launches.
    """
    if parts == 1:
        return [first(out)]
    return [first(scratch), column_sum(scratch, parts, cols, out, parts)]


def reduce_rows(x: Slice, rows: int, cols: int, out: Slice, scratch: Slice) -> list[Launch]:
    """Sum the ``rows`` rows of x [rows, cols] into out [cols]: one pass, or two via ``scratch``.

    ``scratch`` needs ``splits(rows) * cols`` words when ``rows > REDUCE_CHUNK``.
    """
    if rows <= REDUCE_CHUNK:
        return [column_sum(x, rows, cols, out, rows)]

    def first(target: Slice) -> Launch:
        return column_sum(x, rows, cols, target, REDUCE_CHUNK)

    return sum_partials(first, splits(rows), cols, out, scratch)
