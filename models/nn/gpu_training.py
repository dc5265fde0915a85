"""Train a `models.nn.layers.Sequential` with AdamW on the wgpu training engine.

`GpuTrainingStep` converts the model (its layers, parameters and batch-norm statistics) and an
`models.nn.optim.Adam` optimizer (hyper-parameters, moments, step count) into a
`kernels.gpu_trainer.GpuTrainer`, and takes the same training step as the numpy loop of
`models.nn.trainer.Trainer`: forward in training mode, class-weighted `softmax_cross_entropy`,
`backward_params`, ``optimizer.lr = lr``, ``optimizer.step()``. Parameters live on the device
between steps; `GpuTrainingStep.sync_to_host` copies them, the running statistics, the last
gradients and Adam's moments back into the model and the optimizer (before evaluating or saving a
checkpoint), and `GpuTrainingStep.sync_from_host` uploads them again (after loading one).

Example
-------
>>> step = GpuTrainingStep(model, optimizer, batch_size=64)  # doctest: +SKIP
>>> loss, correct = step.step(x, labels, class_weights, lr=3e-3)  # doctest: +SKIP
>>> step.sync_to_host()  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from kernels.device import GpuDevice, open_device
from kernels.errors import ModelError
from kernels.gpu_trainer import AdamSettings, GpuTrainer
from kernels.train_network import (
    TrainBatchNorm,
    TrainConv2d,
    TrainDense,
    TrainDepthwiseConv2d,
    TrainDropout,
    TrainGlobalAvgPool,
    TrainLayer,
    TrainNetwork,
    TrainPointwiseConv2d,
    TrainReLU,
)
from models.nn.layers import (
    BatchNorm,
    Conv2d,
    Dense,
    DepthwiseConv2d,
    Dropout,
    GlobalAvgPool,
    Layer,
    PointwiseConv2d,
    ReLU,
    Sequential,
)
from models.nn.optim import Adam

_SLOTS = ("exp_avg", "exp_avg_sq")


def _convert(layer: Layer, index: int) -> TrainLayer:
    """The training-engine spec of one layer (sharing its arrays; the engine copies them)."""
    params = layer.params
    bias = params.get("bias")
    if isinstance(layer, Conv2d):
        return TrainConv2d(params["weight"], bias, layer.stride, layer.padding)
    if isinstance(layer, DepthwiseConv2d):
        return TrainDepthwiseConv2d(params["weight"], bias, layer.stride, layer.padding)
    if isinstance(layer, PointwiseConv2d):
        return TrainPointwiseConv2d(params["weight"], bias)
    if isinstance(layer, Dense):
        return TrainDense(params["weight"], bias)
    if isinstance(layer, BatchNorm):
        return TrainBatchNorm(
            params["gamma"], params["beta"], layer.buffers["running_mean"],
            layer.buffers["running_var"], layer.momentum, layer.eps,
        )  # fmt: skip
    if isinstance(layer, ReLU):
        return TrainReLU()
    if isinstance(layer, GlobalAvgPool):
        return TrainGlobalAvgPool()
    if isinstance(layer, Dropout):
        return TrainDropout(layer.p)
    raise ModelError(
        f"model.layers[{index}]: got {type(layer).__name__}; the GPU trainer runs Conv2d, "
        "DepthwiseConv2d, PointwiseConv2d, Dense, BatchNorm, ReLU, GlobalAvgPool and Dropout"
    )


def to_train_network(
    model: Sequential, input_shape: tuple[int, ...]
) -> tuple[TrainNetwork, list[int]]:
    """Describe ``model`` for the training engine.

    Parameters
    ----------
    model : Sequential
        Float32 layers of the kinds `GpuTrainingStep` supports; dropout with p = 0 is left out.
    input_shape : tuple[int, ...]
        One window without the batch axis, e.g. (97, 40, 1).

    Returns
    -------
    network : TrainNetwork
        The engine's description (array names count the kept layers only).
    indices : list[int]
        Index in ``model`` of each layer of ``network``.

    Raises
    ------
    ModelError
        A layer kind the engine does not run, parameters that are not float32, or shapes that
        do not chain from ``input_shape`` to class logits.
    """
    layers, indices = [], []
    for index, layer in enumerate(model.layers):
        for key, value in {**layer.params, **layer.buffers}.items():
            if value.dtype != np.float32:
                raise ModelError(
                    f"model.layers[{index}].{key}: got {value.dtype}, expected float32 "
                    "(the GPU trainer computes in float32)"
                )
        if isinstance(layer, Dropout) and layer.p == 0.0:
            continue
        layers.append(_convert(layer, index))
        indices.append(index)
    return TrainNetwork(input_shape=tuple(input_shape), layers=tuple(layers)), indices


class GpuTrainingStep:
    """The numpy training step of `models.nn.trainer.Trainer`, run on a wgpu device.

    Parameters
    ----------
    model : Sequential
        A classifier, windows -> logits [batch, classes], float32.
    optimizer : Adam
        Built on ``model.parameters()``; its betas, eps, weight decay, moments and step count
        carry over (SGD is not supported).
    batch_size : int
        Most windows per step; a smaller last batch compiles a second program on first use.
    input_shape : tuple[int, ...] or None
        One window without the batch axis; None takes it from the first batch.
    gpu : GpuDevice or None
        The device; None opens the best adapter (`kernels.device.open_device`).

    Raises
    ------
    ModelError
        The optimizer is not Adam, or the model cannot run on the engine (see
        `to_train_network`).
    DeviceError
        No adapter, or a kernel fails to compile.
    """

    def __init__(
        self,
        model: Sequential,
        optimizer: Adam,
        batch_size: int,
        *,
        input_shape: tuple[int, ...] | None = None,
        gpu: GpuDevice | None = None,
    ) -> None:
        if not isinstance(optimizer, Adam):
            raise ModelError(
                f"optimizer: got {type(optimizer).__name__}, expected Adam (the GPU trainer "
                "implements AdamW)"
            )
        self.model, self.optimizer, self.batch_size = model, optimizer, batch_size
        self.gpu = gpu
        self._trainer: GpuTrainer | None = None
        self._indices: list[int] = []
        if input_shape is not None:
            self._compile(input_shape)

    def _compile(self, input_shape: tuple[int, ...]) -> GpuTrainer:
        network, self._indices = to_train_network(self.model, input_shape)
        self.gpu = self.gpu or open_device()
        opt = self.optimizer
        settings = AdamSettings((opt.beta1, opt.beta2), opt.eps, opt.weight_decay)
        self._trainer = GpuTrainer(network, self.gpu, self.batch_size, adam=settings)
        self.sync_from_host()
        return self._trainer

    @property
    def trainer(self) -> GpuTrainer | None:
        """The compiled engine (None until the input shape is known)."""
        return self._trainer

    def _rename(self, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Engine names (kept-layer index) -> model names (``Sequential`` index)."""
        renamed = {}
        for name, value in state.items():
            index, key = name.split(".", 1)
            renamed[f"{self._indices[int(index)]}.{key}"] = value
        return renamed

    def _engine_names(self, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        position = {model_index: i for i, model_index in enumerate(self._indices)}
        return {
            f"{position[int(name.split('.', 1)[0])]}.{name.split('.', 1)[1]}": value
            for name, value in state.items()
        }

    def _masks(self, batch: int, shapes: tuple[tuple[int, ...], ...]) -> dict[int, np.ndarray]:
        """Dropout masks drawn from each layer's generator exactly as `Dropout.forward` does."""
        masks = {}
        for position, model_index in enumerate(self._indices):
            layer = self.model.layers[model_index]
            if isinstance(layer, Dropout):
                shape = (batch, *shapes[position])
                keep = layer.rng.random(shape, dtype=np.float32) >= layer.p
                masks[position] = keep * np.asarray(1.0 / (1.0 - layer.p), np.float32)
        return masks

    def step(
        self, x: np.ndarray, labels: np.ndarray, class_weights: np.ndarray | None, lr: float
    ) -> tuple[float, int]:
        """Forward, weighted cross-entropy, backward and an AdamW step at learning rate ``lr``.

        Parameters
        ----------
        x : np.ndarray [shape=(batch, *input_shape)]
            Windows, 1 <= batch <= batch_size.
        labels : np.ndarray [shape=(batch,)], int
            Class of each window.
        class_weights : np.ndarray [shape=(classes,)] or None
            Loss weight per class; None weighs every class 1.
        lr : float
            Learning rate of this step (also left in ``optimizer.lr``).

        Returns
        -------
        loss : float
            Class-weighted mean cross-entropy before the update (nats).
        correct : int
            Windows whose largest logit is at the label.
        """
        trainer = self._trainer or self._compile(tuple(x.shape[1:]))
        weights = np.ones(trainer.network.classes, np.float32)
        if class_weights is not None:
            weights = np.asarray(class_weights, np.float32)
        masks = self._masks(x.shape[0], trainer.network.shapes)
        result = trainer.step(x, labels, weights, lr, masks)
        self.optimizer.lr = float(lr)
        self.optimizer.steps = trainer.steps
        return result

    def sync_to_host(self) -> None:
        """Copy parameters, running statistics, gradients and Adam moments into the model."""
        if self._trainer is None:
            return
        self.model.load_state_dict(self._rename(self._trainer.state_dict()))
        grads = self._rename(self._trainer.gradients())
        for name, _, grad in self.model.parameters():
            grad[...] = grads[name]
        moments = self._trainer.optimizer_state()
        for slot in _SLOTS:
            for name, value in self._rename(moments[slot]).items():
                self.optimizer.state[slot][name][...] = value
        self.optimizer.steps = self._trainer.steps

    def sync_from_host(self) -> None:
        """Upload the model's parameters and statistics and Adam's moments and step count."""
        if self._trainer is None:
            return
        self._trainer.load_state_dict(self._engine_names(self.model.state_dict()))
        moments = {
            slot: self._engine_names({k: v.copy() for k, v in self.optimizer.state[slot].items()})
            for slot in _SLOTS
        }
        self._trainer.load_optimizer_state(moments, self.optimizer.steps)
