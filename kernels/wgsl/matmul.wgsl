// matmul: c = a @ b (+ bias row), with any strides, optionally split along the inner axis.
//
// The pointwise and dense layers are matrix products each way: forward x @ w + bias, input
// gradient g @ w^T (b read transposed through its strides) and weight gradient x^T @ g (a read
// transposed; the long inner axis, positions, split into chunks whose partial products
// column_sum adds in a second pass).
//
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened as
//   i = gid.x + gid.y * num_workgroups.x * WORKGROUP.
// Work per invocation: one value c[s, r, j] = sum over k in chunk s (CHUNK consecutive k) of
//   a[r * A_ROW + k * A_DEPTH] * b[k * B_DEPTH + j * B_COL]; neighbouring invocations take
//   neighbouring columns j.
// Layout: a, b, bias and c are f32 arrays; a and b are addressed through their strides (in
//   floats), so a transposed operand needs no copy. c is [SPLITS, ROWS, COLS] row-major; bias
//   [COLS] is added only when HAS_BIAS (and then SPLITS is 1).
// Alignment: f32 arrays bound at offsets that are multiples of 256 bytes; no size needs to be a
//   multiple of the workgroup or chunk (the last invocations and the last chunk are masked).

const COUNT: u32 = ${COUNT};
const ROWS: u32 = ${ROWS};
const COLS: u32 = ${COLS};
const DEPTH: u32 = ${DEPTH};
const CHUNK: u32 = ${CHUNK};
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
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * ${WORKGROUP};
    if (i >= COUNT) {
        return;
    }
    let j = i % COLS;
    let r = (i / COLS) % ROWS;
    let s = i / (COLS * ROWS);
    let first = s * CHUNK;
    let last = min(first + CHUNK, DEPTH);
    var acc = 0.0;
    for (var k = first; k < last; k++) {
        acc = fma(a[r * A_ROW + k * A_DEPTH], b[k * B_DEPTH + j * B_COL], acc);
    }
    if (HAS_BIAS) {
        acc += bias[j];
    }
    c[i] = acc;
}
