// relu_backward: gradient of ReLU from its output, dx = g where y > 0, else 0.
//
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened as
//   i = gid.x + gid.y * num_workgroups.x * WORKGROUP.
// Work per invocation: one value (or quad).
// Layout: g, y and dx flat f32 arrays of COUNT values (any shape, row-major).
// Vectors: V is f32, or vec4<f32> when the plan found every size a multiple of 4 (then COUNT
//   is in quads, and each invocation handles four values).
// Alignment: arrays bound at offsets that are multiples of 256 bytes; no size needs to be a
//   multiple of the workgroup (the last invocations are masked).

alias V = ${VEC};

const COUNT: u32 = ${COUNT};

@group(0) @binding(0) var<storage, read> g: array<V>;
@group(0) @binding(1) var<storage, read> y: array<V>;
@group(0) @binding(2) var<storage, read_write> dx: array<V>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * ${WORKGROUP};
    if (i >= COUNT) {
        return;
    }
    dx[i] = select(V(0.0), g[i], y[i] > V(0.0));
}
