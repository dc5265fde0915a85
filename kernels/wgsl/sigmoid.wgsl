// sigmoid: elementwise logistic function 1 / (1 + exp(-v)).
//
// Workgroup size: ${WORKGROUP} invocations, 1-D dispatch along x.
// Work per invocation: one vec4 (four elements). exp() only ever sees -|v|, so it cannot overflow.
// Layout: x and y are flat vec4<f32> arrays of COUNT4 / 4 elements (any shape, row-major, in the
//   channel-padded layout of the other kernels; padding lanes are computed and ignored).
// Alignment: vec4<f32> arrays (16-byte elements), bound whole at offset 0; no size needs to be
//   a multiple of the workgroup or tile (the last invocations are masked).

const QUADS: u32 = ${COUNT4} / 4u;

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> y: array<vec4<f32>>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= QUADS) {
        return;
    }
    let v = x[i];
    let e = exp(-abs(v));
    y[i] = select(e / (1.0 + e), 1.0 / (1.0 + e), v >= vec4<f32>(0.0));
}
