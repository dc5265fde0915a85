// avg_pool2d: average over KH x KW windows with stride (SH, SW), no padding (every window lies
// inside the image), optional fused ReLU.
//
// Workgroup size: ${WORKGROUP} invocations, 1-D dispatch along x.
// Work per invocation: one output position (flattened batch, row, column) x all channels, four
//   at a time as vec4 (the unrolled inner loop, so each input pixel's reads are contiguous).
// Layout: x [BATCH, H, W, C4 / 4] vec4<f32> and y [BATCH, OH, OW, C4 / 4] vec4<f32>: NHWC with the
//   channel axis zero-padded to a multiple of 4 (C4).
// Alignment: vec4<f32> arrays (16-byte elements), bound whole at offset 0; no size needs to be
//   a multiple of the workgroup or tile (the last invocations are masked).
// The window loops (ky, kx) are WGSL loops.

override RELU: bool = false;

const N_POS: u32 = ${N_POS};
const H: u32 = ${H};
const W: u32 = ${W};
const Q: u32 = ${C4} / 4u;
const OH: u32 = ${OH};
const OW: u32 = ${OW};
const SH: u32 = ${SH};
const SW: u32 = ${SW};
const SCALE: f32 = 1.0 / f32(${KH} * ${KW});

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> y: array<vec4<f32>>;

fn activate(v: vec4<f32>) -> vec4<f32> {
    if (RELU) {
        return max(v, vec4<f32>(0.0));
    }
    return v;
}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = gid.x;
    if (n >= N_POS) {
        return;
    }
    let ox = n % OW;
    let oy = (n / OW) % OH;
    let img = (n / (OW * OH)) * H * W;
    var acc: array<vec4<f32>, ${C_QUADS}>;
    //! unroll ky ${KH}
    //! unroll kx ${KW}
    {
        let base = (img + (oy * SH + {ky}) * W + ox * SW + {kx}) * Q;
        //! unroll q ${C_QUADS}
        acc[{q}] += x[base + {q}];
        //! end
    }
    //! end
    //! end
    //! unroll q ${C_QUADS}
    y[n * Q + {q}] = activate(acc[{q}] * SCALE);
    //! end
}
