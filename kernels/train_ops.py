"""Kernel launches of the training engine, described without wgpu objects.

An `Op` names a kernel template (``kernels/wgsl/<stem>.wgsl``), its constants, the buffer slices
it binds in binding order (each read-only, read-write or uniform) and how many invocations it
needs. The builders here make the ops of one training operation each (a convolution's weight
gradient is two ops: partial sums, then `column_sum`); `kernels.gpu_program.GpuProgram` turns a
list of ops over named buffers into pipelines and bind groups once and encodes them per step.

Every training kernel reads and writes unpadded float32 arrays (NHWC activations, the weight
layouts of `kernels.reference`) and flattens a 2-D workgroup grid, so a launch of any size fits
the per-dimension workgroup limit. Reductions run in two passes: partial sums over chunks of
`REDUCE_CHUNK` rows, then one sum over the partials, so they stay parallel and exact in order
for any batch size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from kernels.kernel_plan import workgroup_size

Access = Literal["read", "write", "uniform"]
"""How a kernel binds a slice: read-only storage, read-write storage, or uniform."""
Pair = tuple[int, int]

QUAD = 4
"""Floats per vec4: kernels over sizes that are multiples of it load four values at once."""
REDUCE_CHUNK = 256
"""Rows (or positions) each invocation of a first reduction pass sums."""
CONV_CHANNEL_TILE = 8
"""Output channels one invocation of conv2d_forward or conv2d_weight_grad accumulates."""
MATMUL_TILE_ROWS = 4
"""Rows of the register tile one matmul invocation accumulates."""
MATMUL_TILE_COLS = 16
"""Columns of that tile (the b loads, uniform across a workgroup, are the cheap ones)."""
OFFSET_ALIGN_WORDS = 64
"""Storage-buffer binding offsets are multiples of 256 bytes (WebGPU's default alignment)."""


def align(words: int) -> int:
    """``words`` rounded up to a multiple of `OFFSET_ALIGN_WORDS`."""
    return math.ceil(words / OFFSET_ALIGN_WORDS) * OFFSET_ALIGN_WORDS


def f32_literal(value: float) -> str:
    """A WGSL float literal for ``value`` (9 significant digits: round-trips a float32)."""
    return f"{float(value):.9e}"


@dataclass(frozen=True)
class Slice:
    """A range of a named buffer, in 4-byte words.

    Attributes
    ----------
    buffer : str
        Buffer name, as given to `kernels.gpu_program.GpuProgram`.
    offset : int
        First word; a multiple of `OFFSET_ALIGN_WORDS`.
    size : int
        Words, at least 1.
    """

    buffer: str
    offset: int
    size: int

    def __post_init__(self) -> None:
        if self.offset % OFFSET_ALIGN_WORDS or self.size < 1:
            raise ValueError(
                f"slice of {self.buffer!r}: got offset {self.offset}, size {self.size}; expected "
                f"an offset that is a multiple of {OFFSET_ALIGN_WORDS} and a size >= 1"
            )


def whole(buffer: str, size: int) -> Slice:
    """The first ``size`` words of ``buffer``."""
    return Slice(buffer, 0, size)


@dataclass(frozen=True, eq=False)
class Op:
    """One kernel launch.

    Attributes
    ----------
    stem : str
        Kernel name (``kernels/wgsl/<stem>.wgsl``).
    constants : Mapping[str, int | str]
        Template constants (``WORKGROUP`` is added from `invocations`).
    bindings : tuple[tuple[Slice, Access], ...]
        One per ``@binding(n)``, in order.
    invocations : int
        Invocations the launch needs (per row of workgroups when ``rows`` is given); the rest of
        the last workgroup is masked by the kernel.
    rows : int or None
        Rows of workgroups along y, when the kernel takes a per-row index from the workgroup id
        (uniform across a workgroup, so loads at offsets derived from it are broadcasts). None
        flattens a 2-D grid instead, so that any launch fits the per-dimension limit.
    """

    stem: str
    constants: Mapping[str, int | str]
    bindings: tuple[Binding, ...]
    invocations: int
    rows: int | None = None

    @property
    def workgroup_size(self) -> int:
        """Invocations per workgroup."""
        return workgroup_size(self.invocations)

    @property
    def source_constants(self) -> dict[str, int | str]:
        """Template constants including the workgroup size."""
        return {**self.constants, "WORKGROUP": self.workgroup_size}

    def grid(self, max_per_dimension: int) -> tuple[int, int]:
        """Workgroups along x and y: x at most ``max_per_dimension``, x * y covering the launch."""
        groups = max(1, math.ceil(self.invocations / self.workgroup_size))
        if self.rows is not None:
            x, y = groups, self.rows
        else:
            x = min(groups, max_per_dimension)
            y = math.ceil(groups / x)
        if max(x, y) > max_per_dimension:
            raise ValueError(f"kernel '{self.stem}': {groups} workgroups exceed the device grid")
        return x, y


Binding = tuple[Slice, Access]


def read(s: Slice) -> Binding:
    """Bind ``s`` as read-only storage."""
    return s, "read"


def write(s: Slice) -> Binding:
    """Bind ``s`` as read-write storage."""
    return s, "write"


def uniform(s: Slice) -> Binding:
    """Bind ``s`` as a uniform buffer."""
    return s, "uniform"


@dataclass(frozen=True)
class ConvShape:
    """Geometry of a convolution (regular or depthwise) for a batch.

    Attributes
    ----------
    batch, height, width, in_c, out_c : int
        Input [batch, height, width, in_c]; output channels (in_c for a depthwise one).
    kernel, stride, padding : tuple[int, int]
        Kernel size, step and symmetric zero padding along (height, width).
    """

    batch: int
    height: int
    width: int
    in_c: int
    out_c: int
    kernel: Pair
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)

    @property
    def out_hw(self) -> Pair:
        """(out_h, out_w)."""
        size = [
            (n + 2 * p - k) // s + 1
            for n, k, s, p in zip(
                (self.height, self.width), self.kernel, self.stride, self.padding, strict=True
            )
        ]
        return size[0], size[1]

    @property
    def positions(self) -> int:
        """Output positions: batch * out_h * out_w."""
        return self.batch * self.out_hw[0] * self.out_hw[1]

    def constants(self) -> dict[str, int | str]:
        """Template constants shared by the convolution kernels."""
        return dict(
            H=self.height, W=self.width, CI=self.in_c, CO=self.out_c, C=self.in_c,
            OH=self.out_hw[0], OW=self.out_hw[1], KH=self.kernel[0], KW=self.kernel[1],
            SH=self.stride[0], SW=self.stride[1], PH=self.padding[0], PW=self.padding[1],
        )  # fmt: skip


