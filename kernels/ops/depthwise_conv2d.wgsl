// depthwise_conv2d: per-channel 2-D convolution (each channel with its own kernel; any kernel
// size, stride, dilation and zero padding) of NHWC activations; reference
// kernels.ops.depthwise_conv2d.depthwise_conv2d_ref (forward), depthwise_input_grad_ref and
// depthwise_weight_grad_ref. Reads outside the image are masked or skipped.
//
// The inference kernel (depthwise_conv2d) reads and writes the padded vec4 layout (see
// quad_params in shared.wgsl) with bias and the fused activation; w [KH, KW, C4] and b [C4]
// f32, zero-padded. The training kernels (depthwise_forward, depthwise_input_grad,
// depthwise_weight_grad) read and write unpadded arrays bound at offsets that are multiples of 256
// bytes: x [BATCH, H, W, C], y and g [BATCH, OH, OW, C], w [KH, KW, C]; neighbouring invocations
// take neighbouring channels, so reads are contiguous (see `vectors` for V and C).
//! include window

//! kernel depthwise_conv2d
// depthwise_conv2d: inference forward.
// Workgroup size: ${WORKGROUP} invocations, 1-D.
// Work per invocation: a tile of TR output rows x TC output columns of one image, for all
//   channels, four at a time (the c4 loop, a WGSL loop). For each channel quad the invocation
//   reads the input patch the tile needs, PR x PC positions, once into registers (xs), so
//   neighbouring outputs share the taps they overlap on: (TR + 2) x (TC + 2) reads for TR x TC
//   outputs of a 3x3 kernel instead of 9 per output (PR = (TR - 1) * SH + (KH - 1) * DH + 1,
//   likewise PC). The tile and kernel loops are unrolled, so every xs index is a constant and
//   every weight offset is uniform across invocations.
//! const u32 TILES_X TILES_Y TC PC CIN_QUADS
//! include quad_params
//! include tap

//! include flat_main
    let ox0 = (i % TILES_X) * TC;
    let oy0 = ((i / TILES_X) % TILES_Y) * ${TR};
    let image = i / (TILES_X * TILES_Y);
    let img = image * u32(H * W);
    let iy0 = i32(oy0) * SH - PH;
    let ix0 = i32(ox0) * SW - PW;
    //! unroll c4 ${CIN_QUADS}
    {
        let q = {c4};
        var xs: array<vec4<f32>, ${XS_N}>;
        //! unroll r ${PR}
        //! unroll j ${PC}
        xs[{r} * PC + {j}] = tap(img, iy0 + i32({r}), ix0 + i32({j}), q);
        //! end
        //! end
        //! unroll ty ${TR}
        //! unroll tx ${TC}
        {
            var acc = b[q];
            //! unroll ky ${KH}
            //! unroll kx ${KW}
            acc = fma(xs[({ty} * u32(SH) + {ky} * u32(DH)) * PC + {tx} * u32(SW) + {kx} * u32(DW)], w[({ky} * KW + {kx}) * CIN_QUADS + q], acc);
            //! end
            //! end
            if (oy0 + {ty} < OH && ox0 + {tx} < OW) {
                y[((image * OH + oy0 + {ty}) * OW + ox0 + {tx}) * CIN_QUADS + q] = activate(acc);
            }
        }
        //! end
        //! end
    }
    //! end
}

//! kernel depthwise_forward
// depthwise_forward: training forward, plus an optional bias (HAS_BIAS), no activation.
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened (see flat_main).
// Work per invocation: one output value (batch, row, column, channel or channel quad).
//! include vectors
//! const u32 C
//! const bool HAS_BIAS

@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read> w: array<V>;
@group(0) @binding(2) var<storage, read> b: array<V>;
@group(0) @binding(3) var<storage, read_write> y: array<V>;

//! include flat_main
    let c = i % C;
    let at = out_position(i / C);
    var acc = V(0.0);
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
            acc = fma(x[pixel(at.x, iy, ix) * C + c], w[(ky * KW + kx) * C + c], acc);
        }
    }
    if (HAS_BIAS) {
        acc += b[c];
    }
    y[i] = acc;
}

//! kernel depthwise_input_grad
// depthwise_input_grad: gradient with respect to the input.
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened (see flat_main).
// Work per invocation: one input-gradient value (batch, row, column, channel or channel quad),
//   gathered from the output positions and taps that read it (out_row and out_col).
//! include vectors
//! const u32 C

@group(0) @binding(0) var<storage, read> g: array<V>;
@group(0) @binding(1) var<storage, read> w: array<V>;
@group(0) @binding(2) var<storage, read_write> dx: array<V>;

//! include flat_main
    let c = i % C;
    let at = in_position(i / C);
    var acc = V(0.0);
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
            acc = fma(g[out_pixel(at.x, oy, ox) * C + c], w[(ky * KW + kx) * C + c], acc);
        }
    }
    dx[i] = acc;
}

//! kernel depthwise_weight_grad
// depthwise_weight_grad: first pass of the weight gradient, partial sums over chunks of CHUNK
// output positions (column_sum adds the partials): partial[s, ky, kx, c] = sum over m in chunk s
// of x[n, oy * SH + ky * DH - PH, ox * SW + kx * DW - PW, c] * g[m, c].
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened (see flat_main).
// Work per invocation: every tap (ky, kx) of one channel (or quad) over one chunk, so each g
//   value read feeds KH x KW multiply-adds. The tap loops are unrolled; m is a WGSL loop.
// Layout: partial [SPLITS, KH, KW, C].
//! include vectors
//! const u32 C CHUNK POSITIONS

@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read> g: array<V>;
@group(0) @binding(2) var<storage, read_write> partial: array<V>;

//! include flat_main
    let c = i % C;
    let s = i / C;
    let first = s * CHUNK;
    let last = min(first + CHUNK, POSITIONS);
    var acc: array<V, ${TAPS}>;
    var at = out_position(first);
    for (var m = first; m < last; m++) {
        let gv = g[m * C + c];
        //! unroll ky ${KH}
        //! unroll kx ${KW}
        {
            let iy = in_row(at.y, {ky});
            let ix = in_col(at.z, {kx});
            if (iy >= 0 && ix >= 0) {
                let xv = x[pixel(at.x, iy, ix) * C + c];
                acc[{ky} * KW + {kx}] = fma(xv, gv, acc[{ky} * KW + {kx}]);
            }
        }
        //! end
        //! end
        at = next_position(at);
    }
    //! unroll t ${TAPS}
    partial[(s * ${TAPS} + {t}) * C + c] = acc[{t}];
    //! end
}
