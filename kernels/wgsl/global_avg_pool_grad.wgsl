// global_avg_pool_grad: gradient of global average pooling, every position of an image receives
// SCALE = 1 / (H * W) of the gradient of its channel.
//
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened as
//   i = gid.x + gid.y * num_workgroups.x * WORKGROUP.
// Work per invocation: one input-gradient value.
// Layout: g [BATCH, C] f32, dx [BATCH, POSITIONS, C] f32 (NHWC with H x W flattened, unpadded).
// Alignment: f32 arrays bound at offsets that are multiples of 256 bytes; no size needs to be a
//   multiple of the workgroup (the last invocations are masked).

const COUNT: u32 = ${COUNT};
const POSITIONS: u32 = ${POSITIONS};
const C: u32 = ${C};
const SCALE: f32 = ${SCALE};

@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * ${WORKGROUP};
    if (i >= COUNT) {
        return;
    }
    let c = i % C;
    dx[i] = g[(i / (POSITIONS * C)) * C + c] * SCALE;
}
