// activation: elementwise kernels over flat arrays of COUNT values (any shape, row-major):
// relu and its gradient (training keeps ReLU a layer of its own, since the batch norm before it
// needs its un-activated output), inverted dropout, and sigmoid (inference); references in
// kernels.ops.activation.
//
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened (see flat_main).
// Work per invocation: one value (or quad; see `vectors` in shared.wgsl).
// Alignment: arrays bound at offsets that are multiples of 256 bytes; no size needs to be a
//   multiple of the workgroup (the last invocations are masked).
//! include vectors

//! kernel relu
// relu: y = max(x, 0).
@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read_write> y: array<V>;

//! include flat_main
    y[i] = max(x[i], V(0.0));
}

//! kernel relu_backward
// relu_backward: dx = g where the forward output y > 0, else 0.
@group(0) @binding(0) var<storage, read> g: array<V>;
@group(0) @binding(1) var<storage, read> y: array<V>;
@group(0) @binding(2) var<storage, read_write> dx: array<V>;

//! include flat_main
    dx[i] = select(V(0.0), g[i], y[i] > V(0.0));
}

//! kernel dropout
// dropout: inverted dropout, forward and backward alike, y = x * mask (the mask, 0 or
// 1 / (1 - p), is drawn on the host and written with the batch).
@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read> mask: array<V>;
@group(0) @binding(2) var<storage, read_write> y: array<V>;

//! include flat_main
    y[i] = x[i] * mask[i];
}

//! kernel sigmoid
// sigmoid: y = 1 / (1 + exp(-x)); exp() only ever sees -|x|, so it cannot overflow. The
// inference engine runs it on its padded layout (padding lanes are computed and ignored).
@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read_write> y: array<V>;

//! include flat_main
    let v = x[i];
    let e = exp(-abs(v));
    y[i] = select(e / (1.0 + e), 1.0 / (1.0 + e), v >= V(0.0));
}
