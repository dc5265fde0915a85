// batch_norm_finalize: second pass of the batch-norm reductions, one invocation per channel adds
// the SPLITS partial sums of batch_norm_partials (same MODE) and finishes the statistic:
//   MODE 0: stats.mean = sum / ROWS.
//   MODE 1: var = sum / ROWS; stats.inv_std = 1 / sqrt(var + EPS); running_mean and running_var
//     move towards the batch by MOMENTUM (running_var towards the unbiased var * ROWS / (ROWS - 1)).
//   MODE 2: stats.sum_g and stats.sum_gc; grad_gamma (out_a) = sum_gc * inv_std and grad_beta
//     (out_b) = sum_g.
//
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened as
//   i = gid.x + gid.y * num_workgroups.x * WORKGROUP.
// Layout: partial [SPLITS, C] (MODES 0, 1) or [SPLITS, 2, C] (MODE 2) f32; stats [4, C] f32:
//   mean, inverse standard deviation, sum of g, sum of g * (x - mean); out_a and out_b [C] f32:
//   running mean and variance (MODE 1), gamma and beta gradients (MODE 2), unused in MODE 0.
// Alignment: f32 arrays bound at offsets that are multiples of 256 bytes; no size needs to be a
//   multiple of the workgroup (the last invocations are masked).

const C: u32 = ${C};
const ROWS: u32 = ${ROWS};
const SPLITS: u32 = ${SPLITS};
const MODE: u32 = ${MODE};
const EPS: f32 = ${EPS};
const MOMENTUM: f32 = ${MOMENTUM};
const KEEP: f32 = ${KEEP};
const UNBIASED_MOMENTUM: f32 = ${UNBIASED_MOMENTUM};

@group(0) @binding(0) var<storage, read> partial: array<f32>;
@group(0) @binding(1) var<storage, read_write> stats: array<f32>;
@group(0) @binding(2) var<storage, read_write> out_a: array<f32>;
@group(0) @binding(3) var<storage, read_write> out_b: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let c = gid.x + gid.y * groups.x * ${WORKGROUP};
    if (c >= C) {
        return;
    }
    let width = select(C, 2u * C, MODE == 2u);
    var total = 0.0;
    var product = 0.0;
    for (var s: u32 = 0u; s < SPLITS; s++) {
        total += partial[s * width + c];
        if (MODE == 2u) {
            product += partial[s * width + C + c];
        }
    }
    if (MODE == 0u) {
        stats[c] = total / f32(ROWS);
    } else if (MODE == 1u) {
        let mean = stats[c];
        let variance = total / f32(ROWS);
        stats[C + c] = 1.0 / sqrt(variance + EPS);
        out_a[c] = out_a[c] * KEEP + MOMENTUM * mean;
        out_b[c] = out_b[c] * KEEP + UNBIASED_MOMENTUM * variance;
    } else {
        stats[2u * C + c] = total;
        stats[3u * C + c] = product;
        out_a[c] = product * stats[C + c];
        out_b[c] = total;
    }
}