def splits(rows: int) -> int:
    """Partial sums a first reduction pass over ``rows`` rows makes."""
    return math.ceil(rows / REDUCE_CHUNK)


def column_sum(x: Slice, rows: int, cols: int, out: Slice, chunk: int, scale: float = 1.0) -> Op:
    """``out[s, j] = scale * sum of x[r, j]`` over the rows r of chunk s (``chunk`` rows each)."""
    count = math.ceil(rows / chunk) * cols
    constants: dict[str, int | str] = dict(
        COUNT=count, ROWS=rows, COLS=cols, CHUNK=chunk, SCALE=f32_literal(scale)
    )
    return Op("column_sum", constants, (read(x), write(out)), count)


def reduce_rows(x: Slice, rows: int, cols: int, out: Slice, scratch: Slice) -> list[Op]:
    """Sum the ``rows`` rows of x [rows, cols] into out [cols]: one pass, or two via ``scratch``.

    ``scratch`` needs ``splits(rows) * cols`` words when ``rows > REDUCE_CHUNK``.
    """
    if rows <= REDUCE_CHUNK:
        return [column_sum(x, rows, cols, out, rows)]
    parts = splits(rows)
    return [
        column_sum(x, rows, cols, scratch, REDUCE_CHUNK),
        column_sum(scratch, parts, cols, out, parts),
    ]


def _vectorise_channels(constants: dict[str, int | str], shape: ConvShape, rows: int) -> int:
    """Set a depthwise kernel's C, COUNT and VEC (vec4 when C allows); return its invocations."""
    width = vector_width(shape.in_c)
    constants.update(
        C=shape.in_c // width, VEC=vector_type(width), COUNT=rows * shape.in_c // width
    )
    return rows * shape.in_c // width


