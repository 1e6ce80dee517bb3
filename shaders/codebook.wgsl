// Vector quantisation: for each spatial vector z[n, :, h, w] of an NCHW tensor, the nearest code of a
// codebook [K, D] by L2 distance (ties -> lowest index), its gather, and the commitment gradient.
//
// argmin_k |z - e_k|^2 = argmin_k (|e_k|^2 - 2 z.e_k): a tile of codes, stored as -2 e_k with |e_k|^2
// beside it, is staged in workgroup memory and every thread scores its vectors, held in registers,
// against each code of the tile. Codes are visited in increasing order and only a strictly smaller
// score replaces the best, so ties keep the lowest index.
//
// Registers are named variables, not private arrays: an array indexed by a loop counter is kept in
// memory by CPU-emulated adapters (SwiftShader) and by some GPU compilers, which made the kernel 8x
// slower there; for the same reason fixed sizes get their own entry points with constant loop bounds
// (a loop that runs zero times per code still cost 3x on SwiftShader).

struct Params {
  m: u32,       // number of vectors, N * H * W
  hw: u32,      // H * W
  d: u32,       // vector length D (= channels of z)
  k: u32,       // number of codes K
  q: u32,       // nearest (D > 16): vec4s per code in the tile, ceil(D / 16) * 4
  tk: u32,      // nearest (D > 16): codes per tile, min(128, TILE / q)
  n: u32,       // commit_grad: number of elements of z
  alpha: f32,   // commit_grad: out = alpha * g[0] * (z - zq)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read> codebook: array<f32>;
@group(0) @binding(3) var<storage, read_write> indices: array<i32>;
@group(0) @binding(4) var<storage, read_write> zq: array<f32>;
@group(0) @binding(5) var<storage, read_write> err: array<f32>;
@group(0) @binding(6) var<storage, read> zq_in: array<f32>;
@group(0) @binding(7) var<storage, read> g: array<f32>;
@group(0) @binding(8) var<storage, read_write> out: array<f32>;

override WG: u32 = 64u;

const TILE = 512u;   // vec4s of staged codes (8 KiB)
const NORMS = 256u;  // the most codes a tile holds

var<workgroup> tile: array<vec4<f32>, TILE>; // -2 e, q vec4s per code
var<workgroup> norms: array<f32, NORMS>;     // |e|^2; HUGE for padding codes past K

const HUGE = 0x1.fffffep+127f; // the largest f32: padding codes score exactly this and never win

fn cb(code: u32, d: u32) -> f32 {
  if (code < p.k && d < p.d) { return codebook[code * p.d + d]; }
  return 0.0;
}

fn code_norm(code: u32) -> f32 {
  if (code >= p.k) { return HUGE; }
  var s = 0.0;
  for (var d = 0u; d < p.d; d++) {
    let e = codebook[code * p.d + d];
    s += e * e;
  }
  return s;
}

// Stage codes [k0, k0 + count) as q vec4s each (-2 e, zero past D or K) and their norms.
fn load_tile(k0: u32, count: u32, q: u32, lid: u32) {
  for (var t = lid; t < count * q; t += WG) {
    let code = k0 + t / q;
    let d = (t % q) * 4u;
    tile[t] = -2.0 * vec4<f32>(cb(code, d), cb(code, d + 1u), cb(code, d + 2u), cb(code, d + 3u));
  }
  for (var t = lid; t < count; t += WG) { norms[t] = code_norm(k0 + t); }
}

// Offset of element (vector m, dimension 0) in z; dimension d is at + d * hw.
fn z_base(m: u32) -> u32 {
  let n = m / p.hw;
  return n * p.d * p.hw + (m - n * p.hw);
}

fn zv(m: u32, base: u32, d: u32) -> f32 {
  if (m < p.m && d < p.d) { return z[base + d * p.hw]; }
  return 0.0;
}

// Dimensions [d, d + 4) of vector m, zero past D (and past the last vector).
fn load_z4(m: u32, d: u32) -> vec4<f32> {
  let base = z_base(min(m, p.m - 1u));
  return vec4<f32>(zv(m, base, d), zv(m, base, d + 1u), zv(m, base, d + 2u), zv(m, base, d + 3u));
}

// Write the index, the gathered code and |z - e|^2 (summed directly, for an accurate loss) of vector m.
fn finish(m: u32, best: u32) {
  if (m >= p.m) { return; }
  indices[m] = i32(best);
  let base = z_base(m);
  var s = 0.0;
  for (var d = 0u; d < p.d; d++) {
    let o = base + d * p.hw;
    let e = codebook[best * p.d + d];
    let diff = z[o] - e;
    zq[o] = e;
    s += diff * diff;
  }
  err[m] = s;
}

// The kernels below differ only in how many vectors a thread holds (as named vec4 registers) and how
// many vec4s a code takes: D <= 4: 8 x 1, D <= 8: 8 x 2, D <= 16: 4 x 4, any D: 1 x (16 + a loop).
// Vector r of a thread is m0 + r * WG, m0 = group * R * WG + lid. Each staged code is loaded once per
// thread and feeds R scores: the more vectors per thread, the fewer loads per flop.

@compute @workgroup_size(WG)
fn nearest_d4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let m0 = (wid.x + wid.y * nwg.x) * 8u * WG + lid;
  let z0 = load_z4(m0, 0u);
  let z1 = load_z4(m0 + WG, 0u);
  let z2 = load_z4(m0 + 2u * WG, 0u);
  let z3 = load_z4(m0 + 3u * WG, 0u);
  let z4 = load_z4(m0 + 4u * WG, 0u);
  let z5 = load_z4(m0 + 5u * WG, 0u);
  let z6 = load_z4(m0 + 6u * WG, 0u);
  let z7 = load_z4(m0 + 7u * WG, 0u);
  var b0 = vec4<f32>(HUGE); // best scores of vectors 0-3
  var b1 = vec4<f32>(HUGE); // and 4-7
  var i0 = vec4<u32>(0u);
  var i1 = vec4<u32>(0u);
  for (var k0 = 0u; k0 < p.k; k0 += 256u) {
    load_tile(k0, 256u, 1u, lid);
    workgroupBarrier();
    for (var kk = 0u; kk < 256u; kk++) {
      let e = tile[kk];
      let nk = norms[kk];
      let code = vec4<u32>(k0 + kk);
      let s0 = nk + vec4<f32>(dot(z0, e), dot(z1, e), dot(z2, e), dot(z3, e));
      let s1 = nk + vec4<f32>(dot(z4, e), dot(z5, e), dot(z6, e), dot(z7, e));
      let t0 = s0 < b0;
      let t1 = s1 < b1;
      b0 = select(b0, s0, t0);
      b1 = select(b1, s1, t1);
      i0 = select(i0, code, t0);
      i1 = select(i1, code, t1);
    }
    workgroupBarrier();
  }
  finish(m0, i0.x);
  finish(m0 + WG, i0.y);
  finish(m0 + 2u * WG, i0.z);
  finish(m0 + 3u * WG, i0.w);
  finish(m0 + 4u * WG, i1.x);
  finish(m0 + 5u * WG, i1.y);
  finish(m0 + 6u * WG, i1.z);
  finish(m0 + 7u * WG, i1.w);
}

