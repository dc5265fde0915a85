// conv2d: 2-D convolution (cross-correlation, as in every deep learning framework) of NHWC
// activations with HWIO weights, any kernel size, stride, dilation and zero padding; reference
// kernels.ops.conv2d.conv2d_ref (forward), conv2d_input_grad_ref and conv2d_weight_grad_ref.
// Reads outside the image are masked or skipped: no padded copy of x is made.
//
// Inference kernels (conv2d_patch, conv2d_tiled) read and write the padded vec4 layout (see
// quad_params in shared.wgsl) with bias and the fused activation (`activate`). w [KH, KW, WCIN,
// COUT4] f32 (WCIN is CIN4, or CIN itself when CIN < 4) and b [COUT4] f32, zero-padded; KN
// (components used per input quad) is min(CIN, 4). A grouped convolution arrives with its weight
// expanded to a block-diagonal dense one (conv2d_group_weight). Their tile loops are unrolled, so every accumulator is a
// register and every weight offset is uniform across invocations.
// Training kernels (conv2d_forward, conv2d_input_grad, conv2d_weight_grad) read and write
// unpadded f32 arrays bound at offsets that are multiples of 256 bytes: x [BATCH, H, W, CI],
// y and g [BATCH, OH, OW, CO], w [KH, KW, CI, CO].
//! include window

//! kernel conv2d_patch
// conv2d_patch: inference forward for layers whose input patch (KH x KW x input channels) fits
// in registers; conv2d_tiled serves larger patches.
// Workgroup size: ${WORKGROUP} invocations, 1-D.
// Work per invocation: PIX consecutive output positions x all output channels. The invocation
//   first gathers the input patch of each position into registers (xs, an im2col row per
//   position, zeros outside the image; TAPS = KH * KW * WCIN), then loops over output quads (ob,
//   a WGSL loop): each weight quad read feeds PIX vec4 multiply-adds, and only PIX vec4
//   accumulators are live.
//! const u32 N_POS WCIN TAPS PIX CIN_QUADS
const Q_OUT: u32 = ${COUT4} / 4u;
//! include quad_params
//! include tap

//! include flat_main
    let first = i * PIX;
    var xs: array<f32, ${XS_N}>;
    //! unroll p ${PIX}
    {
        let at = out_position(min(first + {p}, N_POS - 1u));
        let img = at.x * u32(H * W);
        let iy0 = i32(at.y) * SH - PH;
        let ix0 = i32(at.z) * SW - PW;
        //! unroll ky ${KH}
        //! unroll kx ${KW}
        //! unroll ci4 ${CIN_QUADS}
        {
            let v = tap(img, iy0 + i32({ky}) * DH, ix0 + i32({kx}) * DW, {ci4});
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
        //! include quad_store
    }
    //! end
}

//! kernel conv2d_tiled
// conv2d_tiled: inference forward for any patch size, streaming the input.
// Workgroup size: ${WORKGROUP} invocations, 1-D.
// Work per invocation: PIX consecutive output positions x the OC_N output channels
//   [OC_0, OC_0 + OC_N); a layer wider than one group is dispatched once per group. Accumulators
//   are a PIX x OC_N register tile, so every weight read feeds PIX multiply-adds and every input
//   read feeds OC_N. The reduction loops (ky, kx, ci4) are WGSL loops.
override OC_0: u32 = 0u;
//! const u32 N_POS WCIN COUT4 OC_N PIX CIN_QUADS
//! include quad_params
//! include scalar_weight
//! include tap

//! include flat_main
    let first = i * PIX;
    var img: array<u32, ${PIX}>;
    var iy0: array<i32, ${PIX}>;
    var ix0: array<i32, ${PIX}>;
    var acc: array<f32, ${ACC_N}>;
    //! unroll p ${PIX}
    {
        let at = out_position(min(first + {p}, N_POS - 1u));
        img[{p}] = at.x * u32(H * W);
        iy0[{p}] = i32(at.y) * SH - PH;
        ix0[{p}] = i32(at.z) * SW - PW;
    }
    //! end
    //! include tile_init
    //! unroll ky ${KH}
    //! unroll kx ${KW}
    //! unroll ci4 ${CIN_QUADS}
    {
        var v: array<vec4<f32>, ${PIX}>;
        //! unroll p ${PIX}
        v[{p}] = tap(img[{p}], iy0[{p}] + i32({ky}) * DH, ix0[{p}] + i32({kx}) * DW, {ci4});
        //! end
        let k0 = (({ky} * KW + {kx}) * WCIN + 4u * {ci4}) * COUT4 + OC_0;
        //! include tile_fma
    }
    //! end
    //! end
    //! end
    //! include tile_store
}

