// conv2d_forward: training forward of a 2-D convolution (any kernel size, stride and zero
// padding) plus an optional bias, no activation.
//
// Workgroup size: ${WORKGROUP} invocations along x; the grid's x covers the output positions and
//   its y the channel tiles, so the channel tile comes from the workgroup id.
// Work per invocation: one output position (batch, row, column) x a tile of TN consecutive output
//   channels [co0, co0 + TN): each input value read feeds TN multiply-adds. The weight offsets
//   derive from the workgroup id and the loop counters only, so they are uniform across the
//   workgroup (one load and a broadcast on a CPU adapter, the cache on a GPU).
// Layout: x [BATCH, H, W, CI] and y [BATCH, OH, OW, CO] f32, NHWC, unpadded; w [KH, KW, CI, CO]
//   f32 (HWIO); b [CO] f32 (read only when HAS_BIAS).
// Alignment: f32 arrays bound at offsets that are multiples of 256 bytes; no size needs to be a
//   multiple of the workgroup or tile (the last invocations are masked, channel reads clamped).
// Padding: reads outside the image are skipped; no padded copy of x is made.

const POSITIONS: u32 = ${POSITIONS};
const H: i32 = i32(${H});
const W: i32 = i32(${W});
const CI: u32 = ${CI};
const OH: u32 = ${OH};
const OW: u32 = ${OW};
const CO: u32 = ${CO};
const KH: u32 = ${KH};
const KW: u32 = ${KW};
const SH: i32 = i32(${SH});
const SW: i32 = i32(${SW});
const PH: i32 = i32(${PH});
const PW: i32 = i32(${PW});
const TN: u32 = ${TN};
const HAS_BIAS: bool = ${HAS_BIAS};

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let pos = gid.x;
    if (pos >= POSITIONS) {
        return;
    }
    let co0 = wid.y * TN;
    let ox = i32(pos % OW);
    let oy = i32((pos / OW) % OH);
    let n = pos / (OW * OH);
    var co: array<u32, ${TN}>;
    var acc: array<f32, ${TN}>;
    //! unroll q ${TN}
    co[{q}] = min(co0 + {q}, CO - 1u);
    //! end
    for (var ky: u32 = 0u; ky < KH; ky++) {
        let iy = oy * SH + i32(ky) - PH;
        if (iy < 0 || iy >= H) {
            continue;
        }
        for (var kx: u32 = 0u; kx < KW; kx++) {
            let ix = ox * SW + i32(kx) - PW;
            if (ix < 0 || ix >= W) {
                continue;
            }
            let xb = ((n * u32(H) + u32(iy)) * u32(W) + u32(ix)) * CI;
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
        y[pos * CO + co0 + {q}] = v;
    }
    //! end
}
