"""Optimizers that update a model's parameters in place, and a learning-rate schedule.

An optimizer takes the ``(name, param, grad)`` triples of `models.nn.layers.Sequential.parameters`
and keeps them: after each ``backward`` fills the gradients, ``step()`` updates the parameters in
place. Set ``optimizer.lr`` before a step to follow a schedule such as `cosine_with_warmup`.
``state_dict()`` is a flat ``{name: array}`` mapping (hyper-parameters as 0-d arrays, then one
state array per parameter), so a checkpoint can store it next to the weights and
``load_state_dict`` resumes training bit for bit.

Weight decay applies to weight arrays only (``ndim >= 2``: conv, depthwise, pointwise and
dense weights), never to biases or batch-norm scales and shifts, which it would pull towards
zero for no gain in generalisation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from kernels.errors import ModelError

ParamTriple = tuple[str, np.ndarray, np.ndarray]
"""(qualified name, parameter array, gradient array), as `Sequential.parameters` yields."""

_DECAYED_MIN_NDIM = 2
"""Arrays with at least this many axes are weights, and are decayed."""


def _check_rate(value: float, name: str, *, upper: float | None = None) -> float:
    value = float(value)
    if not (value >= 0 and (upper is None or value < upper)):
        allowed = f"in [0, {upper})" if upper is not None else ">= 0"
        raise ModelError(f"{name}: got {value!r}, expected a number {allowed}")
    return value


class _Optimizer:
    """Shared bookkeeping: the parameter triples, the step count, state save and restore."""

    _hyper: tuple[str, ...] = ("lr", "weight_decay")
    _slots: tuple[str, ...] = ()

    def __init__(self, params: Iterable[ParamTriple], lr: float, weight_decay: float) -> None:
        self.params = list(params)
        names = [name for name, _, _ in self.params]
        if len(set(names)) != len(names):
            raise ModelError(f"params: got duplicate names in {names}, expected unique names")
        for name, param, grad in self.params:
            if param.shape != grad.shape:
                raise ModelError(f"params[{name!r}]: grad shape {grad.shape} != {param.shape}")
        self.lr = _check_rate(lr, "lr")
        self.weight_decay = _check_rate(weight_decay, "weight_decay")
        self.steps = 0
        self.state: dict[str, dict[str, np.ndarray]] = {
            slot: {name: np.zeros_like(param) for name, param, _ in self.params}
            for slot in self._slots
        }

    @staticmethod
    def decays(param: np.ndarray) -> bool:
        """Whether weight decay applies to ``param`` (weights, not biases or norm parameters)."""
        return param.ndim >= _DECAYED_MIN_NDIM

    def step(self) -> None:
        """Update every parameter in place from its current gradient."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        """Hyper-parameters and step count (0-d arrays) and copies of the per-parameter state.

        Returns
        -------
        dict[str, np.ndarray]
            ``"lr"``, ``"steps"`` and the other hyper-parameters, then ``"<slot>.<name>"`` for
            each state slot (``velocity``; ``exp_avg``, ``exp_avg_sq``) and parameter name.
        """
        state = {key: np.asarray(getattr(self, key)) for key in (*self._hyper, "steps")}
        for slot, arrays in self.state.items():
            state.update({f"{slot}.{name}": value.copy() for name, value in arrays.items()})
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what `state_dict` returned (for the same parameter names and shapes).

        Raises
        ------
        ModelError
            A key is missing or unexpected (another optimizer or model), or a shape differs.
        """
        expected = self.state_dict()
        missing = sorted(set(expected) - set(state))
        extra = sorted(set(state) - set(expected))
        if missing or extra:
            raise ModelError(
                f"optimizer state: missing {missing or 'nothing'}, unexpected {extra or 'nothing'}"
            )
        for key, value in expected.items():
            if np.shape(state[key]) != value.shape:
                raise ModelError(
                    f"optimizer state[{key!r}]: got shape {np.shape(state[key])}, "
                    f"expected {value.shape}"
                )
        for key in self._hyper:
            setattr(self, key, float(state[key]))
        self.steps = int(state["steps"])
        for slot, arrays in self.state.items():
            for name, array in arrays.items():
                array[...] = state[f"{slot}.{name}"]


