// pooling: average and max pooling over windows (inference) and global average pooling
// (inference and training) with its gradient; references kernels.ops.pooling.avg_pool2d_ref,
// max_pool2d_ref, global_avg_pool_ref and global_avg_pool_grad_ref.

//! kernel avg_pool2d
// avg_pool2d: average over KH x KW windows with stride (SH, SW), no padding (every window lies
// inside the image), fused activation, on the padded vec4 layout: x [BATCH, H, W, CIN_QUADS]
// and y [BATCH, OH, OW, CIN_QUADS] vec4<f32> (see quad_params in shared.wgsl).
// Workgroup size: ${WORKGROUP} invocations, 1-D.
// Work per invocation: one output position x all channels, four at a time (the unrolled inner
//   loop, so each input pixel's reads are contiguous). The window loops (ky, kx) are WGSL loops.
//! include window
//! include activate
//! const u32 CIN_QUADS
const SCALE: f32 = 1.0 / f32(${KH} * ${KW});

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> y: array<vec4<f32>>;

//! include flat_main
    let at = out_position(i);
    var acc: array<vec4<f32>, ${CIN_QUADS}>;
    //! unroll ky ${KH}
    //! unroll kx ${KW}
    {
        let base = pixel(at.x, i32(at.y) * SH + i32({ky}), i32(at.z) * SW + i32({kx})) * CIN_QUADS;
        //! unroll q ${CIN_QUADS}
        acc[{q}] += x[base + {q}];
        //! end
    }
    //! end
    //! end
    //! unroll q ${CIN_QUADS}
    y[i * CIN_QUADS + {q}] = activate(acc[{q}] * SCALE);
    //! end
}

//! kernel max_pool2d
// max_pool2d: maximum over KH x KW windows with stride (SH, SW), no padding (every window lies
// inside the image), on the padded vec4 layout: x [BATCH, H, W, CIN_QUADS] and
// y [BATCH, OH, OW, CIN_QUADS] vec4<f32> (see quad_params in shared.wgsl); padding lanes stay 0.
// Workgroup size: ${WORKGROUP} invocations, 1-D.
// Work per invocation: one output position x all channels, four at a time (the unrolled inner
//   loop, so each input pixel's reads are contiguous). The accumulators start at the window's
//   first tap, so no sentinel value is needed. The window loops (ky, kx) are WGSL loops.
//! include window
//! const u32 CIN_QUADS

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> y: array<vec4<f32>>;

//! include flat_main
    let at = out_position(i);
    let first = pixel(at.x, i32(at.y) * SH, i32(at.z) * SW) * CIN_QUADS;
    var acc: array<vec4<f32>, ${CIN_QUADS}>;
    //! unroll q ${CIN_QUADS}
    acc[{q}] = x[first + {q}];
    //! end
    //! unroll ky ${KH}
    //! unroll kx ${KW}
    {
        let base = pixel(at.x, i32(at.y) * SH + i32({ky}), i32(at.z) * SW + i32({kx})) * CIN_QUADS;
        //! unroll q ${CIN_QUADS}
        acc[{q}] = max(acc[{q}], x[base + {q}]);
        //! end
    }
    //! end
    //! end
    //! unroll q ${CIN_QUADS}
    y[i * CIN_QUADS + {q}] = acc[{q}];
    //! end
}

//! kernel global_avg_pool
// global_avg_pool: mean over all positions of each image and channel, x [BATCH, POSITIONS, C] ->
// y [BATCH, C] (NHWC with H x W flattened; the inference engine's padded layout is C4 / 4 quads).
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened (see flat_main).
// Work per invocation: one image x one channel (or quad), summed in one pass over the image's
//   positions; neighbouring invocations take neighbouring channels (contiguous reads).
// Alignment: arrays bound at offsets that are multiples of 256 bytes.
//! include vectors
//! const u32 POSITIONS C
//! const f32 SCALE

@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read_write> y: array<V>;

//! include flat_main
    let base = (i / C) * POSITIONS * C + i % C;
    var acc = V(0.0);
    for (var p: u32 = 0u; p < POSITIONS; p++) {
        acc += x[base + p * C];
    }
    y[i] = acc * SCALE;
}

//! kernel global_avg_pool_grad
// global_avg_pool_grad: gradient of global average pooling, every position of an image receives
// SCALE = 1 / (H * W) of the gradient of its channel: g [BATCH, C] -> dx [BATCH, POSITIONS, C].
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened (see flat_main).
// Work per invocation: one input-gradient value (or quad).
//! include vectors
//! const u32 POSITIONS C
//! const f32 SCALE

@group(0) @binding(0) var<storage, read> g: array<V>;
@group(0) @binding(1) var<storage, read_write> dx: array<V>;

//! include flat_main
    dx[i] = g[(i / (POSITIONS * C)) * C + i % C] * SCALE;
}
