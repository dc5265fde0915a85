"""Kernel launches over named buffers, described without wgpu objects: what both engines run.

A `Launch` names a kernel (a section of ``kernels/ops/<op>.wgsl``, see `kernels.template`), its
template constants, the buffer slices it binds in binding order (each read-only, read-write or
uniform) and how many invocations it needs. The per-op modules of `kernels.ops` build launches;
`kernels.gpu_program.GpuProgram` compiles a list of them once and encodes them per call, for the
inference engine (`kernels.gpu_network`) and the training engine (`kernels.gpu_trainer`) alike.
Plans built from launches can be checked (for example against a device's limits) without a
device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Access = Literal["read", "write", "uniform"]
"""How a kernel binds a slice: read-only storage, read-write storage, or uniform."""
Constant = int | str
"""A template constant: an int (a ``u32`` literal) or WGSL text."""

QUAD = 4
"""Floats per vec4: kernels over sizes that are multiples of it load four values at once."""
WORKGROUP = 64
"""Invocations per workgroup (1-D) for large launches; see `workgroup_size`."""
MIN_WORKGROUP_SIZE = 8
"""Smallest workgroup: llvmpipe runs 8 invocations per 256-bit SIMD instruction."""
MIN_WORKGROUPS = 8
"""Workgroups a launch should have at least, for load balance across CPU cores."""
OFFSET_ALIGN_WORDS = 64
"""Storage-buffer binding offsets are multiples of 256 bytes (WebGPU's default alignment)."""


def align(words: int) -> int:
    """``words`` rounded up to a multiple of `OFFSET_ALIGN_WORDS`."""
    return math.ceil(words / OFFSET_ALIGN_WORDS) * OFFSET_ALIGN_WORDS


def pad4(channels: int) -> int:
    """``channels`` rounded up to a multiple of 4 (the inference engine's channel stride)."""
    return math.ceil(channels / QUAD) * QUAD


def f32_literal(value: float) -> str:
    """A WGSL float literal for ``value`` (9 significant digits: round-trips a float32)."""
    return f"{float(value):.9e}"


def vector_width(count: int) -> int:
    """Values per invocation of a vectorisable kernel: 4 (a vec4) when ``count`` allows it."""
    return QUAD if count % QUAD == 0 else 1


def vector_type(width: int) -> str:
    """The WGSL type of ``width`` float32 values."""
    return "vec4<f32>" if width == QUAD else "f32"


def channel_vectors(rows: int, channels: int) -> tuple[int, dict[str, Constant]]:
    """Invocations and constants of a kernel over [rows, channels] that vectorises channels.

    Parameters
    ----------
    rows : int
        Rows (positions) the kernel covers.
    channels : int
        Channels per row; four go to one invocation (a vec4) when ``channels`` allows it.

    Returns
    -------
    invocations : int
        ``rows * channels / width``.
    constants : dict[str, int | str]
        ``C`` (channels per row in vectors) and ``VEC`` (the WGSL vector type).
    """
    width = vector_width(channels)
    return rows * channels // width, {"C": channels // width, "VEC": vector_type(width)}


def workgroup_size(invocations: int) -> int:
    """Invocations per workgroup for a launch of ``invocations``.

    WORKGROUP, halved (down to MIN_WORKGROUP_SIZE) while that leaves fewer than MIN_WORKGROUPS
    workgroups, so a small launch still spreads over several cores of a CPU adapter (llvmpipe runs
    each workgroup on one thread).

    Parameters
    ----------
    invocations : int
        Invocations the launch needs.

    Returns
    -------
    int
        A power of two in [MIN_WORKGROUP_SIZE, WORKGROUP].
    """
    size = WORKGROUP
    while size > MIN_WORKGROUP_SIZE and math.ceil(invocations / size) < MIN_WORKGROUPS:
        size //= 2
    return size


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


@dataclass(frozen=True, eq=False)
class Launch:
    """One kernel launch.

    Attributes
    ----------
    kernel : str
        Kernel name (a ``//! kernel`` section of ``kernels/ops/<op>.wgsl``).
    constants : Mapping[str, int | str]
        Template constants (``COUNT`` and ``WORKGROUP`` are added from `invocations`).
    bindings : tuple[tuple[Slice, Access], ...]
        One per ``@binding(n)``, in order.
    invocations : int
        Invocations the launch needs (per row of workgroups when ``rows`` is given); the rest of
        the last workgroup is masked by the kernel.
    rows : int or None
        Rows of workgroups along y, when the kernel takes a per-row index from the workgroup id
        (uniform across a workgroup, so loads at offsets derived from it are broadcasts). None
        flattens a 2-D grid instead, so that any launch fits the per-dimension limit.
    rolled : frozenset[str]
        Template loops emitted as WGSL loops instead of unrolled code.
    overrides : Mapping[str, float]
        Pipeline-overridable constants (``RELU``, ``OC_0``).
    """

    kernel: str
    constants: Mapping[str, Constant]
    bindings: tuple[Binding, ...]
    invocations: int
    rows: int | None = None
    rolled: frozenset[str] = frozenset()
    overrides: Mapping[str, float] = field(default_factory=dict)

    @property
    def workgroup_size(self) -> int:
        """Invocations per workgroup."""
        return workgroup_size(self.invocations)

    @property
    def workgroups(self) -> int:
        """Workgroups the launch needs (per row of workgroups when ``rows`` is given)."""
        return max(1, math.ceil(self.invocations / self.workgroup_size))

    @property
    def source_constants(self) -> dict[str, Constant]:
        """Template constants plus ``COUNT`` (the invocations) and ``WORKGROUP``."""
        return {**self.constants, "COUNT": self.invocations, "WORKGROUP": self.workgroup_size}

    def grid(self, max_per_dimension: int) -> tuple[int, int]:
        """Workgroups along x and y: x at most ``max_per_dimension``, x * y covering the launch."""
        groups = self.workgroups
        if self.rows is not None:
            x, y = groups, self.rows
        else:
            x = min(groups, max_per_dimension)
            y = math.ceil(groups / x)
        if max(x, y) > max_per_dimension:
            raise ValueError(f"kernel '{self.kernel}': {groups} workgroups exceed the device grid")
        return x, y


@dataclass(frozen=True, eq=False)
class Launches:
    """Launches and the constant arrays they read, uploaded once when they are compiled.

    Attributes
    ----------
    launches : list[Launch]
        In order.
    uploads : dict[str, np.ndarray]
        Buffer name -> flat float32 contents (a layer's weights and bias).
    """

    launches: list[Launch]
    uploads: dict[str, np.ndarray] = field(default_factory=dict)
