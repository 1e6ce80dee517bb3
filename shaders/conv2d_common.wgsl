// Uniforms, bindings and flags shared by the convolution kernels: conv2d.wgsl (CPU-emulation tiling)
// and conv2d_tile.wgsl (register-tiled, for GPUs), each compiled with this file in front.

struct Params {
  batch: u32, cin: u32, in_h: u32, in_w: u32,
  cout: u32, out_h: u32, out_w: u32, groups: u32,
  k_h: u32, k_w: u32, stride_h: u32, stride_w: u32,
  pad_h: u32, pad_w: u32, dil_h: u32, dil_w: u32,
  cin_g: u32,   // input channels per group
  cout_g: u32,  // output channels per group
  gemm_m: u32,  // this entry's GEMM size, per group
  gemm_n: u32,
  gemm_k: u32,
  splits: u32,  // K ranges (workgroups along z per group); 1 but for a split weight gradient
  k_split: u32, // K per range, a multiple of TK
  _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> gy: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;
@group(0) @binding(7) var<storage, read_write> dw: array<f32>;
@group(0) @binding(8) var<storage, read> res: array<f32>;           // forward, HAS_RES: added to y
@group(0) @binding(9) var<storage, read> wt_v4: array<vec4<f32>>;   // wt as vec4 words (conv2d_tile)

override HAS_BIAS: bool = false;
override HAS_RES: bool = false;     // forward: y += res (same shape), the fused residual add
override UNIT_STRIDE: bool = false; // backward data: stride 1, no division
