// Attention, softmax(q kᵀ · scale) v, tiled with an online softmax (FlashAttention-2): the Lq x Lk
// score matrix never touches global memory, forward or backward.
//
// q, o, do, dq: [BH, Lq, D]; k, v, dk, dv: [BH, Lk, D]; lse, delta: [BH, Lq]. All contiguous.
//
// Work layout: an invocation owns 4 rows (query rows in `forward` and `grad_q`, key rows in
// `grad_kv`): rows lid + r·WG of its workgroup's block of 4·WG. It keeps their vectors and
// accumulators in private arrays; the workgroup streams tiles of the other side's rows through
// workgroup memory. The inner loops take 4 held rows x 4 tile rows at a time, so each vec4 read
// (from a tile or a private array) serves four dot products or four multiply-adds: on a software
// adapter (SwiftShader) every such dynamically indexed read is a per-lane gather, and the reads,
// not the arithmetic, set the speed. Per-row statistics of the 4 held rows travel as one vec4.
// Scores are kept in base 2 (scale·log2 e is folded into the held row), so exp2 does the
// exponentials; lse is stored in natural log.
//
// Rows are zero-padded to a multiple of 4 components (D need not be a multiple of 4) and tiles to a
// multiple of 4 rows; padded tile rows are masked out of the softmax, padded components add zeros.