def conv_forward(
    shape: ConvShape, x: Slice, weight: Slice, bias: Slice | None, y: Slice, *, depthwise: bool
) -> Op:
    """Forward of a convolution (``conv2d_forward``) or depthwise one (``depthwise_forward``)."""
    tile = 1 if depthwise else min(CONV_CHANNEL_TILE, shape.out_c)
    constants = dict(
        shape.constants(), POSITIONS=shape.positions, TN=tile,
        HAS_BIAS="true" if bias else "false",
    )  # fmt: skip
    bindings = (read(x), read(weight), read(bias or weight), write(y))
    if depthwise:
        count = _vectorise_channels(constants, shape, shape.positions)
        return Op("depthwise_forward", constants, bindings, count)
    tiles = math.ceil(shape.out_c / tile)
    return Op("conv2d_forward", constants, bindings, shape.positions, rows=tiles)


def conv_input_grad(
    shape: ConvShape, grad_out: Slice, weight: Slice, grad_in: Slice, *, depthwise: bool
) -> Op:
    """Input gradient of a convolution (``conv2d_input_grad``, ``depthwise_input_grad``)."""
    count = shape.batch * shape.height * shape.width * shape.in_c
    stem = "depthwise_input_grad" if depthwise else "conv2d_input_grad"
    constants = dict(shape.constants(), COUNT=count)
    if depthwise:
        count = _vectorise_channels(constants, shape, shape.batch * shape.height * shape.width)
    return Op(stem, constants, (read(grad_out), read(weight), write(grad_in)), count)


def conv_weight_grad(
    shape: ConvShape, x: Slice, grad_out: Slice, grad_weight: Slice, scratch: Slice, *,
    depthwise: bool,
) -> list[Op]:  # fmt: skip
    """Weight gradient of a convolution: partial sums into ``scratch``, then their sum.

    ``scratch`` needs ``splits(shape.positions) * weights`` words.
    """
    weights = shape.kernel[0] * shape.kernel[1] * shape.in_c * (1 if depthwise else shape.out_c)
    parts = splits(shape.positions)
    tile = 1 if depthwise else min(CONV_CHANNEL_TILE, shape.out_c)
    tiles = math.ceil(shape.out_c / tile)
    taps = shape.kernel[0] * shape.kernel[1]
    constants = dict(
        shape.constants(), POSITIONS=shape.positions, CHUNK=REDUCE_CHUNK, TN=tile,
        CO_TILES=tiles, TAPS=taps,
    )  # fmt: skip
    count, rows = weights // shape.out_c, parts * tiles
    if depthwise:
        count = _vectorise_channels(constants, shape, parts)
    stem = "depthwise_weight_grad" if depthwise else "conv2d_weight_grad"
    target = grad_weight if parts == 1 else scratch
    bindings = (read(x), read(grad_out), write(target))
    ops = [Op(stem, constants, bindings, count, rows=None if depthwise else rows)]
    if parts > 1:
        ops.append(column_sum(scratch, parts, weights, grad_weight, parts))
    return ops


@dataclass(frozen=True)
class Operand:
    """A matrix operand of `matmul`: a slice and the strides (in floats) of its two axes."""

    data: Slice
    outer: int
    inner: int


def matmul(
    a: Operand, b: Operand, c: Slice, *, rows: int, cols: int, depth: int,
    bias: Slice | None = None, chunk: int | None = None,
) -> Op:  # fmt: skip
    """``c[s] = a @ b`` over chunk s of the inner axis (one chunk unless ``chunk``), + ``bias``.

    ``a`` is [rows, depth] with strides (``a.outer``, ``a.inner``); ``b`` is [depth, cols] with
    strides (``b.inner`` along depth, ``b.outer`` along cols).
    """
    chunk = depth if chunk is None else chunk
    tm, tn = min(MATMUL_TILE_ROWS, rows), min(MATMUL_TILE_COLS, cols)
    tiles_m, tiles_n = math.ceil(rows / tm), math.ceil(cols / tn)
    count = tiles_m
    constants: dict[str, int | str] = dict(
        COUNT=count, ROWS=rows, COLS=cols, DEPTH=depth, CHUNK=chunk, TM=tm, TN=tn,
        TILES_M=tiles_m, TILES_N=tiles_n, ACC_N=tm * tn,
        A_ROW=a.outer, A_DEPTH=a.inner, B_DEPTH=b.inner, B_COL=b.outer,
        HAS_BIAS="true" if bias else "false",
    )  # fmt: skip
    bindings = (read(a.data), read(b.data), read(bias or b.data), write(c))
    return Op("matmul", constants, bindings, count, rows=math.ceil(depth / chunk) * tiles_n)


