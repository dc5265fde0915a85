// depthwise_conv2d: per-channel 2-D convolution (any kernel size, stride and zero padding) + bias,
// optional fused ReLU.
//
// Workgroup size: ${WORKGROUP} invocations, 1-D dispatch along x.
// Work per invocation: a tile of TR output rows x TC output columns of one image, for all
//   channels, four at a time as vec4 (the c4 loop). For each channel quad the invocation reads
//   the input patch the tile needs, PR x PC positions, once into registers (xs), so neighbouring
//   outputs share the taps they overlap on: (TR + 2) x (TC + 2) reads for TR x TC outputs of a
//   3x3 kernel instead of 9 per output.
// Layout: x [BATCH, H, W, C4 / 4] vec4<f32> and y [BATCH, OH, OW, C4 / 4] vec4<f32>: NHWC with the
//   channel axis zero-padded to a multiple of 4 (C4). w [KH, KW, C4] f32 and b [C4] f32,
//   zero-padded, as vec4 arrays (uniform arrays need a 16-byte stride).
// Alignment: vec4<f32> arrays (16-byte elements), bound whole at offset 0; no size needs to be
//   a multiple of the workgroup or tile (partial tiles are masked).
// Padding: reads outside the image are masked to zero; no padded copy of x is made.
// The channel-quad loop (c4) is a WGSL loop; the tile and kernel loops are unrolled, so every xs
// index is a constant and every weight offset is uniform across invocations.

override RELU: bool = false;

const N_TILES: u32 = ${N_TILES};
const TILES_X: u32 = ${TILES_X};
const TILES_Y: u32 = ${TILES_Y};
const H: i32 = i32(${H});
const W: i32 = i32(${W});
const Q: u32 = ${C4} / 4u;
const OH: u32 = ${OH};
const OW: u32 = ${OW};
const KW: u32 = ${KW};
const SH: u32 = ${SH};
const SW: u32 = ${SW};
const PH: i32 = i32(${PH});
const PW: i32 = i32(${PW});
const TC: u32 = ${TC};
const PC: u32 = ${PC};

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
    let t = gid.x;
    if (t >= N_TILES) {
        return;
    }
    let ox0 = (t % TILES_X) * TC;
    let oy0 = ((t / TILES_X) % TILES_Y) * ${TR};
    let image = t / (TILES_X * TILES_Y);
    let img = image * u32(H * W);
    let iy0 = i32(oy0 * SH) - PH;
    let ix0 = i32(ox0 * SW) - PW;
    //! unroll c4 ${C_QUADS}
    {
        let q = {c4};
        var xs: array<vec4<f32>, ${XS_N}>;
        //! unroll r ${PR}
        //! unroll j ${PC}
        xs[{r} * PC + {j}] = tap(img, iy0 + i32({r}), ix0 + i32({j}), q);
        //! end
        //! end
        //! unroll i ${TR}
        //! unroll p ${TC}
        {
            var acc = b[q];
            //! unroll ky ${KH}
            //! unroll kx ${KW}
            acc = fma(xs[({i} * SH + {ky}) * PC + {p} * SW + {kx}], w[({ky} * KW + {kx}) * Q + q], acc);
            //! end
            //! end
            if (oy0 + {i} < OH && ox0 + {p} < OW) {
                y[((image * OH + oy0 + {i}) * OW + ox0 + {p}) * Q + q] = activate(acc);
            }
        }
        //! end
        //! end
    }
    //! end
}
