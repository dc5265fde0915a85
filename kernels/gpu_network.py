"""A `Network` compiled for a wgpu device: pipelines, bind groups and buffers built once.

Compiling renders each layer's kernel template, creates (and caches) shader modules and
pipelines, uploads the weights, allocates two ping-pong activation buffers sized for the largest
activation, builds every bind group, and runs one warm-up inference so that driver-side shader
compilation does not land on the first real call. One call to `WgpuNetwork.run` per chunk of
windows then does: ``queue.write_buffer`` of the input, one command buffer that encodes every
layer's dispatches and the copy to a staging buffer, one submit, and one readback by mapping
the staging buffer (mapping is also how completion is awaited).

Batches larger than the compiled chunk are split into chunks; the chunk size is chosen so that no
binding exceeds the device's storage-binding and buffer-size limits and no dispatch exceeds its
workgroup-count limit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernels.device import GpuDevice
from kernels.errors import DeviceError
from kernels.kernel_plan import Dispatch, pad4, padded_size, plan_layer
from kernels.network import Network
from kernels.template import load_template, render

_LOGGER = logging.getLogger(__name__)

BYTES_PER_FLOAT = 4


@dataclass(frozen=True)
class _Step:
    """A dispatch with its wgpu objects."""

    stem: str
    pipeline: Any
    bind_group: Any
    workgroups: int


def _plans(network: Network, batch: int, uniform_limit: int) -> list[list[Dispatch]]:
    return [
        plan_layer(layer, shape, out, batch, uniform_limit)
        for layer, shape, out in zip(
            network.layers, network.shapes, network.shapes[1:], strict=False
        )
    ]


def max_chunk(network: Network, limits: dict[str, int], wanted: int) -> int:
    """Largest number of windows per launch, at most ``wanted``, that fits the device limits.

    Parameters
    ----------
    network : Network
        The network.
    limits : dict[str, int]
        Device limits (``max-storage-buffer-binding-size``, ``max-buffer-size``,
        ``max-compute-workgroups-per-dimension``, ``max-uniform-buffer-binding-size``).
    wanted : int
        Requested windows per launch, at least 1.

    Returns
    -------
    int
        Windows per launch.

    Raises
    ------
    DeviceError
        Not even one window fits.
    """
    binding = min(limits["max-storage-buffer-binding-size"], limits["max-buffer-size"])
    largest = max(padded_size(shape) for shape in network.shapes) * BYTES_PER_FLOAT
    chunk = min(wanted, binding // largest)
    max_groups = limits["max-compute-workgroups-per-dimension"]
    while chunk >= 1:
        plans = _plans(network, chunk, limits["max-uniform-buffer-binding-size"])
        worst = max(d.workgroups for layer in plans for d in layer)
        if worst <= max_groups:
            return chunk
        chunk = min(chunk - 1, chunk * max_groups // worst)
    raise DeviceError(
        f"network: one window needs {largest} bytes per activation and more workgroups than the "
        f"device allows ({binding} bytes per binding, {max_groups} workgroups per dimension)"
    )


class _PipelineCache:
    """Shader modules and pipelines keyed by source and overrides (identical layers share one)."""

    def __init__(self, device: Any) -> None:
        import wgpu

        self._device = device
        # Validation errors are GPUError subclasses; a failed creation without one is RuntimeError.
        self._errors = (wgpu.GPUError, RuntimeError)
        self._modules: dict[str, Any] = {}
        self._pipelines: dict[tuple, Any] = {}

    def pipeline(self, plan: Dispatch) -> Any:
        source = render(load_template(plan.stem), plan.source_constants, plan.rolled)
        key = (source, tuple(sorted(plan.overrides.items())))
        if key not in self._pipelines:
            self._pipelines[key] = self._create(plan.stem, source, plan.overrides)
        return self._pipelines[key]

    def _create(self, stem: str, source: str, overrides: dict[str, float]) -> Any:
        try:
            if source not in self._modules:
                self._modules[source] = self._device.create_shader_module(label=stem, code=source)
            stage: dict[str, Any] = {"module": self._modules[source], "entry_point": "main"}
            if overrides:
                stage["constants"] = overrides
            return self._device.create_compute_pipeline(label=stem, layout="auto", compute=stage)
        except self._errors as exc:
            raise DeviceError(
                f"kernel '{stem}': shader failed to compile or validate: {exc}"
            ) from exc


class WgpuNetwork:
    """A network compiled for one device and a fixed number of windows per launch.

    Parameters
    ----------
    network : Network
        What to run.
    gpu : GpuDevice
        The device (see `kernels.device.open_device`).
    batch_size : int
        Windows per launch; reduced if the device limits require it (see `chunk`).
    max_binding_bytes : int or None
        Lower the storage-binding limit below the device's, e.g. to exercise chunking.

    Raises
    ------
    DeviceError
        A kernel fails to compile or validate (the message names it), or nothing fits the limits.
    """

    def __init__(
        self,
        network: Network,
        gpu: GpuDevice,
        batch_size: int = 1,
        max_binding_bytes: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: got {batch_size}, expected an integer >= 1")
        import wgpu

        self._wgpu = wgpu
        self.network = network
        self.gpu = gpu
        limits = dict(gpu.limits)
        if max_binding_bytes is not None:
            limits["max-storage-buffer-binding-size"] = max_binding_bytes
        self.chunk = max_chunk(network, limits, batch_size)
        self._device = gpu.device
        self._build(_plans(network, self.chunk, limits["max-uniform-buffer-binding-size"]))
        self._run_chunk(np.zeros((self.chunk, *network.input_shape), np.float32))
        _LOGGER.info(
            "compiled %d dispatches for %d windows per launch on %s",
            len(self._steps),
            self.chunk,
            gpu.adapter,
        )

    @property
    def description(self) -> str:
        """The adapter this network runs on, in words."""
        return f"wgpu {self.gpu.adapter}"

    def _buffer(self, size: int, usage: int) -> Any:
        return self._device.create_buffer(size=max(size, BYTES_PER_FLOAT), usage=usage)

    def _build(self, plans: list[list[Dispatch]]) -> None:
        usage = self._wgpu.BufferUsage
        chunk, shapes = self.chunk, self.network.shapes
        in_bytes = chunk * padded_size(shapes[0]) * BYTES_PER_FLOAT
        act_bytes = chunk * max(padded_size(s) for s in shapes[1:]) * BYTES_PER_FLOAT
        self._out_bytes = chunk * padded_size(shapes[-1]) * BYTES_PER_FLOAT
        self._input = self._buffer(in_bytes, usage.STORAGE | usage.COPY_DST)
        ping_pong = [self._buffer(act_bytes, usage.STORAGE | usage.COPY_SRC) for _ in range(2)]
        self._staging = self._buffer(self._out_bytes, usage.MAP_READ | usage.COPY_DST)
        cache = _PipelineCache(self._device)
        self._steps: list[_Step] = []
        source = self._input
        for index, layer_plans in enumerate(plans):
            target = ping_pong[index % 2]
            for plan in layer_plans:
                pipeline = cache.pipeline(plan)
                self._steps.append(
                    _Step(
                        plan.stem,
                        pipeline,
                        self._bind(pipeline, plan, source, target),
                        plan.workgroups,
                    )
                )
            source = target
        self._result = source

    def _bind(self, pipeline: Any, plan: Dispatch, source: Any, target: Any) -> Any:
        usage = self._wgpu.BufferUsage
        kind = usage.UNIFORM if plan.param_space == "uniform" else usage.STORAGE
        buffers = [source]
        for param in plan.params:
            buffers.append(self._device.create_buffer_with_data(data=param, usage=kind))
        buffers.append(target)
        entries = [
            {"binding": i, "resource": {"buffer": b, "offset": 0, "size": b.size}}
            for i, b in enumerate(buffers)
        ]
        try:
            return self._device.create_bind_group(
                layout=pipeline.get_bind_group_layout(0), entries=entries
            )
        except (self._wgpu.GPUError, RuntimeError) as exc:
            raise DeviceError(f"kernel '{plan.stem}': bind group rejected: {exc}") from exc

    def _device_layout(self, x: np.ndarray) -> np.ndarray:
        """``x`` with its channel axis zero-padded to a multiple of 4, as the kernels read it."""
        channels = x.shape[-1]
        if channels == pad4(channels):
            return x
        padded = np.zeros((*x.shape[:-1], pad4(channels)), np.float32)
        padded[..., :channels] = x
        return padded

    def _run_chunk(self, x: np.ndarray) -> np.ndarray:
        """One launch: write ``x`` ([chunk, *input_shape]), encode, submit, read back."""
        self._device.queue.write_buffer(self._input, 0, self._device_layout(x))
        encoder = self._device.create_command_encoder()
        compute = encoder.begin_compute_pass()
        for step in self._steps:
            compute.set_pipeline(step.pipeline)
            compute.set_bind_group(0, step.bind_group)
            compute.dispatch_workgroups(step.workgroups, 1, 1)
        compute.end()
        encoder.copy_buffer_to_buffer(self._result, 0, self._staging, 0, self._out_bytes)
        self._device.queue.submit([encoder.finish()])
        self._staging.map_sync(self._wgpu.MapMode.READ, 0, self._out_bytes)
        try:
            out = np.frombuffer(self._staging.read_mapped(0, self._out_bytes), np.float32).copy()
        finally:
            self._staging.unmap()
        out_shape = self.network.output_shape
        out = out.reshape(self.chunk, *out_shape[:-1], pad4(out_shape[-1]))
        return out[..., : out_shape[-1]] if out.shape[-1] != out_shape[-1] else out

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run the network on any number of windows.

        Parameters
        ----------
        x : np.ndarray [shape=(batch, *network.input_shape)]
            Input windows; batches larger than `chunk` run as several launches, and the last
            launch is zero-padded to `chunk` windows.

        Returns
        -------
        np.ndarray [shape=(batch, *network.output_shape)], float32
        """
        x = self.network.check_input(x)
        outputs = []
        for start in range(0, x.shape[0], self.chunk):
            part = x[start : start + self.chunk]
            if part.shape[0] < self.chunk:
                padded = np.zeros((self.chunk, *self.network.input_shape), np.float32)
                padded[: part.shape[0]] = part
                outputs.append(self._run_chunk(padded)[: part.shape[0]])
            else:
                outputs.append(self._run_chunk(part))
        if not outputs:
            return np.zeros((0, *self.network.output_shape), np.float32)
        return np.concatenate(outputs) if len(outputs) > 1 else outputs[0]
