// Elementwise kernels: a strided unary map (which also serves as copy, broadcast, slice, permute and
// concat), its gradient, and a broadcasting binary map. The op is chosen by the override constant OP
// and the rank of the iteration shape (<= 8) by RANK, so each is its own specialised pipeline; shapes
// and strides travel in the uniform. The op functions live in elementwise_ops.wgsl, shared with the
// fused kernels a compiled step generates.

struct Params {
  n: u32,          // number of output elements
  _pad0: u32,
  a_offset: u32,
  b_offset: u32,   // unary: offset into out
  alpha: f32,      // unary: out = alpha * f(x) + beta
  beta: f32,
  a_outer: u32,    // strides of the outermost axis (0 if rank 0)
  b_outer: u32,
  shape: array<vec4<u32>, 2>,     // the other axes of the iteration shape, innermost first
  a_strides: array<vec4<u32>, 2>, // element strides of the first input (0 where broadcast), likewise
  b_strides: array<vec4<u32>, 2>, // second input (binary) or output (unary), likewise
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

override OP: u32 = 0u;
override WG: u32 = 256u;
override RANK: u32 = 1u; // of the iteration shape after merging (0 to 8)

fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * WG; }

// Offsets into a and b of flat index i over the iteration shape. The host merges axes first and
// packs all but the outermost innermost first, so that every uniform read below has a constant index
// (a dynamic one is a gather on CPU emulation, and passing a uniform array to a function by value
// copies it). The rank is a pipeline constant: the ifs fold away, where a branch on a uniform value
// costs more than a division on CPU emulation. The outermost axis, whose strides travel on their
// own, needs no division.
fn axis(rem: ptr<function, u32>, off: ptr<function, vec2<u32>>, d: u32, sa: u32, sb: u32) {
  *off += (*rem % d) * vec2<u32>(sa, sb);
  *rem = *rem / d;
}

fn offsets(i: u32) -> vec2<u32> {
  var rem = i;
  var off = vec2<u32>(p.a_offset, p.b_offset);
  if (RANK > 1u) { axis(&rem, &off, p.shape[0].x, p.a_strides[0].x, p.b_strides[0].x); }
  if (RANK > 2u) { axis(&rem, &off, p.shape[0].y, p.a_strides[0].y, p.b_strides[0].y); }
  if (RANK > 3u) { axis(&rem, &off, p.shape[0].z, p.a_strides[0].z, p.b_strides[0].z); }
  if (RANK > 4u) { axis(&rem, &off, p.shape[0].w, p.a_strides[0].w, p.b_strides[0].w); }
  if (RANK > 5u) { axis(&rem, &off, p.shape[1].x, p.a_strides[1].x, p.b_strides[1].x); }
  if (RANK > 6u) { axis(&rem, &off, p.shape[1].y, p.a_strides[1].y, p.b_strides[1].y); }
  if (RANK > 7u) { axis(&rem, &off, p.shape[1].z, p.a_strides[1].z, p.b_strides[1].z); }
  return off + rem * vec2<u32>(p.a_outer, p.b_outer);
}

// out[b_offset + sum(i_k * b_strides_k)] = alpha * f(a[a_offset + sum(i_k * a_strides_k)]) + beta
@compute @workgroup_size(WG)
fn unary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  if (i >= p.n) { return; }
  let o = offsets(i);
  out[o.y] = p.alpha * unary_f(OP, a[o.x]) + p.beta;
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
  let o = offsets(i);
  out[i] = binary_f(OP, a[o.x], b[o.y]);
}
