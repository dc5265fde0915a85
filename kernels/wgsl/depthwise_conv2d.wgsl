// depthwise_conv2d: per-channel 2-D convolution (any kernel size, stride and zero padding) + bias,
// optional fused ReLU.
//
// Workgroup size: ${WORKGROUP} invocations, 1-D dispatch along x.
// Work per invocation: a row segment of PIX adjacent output columns (one image, one output row)
//   x the channels [C_0, C_0 + C_N), four at a time as vec4. For each kernel row the invocation
//   reads the SEG input columns the segment needs once, so neighbouring outputs share the taps
//   they overlap on.
// Layout: x [BATCH, H, W, C4 / 4] vec4<f32> and y [BATCH, OH, OW, C4 / 4] vec4<f32>: NHWC with the
//   channel axis zero-padded to a multiple of 4 (C4). w [KH, KW, C4] f32 and b [C4] f32,
//   zero-padded, as vec4 arrays (uniform arrays need a 16-byte stride). C_0 and C_N are multiples
//   of 4.
// Alignment: vec4<f32> arrays (16-byte elements), bound whole at offset 0; no size needs to be
//   a multiple of the workgroup or tile (the last invocations are masked).
// Padding: reads outside the image are masked to zero; no padded copy of x is made.
// The channel-quad loop (c4) is a WGSL loop; the kernel and segment loops are unrolled.

override RELU: bool = false;
override C_0: u32 = 0u;

const N_SEG: u32 = ${N_SEG};
const SEG_PER_ROW: u32 = ${SEG_PER_ROW};
const H: i32 = i32(${H});
const W: i32 = i32(${W});
const Q: u32 = ${C4} / 4u;
const OH: u32 = ${OH};
const OW: u32 = ${OW};
const KW: u32 = ${KW};
const SH: i32 = i32(${SH});
const SW: i32 = i32(${SW});
const PH: i32 = i32(${PH});
const PW: i32 = i32(${PW});
const PIX: u32 = ${PIX};

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<${PARAM_SPACE}> w: array<vec4<f32>, ${W_VEC4}>;
@group(0) @binding(2) var<${PARAM_SPACE}> b: array<vec4<f32>, ${B_VEC4}>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;

fn activate(v: vec4<f32>) -> vec4<f32> {
    if (RELU) {
        return max(v, vec4<f32>(0.0));
    }
    return v;
}

// Channel quad q at (image offset `img` in positions, row iy, column ix); zero outside the image.
fn tap(img: u32, iy: i32, ix: i32, q: u32) -> vec4<f32> {
    let inside = iy >= 0 && iy < H && ix >= 0 && ix < W;
    let index = select(0u, (img + u32(iy) * u32(W) + u32(ix)) * Q + q, inside);
    return select(vec4<f32>(0.0), x[index], inside);
}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let s = gid.x;
    if (s >= N_SEG) {
        return;
    }
    let ox0 = (s % SEG_PER_ROW) * PIX;
    let oy = (s / SEG_PER_ROW) % OH;
    let image = s / (SEG_PER_ROW * OH);
    let img = image * u32(H * W);
    let iy0 = i32(oy) * SH - PH;
    let ix0 = i32(ox0) * SW - PW;
    let out = ((image * OH + oy) * OW + ox0) * Q;
    //! unroll c4 ${C_QUADS}
    {
        let q = C_0 / 4u + {c4};
        var acc: array<vec4<f32>, ${PIX}>;
        //! unroll p ${PIX}
        acc[{p}] = b[q];
        //! end
        //! unroll ky ${KH}
        {
            var v: array<vec4<f32>, ${SEG}>;
            //! unroll j ${SEG}
            v[{j}] = tap(img, iy0 + i32({ky}), ix0 + i32({j}), q);
            //! end
            //! unroll kx ${KW}
            {
                let wk = w[({ky} * KW + {kx}) * Q + q];
                //! unroll p ${PIX}
                acc[{p}] = fma(v[{p} * u32(SW) + {kx}], wk, acc[{p}]);
                //! end
            }
            //! end
        }
        //! end
        //! unroll p ${PIX}
        if (ox0 + {p} < OW) {
            y[out + {p} * Q + q] = activate(acc[{p}]);
        }
        //! end
    }
    //! end
}
