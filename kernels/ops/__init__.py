"""One module per op: its numpy references beside the builders of its kernel launches.

Each module ``kernels/ops/<op>.py`` holds the op's numpy reference forward (``<op>_ref``, the
source of truth and the numpy inference path), its backward references where the op trains, and
the functions that turn the op into `kernels.launch.Launch` objects for the inference engine
(`kernels.gpu_network`) and the training engine (`kernels.train_plan`). The op's WGSL file,
``kernels/ops/<op>.wgsl``, sits beside it and holds every kernel of the op (inference forward,
training forward, gradients) as ``//! kernel`` sections; ``shared.wgsl`` holds the fragments
several ops include (window index math, zero-padded patch reads, the inference bindings, the
flattened launch index). `layout` holds the array geometry the ops share.

Modules here may import numpy, the standard library, `kernels.launch`, `kernels.errors` and each
other (`layout` and `column_sum` are the shared ones); never wgpu, the engines or
`kernels.network`.
"""