@compute @workgroup_size(WG)
fn nearest_d8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let m0 = (wid.x + wid.y * nwg.x) * 8u * WG + lid;
  // Vector r: dimensions 0-3 in zr, 4-7 in yr.
  let z0 = load_z4(m0, 0u);
  let y0 = load_z4(m0, 4u);
  let z1 = load_z4(m0 + WG, 0u);
  let y1 = load_z4(m0 + WG, 4u);
  let z2 = load_z4(m0 + 2u * WG, 0u);
  let y2 = load_z4(m0 + 2u * WG, 4u);
  let z3 = load_z4(m0 + 3u * WG, 0u);
  let y3 = load_z4(m0 + 3u * WG, 4u);
  let z4 = load_z4(m0 + 4u * WG, 0u);
  let y4 = load_z4(m0 + 4u * WG, 4u);
  let z5 = load_z4(m0 + 5u * WG, 0u);
  let y5 = load_z4(m0 + 5u * WG, 4u);
  let z6 = load_z4(m0 + 6u * WG, 0u);
  let y6 = load_z4(m0 + 6u * WG, 4u);
  let z7 = load_z4(m0 + 7u * WG, 0u);
  let y7 = load_z4(m0 + 7u * WG, 4u);
  var b0 = vec4<f32>(HUGE);
  var b1 = vec4<f32>(HUGE);
  var i0 = vec4<u32>(0u);
  var i1 = vec4<u32>(0u);
  for (var k0 = 0u; k0 < p.k; k0 += 256u) {
    load_tile(k0, 256u, 2u, lid);
    workgroupBarrier();
    for (var kk = 0u; kk < 256u; kk++) {
      let e = tile[2u * kk];
      let f = tile[2u * kk + 1u];
      let nk = norms[kk];
      let code = vec4<u32>(k0 + kk);
      let s0 = nk + vec4<f32>(dot(z0, e) + dot(y0, f), dot(z1, e) + dot(y1, f),
                              dot(z2, e) + dot(y2, f), dot(z3, e) + dot(y3, f));
      let s1 = nk + vec4<f32>(dot(z4, e) + dot(y4, f), dot(z5, e) + dot(y5, f),
                              dot(z6, e) + dot(y6, f), dot(z7, e) + dot(y7, f));
      let t0 = s0 < b0;
      let t1 = s1 < b1;
      b0 = select(b0, s0, t0);
      b1 = select(b1, s1, t1);
      i0 = select(i0, code, t0);
      i1 = select(i1, code, t1);
    }
    workgroupBarrier();
  }
  finish(m0, i0.x);
  finish(m0 + WG, i0.y);
  finish(m0 + 2u * WG, i0.z);
  finish(m0 + 3u * WG, i0.w);
  finish(m0 + 4u * WG, i1.x);
  finish(m0 + 5u * WG, i1.y);
  finish(m0 + 6u * WG, i1.z);
  finish(m0 + 7u * WG, i1.w);
}

