// Group norm over NCHW with the spatial axes flattened to S, optionally fused with SiLU.
// A group (n, g) is one contiguous block of L = cpg * S elements, so the forward and the dX
// backward give each block one workgroup. Statistics are two-pass (mean, then centred sums) so an
// input with a large offset keeps its variance. The channel of each element is tracked
// incrementally (threads step by WG elements: += WG / S channels and WG % S positions) so no
// loop divides per element. The mean is kept as an unevaluated sum hi + lo of two f32: for inputs
// far from zero (x ~ 100, sd ~ 1) one f32 mean would be off by up to half an ulp of 100, which
// would shift every x - mean by ~4e-6, while (x - hi) is exact there and lo carries the rest.
// Each entry has a vec4 twin (suffix 4) used when S % 4 == 0, so a vec4 never straddles two
// channels; SwiftShader moves vec4 arrays about twice as fast as f32 ones.

struct Params {
  blocks: u32,    // forward / dX: N * groups; dGamma: C
  groups: u32,
  cpg: u32,       // channels per group
  spatial: u32,   // S
  channels: u32,  // C
  batch: u32,     // N
  eps: f32,
  _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read> saved: array<vec4<f32>>;        // (mean hi, mean lo, rstd, 0) per (n, g)
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
@group(0) @binding(7) var<storage, read_write> stats: array<vec4<f32>>;  // written by the forward
@group(0) @binding(8) var<storage, read_write> dx: array<f32>;
@group(0) @binding(9) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(10) var<storage, read_write> dbeta: array<f32>;
// The same arrays as vec4s, for the vec4 entries.
@group(0) @binding(11) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(12) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(13) var<storage, read_write> y4: array<vec4<f32>>;
@group(0) @binding(14) var<storage, read_write> dx4: array<vec4<f32>>;

override WG: u32 = 64u;  // threads per block: any size (kernels/groupnorm.ts picks it per adapter)
override SILU: bool = false;

// One array per reduction, and every thread adds up all WG partials itself (in the same order, so
// all get the same value): one barrier per reduction instead of log2(WG) + 1. On SwiftShader every
// barrier is a fibre switch per 4-lane subgroup: with 256-thread tree reductions the forward at
// [8, 64, 32, 32] took ~450 ms, now ~10 ms with 4 threads. On a GPU, WG broadcast reads are cheap.
var<workgroup> red_a: array<vec2<f32>, WG>;
var<workgroup> red_b: array<vec2<f32>, WG>;

fn sum_a(lid: u32, v: vec2<f32>) -> vec2<f32> {
  red_a[lid] = v;
  workgroupBarrier();
  var s = vec2<f32>(0.0);
  for (var i = 0u; i < WG; i++) { s += red_a[i]; }
  return s;
}

fn sum_b(lid: u32, v: vec2<f32>) -> vec2<f32> {
  red_b[lid] = v;
  workgroupBarrier();
  var s = vec2<f32>(0.0);
  for (var i = 0u; i < WG; i++) { s += red_b[i]; }
  return s;
}

fn block_id(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { return wid.x + wid.y * nwg.x; }

// z -> (SiLU(z) or z, d/dz of it)
fn act(z: f32) -> vec2<f32> {
  if (SILU) {
    let s = 1.0 / (1.0 + exp(-z));
    return vec2<f32>(z * s, s * (1.0 + z * (1.0 - s)));
  }
  return vec2<f32>(z, 1.0);
}

fn act4(z: vec4<f32>) -> vec4<f32> {
  if (SILU) { return z / (1.0 + exp(-z)); }
  return z;
}

fn dact4(z: vec4<f32>) -> vec4<f32> {
  if (SILU) {
    let s = 1.0 / (1.0 + exp(-z));
    return s * (1.0 + z * (1.0 - s));
  }
  return vec4<f32>(1.0);
}

fn hsum(v: vec4<f32>) -> f32 { return (v.x + v.y) + (v.z + v.w); }

// Walks (outer, inner) = divmod(i, n) along i = lid, lid + WG, ... without dividing in the loop.
struct Walk { outer: u32, inner: u32, q: u32, r: u32, n: u32 }

fn walk_start(lid: u32, n: u32) -> Walk {
  return Walk(lid / n, lid % n, WG / n, WG % n, n);
}

fn walk_next(w: ptr<function, Walk>) {
  let s = (*w).inner + (*w).r; // < 2n, so one wrap suffices
  let wrap = s >= (*w).n;
  (*w).inner = select(s, s - (*w).n, wrap);
  (*w).outer += (*w).q + select(0u, 1u, wrap);
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let blk = block_id(wid, nwg);
  // blk is uniform across the workgroup, so returning keeps the barriers in uniform control flow.
  if (blk >= p.blocks) { return; }
  let L = p.cpg * p.spatial;
  let base = blk * L;
  let inv_l = 1.0 / f32(L);

  var acc = 0.0;
  for (var i = lid; i < L; i += WG) { acc += x[base + i]; }
  let mean0 = sum_a(lid, vec2<f32>(acc, 0.0)).x * inv_l;

  // Centred sums; sum(d) corrects the rounding of mean0 (the "corrected two-pass" variance).
  var c = vec2<f32>(0.0);
  for (var i = lid; i < L; i += WG) {
    let d = x[base + i] - mean0;
    c += vec2<f32>(d, d * d);
  }
  let s = sum_b(lid, c);
  let lo = s.x * inv_l;
  let variance = max((s.y - s.x * lo) * inv_l, 0.0);
  let rstd = inverseSqrt(variance + p.eps);
  if (lid == 0u) { stats[blk] = vec4<f32>(mean0, lo, rstd, 0.0); }

  let c0 = (blk % p.groups) * p.cpg;
  var w = walk_start(lid, p.spatial);
  for (var i = lid; i < L; i += WG) {
    let ch = c0 + w.outer;
    let z = ((x[base + i] - mean0) - lo) * (rstd * gamma[ch]) + beta[ch];
    y[base + i] = act(z).x;
    walk_next(&w);
  }
}

// dX for one (n, g): with xhat = (x - mean) * rstd, dz = dy * act'(z), dxhat = dz * gamma,
// dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) over the group.
@compute @workgroup_size(WG)
fn backward_dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let blk = block_id(wid, nwg);
  if (blk >= p.blocks) { return; }
  let L = p.cpg * p.spatial;
  let base = blk * L;
  let st = saved[blk];
  let rstd = st.z;
  let c0 = (blk % p.groups) * p.cpg;

  var acc = vec2<f32>(0.0);
  var w = walk_start(lid, p.spatial);
  for (var i = lid; i < L; i += WG) {
    let ch = c0 + w.outer;
    let g = gamma[ch];
    let xh = ((x[base + i] - st.x) - st.y) * rstd;
    let dxh = dy[base + i] * act(xh * g + beta[ch]).y * g;
    acc += vec2<f32>(dxh, dxh * xh);
    walk_next(&w);
  }
  let m = sum_a(lid, acc) / f32(L);

  w = walk_start(lid, p.spatial);
  for (var i = lid; i < L; i += WG) {
    let ch = c0 + w.outer;
    let g = gamma[ch];
    let xh = ((x[base + i] - st.x) - st.y) * rstd;
    let dxh = dy[base + i] * act(xh * g + beta[ch]).y * g;
    dx[base + i] = rstd * (dxh - m.x - xh * m.y);
    walk_next(&w);
  }
}

// dGamma[c] = sum over (n, s) of dz * xhat, dBeta[c] = sum of dz: one workgroup per channel.
@compute @workgroup_size(WG)
fn backward_dgamma(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
  let ch = block_id(wid, nwg);
  if (ch >= p.blocks) { return; }
  let S = p.spatial;
  let total = p.batch * S;
  let g = gamma[ch];
  let b = beta[ch];
  let grp = ch / p.cpg;
  let nstride = p.channels * S;

  var acc = vec2<f32>(0.0);
  var w = walk_start(lid, p.spatial); // outer = n, inner = s
  for (var j = lid; j < total; j += WG) {
    let st = saved[w.outer * p.groups + grp];
    let k = w.outer * nstride + ch * S + w.inner;
    let xh = ((x[k] - st.x) - st.y) * st.z;
    let dz = dy[k] * act(xh * g + b).y;
    acc += vec2<f32>(dz * xh, dz);
    walk_next(&w);
  }
  let s = sum_a(lid, acc);
  if (lid == 0u) {
    dgamma[ch] = s.x;
    dbeta[ch] = s.y;
  }
}

// ---------------------------------------------------------------- vec4 twins (S % 4 == 0)

@compute @workgroup_size(WG)
fn forward4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let blk = block_id(wid, nwg);
  if (blk >= p.blocks) { return; }
  let s4 = p.spatial / 4u;
  let L4 = p.cpg * s4;
  let base = blk * L4;
  let inv_l = 1.0 / f32(4u * L4);

