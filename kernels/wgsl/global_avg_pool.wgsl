// global_avg_pool: mean over all positions of each image and channel, [B, H, W, C] -> [B, C].
//
// Workgroup size: ${WORKGROUP} invocations, 1-D dispatch along x.
// Work per invocation: one image x one channel quad (vec4), summed in one pass over the image's
//   N_POS positions; neighbouring invocations take neighbouring quads of the same image.
// Layout: x [BATCH, N_POS, C4 / 4] vec4<f32> (NHWC with H x W flattened and the channel axis
//   zero-padded to a multiple of 4), y [BATCH, C4 / 4] vec4<f32>.
// Alignment: vec4<f32> arrays (16-byte elements), bound whole at offset 0; no size needs to be
//   a multiple of the workgroup or tile (the last invocations are masked).

const BATCH: u32 = ${BATCH};
const N_POS: u32 = ${N_POS};
const Q: u32 = ${C4} / 4u;
const SCALE: f32 = 1.0 / f32(N_POS);

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> y: array<vec4<f32>>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= BATCH * Q) {
        return;
    }
    let image = i / Q;
    let q = i % Q;
    var acc = vec4<f32>(0.0);
    for (var n: u32 = 0u; n < N_POS; n++) {
        acc += x[(image * N_POS + n) * Q + q];
    }
    y[i] = acc * SCALE;
}
