// conv2d_patch: 2-D convolution (any kernel size, stride and zero padding) + bias, optional fused
// ReLU, for layers whose input patch (KH x KW x input channels) is small enough to hold in
// registers; the plan uses conv2d.wgsl for larger patches. Same op as conv2d.wgsl.
//
// Workgroup size: ${WORKGROUP} invocations, 1-D dispatch along x.
// Work per invocation: PIX consecutive output positions (flattened batch, row, column) x all output
//   channels. The invocation first gathers the input patch of each position into registers (xs,
//   an im2col row per position, zeros outside the image), then loops over output quads (ob): each
//   weight quad read feeds PIX vec4 multiply-adds, and only PIX vec4 accumulators are live.
// Layout: x [BATCH, H, W, CIN4 / 4] vec4<f32> and y [BATCH, OH, OW, COUT4 / 4] vec4<f32>: NHWC with
//   the channel axis zero-padded to a multiple of 4 (CIN4, COUT4). w [KH, KW, WCIN, COUT4] f32
//   (HWIO; WCIN is CIN4, or CIN itself when CIN < 4) and b [COUT4] f32, zero-padded, as vec4
//   arrays (uniform arrays need a 16-byte stride). KN (components used per input quad) is
//   min(CIN, 4); TAPS = KH * KW * WCIN.
// Alignment: vec4<f32> arrays (16-byte elements), bound whole at offset 0; no size needs to be
//   a multiple of the workgroup or tile (the last invocations are masked).
// Padding: reads outside the image are masked to zero; no padded copy of x is made.
// The output-quad loop (ob) is a WGSL loop; the patch loops are unrolled, so every xs index is a
// constant and every weight offset is uniform across invocations.

override RELU: bool = false;

const N_POS: u32 = ${N_POS};
const H: i32 = i32(${H});
const W: i32 = i32(${W});
const Q_IN: u32 = ${CIN4} / 4u;
const WCIN: u32 = ${WCIN};
const OH: u32 = ${OH};
const OW: u32 = ${OW};
const Q_OUT: u32 = ${COUT4} / 4u;
const KW: u32 = ${KW};
const SH: i32 = i32(${SH});
const SW: i32 = i32(${SW});
const PH: i32 = i32(${PH});
const PW: i32 = i32(${PW});
const TAPS: u32 = ${TAPS};
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

// Input quad ci4 at (image offset `img` in positions, row iy, column ix); zero outside the image.
fn tap(img: u32, iy: i32, ix: i32, ci4: u32) -> vec4<f32> {
    let inside = iy >= 0 && iy < H && ix >= 0 && ix < W;
    let index = select(0u, (img + u32(iy) * u32(W) + u32(ix)) * Q_IN + ci4, inside);
    return select(vec4<f32>(0.0), x[index], inside);
}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let first = gid.x * PIX;
    if (first >= N_POS) {
        return;
    }
    var xs: array<f32, ${XS_N}>;
    //! unroll p ${PIX}
    {
        let n = min(first + {p}, N_POS - 1u);
        let img = (n / (OW * OH)) * u32(H * W);
        let iy0 = i32((n / OW) % OH) * SH - PH;
        let ix0 = i32(n % OW) * SW - PW;
        //! unroll ky ${KH}
        //! unroll kx ${KW}
        //! unroll ci4 ${CIN_QUADS}
        {
            let v = tap(img, iy0 + i32({ky}), ix0 + i32({kx}), {ci4});
            //! unroll k ${KN}
            xs[{p} * TAPS + ({ky} * KW + {kx}) * WCIN + 4u * {ci4} + {k}] = v[{k}];
            //! end
        }
        //! end
        //! end
        //! end
    }
    //! end
    //! unroll ob ${OC_QUADS}
    {
        let q = {ob};
        var acc: array<vec4<f32>, ${PIX}>;
        //! unroll p ${PIX}
        acc[{p}] = b[q];
        //! end
        //! unroll t ${TAPS}
        {
            let wq = w[{t} * Q_OUT + q];
            //! unroll p ${PIX}
            acc[{p}] = fma(vec4<f32>(xs[{p} * TAPS + {t}]), wq, acc[{p}]);
            //! end
        }
        //! end
        //! unroll p ${PIX}
        if (first + {p} < N_POS) {
            y[(first + {p}) * Q_OUT + q] = activate(acc[{p}]);
        }
        //! end
    }
    //! end
}