struct Params {
  lq: u32,
  lk: u32,
  d: u32,
  dv: u32,        // ceil(d / 4): vec4s per row
  scale: f32,     // the softmax scale
  scale2: f32,    // scale · log2(e)
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;
@group(0) @binding(6) var<storage, read> go: array<f32>;            // dL/do
@group(0) @binding(7) var<storage, read_write> delta: array<f32>;   // rowsum(do ∘ o)
@group(0) @binding(8) var<storage, read_write> dq: array<f32>;
@group(0) @binding(9) var<storage, read_write> dk: array<f32>;
@group(0) @binding(10) var<storage, read_write> dvv: array<f32>;

override WG: u32 = 16u;      // invocations per workgroup; a workgroup owns 4·WG rows
override BT: u32 = 32u;      // rows per streamed tile (multiple of 4)
override DVMAX: u32 = 16u;   // vec4s per row the tiles hold: D <= 4 * DVMAX
const DV_CAP = 32u;          // private rows: D <= 128 (MAX_HEAD_DIM in kernels/attention.ts)
const BT4_CAP = 16u;         // BT <= 64 (private arrays of per-tile scores)
const NEG = -3.0e38;         // finite "minus infinity": exp2(NEG - m) is 0 and NEG - NEG is not NaN
const LN2 = 0.6931471805599453;
const LOG2E = 1.4426950408889634;

var<workgroup> ta: array<vec4<f32>, BT * DVMAX>;   // K (forward, grad_q) or Q (grad_kv) tile
var<workgroup> tb: array<vec4<f32>, BT * DVMAX>;   // V (forward, grad_q) or dO (grad_kv) tile

// Component c4 (a vec4 index) of the row starting at element `base`; components past D are 0
// (indices are clamped into the row, so nothing past it is read).
fn ld_q(base: u32, c4: u32) -> vec4<f32> {
  let i = base + 4u * c4;
  if (4u * c4 + 4u <= p.d) { return vec4(q[i], q[i + 1u], q[i + 2u], q[i + 3u]); }
  let n = p.d - 4u * c4;
  return vec4(q[i], select(0.0, q[i + min(1u, n - 1u)], n > 1u), select(0.0, q[i + min(2u, n - 1u)], n > 2u), 0.0);
}
fn ld_k(base: u32, c4: u32) -> vec4<f32> {
  let i = base + 4u * c4;
  if (4u * c4 + 4u <= p.d) { return vec4(k[i], k[i + 1u], k[i + 2u], k[i + 3u]); }
  let n = p.d - 4u * c4;
  return vec4(k[i], select(0.0, k[i + min(1u, n - 1u)], n > 1u), select(0.0, k[i + min(2u, n - 1u)], n > 2u), 0.0);
}
fn ld_v(base: u32, c4: u32) -> vec4<f32> {
  let i = base + 4u * c4;
  if (4u * c4 + 4u <= p.d) { return vec4(v[i], v[i + 1u], v[i + 2u], v[i + 3u]); }
  let n = p.d - 4u * c4;
  return vec4(v[i], select(0.0, v[i + min(1u, n - 1u)], n > 1u), select(0.0, v[i + min(2u, n - 1u)], n > 2u), 0.0);
}
fn ld_o(base: u32, c4: u32) -> vec4<f32> {
  let i = base + 4u * c4;
  if (4u * c4 + 4u <= p.d) { return vec4(o[i], o[i + 1u], o[i + 2u], o[i + 3u]); }
  let n = p.d - 4u * c4;
  return vec4(o[i], select(0.0, o[i + min(1u, n - 1u)], n > 1u), select(0.0, o[i + min(2u, n - 1u)], n > 2u), 0.0);
}
fn ld_go(base: u32, c4: u32) -> vec4<f32> {
  let i = base + 4u * c4;
  if (4u * c4 + 4u <= p.d) { return vec4(go[i], go[i + 1u], go[i + 2u], go[i + 3u]); }
  let n = p.d - 4u * c4;
  return vec4(go[i], select(0.0, go[i + min(1u, n - 1u)], n > 1u), select(0.0, go[i + min(2u, n - 1u)], n > 2u), 0.0);
}

fn hsum(x: vec4<f32>) -> f32 { return (x.x + x.y) + (x.z + x.w); }
fn hmax(x: vec4<f32>) -> f32 { return max(max(x.x, x.y), max(x.z, x.w)); }

// True where tile row 4·j4 + t exists (t = 0..3), given n rows in the tile.
fn live4(j4: u32, n: u32) -> vec4<bool> { return vec4(4u * j4) + vec4(0u, 1u, 2u, 3u) < vec4(n); }

// Load rows [r0, r0 + n) of K and V (forward, grad_q) for head bh into the tiles, zero-filling up to
// a multiple of 4 rows. (Two functions, not one with a flag: a binding a function names counts as
// used by every entry point that calls it.)
fn load_kv(bh: u32, r0: u32, n: u32, lid: u32) {
  let rows = (n + 3u) & ~3u;
  for (var e = lid; e < rows * p.dv; e += WG) {
    let j = e / p.dv;
    let c = e - j * p.dv;
    let t = j * DVMAX + c;
    if (j < n) {
      let base = (bh * p.lk + r0 + j) * p.d;
      ta[t] = ld_k(base, c);
      tb[t] = ld_v(base, c);
    } else {
      ta[t] = vec4(0.0);
      tb[t] = vec4(0.0);
    }
  }
}

// Rows [r0, r0 + n) of Q and dO (grad_kv), likewise.
fn load_qg(bh: u32, r0: u32, n: u32, lid: u32) {
  let rows = (n + 3u) & ~3u;
  for (var e = lid; e < rows * p.dv; e += WG) {
    let j = e / p.dv;
    let c = e - j * p.dv;
    let t = j * DVMAX + c;
    if (j < n) {
      let base = (bh * p.lq + r0 + j) * p.d;
      ta[t] = ld_q(base, c);
      tb[t] = ld_go(base, c);
    } else {
      ta[t] = vec4(0.0);
      tb[t] = vec4(0.0);
    }
  }
}

// Write x (vec4 index c4 of the row at `base`) into the first D components of that row of an output.
fn st_o(base: u32, c4: u32, x: vec4<f32>) {
  let at = base + 4u * c4;
  let n = p.d - 4u * c4;
  o[at] = x.x;
  if (n > 1u) { o[at + 1u] = x.y; }
  if (n > 2u) { o[at + 2u] = x.z; }
  if (n > 3u) { o[at + 3u] = x.w; }
}
fn st_dq(base: u32, c4: u32, x: vec4<f32>) {
  let at = base + 4u * c4;
  let n = p.d - 4u * c4;
  dq[at] = x.x;
  if (n > 1u) { dq[at + 1u] = x.y; }
  if (n > 2u) { dq[at + 2u] = x.z; }
  if (n > 3u) { dq[at + 3u] = x.w; }
}
fn st_dk(base: u32, c4: u32, x: vec4<f32>) {
  let at = base + 4u * c4;
  let n = p.d - 4u * c4;
  dk[at] = x.x;
  if (n > 1u) { dk[at + 1u] = x.y; }
  if (n > 2u) { dk[at + 2u] = x.z; }
  if (n > 3u) { dk[at + 3u] = x.w; }
}
fn st_dv(base: u32, c4: u32, x: vec4<f32>) {
  let at = base + 4u * c4;
  let n = p.d - 4u * c4;
  dvv[at] = x.x;
  if (n > 1u) { dvv[at + 1u] = x.y; }
  if (n > 2u) { dvv[at + 2u] = x.z; }
  if (n > 3u) { dvv[at + 3u] = x.w; }
}

// ------------------------------------------------------------ forward

// o = softmax(q kᵀ · scale) v and lse = log(sum(exp(q kᵀ · scale))) per query row.
// Grid: (ceil(Lq / (4·WG)), BH).
@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let bh = wid.y;
  let i0 = wid.x * 4u * WG + lid;
  let last = p.lq - 1u;   // rows past Lq shadow the last row and store nothing
  let r0 = (bh * p.lq + min(i0, last)) * p.d;
  let r1 = (bh * p.lq + min(i0 + WG, last)) * p.d;
  let r2 = (bh * p.lq + min(i0 + 2u * WG, last)) * p.d;
  let r3 = (bh * p.lq + min(i0 + 3u * WG, last)) * p.d;
  var q0: array<vec4<f32>, DV_CAP>;
  var q1: array<vec4<f32>, DV_CAP>;
  var q2: array<vec4<f32>, DV_CAP>;
  var q3: array<vec4<f32>, DV_CAP>;
  var o0: array<vec4<f32>, DV_CAP>;
  var o1: array<vec4<f32>, DV_CAP>;
  var o2: array<vec4<f32>, DV_CAP>;
  var o3: array<vec4<f32>, DV_CAP>;
  for (var c = 0u; c < p.dv; c++) {
    q0[c] = ld_q(r0, c) * p.scale2;
    q1[c] = ld_q(r1, c) * p.scale2;
    q2[c] = ld_q(r2, c) * p.scale2;
    q3[c] = ld_q(r3, c) * p.scale2;
  }
  // Scores, then probabilities, of each row for the current tile: four keys per vec4.
  var s0: array<vec4<f32>, BT4_CAP>;
  var s1: array<vec4<f32>, BT4_CAP>;
  var s2: array<vec4<f32>, BT4_CAP>;
  var s3: array<vec4<f32>, BT4_CAP>;
  var m = vec4(NEG);   // running maximum of the 4 rows (base-2 units)
  var l = vec4(0.0);   // running sum of exp2(s - m)
  for (var k0 = 0u; k0 < p.lk; k0 += BT) {
    let n = min(BT, p.lk - k0);
    let n4 = (n + 3u) / 4u;
    workgroupBarrier();   // everyone is done with the previous tile
    load_kv(bh, k0, n, lid);
    workgroupBarrier();

    // 4 rows x 4 keys per step: each vec4 loaded serves four dot products.
    var mt = m;
    for (var j4 = 0u; j4 < n4; j4++) {
      let b = 4u * j4 * DVMAX;
      var a0 = vec4(0.0);
      var a1 = vec4(0.0);
      var a2 = vec4(0.0);
      var a3 = vec4(0.0);
      for (var c = 0u; c < p.dv; c++) {
        let y0 = ta[b + c];
        let y1 = ta[b + DVMAX + c];
        let y2 = ta[b + 2u * DVMAX + c];
        let y3 = ta[b + 3u * DVMAX + c];
        let x0 = q0[c];
        a0 += vec4(dot(x0, y0), dot(x0, y1), dot(x0, y2), dot(x0, y3));
        let x1 = q1[c];
        a1 += vec4(dot(x1, y0), dot(x1, y1), dot(x1, y2), dot(x1, y3));
        let x2 = q2[c];
        a2 += vec4(dot(x2, y0), dot(x2, y1), dot(x2, y2), dot(x2, y3));
        let x3 = q3[c];
        a3 += vec4(dot(x3, y0), dot(x3, y1), dot(x3, y2), dot(x3, y3));
      }
      let live = live4(j4, n);
      a0 = select(vec4(NEG), a0, live);
      a1 = select(vec4(NEG), a1, live);
      a2 = select(vec4(NEG), a2, live);
      a3 = select(vec4(NEG), a3, live);
      s0[j4] = a0;
      s1[j4] = a1;
      s2[j4] = a2;
      s3[j4] = a3;
      mt = max(mt, vec4(hmax(a0), hmax(a1), hmax(a2), hmax(a3)));
    }

    // Rescale what was accumulated under the old maximum, then add this tile's p · v.
    let alpha = exp2(m - mt);
    var ls = vec4(0.0);
    for (var j4 = 0u; j4 < n4; j4++) {
      let e0 = exp2(s0[j4] - mt.x);
      let e1 = exp2(s1[j4] - mt.y);
      let e2 = exp2(s2[j4] - mt.z);
      let e3 = exp2(s3[j4] - mt.w);
      s0[j4] = e0;
      s1[j4] = e1;
      s2[j4] = e2;
      s3[j4] = e3;
      ls += vec4(hsum(e0), hsum(e1), hsum(e2), hsum(e3));
    }
    l = l * alpha + ls;
    m = mt;
    for (var c = 0u; c < p.dv; c++) {
      var a0 = o0[c] * alpha.x;
      var a1 = o1[c] * alpha.y;
      var a2 = o2[c] * alpha.z;
      var a3 = o3[c] * alpha.w;
      for (var j4 = 0u; j4 < n4; j4++) {
        let t = 4u * j4 * DVMAX + c;
        let y0 = tb[t];
        let y1 = tb[t + DVMAX];
        let y2 = tb[t + 2u * DVMAX];
        let y3 = tb[t + 3u * DVMAX];
        let e0 = s0[j4];
        a0 += e0.x * y0 + e0.y * y1 + e0.z * y2 + e0.w * y3;
        let e1 = s1[j4];
        a1 += e1.x * y0 + e1.y * y1 + e1.z * y2 + e1.w * y3;
        let e2 = s2[j4];
        a2 += e2.x * y0 + e2.y * y1 + e2.z * y2 + e2.w * y3;
        let e3 = s3[j4];
        a3 += e3.x * y0 + e3.y * y1 + e3.z * y2 + e3.w * y3;
      }
      o0[c] = a0;
      o1[c] = a1;
      o2[c] = a2;
      o3[c] = a3;
    }
  }

