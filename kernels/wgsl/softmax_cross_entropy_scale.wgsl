// softmax_cross_entropy_scale: second pass of the class-weighted softmax cross-entropy; divides
// the gradient by the total weight and writes the loss and the correct count.
//   grad[i] /= totals[1]; result = (totals[0] / totals[1], totals[2]).
//
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened as
//   i = gid.x + gid.y * num_workgroups.x * WORKGROUP.
// Work per invocation: one gradient value; invocation 0 also writes the result.
// Layout: totals [3] f32 (sum of w_i * nll_i, sum of w_i, correct count); grad [COUNT] f32;
//   result [2] f32 (weighted mean loss in nats, correct count).
// Alignment: arrays bound at offsets that are multiples of 256 bytes; no size needs to be a
//   multiple of the workgroup (the last invocations are masked).

const COUNT: u32 = ${COUNT};

@group(0) @binding(0) var<storage, read> totals: array<f32>;
@group(0) @binding(1) var<storage, read_write> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> result: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * ${WORKGROUP};
    if (i == 0u) {
        result[0] = totals[0] / totals[1];
        result[1] = totals[2];
    }
    if (i >= COUNT) {
        return;
    }
    grad[i] = grad[i] / totals[1];
}
