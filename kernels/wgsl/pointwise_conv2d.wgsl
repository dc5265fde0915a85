// pointwise_conv2d: 1x1 convolution (a matrix product over channels) + bias, optional fused ReLU.
//
// Workgroup size: ${WORKGROUP} invocations, 1-D dispatch along x.
// Work per invocation: PIX consecutive positions (flattened batch, row, column) x all output
//   channels. The invocation first reads its PIX input rows into registers (xs), then loops over
//   output quads (ob): each weight quad read feeds PIX vec4 multiply-adds, and only PIX vec4
//   accumulators are live at a time. Since xs holds PIX x CIN4 values, layers with many input
//   channels run on the dense kernel instead (the plan decides).
// Layout: x [N_POS, CIN4 / 4] vec4<f32> and y [N_POS, COUT4 / 4] vec4<f32>: NHWC with the channel
//   axis zero-padded to a multiple of 4 (CIN4, COUT4). w [CIN4, COUT4] f32 row-major and
//   b [COUT4] f32, zero-padded, as vec4 arrays (uniform arrays need a 16-byte stride).
// Alignment: vec4<f32> arrays (16-byte elements), bound whole at offset 0; no size needs to be
//   a multiple of the workgroup or tile (the last invocations are masked).
// The output-quad loop (ob) is a WGSL loop; the position and input-channel loops are unrolled, so
// every xs index is a constant and every weight offset is uniform across invocations.

override RELU: bool = false;

const N_POS: u32 = ${N_POS};
const Q_IN: u32 = ${CIN4} / 4u;
const Q_OUT: u32 = ${COUT4} / 4u;
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

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let first = gid.x * PIX;
    if (first >= N_POS) {
        return;
    }
    var xs: array<vec4<f32>, ${XS_N}>;
    //! unroll p ${PIX}
    {
        let row = min(first + {p}, N_POS - 1u) * Q_IN;
        //! unroll ci4 ${CIN_QUADS}
        xs[{p} * Q_IN + {ci4}] = x[row + {ci4}];
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
            acc[{p}] = fma(vec4<f32>(xs[{p} * Q_IN + {ci4}][{k}]), wq, acc[{p}]);
            //! end
        }
        //! end
        //! end
        //! unroll p ${PIX}
        if (first + {p} < N_POS) {
            y[(first + {p}) * Q_OUT + q] = activate(acc[{p}]);
        }
        //! end
    }
    //! end
}
