// softmax: numerically stable softmax over the last axis, [ROWS, N] -> [ROWS, N].
//
// Workgroup size: ${WORKGROUP} invocations, 1-D dispatch along x.
// Work per invocation: one row; three passes (max, sum of exp(v - max), normalise).
// Layout: x and y [ROWS, N4] f32 row-major, where N4 is N rounded up to a multiple of 4 (the
//   padded channel layout of the other kernels); the padding columns are set to zero.
// Alignment: f32 arrays, 4-byte aligned; rows start 16-byte aligned.

const ROWS: u32 = ${ROWS};
const N: u32 = ${N};
const N4: u32 = ${N4};

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= ROWS) {
        return;
    }
    let base = r * N4;
    var top = x[base];
    for (var i: u32 = 1u; i < N; i++) {
        top = max(top, x[base + i]);
    }
    var total = 0.0;
    for (var i: u32 = 0u; i < N; i++) {
        let e = exp(x[base + i] - top);
        y[base + i] = e;
        total += e;
    }
    let scale = 1.0 / total;
    for (var i: u32 = 0u; i < N; i++) {
        y[base + i] *= scale;
    }
    for (var i: u32 = N; i < N4; i++) {
        y[base + i] = 0.0;
    }
}
