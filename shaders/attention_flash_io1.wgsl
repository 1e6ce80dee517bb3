// Global memory access for the flash-attention kernels (attention_flash.wgsl) when D is not a multiple
// of 4: rows are not 16-byte aligned, so the tensors bind as f32 arrays and a vec4 is gathered from
// scalars, zero past D (reads stay inside the row). Same functions as attention_flash_io4.wgsl.

@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;
@group(0) @binding(6) var<storage, read> go: array<f32>;
@group(0) @binding(7) var<storage, read_write> delta: array<f32>;
@group(0) @binding(8) var<storage, read_write> dq: array<f32>;
@group(0) @binding(9) var<storage, read_write> dk: array<f32>;
@group(0) @binding(10) var<storage, read_write> dvv: array<f32>;

// (One function per buffer: WGSL core has no pointers to storage as function parameters.)
fn ld_q(row: u32, c: u32) -> vec4<f32> {
  let i = row * p.d + 4u * c;
  let n = p.d - 4u * c;
  return vec4(q[i], select(0.0, q[i + min(1u, n - 1u)], n > 1u), select(0.0, q[i + min(2u, n - 1u)], n > 2u), select(0.0, q[i + min(3u, n - 1u)], n > 3u));
}
fn ld_k(row: u32, c: u32) -> vec4<f32> {
  let i = row * p.d + 4u * c;
  let n = p.d - 4u * c;
  return vec4(k[i], select(0.0, k[i + min(1u, n - 1u)], n > 1u), select(0.0, k[i + min(2u, n - 1u)], n > 2u), select(0.0, k[i + min(3u, n - 1u)], n > 3u));
}
fn ld_v(row: u32, c: u32) -> vec4<f32> {
  let i = row * p.d + 4u * c;
  let n = p.d - 4u * c;
  return vec4(v[i], select(0.0, v[i + min(1u, n - 1u)], n > 1u), select(0.0, v[i + min(2u, n - 1u)], n > 2u), select(0.0, v[i + min(3u, n - 1u)], n > 3u));
}
fn ld_o(row: u32, c: u32) -> vec4<f32> {
  let i = row * p.d + 4u * c;
  let n = p.d - 4u * c;
  return vec4(o[i], select(0.0, o[i + min(1u, n - 1u)], n > 1u), select(0.0, o[i + min(2u, n - 1u)], n > 2u), select(0.0, o[i + min(3u, n - 1u)], n > 3u));
}
fn ld_go(row: u32, c: u32) -> vec4<f32> {
  let i = row * p.d + 4u * c;
  let n = p.d - 4u * c;
  return vec4(go[i], select(0.0, go[i + min(1u, n - 1u)], n > 1u), select(0.0, go[i + min(2u, n - 1u)], n > 2u), select(0.0, go[i + min(3u, n - 1u)], n > 3u));
}
fn st_o(row: u32, c: u32, x: vec4<f32>) {
  let i = row * p.d + 4u * c;
  let n = p.d - 4u * c;
  o[i] = x.x;
  if (n > 1u) { o[i + 1u] = x.y; }
  if (n > 2u) { o[i + 2u] = x.z; }
  if (n > 3u) { o[i + 3u] = x.w; }
}
fn st_dq(row: u32, c: u32, x: vec4<f32>) {
  let i = row * p.d + 4u * c;
  let n = p.d - 4u * c;
  dq[i] = x.x;
  if (n > 1u) { dq[i + 1u] = x.y; }
  if (n > 2u) { dq[i + 2u] = x.z; }
  if (n > 3u) { dq[i + 3u] = x.w; }
}
fn st_dk(row: u32, c: u32, x: vec4<f32>) {
  let i = row * p.d + 4u * c;
  let n = p.d - 4u * c;
  dk[i] = x.x;
  if (n > 1u) { dk[i + 1u] = x.y; }
  if (n > 2u) { dk[i + 2u] = x.z; }
  if (n > 3u) { dk[i + 3u] = x.w; }
}
fn st_dv(row: u32, c: u32, x: vec4<f32>) {
  let i = row * p.d + 4u * c;
  let n = p.d - 4u * c;
  dvv[i] = x.x;
  if (n > 1u) { dvv[i + 1u] = x.y; }
  if (n > 2u) { dvv[i + 2u] = x.z; }
  if (n > 3u) { dvv[i + 3u] = x.w; }
}