class SGD(_Optimizer):
    """Stochastic gradient descent with heavy-ball momentum and L2 weight decay.

    Per step, for each parameter ``p`` with gradient ``g``: ``d = g + weight_decay * p``
    (weights only), ``v = momentum * v + d`` (v starts at 0), ``p -= lr * v``; PyTorch's SGD.

    Parameters
    ----------
    params : iterable of (name, param, grad)
        From `Sequential.parameters`; the arrays are updated and read in place.
    lr : float
        Learning rate, >= 0.
    momentum : float
        In [0, 1); 0 is plain SGD.
    weight_decay : float
        L2 coefficient added to the gradient, >= 0.
    """

    _hyper = ("lr", "momentum", "weight_decay")
    _slots = ("velocity",)

    def __init__(
        self,
        params: Iterable[ParamTriple],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        self.momentum = _check_rate(momentum, "momentum", upper=1.0)
        super().__init__(params, lr, weight_decay)

    def step(self) -> None:
        """Update every parameter in place."""
        velocity = self.state["velocity"]
        for name, param, grad in self.params:
            direction = grad
            if self.weight_decay and self.decays(param):
                direction = grad + self.weight_decay * param
            if self.momentum:
                velocity[name] *= self.momentum
                velocity[name] += direction
                direction = velocity[name]
            param -= self.lr * direction
        self.steps += 1


class Adam(_Optimizer):
    """Adam with decoupled weight decay (AdamW).

    Per step t (from 1), for each parameter ``p`` with gradient ``g``: first
    ``p *= 1 - lr * weight_decay`` (weights only; decay outside the adaptive scaling, as in
    Loshchilov and Hutter's AdamW), then ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``p -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)``; PyTorch's AdamW.

    Parameters
    ----------
    params : iterable of (name, param, grad)
        From `Sequential.parameters`; the arrays are updated and read in place.
    lr : float
        Learning rate, >= 0.
    betas : tuple[float, float]
        Decay rates of the first and second moment estimates, each in [0, 1).
    eps : float
        Added to the denominator, >= 0.
    weight_decay : float
        Decoupled decay coefficient, >= 0.
    """

    _hyper = ("lr", "beta1", "beta2", "eps", "weight_decay")
    _slots = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Iterable[ParamTriple],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        self.beta1 = _check_rate(betas[0], "betas[0]", upper=1.0)
        self.beta2 = _check_rate(betas[1], "betas[1]", upper=1.0)
        self.eps = _check_rate(eps, "eps")
        super().__init__(params, lr, weight_decay)

    def step(self) -> None:
        """Update every parameter in place."""
        self.steps += 1
        step_size = self.lr / (1 - self.beta1**self.steps)
        root_correction = math.sqrt(1 - self.beta2**self.steps)
        for name, param, grad in self.params:
            if self.weight_decay and self.decays(param):
                param *= 1 - self.lr * self.weight_decay
            exp_avg, exp_avg_sq = self.state["exp_avg"][name], self.state["exp_avg_sq"][name]
            exp_avg *= self.beta1
            exp_avg += (1 - self.beta1) * grad
            exp_avg_sq *= self.beta2
            exp_avg_sq += (1 - self.beta2) * np.square(grad)
            denom = np.sqrt(exp_avg_sq)
            denom /= root_correction
            denom += self.eps
            param -= step_size * exp_avg / denom


def cosine_with_warmup(
    step: int, *, total_steps: int, peak_lr: float, warmup_steps: int = 0, final_lr: float = 0.0
) -> float:
    """Learning rate at ``step``: linear warm-up to ``peak_lr``, then a cosine to ``final_lr``.

    Steps ``0 .. warmup_steps - 1`` rise linearly as ``peak_lr * (step + 1) / warmup_steps``;
    from ``warmup_steps`` the rate follows half a cosine from ``peak_lr`` down to ``final_lr``,
    reached at ``total_steps`` and kept after it.

    Parameters
    ----------
    step : int
        Optimizer steps taken so far, >= 0.
    total_steps : int
        Length of the schedule, >= 1.
    peak_lr : float
        Highest rate, > 0.
    warmup_steps : int
        Length of the warm-up, in [0, total_steps].
    final_lr : float
        Rate at the end, in [0, peak_lr].

    Returns
    -------
    float
        The learning rate.
    """
    if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
        raise ModelError(
            f"total_steps, warmup_steps: got {total_steps}, {warmup_steps}, "
            "expected total_steps >= 1 and 0 <= warmup_steps <= total_steps"
        )
    if not (peak_lr > 0 and 0 <= final_lr <= peak_lr):
        raise ModelError(
            f"peak_lr, final_lr: got {peak_lr}, {final_lr}, expected 0 <= final_lr <= peak_lr, "
            "peak_lr > 0"
        )
    if step < 0:
        raise ModelError(f"step: got {step}, expected >= 0")
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return final_lr + (peak_lr - final_lr) * 0.5 * (1 + math.cos(math.pi * progress))
