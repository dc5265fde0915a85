"""GPU compute kernels (WGSL through wgpu) and their numpy references."""
