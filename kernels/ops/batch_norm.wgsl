// batch_norm: training-mode batch norm over every axis but the last; references
// kernels.ops.batch_norm.batch_norm_forward_ref and batch_norm_backward_ref (inference folds
// batch norm into the preceding layer instead: fold_batchnorm). Four kernels share the work:
// partial sums over chunks of rows and their finalisation (two passes, so the statistics are
// correct for any batch size), then the per-value forward or input gradient.
//
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened (see flat_main).
// Layout: x, g, y and dx [ROWS, C] (NHWC flattened to rows of C channels); stats [4, C] f32:
//   mean, inverse standard deviation, sum of g, sum of g * (x - mean); gamma and beta [C] f32.
// Alignment: arrays bound at offsets that are multiples of 256 bytes; no size needs to be a
//   multiple of the workgroup or chunk (the last invocations and the last chunk are masked).

//! kernel batch_norm_partials
// batch_norm_partials: per-channel partial sums over chunks of CHUNK consecutive rows, one
// channel (or quad) c and chunk s per invocation; neighbouring invocations take neighbouring
// channels (contiguous reads). MODE 0: sum of x (for the mean). MODE 1: sum of (x - mean)^2 (the
// biased variance, from centred values as numpy computes it). MODE 2 (backward): sum of g and sum
// of g * (x - mean). partial is [SPLITS, C] in MODES 0 and 1, [SPLITS, 2, C] in MODE 2; g is read
// only in MODE 2.
//! include vectors
//! const u32 ROWS C CHUNK MODE

@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read> g: array<V>;
@group(0) @binding(2) var<storage, read> stats: array<V>;
@group(0) @binding(3) var<storage, read_write> partial: array<V>;

//! include flat_main
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

//! kernel batch_norm_finalize
// batch_norm_finalize: second pass, one invocation per channel (COUNT = C) adds the SPLITS
// partial sums of batch_norm_partials (same MODE) and finishes the statistic:
//   MODE 0: stats.mean = sum / ROWS.
//   MODE 1: var = sum / ROWS; stats.inv_std = 1 / sqrt(var + EPS); running_mean and running_var
//     move towards the batch by MOMENTUM (running_var towards the unbiased var * ROWS / (ROWS - 1)).
//   MODE 2: stats.sum_g and stats.sum_gc; grad_gamma (out_a) = sum_gc * inv_std and grad_beta
//     (out_b) = sum_g.
// Layout: partial [SPLITS, C] (MODES 0, 1) or [SPLITS, 2, C] (MODE 2) f32; out_a and out_b [C]
//   f32: running mean and variance (MODE 1), gamma and beta gradients (MODE 2), unused in MODE 0.
//! const u32 ROWS SPLITS MODE
//! const f32 EPS MOMENTUM KEEP UNBIASED_MOMENTUM
const C: u32 = COUNT;

@group(0) @binding(0) var<storage, read> partial: array<f32>;
@group(0) @binding(1) var<storage, read_write> stats: array<f32>;
@group(0) @binding(2) var<storage, read_write> out_a: array<f32>;
@group(0) @binding(3) var<storage, read_write> out_b: array<f32>;

//! include flat_main
    let c = i;
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

//! kernel batch_norm_forward
// batch_norm_forward: normalise with the batch statistics, y = (x - mean) * (gamma * inv_std)
// + beta, one value (or quad of channels) per invocation.
//! include vectors
//! const u32 C

@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read> stats: array<V>;
@group(0) @binding(2) var<storage, read> gamma: array<V>;
@group(0) @binding(3) var<storage, read> beta: array<V>;
@group(0) @binding(4) var<storage, read_write> y: array<V>;

//! include flat_main
    let c = i % C;
    y[i] = (x[i] - stats[c]) * (gamma[c] * stats[C + c]) + beta[c];
}

//! kernel batch_norm_backward
// batch_norm_backward: input gradient, dx = (g - sum_g / ROWS + (x - mean) * slope) * gamma *
// inv_std with slope = -inv_std^2 * sum_gc / ROWS (the sums come from MODE 2 of the kernels
// above), one value (or quad of channels) per invocation.
//! include vectors
//! const u32 C
const ROWS: f32 = f32(${ROWS});

@group(0) @binding(0) var<storage, read> g: array<V>;
@group(0) @binding(1) var<storage, read> x: array<V>;
@group(0) @binding(2) var<storage, read> stats: array<V>;
@group(0) @binding(3) var<storage, read> gamma: array<V>;
@group(0) @binding(4) var<storage, read_write> dx: array<V>;

//! include flat_main
    let c = i % C;
    let inv_std = stats[C + c];
    let slope = -(inv_std * inv_std) * stats[3u * C + c] / ROWS;
    let centered = x[i] - stats[c];
    dx[i] = (g[i] - stats[2u * C + c] / ROWS + centered * slope) * (gamma[c] * inv_std);
}
