// batch_norm_backward: input gradient of training-mode batch norm,
// dx = (g - sum_g / ROWS + (x - mean) * slope) * gamma * inv_std with
// slope = -inv_std^2 * sum_gc / ROWS (the sums come from batch_norm_partials and
// batch_norm_finalize in MODE 2).
//
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened as
//   i = gid.x + gid.y * num_workgroups.x * WORKGROUP.
// Work per invocation: one value (or quad of channels).
// Layout: g, x and dx [ROWS, C] f32 (NHWC flattened); stats [4, C] f32: mean, inverse standard
//   deviation, sum of g, sum of g * (x - mean); gamma [C] f32.
// Vectors: V is f32, or vec4<f32> when C is a multiple of 4 (then COUNT and C are in quads of
//   channels, and each invocation handles four channels; the memory layout is the same).
// Alignment: arrays bound at offsets that are multiples of 256 bytes; no size needs to be a
//   multiple of the workgroup (the last invocations are masked).

alias V = ${VEC};

const COUNT: u32 = ${COUNT};
const C: u32 = ${C};
const ROWS: f32 = f32(${ROWS});

@group(0) @binding(0) var<storage, read> g: array<V>;
@group(0) @binding(1) var<storage, read> x: array<V>;
@group(0) @binding(2) var<storage, read> stats: array<V>;
@group(0) @binding(3) var<storage, read> gamma: array<V>;
@group(0) @binding(4) var<storage, read_write> dx: array<V>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * ${WORKGROUP};
    if (i >= COUNT) {
        return;
    }
    let c = i % C;
    let inv_std = stats[C + c];
    let slope = -(inv_std * inv_std) * stats[3u * C + c] / ROWS;
    let centered = x[i] - stats[c];
    dx[i] = (g[i] - stats[2u * C + c] / ROWS + centered * slope) * (gamma[c] * inv_std);
}
