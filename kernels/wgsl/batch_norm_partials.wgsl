// batch_norm_partials: first pass of the batch-norm reductions, per-channel partial sums over
// chunks of CHUNK consecutive rows (batch_norm_finalize adds the partials, so the statistics are
// correct for any batch size). MODE 0: sum of x (for the mean). MODE 1: sum of (x - mean)^2
// (the biased variance, from centred values as numpy computes it). MODE 2 (backward): sum of g
// and sum of g * (x - mean).
//
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened as
//   i = gid.x + gid.y * num_workgroups.x * WORKGROUP.
// Work per invocation: one channel c over one chunk s of rows; neighbouring invocations take
//   neighbouring channels (contiguous reads).
// Layout: x and g [ROWS, C] f32 (NHWC flattened to rows of C channels; g read only in MODE 2);
//   stats [4, C] f32: mean, inverse standard deviation, sum of g, sum of g * (x - mean).
//   partial [SPLITS, C] f32 in MODES 0 and 1, [SPLITS, 2, C] in MODE 2.
// Vectors: V is f32, or vec4<f32> when C is a multiple of 4 (then C counts quads of channels and
//   each invocation sums four channels; the memory layout is the same).
// Alignment: arrays bound at offsets that are multiples of 256 bytes; no size needs to be a
//   multiple of the workgroup or chunk (the last invocations and the last chunk are masked).

alias V = ${VEC};

const COUNT: u32 = ${COUNT};
const ROWS: u32 = ${ROWS};
const C: u32 = ${C};
const CHUNK: u32 = ${CHUNK};
const MODE: u32 = ${MODE};

@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read> g: array<V>;
@group(0) @binding(2) var<storage, read> stats: array<V>;
@group(0) @binding(3) var<storage, read_write> partial: array<V>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * ${WORKGROUP};
    if (i >= COUNT) {
        return;
    }
    let c = i % C;
    let s = i / C;
    let first = s * CHUNK;
    let last = min(first + CHUNK, ROWS);
    var total = V(0.0);
    var product = V(0.0);
    if (MODE == 0u) {
        for (var r = first; r < last; r++) {
            total += x[r * C + c];
        }
        partial[i] = total;
        return;
    }
    let mean = stats[c];
    if (MODE == 1u) {
        for (var r = first; r < last; r++) {
            let centered = x[r * C + c] - mean;
            total = fma(centered, centered, total);
        }
        partial[i] = total;
        return;
    }
    for (var r = first; r < last; r++) {
        let grad = g[r * C + c];
        total += grad;
        product = fma(grad, x[r * C + c] - mean, product);
    }
    partial[s * 2u * C + c] = total;
    partial[(s * 2u + 1u) * C + c] = product;
}
