// conv2d_weight_grad: first pass of the weight gradient of a 2-D convolution, partial sums over
// chunks of output positions (column_sum adds the partials in a second pass, so the result is
// correct and deterministic for any batch size).
//
// Workgroup size: ${WORKGROUP} invocations along x; the grid's x covers the taps and its y the
//   (chunk, channel tile) pairs, so the chunk and channel tile come from the workgroup id.
// Work per invocation: one tap (ky, kx, ci) x a tile of TN consecutive output channels
//   [co0, co0 + TN) over one chunk s of CHUNK consecutive output positions m (flattened batch,
//   row, column): partial[s, ky, kx, ci, co] = sum over m in the chunk of
//   x[n, oy * SH + ky - PH, ox * SW + kx - PW, ci] * g[m, co]. Each x value read feeds TN
//   multiply-adds. The g offsets derive from the workgroup id and the loop counter only, so they
//   are uniform across the workgroup (one load and a broadcast on a CPU adapter).
// Layout: x [BATCH, H, W, CI] and g [BATCH, OH, OW, CO] f32, NHWC, unpadded;
//   partial [SPLITS, KH, KW, CI, CO] f32.
// Alignment: f32 arrays bound at offsets that are multiples of 256 bytes; no size needs to be a
//   multiple of the workgroup, tile or chunk (the last invocations and the last chunk are masked,
//   channel reads clamped).

const POSITIONS: u32 = ${POSITIONS};
const CHUNK: u32 = ${CHUNK};
const H: i32 = i32(${H});
const W: i32 = i32(${W});
const CI: u32 = ${CI};
const OH: u32 = ${OH};
const OW: u32 = ${OW};
const CO: u32 = ${CO};
const KW: u32 = ${KW};
const SH: i32 = i32(${SH});
const SW: i32 = i32(${SW});
const PH: i32 = i32(${PH});
const PW: i32 = i32(${PW});
const TN: u32 = ${TN};
const TAPS: u32 = ${KH} * KW * CI;
const CO_TILES: u32 = ${CO_TILES};

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let tap = gid.x;
    if (tap >= TAPS) {
        return;
    }
    let co0 = (wid.y % CO_TILES) * TN;
    let s = wid.y / CO_TILES;
    let ci = tap % CI;
    let kx = i32((tap / CI) % KW);
    let ky = i32(tap / (CI * KW));
    let first = s * CHUNK;
    let last = min(first + CHUNK, POSITIONS);
    var co: array<u32, ${TN}>;
    var acc: array<f32, ${TN}>;
    //! unroll q ${TN}
    co[{q}] = min(co0 + {q}, CO - 1u);
    //! end
    var ox = first % OW;
    var oy = (first / OW) % OH;
    var n = first / (OW * OH);
    for (var m = first; m < last; m++) {
        let iy = i32(oy) * SH + ky - PH;
        let ix = i32(ox) * SW + kx - PW;
        if (iy >= 0 && iy < H && ix >= 0 && ix < W) {
            let xv = x[((n * u32(H) + u32(iy)) * u32(W) + u32(ix)) * CI + ci];
            //! unroll q ${TN}
            acc[{q}] = fma(xv, g[m * CO + co[{q}]], acc[{q}]);
            //! end
        }
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
    //! unroll q ${TN}
    if (co0 + {q} < CO) {
        partial[(s * TAPS + tap) * CO + co0 + {q}] = acc[{q}];
    }
    //! end
}
