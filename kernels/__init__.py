"""GPU compute kernels (WGSL through wgpu) and their numpy references.

Build a `Network` from layer specs, then run it with an engine from `create_engine` (wgpu on a
real GPU, numpy otherwise). Importing this package does not import wgpu; compiling a network
for a device does. See ``kernels/README.md`` for an example.
"""

from kernels.network import (
    IDENTITY,
    RELU,
    Activation,
    AvgPool2d,
    Conv2d,
    Dense,
    DepthwiseConv2d,
    GlobalAvgPool,
    Layer,
    MaxPool2d,
    Network,
    PointwiseConv2d,
    Sigmoid,
    Softmax,
    run_numpy,
)
from kernels.ops.batch_norm import fold_batchnorm
from kernels.runtime import Backend, Engine, NumpyEngine, create_engine, resolve_backend

__all__ = [
    "IDENTITY",
    "RELU",
    "Activation",
    "AvgPool2d",
    "Backend",
    "Conv2d",
    "Dense",
    "DepthwiseConv2d",
    "Engine",
    "GlobalAvgPool",
    "Layer",
    "MaxPool2d",
    "Network",
    "NumpyEngine",
    "PointwiseConv2d",
    "Sigmoid",
    "Softmax",
    "create_engine",
    "fold_batchnorm",
    "resolve_backend",
    "run_numpy",
]
