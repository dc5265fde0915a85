// depthwise_weight_grad: first pass of the weight gradient of a depthwise 2-D convolution,
// partial sums over chunks of output positions (column_sum adds the partials in a second pass,
// so the result is correct and deterministic for any batch size).
//
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened as
//   i = gid.x + gid.y * num_workgroups.x * WORKGROUP.
// Work per invocation: every tap (ky, kx) of one channel c over one chunk s of CHUNK consecutive
//   output positions m (flattened batch, row, column): partial[s, ky, kx, c] = sum over m in the
//   chunk of x[n, oy * SH + ky - PH, ox * SW + kx - PW, c] * g[m, c], so each g value read feeds
//   KH x KW multiply-adds. Neighbouring invocations take neighbouring channels (contiguous
//   reads). The tap loops are unrolled; m is a WGSL loop.
// Layout: x [BATCH, H, W, C] and g [BATCH, OH, OW, C] f32, NHWC, unpadded;
//   partial [SPLITS, KH, KW, C] f32.
// Vectors: V is f32, or vec4<f32> when C is a multiple of 4 (then C counts quads of channels
//   and each invocation handles four channels; the memory layout is the same).
// Alignment: arrays bound at offsets that are multiples of 256 bytes; no size needs to be a
//   multiple of the workgroup or chunk (the last invocations and the last chunk are masked).

alias V = ${VEC};

const COUNT: u32 = ${COUNT};
const POSITIONS: u32 = ${POSITIONS};
const CHUNK: u32 = ${CHUNK};
const H: i32 = i32(${H});
const W: i32 = i32(${W});
const C: u32 = ${C};
const OH: u32 = ${OH};
const OW: u32 = ${OW};
const KW: u32 = ${KW};
const SH: i32 = i32(${SH});
const SW: i32 = i32(${SW});
const PH: i32 = i32(${PH});
const PW: i32 = i32(${PW});

@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read> g: array<V>;
@group(0) @binding(2) var<storage, read_write> partial: array<V>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * ${WORKGROUP};
    if (i >= COUNT) {
        return;
    }
    let c = i % C;
    let s = i / C;
    let first = s * CHUNK;
    let last = min(first + CHUNK, POSITIONS);
    var acc: array<V, ${TAPS}>;
    var ox = first % OW;
    var oy = (first / OW) % OH;
    var n = first / (OW * OH);
    for (var m = first; m < last; m++) {
        let gv = g[m * C + c];
        let iy0 = i32(oy) * SH - PH;
        let ix0 = i32(ox) * SW - PW;
        let img = n * u32(H);
        //! unroll ky ${KH}
        //! unroll kx ${KW}
        {
            let iy = iy0 + i32({ky});
            let ix = ix0 + i32({kx});
            if (iy >= 0 && iy < H && ix >= 0 && ix < W) {
                let xi = ((img + u32(iy)) * u32(W) + u32(ix)) * C + c;
                acc[{ky} * KW + {kx}] = fma(x[xi], gv, acc[{ky} * KW + {kx}]);
            }
        }
        //! end
        //! end
        ox += 1u;
        if (ox == OW) {
            ox = 0u;
            oy += 1u;
            if (oy == OH) {
                oy = 0u;
                n += 1u;
            }
        }
    }
    //! unroll t ${TAPS}
    partial[(s * ${TAPS} + {t}) * C + c] = acc[{t}];
    //! end
}
