// Elementwise kernels: a strided unary map (which also serves as copy, broadcast, slice, permute and
// concat), its gradient, and a broadcasting binary map. The op is chosen by the override constant OP,
// so each op is its own specialised pipeline; shapes and strides travel in the uniform (rank <= 8).
// The op functions live in elementwise_ops.wgsl, shared with the fused kernels a compiled step generates.

struct Params {
  n: u32,          // number of output elements
  rank: u32,
  a_offset: u32,
  b_offset: u32,   // unary: offset into out
  alpha: f32,      // unary: out = alpha * f(x) + beta
  beta: f32,
  _pad0: u32,
  _pad1: u32,
  shape: array<vec4<u32>, 2>,     // iteration shape
  a_strides: array<vec4<u32>, 2>, // element strides of the first input (0 where broadcast)
  b_strides: array<vec4<u32>, 2>, // second input (binary) or output (unary)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

override OP: u32 = 0u;
override WG: u32 = 256u;

fn dim(v: array<vec4<u32>, 2>, i: u32) -> u32 { return v[i / 4u][i % 4u]; }

fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * WG; }

// out[b_offset + sum(i_k * b_strides_k)] = alpha * f(a[a_offset + sum(i_k * a_strides_k)]) + beta
@compute @workgroup_size(WG)
fn unary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  if (i >= p.n) { return; }
  var rem = i;
  var ai = p.a_offset;
  var oi = p.b_offset;
  for (var k = i32(p.rank) - 1; k >= 0; k--) {
    let d = dim(p.shape, u32(k));
    let c = rem % d;
    rem = rem / d;
    ai += c * dim(p.a_strides, u32(k));
    oi += c * dim(p.b_strides, u32(k));
  }
  out[oi] = p.alpha * unary_f(OP, a[ai]) + p.beta;
}

// out = b * f'(a), contiguous and same-shaped: the gradient of unary op OP (a: input, b: upstream grad).
@compute @workgroup_size(WG)
fn unary_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  if (i >= p.n) { return; }
  out[i] = b[i] * unary_df(OP, a[i]);
}

// out[i] = g(a[...], b[...]) with broadcasting through zero strides; out is contiguous.
@compute @workgroup_size(WG)
fn binary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  if (i >= p.n) { return; }
  var rem = i;
  var ai = p.a_offset;
  var bi = p.b_offset;
  for (var k = i32(p.rank) - 1; k >= 0; k--) {
    let d = dim(p.shape, u32(k));
    let c = rem % d;
    rem = rem / d;
    ai += c * dim(p.a_strides, u32(k));
    bi += c * dim(p.b_strides, u32(k));
  }
  out[i] = binary_f(OP, a[ai], b[bi]);
}
