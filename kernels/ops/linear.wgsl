// linear: matrix products over the channel (feature) axis: pointwise (1x1) convolution and dense
// layers, y = x @ w + b; reference kernels.ops.linear.matmul_ref (pointwise_conv2d_ref and
// dense_ref are the same product).
//
// Inference kernels (pointwise_conv2d, dense) read and write the padded vec4 layout (see
// quad_params in shared.wgsl) and apply the fused activation (`activate`): x [N_POS, CIN4 / 4],
// y [N_POS, COUT4 / 4], w [CIN4, COUT4] f32 row-major and b [COUT4] f32, zero-padded (a spatial
// input of a dense layer is flattened with its channels padded, and w's rows laid out to match).
// The training kernel (matmul) serves the pointwise and dense layers each way, forward x @ w +
// bias, input gradient g @ w^T and weight gradient x^T @ g, on unpadded f32 arrays.

//! kernel pointwise_conv2d
// pointwise_conv2d: inference forward for inputs narrow enough to hold in registers (the plan
// uses dense for wider ones).
// Workgroup size: ${WORKGROUP} invocations, 1-D.
// Work per invocation: PIX consecutive positions x all output channels. The invocation first
//   reads its PIX input rows into registers (xs), then loops over output quads (ob, a WGSL loop):
//   each weight quad read feeds PIX vec4 multiply-adds, and only PIX vec4 accumulators are live.
//   The position and input-channel loops are unrolled.
//! const u32 N_POS PIX CIN_QUADS
const Q_OUT: u32 = ${COUT4} / 4u;
//! include quad_params

//! include flat_main
    let first = i * PIX;
    var xs: array<vec4<f32>, ${XS_N}>;
    //! unroll p ${PIX}
    {
        let row = min(first + {p}, N_POS - 1u) * CIN_QUADS;
        //! unroll ci4 ${CIN_QUADS}
        xs[{p} * CIN_QUADS + {ci4}] = x[row + {ci4}];
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
        //! unroll ci4 ${CIN_QUADS}
        //! unroll k 4
        {
            let wq = w[(4u * {ci4} + {k}) * Q_OUT + q];
            //! unroll p ${PIX}
            acc[{p}] = fma(vec4<f32>(xs[{p} * CIN_QUADS + {ci4}][{k}]), wq, acc[{p}]);
            //! end
        }
        //! end
        //! end
        //! include quad_store
    }
    //! end
}

//! kernel dense
// dense: inference forward of dense layers, and of pointwise layers too wide for
// pointwise_conv2d.
// Workgroup size: ${WORKGROUP} invocations, 1-D.
// Work per invocation: PIX consecutive rows x the OC_N outputs [OC_0, OC_0 + OC_N); a layer wider
//   than one group is dispatched once per group. Accumulators are a PIX x OC_N register tile.
//   The reduction loop over input quads (i4) is a WGSL loop; the tile loops are unrolled.
override OC_0: u32 = 0u;
//! const u32 N_POS FIN4 COUT4 OC_N PIX
//! include quad_params
//! include scalar_weight

//! include flat_main
    let first = i * PIX;
    var row: array<u32, ${PIX}>;
    var acc: array<f32, ${ACC_N}>;
    //! unroll p ${PIX}
    row[{p}] = min(first + {p}, N_POS - 1u) * (FIN4 / 4u);
    //! end
    //! include tile_init
    //! unroll i4 ${FIN_QUADS}
    {
        var v: array<vec4<f32>, ${PIX}>;
        //! unroll p ${PIX}
        v[{p}] = x[row[{p}] + {i4}];
        //! end
        let k0 = 4u * {i4} * COUT4 + OC_0;
        //! include tile_fma
    }
    //! end
    //! include tile_store
}

//! kernel matmul
// matmul: c = a @ b (+ bias row), with any strides, optionally split along the inner axis (the
// long inner axis of a weight gradient, positions, is split into chunks whose partial products
// column_sum adds in a second pass).
// Workgroup size: ${WORKGROUP} invocations along x; the grid's x covers the row tiles and its y
//   the (chunk, column tile) pairs (see row_main).
// Work per invocation: a register tile of TM rows x TN columns of c[s] = the sum over k in chunk
//   s (CHUNK consecutive k) of a[r * A_ROW + k * A_DEPTH] * b[k * B_DEPTH + j * B_COL]; each
//   loaded value of a feeds TN multiply-adds and each value of b feeds TM. The b offsets derive
//   from the workgroup id only, so they are uniform across the workgroup (one load and a
//   broadcast on a CPU adapter, the cache on a GPU). The tile loops are unrolled; k is a loop.
// Layout: a, b, bias and c are f32 arrays bound at offsets that are multiples of 256 bytes; a and
//   b are addressed through their strides (in floats), so a transposed operand needs no copy. c
//   is [SPLITS, ROWS, COLS] row-major; bias [COLS] is added only when HAS_BIAS (and then SPLITS
//   is 1). Reads are clamped, writes and the last chunk masked.
//! const u32 ROWS COLS DEPTH CHUNK TM TN TILES_N A_ROW A_DEPTH B_DEPTH B_COL
//! const bool HAS_BIAS

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

//! include row_main
    let r0 = i * TM;
    let j0 = (wid.y % TILES_N) * TN;
    let s = wid.y / TILES_N;
    let first = s * CHUNK;
    let last = min(first + CHUNK, DEPTH);
    var a_base: array<u32, ${TM}>;
    var b_base: array<u32, ${TN}>;
    var acc: array<f32, ${ACC_N}>;
    //! unroll p ${TM}
    a_base[{p}] = min(r0 + {p}, ROWS - 1u) * A_ROW;
    //! end
    //! unroll q ${TN}
    b_base[{q}] = min(j0 + {q}, COLS - 1u) * B_COL;
    //! end
    for (var k = first; k < last; k++) {
        var av: array<f32, ${TM}>;
        //! unroll p ${TM}
        av[{p}] = a[a_base[{p}] + k * A_DEPTH];
        //! end
        //! unroll q ${TN}
        {
            let bv = b[k * B_DEPTH + b_base[{q}]];
            //! unroll p ${TM}
            acc[{p} * TN + {q}] = fma(av[{p}], bv, acc[{p} * TN + {q}]);
            //! end
        }
        //! end
    }
    //! unroll p ${TM}
    //! unroll q ${TN}
    if (r0 + {p} < ROWS && j0 + {q} < COLS) {
        var v = acc[{p} * TN + {q}];
        if (HAS_BIAS) {
            v += bias[j0 + {q}];
        }
        c[(s * ROWS + r0 + {p}) * COLS + j0 + {q}] = v;
    }
    //! end
    //! end
}
