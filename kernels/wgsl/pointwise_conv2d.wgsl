// pointwise_conv2d: 1x1 convolution (a matrix product over channels) + bias, optional fused ReLU.
//
// Workgroup size: ${WORKGROUP} invocations, 1-D dispatch along x.
// Work per invocation: PIX consecutive positions (flattened batch, row, column) x the OC_N output
//   channels [OC_0, OC_0 + OC_N); a layer wider than one group is dispatched once per group.
//   Accumulators are a PIX x OC_N register tile, so every weight read feeds PIX multiply-adds and
//   every input read feeds OC_N.
// Layout: x [N_POS, CIN4 / 4] vec4<f32> and y [N_POS, COUT4 / 4] vec4<f32>: NHWC with the channel
//   axis zero-padded to a multiple of 4 (CIN4, COUT4), so each position starts 16-byte aligned.
//   w [CIN4, COUT4] f32 row-major and b [COUT4] f32, zero-padded, packed into vec4 arrays (uniform
//   arrays need a 16-byte stride). OC_0 and OC_N are multiples of 4.
// Alignment: vec4<f32> arrays (16-byte elements), bound whole at offset 0; no size needs to be
//   a multiple of the workgroup or tile (the last invocations are masked).
// The reduction loop over input quads (ci4) is a WGSL loop; the tile loops are unrolled so every
// accumulator is a register and every weight offset is uniform across invocations.

override RELU: bool = false;
override OC_0: u32 = 0u;

const N_POS: u32 = ${N_POS};
const CIN4: u32 = ${CIN4};
const COUT4: u32 = ${COUT4};
const OC_N: u32 = ${OC_N};
const PIX: u32 = ${PIX};

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<${PARAM_SPACE}> w: array<vec4<f32>, ${W_VEC4}>;
@group(0) @binding(2) var<${PARAM_SPACE}> b: array<vec4<f32>, ${B_VEC4}>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;

fn weight(k: u32) -> f32 {
    return w[k / 4u][k % 4u];
}

fn bias(k: u32) -> f32 {
    return b[k / 4u][k % 4u];
}

fn activate(v: vec4<f32>) -> vec4<f32> {
    if (RELU) {
        return max(v, vec4<f32>(0.0));
    }
    return v;
}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let first = gid.x * PIX;
    if (first >= N_POS) {
        return;
    }
    var row: array<u32, ${PIX}>;
    var acc: array<f32, ${ACC_N}>;
    //! unroll p ${PIX}
    row[{p}] = min(first + {p}, N_POS - 1u) * (CIN4 / 4u);
    //! end
    //! unroll o ${OC_N}
    {
        let b0 = bias(OC_0 + {o});
        //! unroll p ${PIX}
        acc[{p} * OC_N + {o}] = b0;
        //! end
    }
    //! end
    //! unroll ci4 ${CIN_QUADS}
    {
        var v: array<vec4<f32>, ${PIX}>;
        //! unroll p ${PIX}
        v[{p}] = x[row[{p}] + {ci4}];
        //! end
        //! unroll k 4
        //! unroll o ${OC_N}
        {
            let wk = weight((4u * {ci4} + {k}) * COUT4 + OC_0 + {o});
            //! unroll p ${PIX}
            acc[{p} * OC_N + {o}] = fma(v[{p}][{k}], wk, acc[{p} * OC_N + {o}]);
            //! end
        }
        //! end
        //! end
    }
    //! end
    //! unroll p ${PIX}
    if (first + {p} < N_POS) {
        let out = ((first + {p}) * COUT4 + OC_0) / 4u;
        //! unroll q ${OC_QUADS}
        y[out + {q}] = activate(vec4<f32>(
            acc[{p} * OC_N + 4u * {q}], acc[{p} * OC_N + 4u * {q} + 1u],
            acc[{p} * OC_N + 4u * {q} + 2u], acc[{p} * OC_N + 4u * {q} + 3u]));
        //! end
    }
    //! end
}