  let inv = 1.0 / l;
  let lse4 = (m + log2(l)) * LN2;
  if (i0 < p.lq) {
    for (var c = 0u; c < p.dv; c++) { st_o(r0, c, o0[c] * inv.x); }
    lse[bh * p.lq + i0] = lse4.x;
  }
  if (i0 + WG < p.lq) {
    for (var c = 0u; c < p.dv; c++) { st_o(r1, c, o1[c] * inv.y); }
    lse[bh * p.lq + i0 + WG] = lse4.y;
  }
  if (i0 + 2u * WG < p.lq) {
    for (var c = 0u; c < p.dv; c++) { st_o(r2, c, o2[c] * inv.z); }
    lse[bh * p.lq + i0 + 2u * WG] = lse4.z;
  }
  if (i0 + 3u * WG < p.lq) {
    for (var c = 0u; c < p.dv; c++) { st_o(r3, c, o3[c] * inv.w); }
    lse[bh * p.lq + i0 + 3u * WG] = lse4.w;
  }
}

// ------------------------------------------------------------ backward

// dq_i = scale · sum_j ds_ij k_j with ds_ij = p_ij (do_i · v_j - delta_i), p recomputed from lse.
// Also writes delta_i = do_i · o_i, which grad_kv needs (so this runs first). Grid as forward.
@compute @workgroup_size(WG)
fn grad_q(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let bh = wid.y;
  let i0 = wid.x * 4u * WG + lid;
  let last = p.lq - 1u;
  let n0 = bh * p.lq + min(i0, last);   // row indices (into lse, delta) of the 4 rows
  let n1 = bh * p.lq + min(i0 + WG, last);
  let n2 = bh * p.lq + min(i0 + 2u * WG, last);
  let n3 = bh * p.lq + min(i0 + 3u * WG, last);
  let r0 = n0 * p.d;
  let r1 = n1 * p.d;
  let r2 = n2 * p.d;
  let r3 = n3 * p.d;
  var q0: array<vec4<f32>, DV_CAP>;
  var q1: array<vec4<f32>, DV_CAP>;
  var q2: array<vec4<f32>, DV_CAP>;
  var q3: array<vec4<f32>, DV_CAP>;
  var g0: array<vec4<f32>, DV_CAP>;
  var g1: array<vec4<f32>, DV_CAP>;
  var g2: array<vec4<f32>, DV_CAP>;
  var g3: array<vec4<f32>, DV_CAP>;
  var d0: array<vec4<f32>, DV_CAP>;
  var d1: array<vec4<f32>, DV_CAP>;
  var d2: array<vec4<f32>, DV_CAP>;
  var d3: array<vec4<f32>, DV_CAP>;
  var t0 = vec4(0.0);
  var t1 = vec4(0.0);
  var t2 = vec4(0.0);
  var t3 = vec4(0.0);
  for (var c = 0u; c < p.dv; c++) {
    q0[c] = ld_q(r0, c) * p.scale2;
    q1[c] = ld_q(r1, c) * p.scale2;
    q2[c] = ld_q(r2, c) * p.scale2;
    q3[c] = ld_q(r3, c) * p.scale2;
    let h0 = ld_go(r0, c);
    let h1 = ld_go(r1, c);
    let h2 = ld_go(r2, c);
    let h3 = ld_go(r3, c);
    g0[c] = h0;
    g1[c] = h1;
    g2[c] = h2;
    g3[c] = h3;
    t0 += h0 * ld_o(r0, c);
    t1 += h1 * ld_o(r1, c);
    t2 += h2 * ld_o(r2, c);
    t3 += h3 * ld_o(r3, c);
  }
  let dl = vec4(hsum(t0), hsum(t1), hsum(t2), hsum(t3));   // delta of the 4 rows
  let l2 = vec4(lse[n0], lse[n1], lse[n2], lse[n3]) * LOG2E;
  // ds of each row for the current tile, four keys per vec4.
  var s0: array<vec4<f32>, BT4_CAP>;
  var s1: array<vec4<f32>, BT4_CAP>;
  var s2: array<vec4<f32>, BT4_CAP>;
  var s3: array<vec4<f32>, BT4_CAP>;
  for (var k0 = 0u; k0 < p.lk; k0 += BT) {
    let n = min(BT, p.lk - k0);
    let n4 = (n + 3u) / 4u;
    workgroupBarrier();
    load_kv(bh, k0, n, lid);
    workgroupBarrier();

    for (var j4 = 0u; j4 < n4; j4++) {
      let b = 4u * j4 * DVMAX;
      // Scores q · k (base 2) ...
      var a0 = vec4(0.0);
      var a1 = vec4(0.0);
      var a2 = vec4(0.0);
      var a3 = vec4(0.0);
      for (var c = 0u; c < p.dv; c++) {
        let y0 = ta[b + c];
        let y1 = ta[b + DVMAX + c];
        let y2 = ta[b + 2u * DVMAX + c];
        let y3 = ta[b + 3u * DVMAX + c];
        let x0 = q0[c];
        a0 += vec4(dot(x0, y0), dot(x0, y1), dot(x0, y2), dot(x0, y3));
        let x1 = q1[c];
        a1 += vec4(dot(x1, y0), dot(x1, y1), dot(x1, y2), dot(x1, y3));
        let x2 = q2[c];
        a2 += vec4(dot(x2, y0), dot(x2, y1), dot(x2, y2), dot(x2, y3));
        let x3 = q3[c];
        a3 += vec4(dot(x3, y0), dot(x3, y1), dot(x3, y2), dot(x3, y3));
      }
      // ... and dp = do · v.
      var e0 = vec4(0.0);
      var e1 = vec4(0.0);
      var e2 = vec4(0.0);
      var e3 = vec4(0.0);
      for (var c = 0u; c < p.dv; c++) {
        let y0 = tb[b + c];
        let y1 = tb[b + DVMAX + c];
        let y2 = tb[b + 2u * DVMAX + c];
        let y3 = tb[b + 3u * DVMAX + c];
        let x0 = g0[c];
        e0 += vec4(dot(x0, y0), dot(x0, y1), dot(x0, y2), dot(x0, y3));
        let x1 = g1[c];
        e1 += vec4(dot(x1, y0), dot(x1, y1), dot(x1, y2), dot(x1, y3));
        let x2 = g2[c];
        e2 += vec4(dot(x2, y0), dot(x2, y1), dot(x2, y2), dot(x2, y3));
        let x3 = g3[c];
        e3 += vec4(dot(x3, y0), dot(x3, y1), dot(x3, y2), dot(x3, y3));
      }
      let live = live4(j4, n);
      let z = vec4(0.0);
      s0[j4] = select(z, exp2(a0 - l2.x), live) * (e0 - dl.x);
      s1[j4] = select(z, exp2(a1 - l2.y), live) * (e1 - dl.y);
      s2[j4] = select(z, exp2(a2 - l2.z), live) * (e2 - dl.z);
      s3[j4] = select(z, exp2(a3 - l2.w), live) * (e3 - dl.w);
    }
    for (var c = 0u; c < p.dv; c++) {
      var a0 = d0[c];
      var a1 = d1[c];
      var a2 = d2[c];
      var a3 = d3[c];
      for (var j4 = 0u; j4 < n4; j4++) {
        let t = 4u * j4 * DVMAX + c;
        let y0 = ta[t];
        let y1 = ta[t + DVMAX];
        let y2 = ta[t + 2u * DVMAX];
        let y3 = ta[t + 3u * DVMAX];
        let w0 = s0[j4];
        a0 += w0.x * y0 + w0.y * y1 + w0.z * y2 + w0.w * y3;
        let w1 = s1[j4];
        a1 += w1.x * y0 + w1.y * y1 + w1.z * y2 + w1.w * y3;
        let w2 = s2[j4];
        a2 += w2.x * y0 + w2.y * y1 + w2.z * y2 + w2.w * y3;
        let w3 = s3[j4];
        a3 += w3.x * y0 + w3.y * y1 + w3.z * y2 + w3.w * y3;
      }
      d0[c] = a0;
      d1[c] = a1;
      d2[c] = a2;
      d3[c] = a3;
    }
  }

  if (i0 < p.lq) {
    for (var c = 0u; c < p.dv; c++) { st_dq(r0, c, d0[c] * p.scale); }
    delta[n0] = dl.x;
  }
  if (i0 + WG < p.lq) {
    for (var c = 0u; c < p.dv; c++) { st_dq(r1, c, d1[c] * p.scale); }
    delta[n1] = dl.y;
  }
  if (i0 + 2u * WG < p.lq) {
    for (var c = 0u; c < p.dv; c++) { st_dq(r2, c, d2[c] * p.scale); }
    delta[n2] = dl.z;
  }
  if (i0 + 3u * WG < p.lq) {
    for (var c = 0u; c < p.dv; c++) { st_dq(r3, c, d3[c] * p.scale); }
    delta[n3] = dl.w;
  }
}

