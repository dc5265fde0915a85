"""Adapter and device selection for the wgpu engine.

A real GPU is preferred to a CPU adapter (Mesa's lavapipe/llvmpipe), and within one adapter type
Vulkan, Metal and DX12 are preferred to GL. A backend hint restricts the choice to one graphics
API. The device is requested with explicit limits (a small set this package needs, capped by what
the adapter offers) rather than the adapter's maximum, so behaviour does not depend on how
generous a driver is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from kernels.errors import DeviceError
from kernels.native_stderr import quiet_native_stderr

_LOGGER = logging.getLogger(__name__)

BackendHint = Literal["vulkan", "metal", "dx12", "gl"]
BACKEND_HINTS: tuple[BackendHint, ...] = ("vulkan", "metal", "dx12", "gl")

# wgpu's backend_type names, by hint.
_BACKEND_TYPES: dict[BackendHint, str] = {
    "vulkan": "Vulkan",
    "metal": "Metal",
    "dx12": "D3D12",
    "gl": "OpenGL",
}
# Lower is preferred.
_TYPE_RANK = {"DiscreteGPU": 0, "IntegratedGPU": 1, "VirtualGPU": 2, "Unknown": 3, "CPU": 4}
_BACKEND_RANK = {"Vulkan": 0, "Metal": 0, "D3D12": 1, "OpenGL": 2}
CPU_ADAPTER_TYPE = "CPU"

MIB = 1 << 20
# Limits requested from the device, each capped by the adapter's own limit.
WANTED_LIMITS: dict[str, int] = {
    "max-storage-buffer-binding-size": 1024 * MIB,
    "max-buffer-size": 1024 * MIB,
    "max-uniform-buffer-binding-size": 64 * 1024,
    "max-compute-workgroups-per-dimension": 65535,
    "max-compute-invocations-per-workgroup": 256,
    "max-compute-workgroup-size-x": 256,
    "max-storage-buffers-per-shader-stage": 8,
    "max-uniform-buffers-per-shader-stage": 12,
}

NO_ADAPTER_HINT = (
    "no wgpu adapter found. Install a GPU driver, or a software adapter: Mesa's lavapipe "
    "(Debian/Ubuntu: apt install mesa-vulkan-drivers; Fedora: mesa-vulkan-drivers), "
    "or use backend='numpy'"
)


@dataclass(frozen=True)
class AdapterSummary:
    """What an adapter is, in words.

    Attributes
    ----------
    name : str
        Device name, e.g. ``"llvmpipe (LLVM 15.0.6, 256 bits)"``.
    backend : str
        wgpu backend type: ``"Vulkan"``, ``"Metal"``, ``"D3D12"`` or ``"OpenGL"``.
    adapter_type : str
        ``"DiscreteGPU"``, ``"IntegratedGPU"``, ``"CPU"`` or ``"Unknown"``.
    """

    name: str
    backend: str
    adapter_type: str

    @property
    def is_cpu(self) -> bool:
        """True for a CPU emulation such as llvmpipe or lavapipe."""
        return self.adapter_type == CPU_ADAPTER_TYPE

    def __str__(self) -> str:
        return f"{self.name} ({self.backend}, {self.adapter_type})"


@dataclass(frozen=True)
class GpuDevice:
    """A wgpu device with the adapter it came from and the limits it was granted.

    Attributes
    ----------
    device : wgpu.GPUDevice
        The device.
    adapter : AdapterSummary
        The adapter.
    limits : dict[str, int]
        The granted limits, wgpu names (``"max-storage-buffer-binding-size"``...).
    """

    device: Any
    adapter: AdapterSummary
    limits: dict[str, int]


def _import_wgpu() -> Any:
    try:
        import wgpu
    except ImportError as exc:  # pragma: no cover - wgpu is a core dependency
        raise DeviceError(
            f"wgpu is not importable ({exc}); pip install 'wgpu>=0.32,<0.33'"
        ) from exc
    return wgpu


def _summary(adapter: Any) -> AdapterSummary:
    info = adapter.info
    return AdapterSummary(
        name=str(info.get("device") or info.get("description") or "unknown"),
        backend=str(info.get("backend_type", "Unknown")),
        adapter_type=str(info.get("adapter_type", "Unknown")),
    )


def _rank(summary: AdapterSummary) -> tuple[int, int]:
    return _TYPE_RANK.get(summary.adapter_type, 3), _BACKEND_RANK.get(summary.backend, 3)


def _check_hint(hint: str | None) -> None:
    if hint is not None and hint not in BACKEND_HINTS:
        raise DeviceError(f"backend hint: got {hint!r}, expected one of {', '.join(BACKEND_HINTS)}")


def _candidates(hint: BackendHint | None) -> list[tuple[AdapterSummary, Any]]:
    """Adapters matching the hint, best first."""
    _check_hint(hint)
    wgpu = _import_wgpu()
    with quiet_native_stderr("GPU adapters"):
        adapters = wgpu.gpu.enumerate_adapters_sync()
    found = [(_summary(a), a) for a in adapters]
    if hint is not None:
        found = [(s, a) for s, a in found if s.backend == _BACKEND_TYPES[hint]]
    return sorted(found, key=lambda pair: _rank(pair[0]))


def list_adapters(hint: BackendHint | None = None) -> list[AdapterSummary]:
    """Every adapter wgpu can see, best first.

    Parameters
    ----------
    hint : {"vulkan", "metal", "dx12", "gl"} or None
        Only adapters of this graphics API.

    Returns
    -------
    list[AdapterSummary]
        Possibly empty.
    """
    return [summary for summary, _ in _candidates(hint)]


def _granted_limits(adapter: Any) -> dict[str, int]:
    offered = adapter.limits
    return {name: min(wanted, int(offered[name])) for name, wanted in WANTED_LIMITS.items()}


def open_device(hint: BackendHint | None = None, *, index: int = 0) -> GpuDevice:
    """Open a device on the best adapter (a real GPU first, then a CPU adapter).

    Parameters
    ----------
    hint : {"vulkan", "metal", "dx12", "gl"} or None
        Only consider adapters of this graphics API.
    index : int
        Position in the preference order, as in `list_adapters` (0 is the best).

    Returns
    -------
    GpuDevice
        The device with explicit limits.

    Raises
    ------
    DeviceError
        No adapter exists (the message names the package that provides a software adapter), or
        none matches the hint, or the device cannot be created.
    """
    candidates = _candidates(hint)
    if not candidates:
        if hint is not None and list_adapters():
            raise DeviceError(
                f"backend hint: no {hint!r} adapter; available: "
                + "; ".join(str(s) for s in list_adapters())
            )
        raise DeviceError(NO_ADAPTER_HINT)
    if not 0 <= index < len(candidates):
        raise DeviceError(f"adapter index: got {index}, expected 0..{len(candidates) - 1}")
    wgpu = _import_wgpu()
    summary, adapter = candidates[index]
    limits = _granted_limits(adapter)
    try:
        device = adapter.request_device_sync(required_limits=limits, label="earshot")
    except (wgpu.GPUError, RuntimeError) as exc:
        raise DeviceError(f"adapter {summary}: device creation failed: {exc}") from exc
    _LOGGER.info("wgpu device on %s", summary)
    return GpuDevice(device=device, adapter=summary, limits=limits)
