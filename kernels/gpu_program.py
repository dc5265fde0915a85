"""A list of `kernels.launch.Launch` over named buffers, compiled once for a wgpu device.

Both engines run on it: `kernels.gpu_network.WgpuNetwork` (inference) and
`kernels.gpu_trainer.GpuTrainer` (training). Compiling creates every buffer, renders each
distinct kernel once (identical launches share a pipeline), builds explicit bind-group layouts
from each launch's binding kinds, and builds every bind group. `GpuProgram.run` then encodes
every launch into one compute pass of one command buffer, optionally copies a small slice to a
staging buffer, submits once and maps the staging buffer (which is also how completion is
awaited). Within one pass WebGPU orders the dispatches and makes
each one's writes visible to the next, so launches can hand data on through shared buffers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kernels.device import GpuDevice
from kernels.errors import DeviceError
from kernels.launch import Access, Launch, Slice
from kernels.template import kernel_source, render

_LOGGER = logging.getLogger(__name__)

WORD_BYTES = 4
"""Bytes per float32 or uint32 word."""
_BUFFER_TYPES: dict[str, str] = {
    "read": "read-only-storage",
    "write": "storage",
    "uniform": "uniform",
}


class GpuProgram:
    """Named device buffers and the launches that read and write them.

    Parameters
    ----------
    gpu : GpuDevice
        The device (see `kernels.device.open_device`).
    buffers : Mapping[str, int]
        Size of each buffer in 4-byte words.
    launches : Sequence[Launch]
        The launches, in order.
    uniforms : frozenset[str]
        Names of buffers to create as uniforms (besides those a launch binds as uniform); the
        others are storage buffers.
    shared : Mapping[str, Any] or None
        Buffers to use instead of creating them, by name (another program's `buffers`, so that
        programs for different batch sizes update the same parameters).

    Raises
    ------
    DeviceError
        A kernel fails to compile or validate (the message names it), a buffer or binding exceeds
        the device's limits, or a launch needs more workgroups than the device grid allows.
    """

    def __init__(
        self,
        gpu: GpuDevice,
        buffers: Mapping[str, int],
        launches: Sequence[Launch],
        *,
        uniforms: frozenset[str] = frozenset(),
        shared: Mapping[str, Any] | None = None,
    ) -> None:
        import wgpu

        self._wgpu = wgpu
        self._errors = (wgpu.GPUError, RuntimeError)
        self.gpu = gpu
        self._device = gpu.device
        self.sizes = dict(buffers)
        self._check_limits(launches)
        uniforms = uniforms | {
            piece.buffer for x in launches for piece, kind in x.bindings if kind == "uniform"
        }
        usage = wgpu.BufferUsage
        self.buffers: dict[str, Any] = dict(shared or {})
        for name, words in buffers.items():
            if name in self.buffers:
                continue
            kind = usage.UNIFORM if name in uniforms else usage.STORAGE | usage.COPY_SRC
            self.buffers[name] = self._device.create_buffer(
                label=name, size=max(words, 1) * WORD_BYTES, usage=kind | usage.COPY_DST
            )
        self._modules: dict[str, Any] = {}
        self._pipelines: dict[tuple, Any] = {}
        max_groups = gpu.limits["max-compute-workgroups-per-dimension"]
        try:
            grids = [launch.grid(max_groups) for launch in launches]
        except ValueError as exc:
            raise DeviceError(f"{exc}; use a smaller batch") from exc
        self._steps = [
            (self._pipeline(launch), self._bind_group(launch), grid)
            for launch, grid in zip(launches, grids, strict=True)
        ]
        self._staging: dict[int, Any] = {}
        _LOGGER.debug("compiled %d launches, %d pipelines", len(launches), len(self._pipelines))

    def _check_limits(self, launches: Sequence[Launch]) -> None:
        binding_limit = self.gpu.limits["max-storage-buffer-binding-size"]
        buffer_limit = self.gpu.limits["max-buffer-size"]
        for name, words in self.sizes.items():
            if words * WORD_BYTES > buffer_limit:
                raise DeviceError(
                    f"buffer {name!r}: {words * WORD_BYTES} bytes exceed the device's "
                    f"max-buffer-size of {buffer_limit}; use a smaller batch"
                )
        for launch in launches:
            for piece, _ in launch.bindings:
                if piece.buffer not in self.sizes:
                    raise DeviceError(f"kernel '{launch.kernel}': unknown buffer {piece.buffer!r}")
                if piece.offset + piece.size > self.sizes[piece.buffer]:
                    raise DeviceError(f"kernel '{launch.kernel}': {piece} runs past its buffer")
                if piece.size * WORD_BYTES > binding_limit:
                    raise DeviceError(
                        f"kernel '{launch.kernel}': a {piece.size * WORD_BYTES}-byte binding "
                        f"exceeds max-storage-buffer-binding-size {binding_limit}; "
                        "use a smaller batch"
                    )

    def _layout_entries(self, access: tuple[Access, ...]) -> list[dict[str, Any]]:
        stage = self._wgpu.ShaderStage.COMPUTE
        return [
            {"binding": i, "visibility": stage, "buffer": {"type": _BUFFER_TYPES[kind]}}
            for i, kind in enumerate(access)
        ]

    def _pipeline(self, launch: Launch) -> Any:
        access = tuple(kind for _, kind in launch.bindings)
        source = render(kernel_source(launch.kernel), launch.source_constants, launch.rolled)
        overrides = tuple(sorted(launch.overrides.items()))
        key = (source, access, overrides)
        if key in self._pipelines:
            return self._pipelines[key]
        try:
            if source not in self._modules:
                self._modules[source] = self._device.create_shader_module(
                    label=launch.kernel, code=source
                )
            layout = self._device.create_bind_group_layout(entries=self._layout_entries(access))
            pipeline_layout = self._device.create_pipeline_layout(bind_group_layouts=[layout])
            stage: dict[str, Any] = {"module": self._modules[source], "entry_point": "main"}
            if overrides:
                stage["constants"] = dict(overrides)
            pipeline = self._device.create_compute_pipeline(
                label=launch.kernel, layout=pipeline_layout, compute=stage
            )
        except self._errors as exc:
            raise DeviceError(
                f"kernel '{launch.kernel}': shader failed to compile or validate: {exc}"
            ) from exc
        self._pipelines[key] = (pipeline, layout)
        return self._pipelines[key]

    def _bind_group(self, launch: Launch) -> Any:
        _, layout = self._pipeline(launch)
        entries = [
            {
                "binding": i,
                "resource": {
                    "buffer": self.buffers[piece.buffer],
                    "offset": piece.offset * WORD_BYTES,
                    "size": piece.size * WORD_BYTES,
                },
            }
            for i, (piece, _) in enumerate(launch.bindings)
        ]
        try:
            return self._device.create_bind_group(layout=layout, entries=entries)
        except self._errors as exc:
            raise DeviceError(f"kernel '{launch.kernel}': bind group rejected: {exc}") from exc

    def write(self, name: str, data: np.ndarray, offset: int = 0) -> None:
        """Copy ``data`` (float32 or uint32 words) into buffer ``name`` at word ``offset``."""
        array = np.ascontiguousarray(data)
        if array.dtype.itemsize != WORD_BYTES:
            raise ValueError(f"buffer {name!r}: got dtype {array.dtype}, expected 4-byte words")
        if offset + array.size > self.sizes[name]:
            raise ValueError(f"buffer {name!r}: {array.size} words at {offset} run past its end")
        if array.size:
            self._device.queue.write_buffer(self.buffers[name], offset * WORD_BYTES, array)

    def _staging_buffer(self, words: int) -> Any:
        if words not in self._staging:
            usage = self._wgpu.BufferUsage
            self._staging[words] = self._device.create_buffer(
                size=words * WORD_BYTES, usage=usage.MAP_READ | usage.COPY_DST
            )
        return self._staging[words]

    def _finish(
        self, encoder: Any, copy: tuple[str, int, int] | None, staging: Any = None
    ) -> np.ndarray | None:
        """Submit; with ``copy`` (buffer, first word, words), copy it to staging and read it."""
        if copy is not None:
            name, offset, words = copy
            staging = staging or self._device.create_buffer(
                size=words * WORD_BYTES,
                usage=self._wgpu.BufferUsage.MAP_READ | self._wgpu.BufferUsage.COPY_DST,
            )
            encoder.copy_buffer_to_buffer(
                self.buffers[name], offset * WORD_BYTES, staging, 0, words * WORD_BYTES
            )
        self._device.queue.submit([encoder.finish()])
        if copy is None:
            return None
        staging.map_sync(self._wgpu.MapMode.READ, 0, staging.size)
        try:
            return np.frombuffer(staging.read_mapped(0, staging.size), np.float32).copy()
        finally:
            staging.unmap()

    def run(self, readback: Slice | None = None) -> np.ndarray | None:
        """Encode every launch into one compute pass, submit once, read back ``readback``.

        Parameters
        ----------
        readback : Slice or None
            A (small) slice to copy back after the launches; None returns without waiting.

        Returns
        -------
        np.ndarray [shape=(readback.size,)], float32, or None
        """
        encoder = self._device.create_command_encoder()
        compute = encoder.begin_compute_pass()
        for (pipeline, _), bind_group, (x, y) in self._steps:
            compute.set_pipeline(pipeline)
            compute.set_bind_group(0, bind_group)
            compute.dispatch_workgroups(x, y, 1)
        compute.end()
        if readback is None:
            return self._finish(encoder, None)
        copy = (readback.buffer, readback.offset, readback.size)
        return self._finish(encoder, copy, self._staging_buffer(readback.size))

    def read(self, name: str, offset: int = 0, size: int | None = None) -> np.ndarray:
        """Copy words of buffer ``name`` back to the host (waits for submitted work).

        Parameters
        ----------
        name : str
            The buffer.
        offset : int
            First word.
        size : int or None
            Words to read; None reads to the end.

        Returns
        -------
        np.ndarray [shape=(size,)], float32 (view as uint32 for integer buffers)
        """
        size = self.sizes[name] - offset if size is None else size
        if size < 1 or offset + size > self.sizes[name]:
            raise ValueError(f"buffer {name!r}: cannot read {size} words at {offset}")
        result = self._finish(self._device.create_command_encoder(), (name, offset, size))
        assert result is not None
        return result
