// depthwise_forward: training forward of a depthwise 2-D convolution (each channel with its own
// kernel; any kernel size, stride and zero padding) plus an optional bias, no activation.
//
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened as
//   i = gid.x + gid.y * num_workgroups.x * WORKGROUP.
// Work per invocation: one output value (batch, row, column, channel); neighbouring invocations
//   take neighbouring channels, so input and weight reads are contiguous.
// Layout: x [BATCH, H, W, C] and y [BATCH, OH, OW, C] f32, NHWC, unpadded; w [KH, KW, C] f32;
//   b [C] f32 (read only when HAS_BIAS).
// Vectors: V is f32, or vec4<f32> when C is a multiple of 4 (then C counts quads of channels
//   and each invocation handles four channels; the memory layout is the same).
// Alignment: arrays bound at offsets that are multiples of 256 bytes; no size needs to be a
//   multiple of the workgroup (the last invocations are masked).
// Padding: reads outside the image are skipped.

alias V = ${VEC};

const COUNT: u32 = ${COUNT};
const H: i32 = i32(${H});
const W: i32 = i32(${W});
const C: u32 = ${C};
const OH: u32 = ${OH};
const OW: u32 = ${OW};
const KH: u32 = ${KH};
const KW: u32 = ${KW};
const SH: i32 = i32(${SH});
const SW: i32 = i32(${SW});
const PH: i32 = i32(${PH});
const PW: i32 = i32(${PW});
const HAS_BIAS: bool = ${HAS_BIAS};

@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read> w: array<V>;
@group(0) @binding(2) var<storage, read> b: array<V>;
@group(0) @binding(3) var<storage, read_write> y: array<V>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * ${WORKGROUP};
    if (i >= COUNT) {
        return;
    }
    let c = i % C;
    let pos = i / C;
    let ox = i32(pos % OW);
    let oy = i32((pos / OW) % OH);
    let n = pos / (OW * OH);
    var acc = V(0.0);
    for (var ky: u32 = 0u; ky < KH; ky++) {
        let iy = oy * SH + i32(ky) - PH;
        if (iy < 0 || iy >= H) {
            continue;
        }
        for (var kx: u32 = 0u; kx < KW; kx++) {
            let ix = ox * SW + i32(kx) - PW;
            if (ix < 0 || ix >= W) {
                continue;
            }
            let xi = ((n * u32(H) + u32(iy)) * u32(W) + u32(ix)) * C + c;
            acc = fma(x[xi], w[(ky * KW + kx) * C + c], acc);
        }
    }
    if (HAS_BIAS) {
        acc += b[c];
    }
    y[i] = acc;
}
