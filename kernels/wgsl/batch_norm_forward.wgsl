// batch_norm_forward: normalise with the batch statistics, y = (x - mean) * (gamma * inv_std)
// + beta (the statistics come from batch_norm_partials and batch_norm_finalize).
//
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened as
//   i = gid.x + gid.y * num_workgroups.x * WORKGROUP.
// Work per invocation: one value (or quad of channels).
// Layout: x and y [ROWS, C] f32 (NHWC flattened); stats [4, C] f32 (mean, inverse standard
//   deviation, ...); gamma and beta [C] f32.
// Vectors: V is f32, or vec4<f32> when C is a multiple of 4 (then COUNT and C are in quads of
//   channels, and each invocation handles four channels; the memory layout is the same).
// Alignment: arrays bound at offsets that are multiples of 256 bytes; no size needs to be a
//   multiple of the workgroup (the last invocations are masked).

alias V = ${VEC};

const COUNT: u32 = ${COUNT};
const C: u32 = ${C};

@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read> stats: array<V>;
@group(0) @binding(2) var<storage, read> gamma: array<V>;
@group(0) @binding(3) var<storage, read> beta: array<V>;
@group(0) @binding(4) var<storage, read_write> y: array<V>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * ${WORKGROUP};
    if (i >= COUNT) {
        return;
    }
    let c = i % C;
    y[i] = (x[i] - stats[c]) * (gamma[c] * stats[C + c]) + beta[c];
}
