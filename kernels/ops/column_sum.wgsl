// column_sum: scaled sums of consecutive chunks of rows, out[s, j] = SCALE * sum over the rows
// r in [s * CHUNK, min((s + 1) * CHUNK, ROWS)) of x[r, j]. One pass with CHUNK >= ROWS sums a
// whole column (a bias gradient, or the second pass over partial sums); with a smaller CHUNK it
// is the first pass of a two-pass reduction that stays parallel for any number of rows.
// Reference: kernels.ops.column_sum.column_sum_ref.
//
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened (see flat_main).
// Work per invocation: one output value (s, j); neighbouring invocations take neighbouring
//   columns, so every row read is contiguous.
// Layout: x [ROWS, COLS] and out [ceil(ROWS / CHUNK), COLS] f32, row-major.
// Alignment: f32 arrays bound at offsets that are multiples of 256 bytes; no size needs to be a
//   multiple of the workgroup or chunk (the last invocations and the last chunk are masked).

//! kernel column_sum
//! const u32 ROWS COLS CHUNK
//! const f32 SCALE

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

//! include flat_main
    let j = i % COLS;
    let s = i / COLS;
    let first = s * CHUNK;
    let last = min(first + CHUNK, ROWS);
    var acc = 0.0;
    for (var r = first; r < last; r++) {
        acc += x[r * COLS + j];
    }
    out[i] = acc * SCALE;
}
