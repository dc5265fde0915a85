"""Time training steps of the full-size base network in numpy and on wgpu; project an epoch.

The network is `models.base.architecture.build_base` with the default `BaseConfig` plus a classifier
head (586 classes by default, the word vocabulary of the base training task), trained with AdamW
on batches of 64 random windows [64, 97, 40, 1]. Both engines take the same steps: the numpy
step of `models.nn.trainer.Trainer` and `models.nn.gpu_training.GpuTrainingStep`. One warm-up step
is not timed (it compiles shaders on the device and fills numpy's caches). An epoch is projected as
``ceil(windows / batch)`` steps (SpecAugment, shuffling and validation excluded).

Run ``python -m agent.bench.train --steps 5`` (``--help`` for the options).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from agent.bench.common import MS_PER_S, add_json_option, print_json
from kernels.device import open_device
from models.base.architecture import BaseConfig, build_base, build_head
from models.nn.gpu_training import GpuTrainingStep
from models.nn.layers import Sequential
from models.nn.losses import softmax_cross_entropy
from models.nn.optim import Adam

EPOCH_WINDOWS = 32_234
"""Training windows in one epoch of the default base corpus (584 words x 24 renditions x 2
copies, plus the silence and running-speech windows)."""
DEFAULT_CLASSES = 586
DEFAULT_BATCH = 64
DEFAULT_STEPS = 5
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 1e-4


@dataclass(frozen=True)
class StepTiming:
    """Measured step times of one engine.

    Attributes
    ----------
    engine : str
        ``"numpy"`` or ``"wgpu <adapter>"``.
    step_ms : list[float]
        Wall time of each timed step, in milliseconds.
    steps_per_epoch : int
        Steps in one projected epoch.
    """

    engine: str
    step_ms: list[float]
    steps_per_epoch: int

    @property
    def median_ms(self) -> float:
        """Median step time, ms."""
        return statistics.median(self.step_ms)

    @property
    def epoch_s(self) -> float:
        """Projected seconds per epoch from the median step."""
        return self.median_ms * self.steps_per_epoch / MS_PER_S

    def __str__(self) -> str:
        return (
            f"{self.engine:<48} {self.median_ms:9.1f} ms/step (min {min(self.step_ms):.1f}) "
            f"-> {self.epoch_s:8.1f} s/epoch"
        )


def _model(classes: int, seed: int) -> Sequential:
    rng = np.random.default_rng(seed)
    config = BaseConfig()
    base = build_base(config, rng)
    return Sequential([*base.layers, *build_head(config.embedding_dim, classes, rng).layers])


def _time(step: Callable[[], object], steps: int) -> list[float]:
    step()  # warm-up: shader compilation, allocator and cache warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * MS_PER_S)
    return times


def _numpy_step(
    model: Sequential, optimizer: Adam, x: np.ndarray, labels: np.ndarray, weights: np.ndarray
) -> Callable[[], object]:
    """The numpy step of `models.nn.trainer.Trainer`, as a closure."""

    def step() -> None:
        logits = model.forward(x, training=True)
        _, grad = softmax_cross_entropy(logits, labels, weights)
        model.backward_params(grad)
        optimizer.lr = LEARNING_RATE
        optimizer.step()

    return step


def _wgpu_step(
    runner: GpuTrainingStep, x: np.ndarray, labels: np.ndarray, weights: np.ndarray
) -> Callable[[], object]:
    """The same step on the wgpu training engine, as a closure."""
    return lambda: runner.step(x, labels, weights, LEARNING_RATE)


def bench_training(
    *,
    steps: int = DEFAULT_STEPS,
    batch: int = DEFAULT_BATCH,
    classes: int = DEFAULT_CLASSES,
    engines: Sequence[str] = ("numpy", "wgpu"),
    seed: int = 0,
    epoch_windows: int = EPOCH_WINDOWS,
) -> list[StepTiming]:
    """Time ``steps`` training steps per engine after one warm-up step.

    Parameters
    ----------
    steps : int
        Timed steps per engine, at least 1.
    batch : int
        Windows per step.
    classes : int
        Classes of the head.
    engines : sequence of {"numpy", "wgpu"}
        Which engines to time.
    seed : int
        Seeds the weights and the data.
    epoch_windows : int
        Windows in the epoch the timings are projected to.

    Returns
    -------
    list[StepTiming]
        One per engine, in the order given.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(-4.0, 2.0, (batch, *BaseConfig().input_shape)).astype(np.float32)
    labels = rng.integers(0, classes, batch)
    weights = np.ones(classes, np.float32)
    per_epoch = math.ceil(epoch_windows / batch)
    timings = []
    for engine in engines:
        model = _model(classes, seed)
        optimizer = Adam(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
        if engine == "numpy":
            step, name = _numpy_step(model, optimizer, x, labels, weights), "numpy"
        elif engine == "wgpu":
            gpu = open_device()
            runner = GpuTrainingStep(model, optimizer, batch, input_shape=x.shape[1:], gpu=gpu)
            step, name = _wgpu_step(runner, x, labels, weights), f"wgpu {gpu.adapter}"
        else:
            raise ValueError(f"engines: got {engine!r}, expected 'numpy' or 'wgpu'")
        timings.append(StepTiming(name, _time(step, steps), per_epoch))
    return timings


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: print ms/step and projected s/epoch per engine."""
    parser = argparse.ArgumentParser(prog="python -m agent.bench.train", description=__doc__)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="timed steps")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="windows per step")
    parser.add_argument("--classes", type=int, default=DEFAULT_CLASSES, help="head classes")
    parser.add_argument(
        "--engine", action="append", choices=("numpy", "wgpu"), help="repeat for several"
    )
    parser.add_argument(
        "--epoch-windows", type=int, default=EPOCH_WINDOWS, help="epoch to project to"
    )
    add_json_option(parser)
    args = parser.parse_args(argv)
    timings = bench_training(
        steps=args.steps, batch=args.batch, classes=args.classes,
        engines=args.engine or ["numpy", "wgpu"], epoch_windows=args.epoch_windows,
    )  # fmt: skip
    if args.json:
        document = {
            "benchmark": "train",
            "network": {"base": BaseConfig().as_dict(), "classes": args.classes},
            "batch": args.batch,
            "epoch_windows": args.epoch_windows,
            "engines": [
                {"engine": t.engine, "median_ms_per_step": t.median_ms, "epoch_s": t.epoch_s}
                for t in timings
            ],
        }
        print_json(document)
        return 0
    print(
        f"training step, base network {BaseConfig()} + {args.classes}-class head, "
        f"batch {args.batch}, epoch of {args.epoch_windows} windows"
    )
    for timing in timings:
        print(timing)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
