// conv2d_input_grad: gradient of a 2-D convolution with respect to its input (a transposed
// convolution), any kernel size, stride and zero padding.
//
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened as
//   i = gid.x + gid.y * num_workgroups.x * WORKGROUP.
// Work per invocation: one input-gradient value (batch, row, column, input channel), gathered
//   from every output position and tap that read it: for tap (ky, kx) the output row is
//   (iy + PH - ky) / SH when that division is exact and in range, likewise the column.
// Layout: g [BATCH, OH, OW, CO] and dx [BATCH, H, W, CI] f32, NHWC, unpadded; w [KH, KW, CI, CO]
//   f32 (HWIO).
// Alignment: f32 arrays bound at offsets that are multiples of 256 bytes; no size needs to be a
//   multiple of the workgroup (the last invocations are masked).

const COUNT: u32 = ${COUNT};
const H: u32 = ${H};
const W: u32 = ${W};
const CI: u32 = ${CI};
const OH: i32 = i32(${OH});
const OW: i32 = i32(${OW});
const CO: u32 = ${CO};
const KH: u32 = ${KH};
const KW: u32 = ${KW};
const SH: i32 = i32(${SH});
const SW: i32 = i32(${SW});
const PH: i32 = i32(${PH});
const PW: i32 = i32(${PW});

@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * ${WORKGROUP};
    if (i >= COUNT) {
        return;
    }
    let ci = i % CI;
    let pos = i / CI;
    let ix = i32(pos % W);
    let iy = i32((pos / W) % H);
    let n = pos / (W * H);
    var acc = 0.0;
    for (var ky: u32 = 0u; ky < KH; ky++) {
        let ty = iy + PH - i32(ky);
        if (ty < 0 || ty % SH != 0 || ty / SH >= OH) {
            continue;
        }
        let oy = u32(ty / SH);
        for (var kx: u32 = 0u; kx < KW; kx++) {
            let tx = ix + PW - i32(kx);
            if (tx < 0 || tx % SW != 0 || tx / SW >= OW) {
                continue;
            }
            let gb = ((n * u32(OH) + oy) * u32(OW) + u32(tx / SW)) * CO;
            let wb = ((ky * KW + kx) * CI + ci) * CO;
            for (var co: u32 = 0u; co < CO; co++) {
                acc = fma(g[gb + co], w[wb + co], acc);
            }
        }
    }
    dx[i] = acc;
}