@compute @workgroup_size(WG)
fn nearest_d16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let m0 = (wid.x + wid.y * nwg.x) * 4u * WG + lid;
  let m1 = m0 + WG;
  let m2 = m0 + 2u * WG;
  let m3 = m0 + 3u * WG;
  // Vector r: dimensions 0-3, 4-7, 8-11, 12-15 in ar, br, cr, dr.
  let a0 = load_z4(m0, 0u);
  let b0 = load_z4(m0, 4u);
  let c0 = load_z4(m0, 8u);
  let d0 = load_z4(m0, 12u);
  let a1 = load_z4(m1, 0u);
  let b1 = load_z4(m1, 4u);
  let c1 = load_z4(m1, 8u);
  let d1 = load_z4(m1, 12u);
  let a2 = load_z4(m2, 0u);
  let b2 = load_z4(m2, 4u);
  let c2 = load_z4(m2, 8u);
  let d2 = load_z4(m2, 12u);
  let a3 = load_z4(m3, 0u);
  let b3 = load_z4(m3, 4u);
  let c3 = load_z4(m3, 8u);
  let d3 = load_z4(m3, 12u);
  var best = vec4<f32>(HUGE);
  var bi = vec4<u32>(0u);
  for (var k0 = 0u; k0 < p.k; k0 += 128u) {
    load_tile(k0, 128u, 4u, lid);
    workgroupBarrier();
    for (var kk = 0u; kk < 128u; kk++) {
      let ea = tile[4u * kk];
      let eb = tile[4u * kk + 1u];
      let ec = tile[4u * kk + 2u];
      let ed = tile[4u * kk + 3u];
      let s = norms[kk] + vec4<f32>(dot(a0, ea) + dot(b0, eb) + dot(c0, ec) + dot(d0, ed),
                                    dot(a1, ea) + dot(b1, eb) + dot(c1, ec) + dot(d1, ed),
                                    dot(a2, ea) + dot(b2, eb) + dot(c2, ec) + dot(d2, ed),
                                    dot(a3, ea) + dot(b3, eb) + dot(c3, ec) + dot(d3, ed));
      let t = s < best;
      best = select(best, s, t);
      bi = select(bi, vec4<u32>(k0 + kk), t);
    }
    workgroupBarrier();
  }
  finish(m0, bi.x);
  finish(m1, bi.y);
  finish(m2, bi.z);
  finish(m3, bi.w);
}

// Any D up to 4 * TILE: one vector per thread, its first 16 dimensions in registers; the rest are
// re-read from z for each code (caches serve them), q = 4 * ceil(D / 16) vec4s per code, p.tk codes
// per tile.
@compute @workgroup_size(WG)
fn nearest(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let m = (wid.x + wid.y * nwg.x) * WG + lid;
  let base = z_base(min(m, p.m - 1u));
  let za = load_z4(m, 0u);
  let zb = load_z4(m, 4u);
  let zc = load_z4(m, 8u);
  let zd = load_z4(m, 12u);
  var best = HUGE;
  var bi = 0u;
  for (var k0 = 0u; k0 < p.k; k0 += p.tk) {
    load_tile(k0, p.tk, p.q, lid);
    workgroupBarrier();
    for (var kk = 0u; kk < p.tk; kk++) {
      let t = kk * p.q;
      var s = norms[kk] + dot(za, tile[t]) + dot(zb, tile[t + 1u]) + dot(zc, tile[t + 2u]) + dot(zd, tile[t + 3u]);
      for (var j = 4u; j < p.q; j++) {
        let d = 4u * j;
        s += dot(vec4<f32>(zv(m, base, d), zv(m, base, d + 1u), zv(m, base, d + 2u), zv(m, base, d + 3u)), tile[t + j]);
      }
      let better = s < best;
      best = select(best, s, better);
      bi = select(bi, k0 + kk, better);
    }
    workgroupBarrier();
  }
  finish(m, bi);
}

// Commitment-loss gradient: out = alpha * g[0] * (z - zq), with g the loss's upstream gradient.
@compute @workgroup_size(256)
fn commit_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  out[i] = p.alpha * g[0] * (z[i] - zq_in[i]);
}