  var acc = vec4<f32>(0.0);
  for (var i = lid; i < L4; i += WG) { acc += x4[base + i]; }
  let mean0 = sum_a(lid, vec2<f32>(hsum(acc), 0.0)).x * inv_l;

  var c1 = vec4<f32>(0.0);
  var c2 = vec4<f32>(0.0);
  for (var i = lid; i < L4; i += WG) {
    let d = x4[base + i] - mean0;
    c1 += d;
    c2 += d * d;
  }
  let s = sum_b(lid, vec2<f32>(hsum(c1), hsum(c2)));
  let lo = s.x * inv_l;
  let variance = max((s.y - s.x * lo) * inv_l, 0.0);
  let rstd = inverseSqrt(variance + p.eps);
  if (lid == 0u) { stats[blk] = vec4<f32>(mean0, lo, rstd, 0.0); }

  let c0 = (blk % p.groups) * p.cpg;
  var w = walk_start(lid, s4);
  for (var i = lid; i < L4; i += WG) {
    let ch = c0 + w.outer;
    y4[base + i] = act4(((x4[base + i] - mean0) - lo) * (rstd * gamma[ch]) + beta[ch]);
    walk_next(&w);
  }
}

@compute @workgroup_size(WG)
fn backward_dx4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let blk = block_id(wid, nwg);
  if (blk >= p.blocks) { return; }
  let s4 = p.spatial / 4u;
  let L4 = p.cpg * s4;
  let base = blk * L4;
  let st = saved[blk];
  let rstd = st.z;
  let c0 = (blk % p.groups) * p.cpg;

  var a1 = vec4<f32>(0.0);
  var a2 = vec4<f32>(0.0);
  var w = walk_start(lid, s4);
  for (var i = lid; i < L4; i += WG) {
    let ch = c0 + w.outer;
    let g = gamma[ch];
    let xh = ((x4[base + i] - st.x) - st.y) * rstd;
    let dxh = dy4[base + i] * dact4(xh * g + beta[ch]) * g;
    a1 += dxh;
    a2 += dxh * xh;
    walk_next(&w);
  }
  let m = sum_a(lid, vec2<f32>(hsum(a1), hsum(a2))) / f32(4u * L4);

  w = walk_start(lid, s4);
  for (var i = lid; i < L4; i += WG) {
    let ch = c0 + w.outer;
    let g = gamma[ch];
    let xh = ((x4[base + i] - st.x) - st.y) * rstd;
    let dxh = dy4[base + i] * dact4(xh * g + beta[ch]) * g;
    dx4[base + i] = rstd * (dxh - m.x - xh * m.y);
    walk_next(&w);
  }
}

@compute @workgroup_size(WG)
fn backward_dgamma4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
  let ch = block_id(wid, nwg);
  if (ch >= p.blocks) { return; }
  let s4 = p.spatial / 4u;
  let total = p.batch * s4;
  let g = gamma[ch];
  let b = beta[ch];
  let grp = ch / p.cpg;
  let nstride = p.channels * s4;

  var a1 = vec4<f32>(0.0);
  var a2 = vec4<f32>(0.0);
  var w = walk_start(lid, s4); // outer = n, inner = s / 4
  for (var j = lid; j < total; j += WG) {
    let st = saved[w.outer * p.groups + grp];
    let k = w.outer * nstride + ch * s4 + w.inner;
    let xh = ((x4[k] - st.x) - st.y) * st.z;
    let dz = dy4[k] * dact4(xh * g + b);
    a1 += dz * xh;
    a2 += dz;
    walk_next(&w);
  }
  let s = sum_a(lid, vec2<f32>(hsum(a1), hsum(a2)));
  if (lid == 0u) {
    dgamma[ch] = s.x;
    dbeta[ch] = s.y;
  }
}
