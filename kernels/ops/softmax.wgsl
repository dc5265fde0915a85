// softmax: numerically stable softmax over the last axis (inference), and the class-weighted
// softmax cross-entropy with the gradient of its logits (training); references
// kernels.ops.softmax.softmax_ref and softmax_cross_entropy_ref.
//
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened (see flat_main).
// Alignment: arrays bound at offsets that are multiples of 256 bytes; no size needs to be a
//   multiple of the workgroup (the last invocations are masked).

//! kernel softmax
// softmax: [ROWS, N] -> [ROWS, N], one row per invocation in three passes (max, sum of
// exp(v - max), normalise). x and y are [ROWS, N4] f32 row-major, where N4 is N rounded up to a
// multiple of 4 (the padded layout of the inference engine); the padding columns are set to zero.
//! const u32 N N4

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;

//! include flat_main
    let base = i * N4;
    var top = x[base];
    for (var k: u32 = 1u; k < N; k++) {
        top = max(top, x[base + k]);
    }
    var total = 0.0;
    for (var k: u32 = 0u; k < N; k++) {
        let e = exp(x[base + k] - top);
        y[base + k] = e;
        total += e;
    }
    let scale = 1.0 / total;
    for (var k: u32 = 0u; k < N; k++) {
        y[base + k] *= scale;
    }
    for (var k: u32 = N; k < N4; k++) {
        y[base + k] = 0.0;
    }
}

//! kernel softmax_cross_entropy
// softmax_cross_entropy: first pass of the class-weighted softmax cross-entropy, one row i of
// [COUNT, K] logits per invocation. With w_i = class_weights[label_i] and p = softmax(z_i):
//   grad[i, :] = w_i * (p - onehot(label_i)) (not yet divided by sum_i w_i),
//   rows[i, :] = (w_i * nll_i, w_i, correct_i) with nll_i = logsumexp(z_i) - z_i[label_i] and
//   correct_i = 1 when the first largest logit is at the label.
// column_sum then adds the rows and softmax_cross_entropy_scale divides by the total weight.
// Layout: logits and grad [COUNT, K] f32 row-major; labels [COUNT] u32; class_weights [K] f32;
//   rows [COUNT, 3] f32.
//! const u32 K

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read> class_weights: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> rows: array<f32>;

//! include flat_main
    let base = i * K;
    let label = labels[i];
    var top = logits[base];
    var top_index = 0u;
    for (var k: u32 = 1u; k < K; k++) {
        if (logits[base + k] > top) {
            top = logits[base + k];
            top_index = k;
        }
    }
    var total = 0.0;
    for (var k: u32 = 0u; k < K; k++) {
        let e = exp(logits[base + k] - top);
        grad[base + k] = e;
        total += e;
    }
    let weight = class_weights[label];
    let scale = weight / total;
    for (var k: u32 = 0u; k < K; k++) {
        grad[base + k] *= scale;
    }
    grad[base + label] -= weight;
    rows[3u * i] = weight * (log(total) - (logits[base + label] - top));
    rows[3u * i + 1u] = weight;
    rows[3u * i + 2u] = select(0.0, 1.0, top_index == label);
}

//! kernel softmax_cross_entropy_scale
// softmax_cross_entropy_scale: second pass; divides the gradient by the total weight and writes
// the loss and the correct count: grad[i] /= totals[1]; result = (totals[0] / totals[1],
// totals[2]). One gradient value per invocation; invocation 0 also writes the result.
// Layout: totals [3] f32 (sum of w_i * nll_i, sum of w_i, correct count); grad [COUNT] f32;
//   result [2] f32 (weighted mean loss in nats, correct count).

@group(0) @binding(0) var<storage, read> totals: array<f32>;
@group(0) @binding(1) var<storage, read_write> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> result: array<f32>;

//! include flat_main
    if (i == 0u) {
        result[0] = totals[0] / totals[1];
        result[1] = totals[2];
    }
    grad[i] = grad[i] / totals[1];
}