//! kernel conv2d_forward
// conv2d_forward: training forward, plus an optional bias (HAS_BIAS), no activation.
// Workgroup size: ${WORKGROUP} invocations along x; the grid's x covers the output positions and
//   its y the channel tiles (see row_main).
// Work per invocation: one output position x a tile of TN consecutive output channels
//   [co0, co0 + TN): each input value read feeds TN multiply-adds. The weight offsets derive from
//   the workgroup id and the loop counters only, so they are uniform across the workgroup (one
//   load and a broadcast on a CPU adapter, the cache on a GPU). Channel reads are clamped.
//! const u32 CI CO TN
//! const bool HAS_BIAS

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

//! include row_main
    let co0 = wid.y * TN;
    let at = out_position(i);
    var co: array<u32, ${TN}>;
    var acc: array<f32, ${TN}>;
    //! unroll q ${TN}
    co[{q}] = min(co0 + {q}, CO - 1u);
    //! end
    for (var ky: u32 = 0u; ky < KH; ky++) {
        let iy = in_row(at.y, ky);
        if (iy < 0) {
            continue;
        }
        for (var kx: u32 = 0u; kx < KW; kx++) {
            let ix = in_col(at.z, kx);
            if (ix < 0) {
                continue;
            }
            let xb = pixel(at.x, iy, ix) * CI;
            let wb = (ky * KW + kx) * CI * CO;
            for (var ci: u32 = 0u; ci < CI; ci++) {
                let xv = x[xb + ci];
                //! unroll q ${TN}
                acc[{q}] = fma(xv, w[wb + ci * CO + co[{q}]], acc[{q}]);
                //! end
            }
        }
    }
    //! unroll q ${TN}
    if (co0 + {q} < CO) {
        var v = acc[{q}];
        if (HAS_BIAS) {
            v += b[co0 + {q}];
        }
        y[i * CO + co0 + {q}] = v;
    }
    //! end
}

//! kernel conv2d_input_grad
// conv2d_input_grad: gradient with respect to the input (a transposed convolution).
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened (see flat_main).
// Work per invocation: one input-gradient value (batch, row, column, input channel), gathered
//   from every output position and tap that read it (out_row and out_col in shared.wgsl).
//! const u32 CI CO

@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;

//! include flat_main
    let ci = i % CI;
    let at = in_position(i / CI);
    var acc = 0.0;
    for (var ky: u32 = 0u; ky < KH; ky++) {
        let oy = out_row(i32(at.y), ky);
        if (oy < 0) {
            continue;
        }
        for (var kx: u32 = 0u; kx < KW; kx++) {
            let ox = out_col(i32(at.z), kx);
            if (ox < 0) {
                continue;
            }
            let gb = out_pixel(at.x, oy, ox) * CO;
            let wb = ((ky * KW + kx) * CI + ci) * CO;
            for (var co: u32 = 0u; co < CO; co++) {
                acc = fma(g[gb + co], w[wb + co], acc);
            }
        }
    }
    dx[i] = acc;
}

//! kernel conv2d_weight_grad
// conv2d_weight_grad: first pass of the weight gradient, partial sums over chunks of CHUNK output
// positions (column_sum adds the partials, so the result is correct and deterministic for any
// batch size): partial[s, ky, kx, ci, co] = sum over m in chunk s of
// x[n, oy * SH + ky * DH - PH, ox * SW + kx * DW - PW, ci] * g[m, co].
// Workgroup size: ${WORKGROUP} invocations along x; the grid's x covers the taps (ky, kx, ci) and
//   its y the (chunk, channel tile) pairs (see row_main).
// Work per invocation: one tap x a tile of TN consecutive output channels over one chunk: each x
//   value read feeds TN multiply-adds; the g offsets derive from the workgroup id and the loop
//   counter only, so they are uniform across the workgroup. Channel reads are clamped.
// Layout: partial [SPLITS, KH, KW, CI, CO] f32.
//! const u32 CI CO TN CO_TILES CHUNK POSITIONS
const N_TAPS: u32 = KH * KW * CI;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;

//! include row_main
    let co0 = (wid.y % CO_TILES) * TN;
    let s = wid.y / CO_TILES;
    let ci = i % CI;
    let kx = (i / CI) % KW;
    let ky = i / (CI * KW);
    let first = s * CHUNK;
    let last = min(first + CHUNK, POSITIONS);
    var co: array<u32, ${TN}>;
    var acc: array<f32, ${TN}>;
    //! unroll q ${TN}
    co[{q}] = min(co0 + {q}, CO - 1u);
    //! end
    var at = out_position(first);
    for (var m = first; m < last; m++) {
        let iy = in_row(at.y, ky);
        let ix = in_col(at.z, kx);
        if (iy >= 0 && ix >= 0) {
            let xv = x[pixel(at.x, iy, ix) * CI + ci];
            //! unroll q ${TN}
            acc[{q}] = fma(xv, g[m * CO + co[{q}]], acc[{q}]);
            //! end
        }
        at = next_position(at);
    }
    //! unroll q ${TN}
    if (co0 + {q} < CO) {
        partial[(s * N_TAPS + i) * CO + co0 + {q}] = acc[{q}];
    }
    //! end
}
