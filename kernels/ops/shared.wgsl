// Fragments that the kernels of several ops include with `//! include NAME` (see
// kernels/template.py): the launch index, window index math, zero-padded patch reads, and the
// bindings, parameters and fused activation of the inference kernels.

//! fragment flat_main
// Opens `main` over a flattened 2-D grid of workgroups: invocation i = gid.x + gid.y *
// num_workgroups.x * WORKGROUP, so a launch of any size fits the per-dimension limit (a launch of
// one row of workgroups has gid.y = 0). Invocations from COUNT on return, so no size needs to be a
// multiple of the workgroup. The including kernel writes the body and the closing brace.
//! const u32 COUNT
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * ${WORKGROUP};
    if (i >= COUNT) {
        return;
    }

//! fragment row_main
// Opens `main` over a grid whose x covers COUNT invocations i = gid.x (the rest return) and
// whose y indexes rows of workgroups: wid.y is uniform across a workgroup, so loads at offsets
// derived from it are broadcasts. The including kernel writes the body and the closing brace.
//! const u32 COUNT
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let i = gid.x;
    if (i >= COUNT) {
        return;
    }

//! fragment window
// A sliding window over x [BATCH, H, W, channels] giving [BATCH, OH, OW, channels]: kernel
// KH x KW taps spaced (DH, DW) apart, stride (SH, SW), PH rows and PW columns of zeros before the
// image (those after it only shorten or lengthen OH and OW); signed where offsets can be negative.
//! const i32 H W SH SW PH PW DH DW
//! const u32 OH OW KH KW

// Output position m (flattened batch, row, column) as (n, oy, ox).
fn out_position(m: u32) -> vec3<u32> {
    return vec3<u32>(m / (OW * OH), (m / OW) % OH, m % OW);
}

// The output position after p = (n, oy, ox), in row-major order.
fn next_position(p: vec3<u32>) -> vec3<u32> {
    if (p.z + 1u < OW) {
        return vec3<u32>(p.x, p.y, p.z + 1u);
    }
    if (p.y + 1u < OH) {
        return vec3<u32>(p.x, p.y + 1u, 0u);
    }
    return vec3<u32>(p.x + 1u, 0u, 0u);
}

// Input position m (flattened batch, row, column) as (n, iy, ix).
fn in_position(m: u32) -> vec3<u32> {
    return vec3<u32>(m / u32(W * H), (m / u32(W)) % u32(H), m % u32(W));
}

// Flat index of input pixel (n, iy, ix), and of output pixel (n, oy, ox).
fn pixel(n: u32, iy: i32, ix: i32) -> u32 {
    return (n * u32(H) + u32(iy)) * u32(W) + u32(ix);
}

fn out_pixel(n: u32, oy: i32, ox: i32) -> u32 {
    return (n * OH + u32(oy)) * OW + u32(ox);
}

// Input row (column) that output row oy (column ox) reads at tap ky (kx); -1 in the padding.
fn in_row(oy: u32, ky: u32) -> i32 {
    let r = i32(oy) * SH + i32(ky) * DH - PH;
    return select(-1, r, r >= 0 && r < H);
}

fn in_col(ox: u32, kx: u32) -> i32 {
    let c = i32(ox) * SW + i32(kx) * DW - PW;
    return select(-1, c, c >= 0 && c < W);
}

// Output row (column) whose window reads input row iy (column ix) at tap ky (kx); -1 when no
// window does (the stride skips it, or it lies past the output).
fn out_row(iy: i32, ky: u32) -> i32 {
    let t = iy + PH - i32(ky) * DH;
    return select(-1, t / SH, t >= 0 && t % SH == 0 && t / SH < i32(OH));
}

fn out_col(ix: i32, kx: u32) -> i32 {
    let t = ix + PW - i32(kx) * DW;
    return select(-1, t / SW, t >= 0 && t % SW == 0 && t / SW < i32(OW));
}

//! fragment vectors
// V is f32, or vec4<f32> when the plan found the sizes a multiple of 4 (then COUNT and C count
// quads, and each invocation handles four values; the memory layout is the same).
alias V = ${VEC};

