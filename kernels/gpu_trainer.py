"""`GpuTrainer`: a `TrainNetwork` compiled once for a device, trained with AdamW on the GPU.

Compiling plans the step (`kernels.train_plan`), builds every pipeline, bind group and
persistent buffer (parameters, gradients, Adam moments, running statistics, activations, saved
batch statistics) once, and uploads the network's arrays. Each `GpuTrainer.step` then writes the
batch (windows, labels, class weights, dropout masks) and the step's Adam constants, encodes the
forward pass, loss, backward pass and update of every layer into one command buffer, submits it
once and maps an 8-byte staging buffer for the loss and the correct count. The parameters stay on
the device until `state_dict` or `optimizer_state` copies them back.

A batch smaller than the compiled one (the last of an epoch) runs on a second program compiled
for its size on first use, sharing the parameter, moment and statistic buffers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from kernels.device import GpuDevice
from kernels.errors import ModelError
from kernels.gpu_program import GpuProgram
from kernels.ops.adam import adam_hyper
from kernels.train_network import TrainNetwork
from kernels.train_plan import (
    CLASS_WEIGHTS,
    EXP_AVG,
    EXP_AVG_SQ,
    GRADS,
    HYPER,
    INPUT,
    LABELS,
    PARAMS,
    RUNNING,
    STATE_BUFFERS,
    TrainPlan,
    plan_training,
)

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdamSettings:
    """AdamW hyper-parameters that stay fixed (the learning rate comes with each step).

    Attributes
    ----------
    betas : tuple[float, float]
        Moment decay rates, each in [0, 1).
    eps : float
        Added to the denominator, >= 0.
    weight_decay : float
        Decoupled decay of the arrays with ndim >= 2, >= 0.
    """

    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0


class GpuTrainer:
    """Training steps of a network on a wgpu device.

    Parameters
    ----------
    network : TrainNetwork
        The network and its initial arrays.
    gpu : GpuDevice
        The device (see `kernels.device.open_device`).
    batch_size : int
        Windows per step the first program is compiled for (the most a step takes).
    adam : AdamSettings
        Optimizer settings.
    steps : int
        Adam steps already taken (bias correction continues from there when resuming).

    Raises
    ------
    DeviceError
        A kernel fails to compile or validate, or the batch does not fit the device's limits.
    """

    def __init__(
        self,
        network: TrainNetwork,
        gpu: GpuDevice,
        batch_size: int,
        *,
        adam: AdamSettings | None = None,
        steps: int = 0,
    ) -> None:
        self.network, self.gpu = network, gpu
        self.adam = adam or AdamSettings()
        self.steps = steps
        self.batch_size = batch_size
        self._plans: dict[int, TrainPlan] = {}
        self._programs: dict[int, GpuProgram] = {}
        first = self._program(batch_size)
        plan = self._plans[batch_size]
        self.param_layout, self.running_layout = plan.params, plan.running
        first.write(PARAMS, plan.params.pack(network.params()))
        first.write(RUNNING, plan.running.pack(network.buffers()))
        zeros = np.zeros(plan.params.words, np.float32)
        for name in (GRADS, EXP_AVG, EXP_AVG_SQ):
            first.write(name, zeros)
        _LOGGER.info(
            "compiled a training step of %d launches for %d windows on %s",
            len(plan.ops),
            batch_size,
            gpu.adapter,
        )

    def _program(self, batch: int) -> GpuProgram:
        if batch not in self._programs:
            plan = plan_training(self.network, batch)
            shared = None
            if self._programs:
                owner = self._programs[self.batch_size]
                shared = {name: owner.buffers[name] for name in STATE_BUFFERS}
            self._plans[batch] = plan
            self._programs[batch] = GpuProgram(
                self.gpu, plan.buffers, plan.ops, uniforms=frozenset({HYPER}), shared=shared
            )
        return self._programs[batch]

    def _check_batch(
        self, x: np.ndarray, labels: np.ndarray, class_weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        shape = self.network.input_shape
        x = np.ascontiguousarray(x, np.float32)
        if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
            raise ModelError(
                f"x: got shape {x.shape}, expected (batch, {', '.join(map(str, shape))})"
            )
        if not 1 <= x.shape[0] <= self.batch_size:
            raise ModelError(f"x: got {x.shape[0]} windows, expected 1..{self.batch_size}")
        classes = self.network.classes
        labels = np.asarray(labels)
        if labels.shape != (x.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
            raise ModelError(
                f"labels: got {labels.dtype} {labels.shape}, expected int ({x.shape[0]},)"
            )
        if labels.min() < 0 or labels.max() >= classes:
            raise ModelError(
                f"labels: got values in [{labels.min()}, {labels.max()}], expected [0, {classes})"
            )
        weights = np.ascontiguousarray(class_weights, np.float32)
        if weights.shape != (classes,) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ModelError(
                f"class_weights: got shape {weights.shape}, "
                f"expected ({classes},) finite weights >= 0"
            )
        if not weights[labels].sum() > 0:
            raise ModelError("class_weights: the classes present in labels all have weight 0")
        return x, labels.astype(np.uint32), weights

    def step(
        self,
        x: np.ndarray,
        labels: np.ndarray,
        class_weights: np.ndarray,
        lr: float,
        masks: Mapping[int, np.ndarray] | None = None,
    ) -> tuple[float, int]:
        """One training step: forward, loss, backward and AdamW update, in one submit.

        Parameters
        ----------
        x : np.ndarray [shape=(batch, *network.input_shape)]
            Windows, 1 <= batch <= batch_size.
        labels : np.ndarray [shape=(batch,)], int
            Class of each window, in [0, classes).
        class_weights : np.ndarray [shape=(classes,)]
            Loss weight of each class, >= 0 (those of the labels present not all 0).
        lr : float
            Learning rate of this step.
        masks : Mapping[int, np.ndarray] or None
            Dropout layer index -> mask [shape=(batch, *that layer's shape)] of 0 and 1 / (1 - p);
            required for every dropout layer.

        Returns
        -------
        loss : float
            Class-weighted mean cross-entropy of the batch before the update (nats).
        correct : int
            Windows whose largest logit is at the label.
        """
        x, labels, weights = self._check_batch(x, labels, class_weights)
        batch = x.shape[0]
        program, plan = self._program(batch), self._plans[batch]
        program.write(INPUT, x.ravel())
        program.write(LABELS, labels)
        program.write(CLASS_WEIGHTS, weights)
        for index, buffer in plan.masks.items():
            if masks is None or index not in masks:
                raise ModelError(f"masks: layers[{index}] is a dropout layer and needs a mask")
            program.write(buffer, np.ascontiguousarray(masks[index], np.float32).ravel())
        hyper = adam_hyper(
            step=self.steps + 1, lr=lr, betas=self.adam.betas, eps=self.adam.eps,
            weight_decay=self.adam.weight_decay,
        )  # fmt: skip
        program.write(HYPER, np.asarray(hyper, np.float32))
        result = program.run(plan.result)
        assert result is not None
        self.steps += 1
        return float(result[0]), int(round(float(result[1])))

    @property
    def _owner(self) -> GpuProgram:
        return self._programs[self.batch_size]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and running statistic, by name (``"0.weight"``)."""
        params = self.param_layout.unpack(self._owner.read(PARAMS))
        return params | self.running_layout.unpack(self._owner.read(RUNNING))

    def gradients(self) -> dict[str, np.ndarray]:
        """The gradients of the last step, by parameter name."""
        return self.param_layout.unpack(self._owner.read(GRADS))

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Upload parameters and running statistics (exactly the names of `state_dict`)."""
        self._owner.write(PARAMS, self.param_layout.pack(state))
        self._owner.write(RUNNING, self.running_layout.pack(state))

    def optimizer_state(self) -> dict[str, dict[str, np.ndarray]]:
        """Adam's moments by slot (``exp_avg``, ``exp_avg_sq``) and parameter name."""
        return {
            slot: self.param_layout.unpack(self._owner.read(slot)) for slot in (EXP_AVG, EXP_AVG_SQ)
        }

    def load_optimizer_state(
        self, moments: Mapping[str, Mapping[str, np.ndarray]], steps: int
    ) -> None:
        """Upload Adam's moments (as `optimizer_state` returns them) and its step count."""
        for slot in (EXP_AVG, EXP_AVG_SQ):
            self._owner.write(slot, self.param_layout.pack(moments[slot]))
        self.steps = steps
