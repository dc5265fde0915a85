// depthwise_input_grad: gradient of a depthwise 2-D convolution with respect to its input, any
// kernel size, stride and zero padding.
//
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened as
//   i = gid.x + gid.y * num_workgroups.x * WORKGROUP.
// Work per invocation: one input-gradient value (batch, row, column, channel), gathered from the
//   output positions and taps that read it (output row (iy + PH - ky) / SH when exact and in
//   range, likewise the column).
// Layout: g [BATCH, OH, OW, C] and dx [BATCH, H, W, C] f32, NHWC, unpadded; w [KH, KW, C] f32.
// Vectors: V is f32, or vec4<f32> when C is a multiple of 4 (then C counts quads of channels
//   and each invocation handles four channels; the memory layout is the same).
// Alignment: arrays bound at offsets that are multiples of 256 bytes; no size needs to be a
//   multiple of the workgroup (the last invocations are masked).

alias V = ${VEC};

const COUNT: u32 = ${COUNT};
const H: u32 = ${H};
const W: u32 = ${W};
const C: u32 = ${C};
const OH: i32 = i32(${OH});
const OW: i32 = i32(${OW});
const KH: u32 = ${KH};
const KW: u32 = ${KW};
const SH: i32 = i32(${SH});
const SW: i32 = i32(${SW});
const PH: i32 = i32(${PH});
const PW: i32 = i32(${PW});

@group(0) @binding(0) var<storage, read> g: array<V>;
@group(0) @binding(1) var<storage, read> w: array<V>;
@group(0) @binding(2) var<storage, read_write> dx: array<V>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * ${WORKGROUP};
    if (i >= COUNT) {
        return;
    }
    let c = i % C;
    let pos = i / C;
    let ix = i32(pos % W);
    let iy = i32((pos / W) % H);
    let n = pos / (W * H);
    var acc = V(0.0);
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
            let gi = ((n * u32(OH) + oy) * u32(OW) + u32(tx / SW)) * C + c;
            acc = fma(g[gi], w[(ky * KW + kx) * C + c], acc);
        }
    }
    dx[i] = acc;
}
