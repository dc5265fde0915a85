// softmax_cross_entropy: first pass of the class-weighted softmax cross-entropy, one row per
// invocation. With w_i = class_weights[label_i] and p = softmax(z_i):
//   grad[i, :] = w_i * (p - onehot(label_i)) (not yet divided by sum_i w_i),
//   rows[i, :] = (w_i * nll_i, w_i, correct_i) with nll_i = logsumexp(z_i) - z_i[label_i] and
//   correct_i = 1 when the first largest logit is at the label.
// column_sum then adds the rows and softmax_cross_entropy_scale divides by the total weight.
//
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened as
//   i = gid.x + gid.y * num_workgroups.x * WORKGROUP.
// Layout: logits and grad [BATCH, K] f32 row-major; labels [BATCH] u32; class_weights [K] f32;
//   rows [BATCH, 3] f32.
// Alignment: arrays bound at offsets that are multiples of 256 bytes; no size needs to be a
//   multiple of the workgroup (the last invocations are masked).

const BATCH: u32 = ${BATCH};
const K: u32 = ${K};

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read> class_weights: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> rows: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * ${WORKGROUP};
    if (i >= BATCH) {
        return;
    }
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
