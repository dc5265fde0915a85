// adam: one AdamW step (decoupled weight decay, bias correction) over a flat range of
// parameters, as models.optim.Adam takes it; reference kernels.ops.adam.adam_ref:
//   p *= decay_factor (only when DECAY: the range holds arrays with ndim >= 2);
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2;
//   p -= step_size * m / (sqrt(v) / root_correction + eps)
// with step_size = lr / (1 - beta1^t) and root_correction = sqrt(1 - beta2^t), computed on the
// host for each step and written to the uniform `hyper`.
//
// Workgroup size: ${WORKGROUP} invocations; 2-D grid of workgroups, flattened (see flat_main).
// Work per invocation: one parameter.
// Layout: param, grad, exp_avg, exp_avg_sq flat f32 arrays of COUNT values (every array of the
//   network concatenated; padding between arrays has zero gradient and stays zero); hyper is
//   two vec4<f32>: (decay_factor, beta1, one_minus_beta1, beta2), (one_minus_beta2, step_size,
//   root_correction, eps).
// Alignment: arrays bound at offsets that are multiples of 256 bytes; no size needs to be a
//   multiple of the workgroup (the last invocations are masked).

//! kernel adam
//! const bool DECAY

@group(0) @binding(0) var<storage, read> grad: array<f32>;
@group(0) @binding(1) var<uniform> hyper: array<vec4<f32>, 2>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> exp_avg: array<f32>;
@group(0) @binding(4) var<storage, read_write> exp_avg_sq: array<f32>;

//! include flat_main
    var p = param[i];
    if (DECAY) {
        p *= hyper[0].x;
    }
    let g = grad[i];
    let m = exp_avg[i] * hyper[0].y + hyper[0].z * g;
    let v = exp_avg_sq[i] * hyper[0].w + hyper[1].x * (g * g);
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    let denom = sqrt(v) / hyper[1].z + hyper[1].w;
    param[i] = p - hyper[1].y * m / denom;
}