def linear_forward(
    x: Slice, weight: Slice, bias: Slice | None, y: Slice, *, rows: int, fin: int, fout: int
) -> Op:
    """``y = x @ weight + bias`` for x [rows, fin] and weight [fin, fout] (pointwise, dense)."""
    return matmul(
        Operand(x, fin, 1), Operand(weight, 1, fout), y,
        rows=rows, cols=fout, depth=fin, bias=bias,
    )  # fmt: skip


def linear_input_grad(
    grad_out: Slice, weight: Slice, grad_in: Slice, *, rows: int, fin: int, fout: int
) -> Op:
    """``grad_in = grad_out @ weight.T`` for grad_out [rows, fout] and weight [fin, fout]."""
    return matmul(
        Operand(grad_out, fout, 1), Operand(weight, fout, 1), grad_in,
        rows=rows, cols=fin, depth=fout,
    )  # fmt: skip


def linear_weight_grad(
    x: Slice, grad_out: Slice, grad_weight: Slice, scratch: Slice, *, rows: int, fin: int,
    fout: int,
) -> list[Op]:  # fmt: skip
    """``grad_weight = x.T @ grad_out``, split over the rows when there are many of them.

    ``scratch`` needs ``splits(rows) * fin * fout`` words when ``rows > REDUCE_CHUNK``.
    """
    parts = splits(rows)
    target = grad_weight if parts == 1 else scratch
    op = matmul(
        Operand(x, 1, fin), Operand(grad_out, 1, fout), target,
        rows=fin, cols=fout, depth=rows, chunk=REDUCE_CHUNK,
    )  # fmt: skip
    if parts == 1:
        return [op]
    return [op, column_sum(scratch, parts, fin * fout, grad_weight, parts)]


def vector_width(count: int) -> int:
    """Values per invocation of a vectorisable kernel: 4 (a vec4) when ``count`` allows it."""
    return QUAD if count % QUAD == 0 else 1


def vector_type(width: int) -> str:
    """The WGSL type of ``width`` float32 values."""
    return "vec4<f32>" if width == QUAD else "f32"


def elementwise(stem: str, inputs: tuple[Slice, ...], out: Slice, count: int) -> Op:
    """An elementwise kernel over ``count`` values (``relu``, ``relu_backward``, ``dropout``)."""
    width = vector_width(count)
    constants: dict[str, int | str] = {"COUNT": count // width, "VEC": vector_type(width)}
    return Op(stem, constants, (*map(read, inputs), write(out)), count // width)


def global_avg_pool_forward(x: Slice, y: Slice, *, batch: int, positions: int, c: int) -> Op:
    """Mean over positions: x [batch, positions, c] -> y [batch, c]."""
    count = batch * c
    constants: dict[str, int | str] = dict(
        COUNT=count, POSITIONS=positions, C=c, SCALE=f32_literal(1.0 / positions)
    )
    return Op("global_avg_pool_forward", constants, (read(x), write(y)), count)


def global_avg_pool_grad(g: Slice, dx: Slice, *, batch: int, positions: int, c: int) -> Op:
    """Gradient of the mean over positions: g [batch, c] -> dx [batch, positions, c]."""
    count = batch * positions * c
    constants: dict[str, int | str] = dict(
        COUNT=count, POSITIONS=positions, C=c, SCALE=f32_literal(1.0 / positions)
    )
    return Op("global_avg_pool_grad", constants, (read(g), write(dx)), count)
