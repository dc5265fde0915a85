// global_avg_pool_forward: mean over all positions of each image and channel,
// [BATCH, H, W, C] -> [BATCH, C].
//
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened as
//   i = gid.x + gid.y * num_workgroups.x * WORKGROUP.
// Work per invocation: one (image, channel), summed over the image's POSITIONS positions;
//   neighbouring invocations take neighbouring channels (contiguous reads).
// Layout: x [BATCH, POSITIONS, C] f32 (NHWC with H x W flattened, unpadded), y [BATCH, C] f32.
// Alignment: f32 arrays bound at offsets that are multiples of 256 bytes; no size needs to be a
//   multiple of the workgroup (the last invocations are masked).

const COUNT: u32 = ${COUNT};
const POSITIONS: u32 = ${POSITIONS};
const C: u32 = ${C};
const SCALE: f32 = ${SCALE};

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * ${WORKGROUP};
    if (i >= COUNT) {
        return;
    }
    let c = i % C;
    let base = (i / C) * POSITIONS * C + c;
    var acc = 0.0;
    for (var p: u32 = 0u; p < POSITIONS; p++) {
        acc += x[base + p * C];
    }
    y[i] = acc * SCALE;
}
