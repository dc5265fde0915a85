"""Choose where a network runs (a wgpu adapter or numpy) and build the engine that runs it.

``create_engine(network, backend="auto")`` is the entry point for the layers above. ``auto``
picks wgpu only on a real GPU: on a machine whose only adapter is a CPU emulation (Mesa's
lavapipe or llvmpipe, adapter type ``"CPU"``) the numpy path is faster for the daemon's
one-window-at-a-time inference, so ``auto`` uses numpy there, and says so in the log. ``wgpu``
forces the best adapter (a CPU adapter included) and fails with `DeviceError` when there is none;
``numpy`` never touches wgpu.
"""

from __future__ import annotations

import logging
from typing import Literal, Protocol

import numpy as np

from kernels.device import BackendHint, list_adapters, open_device
from kernels.errors import DeviceError
from kernels.gpu_network import WgpuNetwork
from kernels.network import Network, run_numpy

_LOGGER = logging.getLogger(__name__)

Backend = Literal["auto", "wgpu", "numpy"]
BACKENDS: tuple[Backend, ...] = ("auto", "wgpu", "numpy")


class Engine(Protocol):
    """Anything that runs a network on a batch of windows."""

    network: Network

    @property
    def description(self) -> str:
        """Where the network runs, in words."""
        ...

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run on ``x`` [shape=(batch, *network.input_shape)]; returns [batch, *output_shape]."""
        ...


class NumpyEngine:
    """The numpy path: the reference implementations, vectorised, on the CPU.

    Parameters
    ----------
    network : Network
        What to run.
    """

    def __init__(self, network: Network) -> None:
        self.network = network

    @property
    def description(self) -> str:
        """Where the network runs, in words."""
        return "numpy"

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run the network.

        Parameters
        ----------
        x : np.ndarray [shape=(batch, *network.input_shape)]
            Input windows.

        Returns
        -------
        np.ndarray [shape=(batch, *network.output_shape)], float32
        """
        return run_numpy(self.network, x)


def resolve_backend(backend: Backend, hint: BackendHint | None = None) -> Literal["wgpu", "numpy"]:
    """Decide where to run: ``auto`` becomes wgpu on a real GPU and numpy otherwise.

    Parameters
    ----------
    backend : {"auto", "wgpu", "numpy"}
        The requested backend.
    hint : {"vulkan", "metal", "dx12", "gl"} or None
        Only consider adapters of this graphics API.

    Returns
    -------
    {"wgpu", "numpy"}
        The backend to use; the reason is logged.

    Raises
    ------
    DeviceError
        ``backend`` is not one of the allowed values.
    """
    if backend not in BACKENDS:
        raise DeviceError(f"backend: got {backend!r}, expected one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    adapters = list_adapters(hint)
    if not adapters:
        _LOGGER.info("backend auto: no wgpu adapter%s; using numpy", f" for {hint}" if hint else "")
        return "numpy"
    best = adapters[0]
    if best.is_cpu:
        _LOGGER.info("backend auto: only a CPU adapter (%s), slower than numpy; using numpy", best)
        return "numpy"
    _LOGGER.info("backend auto: using wgpu on %s", best)
    return "wgpu"


def create_engine(
    network: Network,
    *,
    backend: Backend = "auto",
    hint: BackendHint | None = None,
    batch_size: int = 1,
) -> Engine:
    """Build an engine for ``network``: compile it for a GPU or wrap the numpy path.

    Parameters
    ----------
    network : Network
        What to run.
    backend : {"auto", "wgpu", "numpy"}
        Where to run it (see `resolve_backend`).
    hint : {"vulkan", "metal", "dx12", "gl"} or None
        Only consider adapters of this graphics API.
    batch_size : int
        Windows per GPU launch (1 for streaming detection; larger for evaluation). Any batch can
        be passed to ``run``; larger ones are chunked.

    Returns
    -------
    Engine
        A `WgpuNetwork` or a `NumpyEngine`.

    Raises
    ------
    DeviceError
        ``backend="wgpu"`` and no adapter exists or a kernel fails to compile. With ``auto`` a
        GPU failure is logged and the numpy path is used instead.
    """
    chosen = resolve_backend(backend, hint)
    if chosen == "numpy":
        return NumpyEngine(network)
    try:
        return WgpuNetwork(network, open_device(hint), batch_size=batch_size)
    except DeviceError as exc:
        if backend == "wgpu":
            raise
        _LOGGER.warning("backend auto: wgpu failed (%s); using numpy", exc)
        return NumpyEngine(network)