//! fragment activate
// The fused epilogue of an inference layer (kernels.ops.activation.activation_ref), chosen per
// pipeline: y = v where v >= 0, else SLOPE * v (SLOPE 1: identity, 0: ReLU), then clamped to
// [LOW, HIGH] when CLAMP. WGSL has no infinity, so the plan passes an open bound as the largest
// float32 and sets CLAMP only when a bound is finite.
override SLOPE: f32 = 1.0;
override CLAMP: bool = false;
override LOW: f32 = 0.0;
override HIGH: f32 = 0.0;

fn activate(v: vec4<f32>) -> vec4<f32> {
    var y = v;
    if (SLOPE == 0.0) {
        y = max(v, vec4<f32>(0.0));
    } else if (SLOPE != 1.0) {
        y = select(v * SLOPE, v, v >= vec4<f32>(0.0));
    }
    if (CLAMP) {
        y = clamp(y, vec4<f32>(LOW), vec4<f32>(HIGH));
    }
    return y;
}

//! fragment quad_params
// The bindings of an inference layer over the padded layout: input x, weight w and bias b (in
// uniform buffers when they fit, else storage; W_VEC4 and B_VEC4 quads), output y. Activations
// are NHWC with the channel axis zero-padded to a multiple of 4, bound whole as vec4<f32> arrays
// (16-byte elements), so each position starts 16-byte aligned; uniform arrays need a 16-byte
// stride, so the parameters are packed into vec4 arrays too.
//! include activate
@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<${PARAM_SPACE}> w: array<vec4<f32>, ${W_VEC4}>;
@group(0) @binding(2) var<${PARAM_SPACE}> b: array<vec4<f32>, ${B_VEC4}>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;

//! fragment tap
// Input quad q at (image offset `img` in positions, row iy, column ix) of x [.., H, W, CIN_QUADS]
// vec4; zero outside the image, so no padded copy of x is made.
fn tap(img: u32, iy: i32, ix: i32, q: u32) -> vec4<f32> {
    let inside = iy >= 0 && iy < H && ix >= 0 && ix < W;
    let index = select(0u, (img + u32(iy) * u32(W) + u32(ix)) * CIN_QUADS + q, inside);
    return select(vec4<f32>(0.0), x[index], inside);
}

//! fragment scalar_weight
// Weight k of the flattened weight array as a scalar (w is packed into vec4 quads).
fn weight(k: u32) -> f32 {
    return w[k / 4u][k % 4u];
}

//! fragment tile_init
// Accumulators acc[PIX x OC_N] (positions x output channels [OC_0, OC_0 + OC_N)) set to the bias.
    //! unroll o ${OC_N}
    {
        let b0 = b[(OC_0 + {o}) / 4u][(OC_0 + {o}) % 4u];
        //! unroll p ${PIX}
        acc[{p} * OC_N + {o}] = b0;
        //! end
    }
    //! end

//! fragment tile_fma
// acc[p, o] += v[p][k] * weight(k0 + k * COUT4 + o) over the KN used components k of the input
// quads v[p] and the OC_N output channels o: each weight read feeds PIX multiply-adds.
        //! unroll k ${KN}
        //! unroll o ${OC_N}
        {
            let wk = weight(k0 + {k} * COUT4 + {o});
            //! unroll p ${PIX}
            acc[{p} * OC_N + {o}] = fma(v[{p}][{k}], wk, acc[{p} * OC_N + {o}]);
            //! end
        }
        //! end
        //! end

//! fragment tile_store
// Writes the PIX x OC_N accumulator tile, activated, to y [N_POS, COUT4 / 4] from position first.
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

//! fragment quad_store
// Writes output quad q of the PIX positions from first, activated: y [N_POS, Q_OUT] vec4.
        //! unroll p ${PIX}
        if (first + {p} < N_POS) {
            y[(first + {p}) * Q_OUT + q] = activate(acc[{p}]);
        }
        //! end
