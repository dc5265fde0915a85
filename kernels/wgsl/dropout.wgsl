// dropout: inverted dropout, forward and backward alike, y = x * mask (the mask, 0 or
// 1 / (1 - p), is drawn on the host and written with the batch).
//
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened as
//   i = gid.x + gid.y * num_workgroups.x * WORKGROUP.
// Work per invocation: one value (or quad).
// Layout: x, mask and y flat f32 arrays of COUNT values (any shape, row-major).
// Vectors: V is f32, or vec4<f32> when the plan found every size a multiple of 4 (then COUNT
//   is in quads, and each invocation handles four values).
// Alignment: arrays bound at offsets that are multiples of 256 bytes; no size needs to be a
//   multiple of the workgroup (the last invocations are masked).

alias V = ${VEC};

const COUNT: u32 = ${COUNT};

@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read> mask: array<V>;
@group(0) @binding(2) var<storage, read_write> y: array<V>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * ${WORKGROUP};
    if (i >= COUNT) {
        return;
    }
    y[i] = x[i] * mask[i];
}