// dv_j = sum_i p_ij do_i and dk_j = scale · sum_i ds_ij q_i for the 4 key rows each invocation owns,
// streaming tiles of q and do. Grid: (ceil(Lk / (4·WG)), BH).
@compute @workgroup_size(WG)
fn grad_kv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let bh = wid.y;
  let j0 = wid.x * 4u * WG + lid;
  let last = p.lk - 1u;
  let r0 = (bh * p.lk + min(j0, last)) * p.d;
  let r1 = (bh * p.lk + min(j0 + WG, last)) * p.d;
  let r2 = (bh * p.lk + min(j0 + 2u * WG, last)) * p.d;
  let r3 = (bh * p.lk + min(j0 + 3u * WG, last)) * p.d;
  var k0: array<vec4<f32>, DV_CAP>;
  var k1: array<vec4<f32>, DV_CAP>;
  var k2: array<vec4<f32>, DV_CAP>;
  var k3: array<vec4<f32>, DV_CAP>;
  var v0: array<vec4<f32>, DV_CAP>;
  var v1: array<vec4<f32>, DV_CAP>;
  var v2: array<vec4<f32>, DV_CAP>;
  var v3: array<vec4<f32>, DV_CAP>;
  var dk0: array<vec4<f32>, DV_CAP>;
  var dk1: array<vec4<f32>, DV_CAP>;
  var dk2: array<vec4<f32>, DV_CAP>;
  var dk3: array<vec4<f32>, DV_CAP>;
  var dv0: array<vec4<f32>, DV_CAP>;
  var dv1: array<vec4<f32>, DV_CAP>;
  var dv2: array<vec4<f32>, DV_CAP>;
  var dv3: array<vec4<f32>, DV_CAP>;
  for (var c = 0u; c < p.dv; c++) {
    k0[c] = ld_k(r0, c) * p.scale2;
    k1[c] = ld_k(r1, c) * p.scale2;
    k2[c] = ld_k(r2, c) * p.scale2;
    k3[c] = ld_k(r3, c) * p.scale2;
    v0[c] = ld_v(r0, c);
    v1[c] = ld_v(r1, c);
    v2[c] = ld_v(r2, c);
    v3[c] = ld_v(r3, c);
  }
  // p and ds of each key row for the current tile of queries, four queries per vec4.
  var p0: array<vec4<f32>, BT4_CAP>;
  var p1: array<vec4<f32>, BT4_CAP>;
  var p2: array<vec4<f32>, BT4_CAP>;
  var p3: array<vec4<f32>, BT4_CAP>;
  var s0: array<vec4<f32>, BT4_CAP>;
  var s1: array<vec4<f32>, BT4_CAP>;
  var s2: array<vec4<f32>, BT4_CAP>;
  var s3: array<vec4<f32>, BT4_CAP>;
  let lastq = bh * p.lq + p.lq - 1u;
  for (var i0 = 0u; i0 < p.lq; i0 += BT) {
    let n = min(BT, p.lq - i0);
    let n4 = (n + 3u) / 4u;
    workgroupBarrier();
    load_qg(bh, i0, n, lid);
    workgroupBarrier();

    for (var i4 = 0u; i4 < n4; i4++) {
      let b = 4u * i4 * DVMAX;
      // Scores k · q (base 2) ...
      var a0 = vec4(0.0);
      var a1 = vec4(0.0);
      var a2 = vec4(0.0);
      var a3 = vec4(0.0);
      for (var c = 0u; c < p.dv; c++) {
        let y0 = ta[b + c];
        let y1 = ta[b + DVMAX + c];
        let y2 = ta[b + 2u * DVMAX + c];
        let y3 = ta[b + 3u * DVMAX + c];
        let x0 = k0[c];
        a0 += vec4(dot(x0, y0), dot(x0, y1), dot(x0, y2), dot(x0, y3));
        let x1 = k1[c];
        a1 += vec4(dot(x1, y0), dot(x1, y1), dot(x1, y2), dot(x1, y3));
        let x2 = k2[c];
        a2 += vec4(dot(x2, y0), dot(x2, y1), dot(x2, y2), dot(x2, y3));
        let x3 = k3[c];
        a3 += vec4(dot(x3, y0), dot(x3, y1), dot(x3, y2), dot(x3, y3));
      }
      // ... and dp = v · do.
      var e0 = vec4(0.0);
      var e1 = vec4(0.0);
      var e2 = vec4(0.0);
      var e3 = vec4(0.0);
      for (var c = 0u; c < p.dv; c++) {
        let y0 = tb[b + c];
        let y1 = tb[b + DVMAX + c];
        let y2 = tb[b + 2u * DVMAX + c];
        let y3 = tb[b + 3u * DVMAX + c];
        let x0 = v0[c];
        e0 += vec4(dot(x0, y0), dot(x0, y1), dot(x0, y2), dot(x0, y3));
        let x1 = v1[c];
        e1 += vec4(dot(x1, y0), dot(x1, y1), dot(x1, y2), dot(x1, y3));
        let x2 = v2[c];
        e2 += vec4(dot(x2, y0), dot(x2, y1), dot(x2, y2), dot(x2, y3));
        let x3 = v3[c];
        e3 += vec4(dot(x3, y0), dot(x3, y1), dot(x3, y2), dot(x3, y3));
      }
      // lse and delta of the four queries (clamped reads; queries past Lq are masked by `live`).
      let r = min(vec4(bh * p.lq + i0 + 4u * i4) + vec4(0u, 1u, 2u, 3u), vec4(lastq));
      let l2 = vec4(lse[r.x], lse[r.y], lse[r.z], lse[r.w]) * LOG2E;
      let dl = vec4(delta[r.x], delta[r.y], delta[r.z], delta[r.w]);
      let live = live4(i4, n);
      let z = vec4(0.0);
      let f0 = select(z, exp2(a0 - l2), live);
      let f1 = select(z, exp2(a1 - l2), live);
      let f2 = select(z, exp2(a2 - l2), live);
      let f3 = select(z, exp2(a3 - l2), live);
      p0[i4] = f0;
      p1[i4] = f1;
      p2[i4] = f2;
      p3[i4] = f3;
      s0[i4] = f0 * (e0 - dl);
      s1[i4] = f1 * (e1 - dl);
      s2[i4] = f2 * (e2 - dl);
      s3[i4] = f3 * (e3 - dl);
    }
    // dk += ds q over the tile's queries ...
    for (var c = 0u; c < p.dv; c++) {
      var a0 = dk0[c];
      var a1 = dk1[c];
      var a2 = dk2[c];
      var a3 = dk3[c];
      for (var i4 = 0u; i4 < n4; i4++) {
        let t = 4u * i4 * DVMAX + c;
        let y0 = ta[t];
        let y1 = ta[t + DVMAX];
        let y2 = ta[t + 2u * DVMAX];
        let y3 = ta[t + 3u * DVMAX];
        let w0 = s0[i4];
        a0 += w0.x * y0 + w0.y * y1 + w0.z * y2 + w0.w * y3;
        let w1 = s1[i4];
        a1 += w1.x * y0 + w1.y * y1 + w1.z * y2 + w1.w * y3;
        let w2 = s2[i4];
        a2 += w2.x * y0 + w2.y * y1 + w2.z * y2 + w2.w * y3;
        let w3 = s3[i4];
        a3 += w3.x * y0 + w3.y * y1 + w3.z * y2 + w3.w * y3;
      }
      dk0[c] = a0;
      dk1[c] = a1;
      dk2[c] = a2;
      dk3[c] = a3;
    }
    // ... and dv += p do.
    for (var c = 0u; c < p.dv; c++) {
      var a0 = dv0[c];
      var a1 = dv1[c];
      var a2 = dv2[c];
      var a3 = dv3[c];
      for (var i4 = 0u; i4 < n4; i4++) {
        let t = 4u * i4 * DVMAX + c;
        let y0 = tb[t];
        let y1 = tb[t + DVMAX];
        let y2 = tb[t + 2u * DVMAX];
        let y3 = tb[t + 3u * DVMAX];
        let w0 = p0[i4];
        a0 += w0.x * y0 + w0.y * y1 + w0.z * y2 + w0.w * y3;
        let w1 = p1[i4];
        a1 += w1.x * y0 + w1.y * y1 + w1.z * y2 + w1.w * y3;
        let w2 = p2[i4];
        a2 += w2.x * y0 + w2.y * y1 + w2.z * y2 + w2.w * y3;
        let w3 = p3[i4];
        a3 += w3.x * y0 + w3.y * y1 + w3.z * y2 + w3.w * y3;
      }
      dv0[c] = a0;
      dv1[c] = a1;
      dv2[c] = a2;
      dv3[c] = a3;
    }
  }

  if (j0 < p.lk) {
    for (var c = 0u; c < p.dv; c++) { st_dk(r0, c, dk0[c] * p.scale); st_dv(r0, c, dv0[c]); }
  }
  if (j0 + WG < p.lk) {
    for (var c = 0u; c < p.dv; c++) { st_dk(r1, c, dk1[c] * p.scale); st_dv(r1, c, dv1[c]); }
  }
  if (j0 + 2u * WG < p.lk) {
    for (var c = 0u; c < p.dv; c++) { st_dk(r2, c, dk2[c] * p.scale); st_dv(r2, c, dv2[c]); }
  }
  if (j0 + 3u * WG < p.lk) {
    for (var c = 0u; c < p.dv; c++) { st_dk(r3, c, dk3[c] * p.scale); st_dv(r3, c, dv3[c]); }
  }
}
