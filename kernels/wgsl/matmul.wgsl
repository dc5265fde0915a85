// matmul: c = a @ b (+ bias row), with any strides, optionally split along the inner axis.
//
// The pointwise and dense layers are matrix products each way: forward x @ w + bias, input
// gradient g @ w^T (b read transposed through its strides) and weight gradient x^T @ g (a read
// transposed; the long inner axis, positions, split into chunks whose partial products
// column_sum adds in a second pass).
//
// Workgroup size: ${WORKGROUP} invocations along x; the grid's x covers the row tiles and its y
//   the (chunk, column tile) pairs, so the column tile and chunk come from the workgroup id.
// Work per invocation: a register tile of TM rows x TN columns of c[s] = the sum over k in chunk
//   s (CHUNK consecutive k) of a[r * A_ROW + k * A_DEPTH] * b[k * B_DEPTH + j * B_COL]; each
//   loaded value of a feeds TN multiply-adds and each value of b feeds TM. The b offsets derive
//   from the workgroup id only, so they are uniform across the workgroup (one load and a
//   broadcast on a CPU adapter, the cache on a GPU). The tile loops are unrolled; k is a loop.
// Layout: a, b, bias and c are f32 arrays; a and b are addressed through their strides (in
//   floats), so a transposed operand needs no copy. c is [SPLITS, ROWS, COLS] row-major; bias
//   [COLS] is added only when HAS_BIAS (and then SPLITS is 1).
// Alignment: f32 arrays bound at offsets that are multiples of 256 bytes; no size needs to be a
//   multiple of the workgroup, tile or chunk (reads are clamped, writes and the last chunk
//   masked).

const ROWS: u32 = ${ROWS};
const COLS: u32 = ${COLS};
const DEPTH: u32 = ${DEPTH};
const CHUNK: u32 = ${CHUNK};
const TM: u32 = ${TM};
const TN: u32 = ${TN};
const TILES_M: u32 = ${TILES_M};
const TILES_N: u32 = ${TILES_N};
const A_ROW: u32 = ${A_ROW};
const A_DEPTH: u32 = ${A_DEPTH};
const B_DEPTH: u32 = ${B_DEPTH};
const B_COL: u32 = ${B_COL};
const HAS_BIAS: bool = ${HAS_BIAS};

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    if (gid.x >= TILES_M) {
        return;
    }
    let r0 = gid.x * TM;
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
