// Flash attention for GPUs: softmax(q kᵀ · scale) v, forward and backward, with the Lq x Lk scores
// never in memory (FlashAttention-2). kernels/attention.ts prepends to this body one of
// attention_flash_rowwg.wgsl / attention_flash_rowsg.wgsl (the softmax row reductions, through
// workgroup memory or subgroup shuffles) and one of attention_flash_io4.wgsl / attention_flash_io1.wgsl
// (the bindings, as vec4 arrays when D is a multiple of 4, else as f32 arrays).
//
// q, o, do, dq: [BH, Lq, D]; k, v, dk, dv: [BH, Lk, D]; lse, delta: [BH, Lq]. All contiguous.
//
// A workgroup holds a tile of HR rows (query rows in forward and grad_q, key rows in grad_kv) in
// workgroup memory and streams the other side through it in tiles of SR rows. Both products of a
// tile are register-blocked:
// - "scores": invocation (hg, sg) computes a 4 x 4 block, held rows 4hg..4hg+3 against streamed rows
//   sg + SG·b (b = 0..3), over the padded head dimension; per vec4 of D it reads 8 vec4s and does 64
//   multiply-adds. Streamed rows are interleaved so that neighbouring invocations read neighbouring
//   rows, and every tile row is padded by one vec4 so that those reads fall in different banks.
// - "accumulate": the same invocation owns held rows 4hg..4hg+3 of the output, vec4 columns
//   sg + SG·u (u < OC <= 4), and adds (probabilities or ds) x (a streamed tile) over the SR streamed rows;
//   per streamed row it reads one vec4 of the transposed tile `pt` (4 held rows) and OC vec4s of the
//   streamed tile.
// The forward's online softmax gives each held row LPR = SR/16 consecutive invocations (16 scores
// each); their row maximum and sum come from lanes_max / lanes_sum. Scores are in base 2 (q or k is
// pre-multiplied by scale·log2 e), so exp2 does the exponentials; lse is stored in natural log.
// Rows past L are zero in the tiles and masked out of the softmax; components past D are zero.

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

override HR: u32 = 32u;                      // held rows per workgroup (multiple of 4, >= 16)
override SR: u32 = 32u;                      // streamed rows per tile: 16, 32 or 64
override DP4: u32 = 16u;                     // vec4s of a padded row: 4·DP4 >= D
override ROW4: u32 = DP4 + 1u;               // vec4 stride of a tile row (one vec4 of padding)
override HG: u32 = HR / 4u;
override SG: u32 = SR / 4u;
override T: u32 = HG * SG;                   // invocations per workgroup
override LPR: u32 = SR / 16u;                // softmax lanes per held row (T = HR·LPR)
override PT4: u32 = HG + 1u;                 // vec4 stride of a row of pt / dt
override OC: u32 = (DP4 + SG - 1u) / SG;     // output vec4s per held row per invocation (<= 4)

const NEG = -3.0e38;   // finite "minus infinity": exp2(NEG - m) is 0 and NEG - NEG is not NaN
const LN2 = 0.6931471805599453;
const LOG2E = 1.4426950408889634;

var<workgroup> ha: array<vec4<f32>, HR * ROW4>;   // held: q·scale2 (forward, grad_q) or k·scale2 (grad_kv)
var<workgroup> hb: array<vec4<f32>, HR * ROW4>;   // held: do (grad_q) or v (grad_kv)
var<workgroup> sa: array<vec4<f32>, SR * ROW4>;   // streamed: k, then v (forward); k (grad_q); q (grad_kv)
var<workgroup> sb: array<vec4<f32>, SR * ROW4>;   // streamed: v (grad_q); do (grad_kv)
var<workgroup> pt: array<vec4<f32>, SR * PT4>;    // [streamed row][held rows / 4]: scores, p or ds
var<workgroup> dt: array<vec4<f32>, SR * PT4>;    // as pt: ds (grad_kv)
var<workgroup> rowf: array<f32, HR>;              // per held row: alpha, then l (forward); delta (grad_q)
var<workgroup> rowg: array<f32, HR>;              // per held row: lse in base 2 (grad_q)
var<workgroup> srow: array<vec2<f32>, SR>;        // per streamed row: lse in base 2, delta (grad_kv)

fn hsum(x: vec4<f32>) -> f32 { return (x.x + x.y) + (x.z + x.w); }

// 4 x 4 block of held-row · streamed-row dot products over the padded head dimension: element b of
// result a is held row 4hg + a against streamed row sg + SG·b. dots_a: ha · sa; dots_b: hb · sb.
// (Two functions, not one with pointers: WGSL core has no workgroup pointers as parameters.)
fn dots_a(hg: u32, sg: u32) -> array<vec4<f32>, 4> {
  var s0 = vec4(0.0);
  var s1 = vec4(0.0);
  var s2 = vec4(0.0);
  var s3 = vec4(0.0);
  let h = 4u * hg * ROW4;
  for (var c = 0u; c < DP4; c++) {
    let y0 = sa[sg * ROW4 + c];
    let y1 = sa[(sg + SG) * ROW4 + c];
    let y2 = sa[(sg + 2u * SG) * ROW4 + c];
    let y3 = sa[(sg + 3u * SG) * ROW4 + c];
    // Transposed, so that every multiply-add below is one fma on a vec4 of 4 outputs.
    let yx = vec4(y0.x, y1.x, y2.x, y3.x);
    let yy = vec4(y0.y, y1.y, y2.y, y3.y);
    let yz = vec4(y0.z, y1.z, y2.z, y3.z);
    let yw = vec4(y0.w, y1.w, y2.w, y3.w);
    let x0 = ha[h + c];
    s0 += x0.x * yx; s0 += x0.y * yy; s0 += x0.z * yz; s0 += x0.w * yw;
    let x1 = ha[h + ROW4 + c];
    s1 += x1.x * yx; s1 += x1.y * yy; s1 += x1.z * yz; s1 += x1.w * yw;
    let x2 = ha[h + 2u * ROW4 + c];
    s2 += x2.x * yx; s2 += x2.y * yy; s2 += x2.z * yz; s2 += x2.w * yw;
    let x3 = ha[h + 3u * ROW4 + c];
    s3 += x3.x * yx; s3 += x3.y * yy; s3 += x3.z * yz; s3 += x3.w * yw;
  }
  return array(s0, s1, s2, s3);
}

fn dots_b(hg: u32, sg: u32) -> array<vec4<f32>, 4> {
  var s0 = vec4(0.0);
  var s1 = vec4(0.0);
  var s2 = vec4(0.0);
  var s3 = vec4(0.0);
  let h = 4u * hg * ROW4;
  for (var c = 0u; c < DP4; c++) {
    let y0 = sb[sg * ROW4 + c];
    let y1 = sb[(sg + SG) * ROW4 + c];
    let y2 = sb[(sg + 2u * SG) * ROW4 + c];
    let y3 = sb[(sg + 3u * SG) * ROW4 + c];
    let yx = vec4(y0.x, y1.x, y2.x, y3.x);
    let yy = vec4(y0.y, y1.y, y2.y, y3.y);
    let yz = vec4(y0.z, y1.z, y2.z, y3.z);
    let yw = vec4(y0.w, y1.w, y2.w, y3.w);
    let x0 = hb[h + c];
    s0 += x0.x * yx; s0 += x0.y * yy; s0 += x0.z * yz; s0 += x0.w * yw;
    let x1 = hb[h + ROW4 + c];
    s1 += x1.x * yx; s1 += x1.y * yy; s1 += x1.z * yz; s1 += x1.w * yw;
    let x2 = hb[h + 2u * ROW4 + c];
    s2 += x2.x * yx; s2 += x2.y * yy; s2 += x2.z * yz; s2 += x2.w * yw;
    let x3 = hb[h + 3u * ROW4 + c];
    s3 += x3.x * yx; s3 += x3.y * yy; s3 += x3.z * yz; s3 += x3.w * yw;
  }
  return array(s0, s1, s2, s3);
}

// Writes a 4 x 4 block into pt transposed: streamed row sg + SG·b gets the vec4 of held rows 4hg..+3.
fn put_pt(hg: u32, sg: u32, s: array<vec4<f32>, 4>) {
  pt[sg * PT4 + hg] = vec4(s[0].x, s[1].x, s[2].x, s[3].x);
  pt[(sg + SG) * PT4 + hg] = vec4(s[0].y, s[1].y, s[2].y, s[3].y);
  pt[(sg + 2u * SG) * PT4 + hg] = vec4(s[0].z, s[1].z, s[2].z, s[3].z);
  pt[(sg + 3u * SG) * PT4 + hg] = vec4(s[0].w, s[1].w, s[2].w, s[3].w);
}
fn put_dt(hg: u32, sg: u32, s: array<vec4<f32>, 4>) {
  dt[sg * PT4 + hg] = vec4(s[0].x, s[1].x, s[2].x, s[3].x);
  dt[(sg + SG) * PT4 + hg] = vec4(s[0].y, s[1].y, s[2].y, s[3].y);
  dt[(sg + 2u * SG) * PT4 + hg] = vec4(s[0].z, s[1].z, s[2].z, s[3].z);
  dt[(sg + 3u * SG) * PT4 + hg] = vec4(s[0].w, s[1].w, s[2].w, s[3].w);
}

// Output blocks live in mat4x4 values rather than private arrays: column a is held row 4hg + a, one
// matrix per vec4 column sg + SG·u of the output (u < OC, unrolled by hand), so every index is a
// constant and the accumulators stay in registers even where a compiler would not unroll a loop.
fn madd(m: mat4x4<f32>, w: vec4<f32>, y: vec4<f32>) -> mat4x4<f32> {
  return mat4x4(m[0] + w.x * y, m[1] + w.y * y, m[2] + w.z * y, m[3] + w.w * y);
}
fn mscale(m: mat4x4<f32>, f: vec4<f32>) -> mat4x4<f32> { return mat4x4(m[0] * f.x, m[1] * f.y, m[2] * f.z, m[3] * f.w); }
fn col(sg: u32, u: u32) -> u32 { return min(sg + SG * u, DP4 - 1u); }   // clamped: reads stay in the row

// ------------------------------------------------------------ forward

// Stores block u of o (row0: global index of the tile's first row), each row divided by its sum.
fn put_o(m: mat4x4<f32>, u: u32, row0: u32, nh: u32, hg: u32, sg: u32) {
  let c = sg + SG * u;
  if (u >= OC || c >= p.dv) { return; }
  let r = 4u * hg;
  if (r < nh) { st_o(row0 + r, c, m[0] / rowf[r]); }
  if (r + 1u < nh) { st_o(row0 + r + 1u, c, m[1] / rowf[r + 1u]); }
  if (r + 2u < nh) { st_o(row0 + r + 2u, c, m[2] / rowf[r + 2u]); }
  if (r + 3u < nh) { st_o(row0 + r + 3u, c, m[3] / rowf[r + 3u]); }
}

// o = softmax(q kᵀ · scale) v and lse = log(sum(exp(q kᵀ · scale))) per query row.
// Grid: (ceil(Lq / HR), BH). Four barriers per key tile: K is loaded; scores are in pt; (softmax,
// and V loaded over K) probabilities are in pt; (accumulate) the next tile may overwrite.
@compute @workgroup_size(T)
fn flash_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let bh = wid.y;
  let i0 = wid.x * HR;
  let nh = min(HR, p.lq - i0);
  let hg = lid / SG;
  let sg = lid - hg * SG;
  let sr = lid / LPR;          // softmax: held row sr, streamed rows sl + LPR·u (u < 16)
  let sl = lid - sr * LPR;
  let pc = sr / 4u;
  let pr = sr - 4u * pc;
  for (var e = lid; e < HR * DP4; e += T) {
    let r = e / DP4;
    let c = e - r * DP4;
    var x = vec4(0.0);
    if (r < nh && c < p.dv) { x = ld_q(bh * p.lq + i0 + r, c) * p.scale2; }
    ha[r * ROW4 + c] = x;
  }
  var acc0 = mat4x4<f32>();        // o, vec4 columns sg, sg + SG, sg + 2SG, sg + 3SG
  var acc1 = mat4x4<f32>();
  var acc2 = mat4x4<f32>();
  var acc3 = mat4x4<f32>();
  var m = NEG;                     // running maximum of row sr (base 2)
  var l = 0.0;                     // this lane's part of the running sum of exp2(s - m)
  for (var k0 = 0u; k0 < p.lk; k0 += SR) {
    let n = min(SR, p.lk - k0);
    workgroupBarrier();
    for (var e = lid; e < SR * DP4; e += T) {
      let r = e / DP4;
      let c = e - r * DP4;
      var x = vec4(0.0);
      if (r < n && c < p.dv) { x = ld_k(bh * p.lk + k0 + r, c); }
      sa[r * ROW4 + c] = x;
    }
    workgroupBarrier();
    put_pt(hg, sg, dots_a(hg, sg));
    workgroupBarrier();

    // Online softmax of row sr over this tile.
    var mt = NEG;
    for (var u = 0u; u < 16u; u++) {
      let j = sl + LPR * u;
      mt = max(mt, select(NEG, pt[j * PT4 + pc][pr], j < n));
    }
    let mn = max(m, lanes_max(mt, lid));
    let alpha = exp2(m - mn);
    var ls = 0.0;
    for (var u = 0u; u < 16u; u++) {
      let j = sl + LPR * u;
      let e = select(0.0, exp2(pt[j * PT4 + pc][pr] - mn), j < n);
      ls += e;
      pt[j * PT4 + pc][pr] = e;
    }
    l = l * alpha + ls;
    m = mn;
    if (sl == 0u) { rowf[sr] = alpha; }
    // V over K, which nobody reads any more.
    for (var e = lid; e < SR * DP4; e += T) {
      let r = e / DP4;
      let c = e - r * DP4;
      var x = vec4(0.0);
      if (r < n && c < p.dv) { x = ld_v(bh * p.lk + k0 + r, c); }
      sa[r * ROW4 + c] = x;
    }
    workgroupBarrier();

    // o = o · alpha + p v
    let al = vec4(rowf[4u * hg], rowf[4u * hg + 1u], rowf[4u * hg + 2u], rowf[4u * hg + 3u]);
    acc0 = mscale(acc0, al);
    if (OC > 1u) { acc1 = mscale(acc1, al); }
    if (OC > 2u) { acc2 = mscale(acc2, al); }
    if (OC > 3u) { acc3 = mscale(acc3, al); }
    for (var j = 0u; j < SR; j++) {
      let w = pt[j * PT4 + hg];
      let t = j * ROW4;
      acc0 = madd(acc0, w, sa[t + col(sg, 0u)]);
      if (OC > 1u) { acc1 = madd(acc1, w, sa[t + col(sg, 1u)]); }
      if (OC > 2u) { acc2 = madd(acc2, w, sa[t + col(sg, 2u)]); }
      if (OC > 3u) { acc3 = madd(acc3, w, sa[t + col(sg, 3u)]); }
    }
  }

  workgroupBarrier();   // everyone has read the last alphas
  let lt = lanes_sum(l, lid);
  if (sl == 0u) {
    rowf[sr] = lt;
    if (sr < nh) { lse[bh * p.lq + i0 + sr] = (m + log2(lt)) * LN2; }
  }
  workgroupBarrier();
  let row0 = bh * p.lq + i0;
  put_o(acc0, 0u, row0, nh, hg, sg);
  put_o(acc1, 1u, row0, nh, hg, sg);
  put_o(acc2, 2u, row0, nh, hg, sg);
  put_o(acc3, 3u, row0, nh, hg, sg);
}

// ------------------------------------------------------------ backward

// Stores block u of dq, dk or dv (row0: global index of the tile's first row), times f.
fn put_dq(m: mat4x4<f32>, u: u32, row0: u32, nh: u32, hg: u32, sg: u32, f: f32) {
  let c = sg + SG * u;
  if (u >= OC || c >= p.dv) { return; }
  let r = 4u * hg;
  if (r < nh) { st_dq(row0 + r, c, m[0] * f); }
  if (r + 1u < nh) { st_dq(row0 + r + 1u, c, m[1] * f); }
  if (r + 2u < nh) { st_dq(row0 + r + 2u, c, m[2] * f); }
  if (r + 3u < nh) { st_dq(row0 + r + 3u, c, m[3] * f); }
}
fn put_dk(m: mat4x4<f32>, u: u32, row0: u32, nh: u32, hg: u32, sg: u32, f: f32) {
  let c = sg + SG * u;
  if (u >= OC || c >= p.dv) { return; }
  let r = 4u * hg;
  if (r < nh) { st_dk(row0 + r, c, m[0] * f); }
  if (r + 1u < nh) { st_dk(row0 + r + 1u, c, m[1] * f); }
  if (r + 2u < nh) { st_dk(row0 + r + 2u, c, m[2] * f); }
  if (r + 3u < nh) { st_dk(row0 + r + 3u, c, m[3] * f); }
}
fn put_dv(m: mat4x4<f32>, u: u32, row0: u32, nh: u32, hg: u32, sg: u32) {
  let c = sg + SG * u;
  if (u >= OC || c >= p.dv) { return; }
  let r = 4u * hg;
  if (r < nh) { st_dv(row0 + r, c, m[0]); }
  if (r + 1u < nh) { st_dv(row0 + r + 1u, c, m[1]); }
  if (r + 2u < nh) { st_dv(row0 + r + 2u, c, m[2]); }
  if (r + 3u < nh) { st_dv(row0 + r + 3u, c, m[3]); }
}

// dq_i = scale · sum_j ds_ij k_j with ds_ij = p_ij (do_i · v_j - delta_i), p recomputed from lse.
// Also writes delta_i = do_i · o_i, which grad_kv needs (so this runs first). Grid: (ceil(Lq / HR), BH).
@compute @workgroup_size(T)
fn flash_grad_q(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let bh = wid.y;
  let i0 = wid.x * HR;
  let nh = min(HR, p.lq - i0);
  let hg = lid / SG;
  let sg = lid - hg * SG;
  for (var e = lid; e < HR * DP4; e += T) {
    let r = e / DP4;
    let c = e - r * DP4;
    var x = vec4(0.0);
    var g = vec4(0.0);
    if (r < nh && c < p.dv) {
      x = ld_q(bh * p.lq + i0 + r, c) * p.scale2;
      g = ld_go(bh * p.lq + i0 + r, c);
    }
    ha[r * ROW4 + c] = x;
    hb[r * ROW4 + c] = g;
  }
  // delta and lse of the held rows (rows past Lq: 0, which makes their ds 0).
  if (lid < HR) {
    var dl = 0.0;
    var l2 = 0.0;
    if (lid < nh) {
      let row = bh * p.lq + i0 + lid;
      var t = vec4(0.0);
      for (var c = 0u; c < p.dv; c++) { t += ld_go(row, c) * ld_o(row, c); }
      dl = hsum(t);
      l2 = lse[row] * LOG2E;
      delta[row] = dl;
    }
    rowf[lid] = dl;
    rowg[lid] = l2;
  }
  var acc0 = mat4x4<f32>();   // dq, as o in the forward
  var acc1 = mat4x4<f32>();
  var acc2 = mat4x4<f32>();
  var acc3 = mat4x4<f32>();
  for (var k0 = 0u; k0 < p.lk; k0 += SR) {
    let n = min(SR, p.lk - k0);
    workgroupBarrier();
    for (var e = lid; e < SR * DP4; e += T) {
      let r = e / DP4;
      let c = e - r * DP4;
      var x = vec4(0.0);
      var y = vec4(0.0);
      if (r < n && c < p.dv) {
        x = ld_k(bh * p.lk + k0 + r, c);
        y = ld_v(bh * p.lk + k0 + r, c);
      }
      sa[r * ROW4 + c] = x;
      sb[r * ROW4 + c] = y;
    }
    workgroupBarrier();
    let s = dots_a(hg, sg);    // q · k, base 2
    let dp = dots_b(hg, sg);   // do · v
    let live = vec4(sg, sg + SG, sg + 2u * SG, sg + 3u * SG) < vec4(n);
    let z = vec4(0.0);
    let r = 4u * hg;
    put_pt(hg, sg, array(
      select(z, exp2(s[0] - rowg[r]), live) * (dp[0] - rowf[r]),
      select(z, exp2(s[1] - rowg[r + 1u]), live) * (dp[1] - rowf[r + 1u]),
      select(z, exp2(s[2] - rowg[r + 2u]), live) * (dp[2] - rowf[r + 2u]),
      select(z, exp2(s[3] - rowg[r + 3u]), live) * (dp[3] - rowf[r + 3u]),
    ));
    workgroupBarrier();
    // dq += ds k
    for (var j = 0u; j < SR; j++) {
      let w = pt[j * PT4 + hg];
      let t = j * ROW4;
      acc0 = madd(acc0, w, sa[t + col(sg, 0u)]);
      if (OC > 1u) { acc1 = madd(acc1, w, sa[t + col(sg, 1u)]); }
      if (OC > 2u) { acc2 = madd(acc2, w, sa[t + col(sg, 2u)]); }
      if (OC > 3u) { acc3 = madd(acc3, w, sa[t + col(sg, 3u)]); }
    }
  }
  let row0 = bh * p.lq + i0;
  put_dq(acc0, 0u, row0, nh, hg, sg, p.scale);
  put_dq(acc1, 1u, row0, nh, hg, sg, p.scale);
  put_dq(acc2, 2u, row0, nh, hg, sg, p.scale);
  put_dq(acc3, 3u, row0, nh, hg, sg, p.scale);
}

// dv_j = sum_i p_ij do_i and dk_j = scale · sum_i ds_ij q_i for the HR key rows a workgroup holds,
// streaming tiles of q and do. Grid: (ceil(Lk / HR), BH).
@compute @workgroup_size(T)
fn flash_grad_kv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let bh = wid.y;
  let j0 = wid.x * HR;
  let nh = min(HR, p.lk - j0);
  let hg = lid / SG;
  let sg = lid - hg * SG;
  for (var e = lid; e < HR * DP4; e += T) {
    let r = e / DP4;
    let c = e - r * DP4;
    var x = vec4(0.0);
    var y = vec4(0.0);
    if (r < nh && c < p.dv) {
      x = ld_k(bh * p.lk + j0 + r, c) * p.scale2;
      y = ld_v(bh * p.lk + j0 + r, c);
    }
    ha[r * ROW4 + c] = x;
    hb[r * ROW4 + c] = y;
  }
  var ak0 = mat4x4<f32>();   // dk, as o in the forward
  var ak1 = mat4x4<f32>();
  var ak2 = mat4x4<f32>();
  var ak3 = mat4x4<f32>();
  var av0 = mat4x4<f32>();   // dv
  var av1 = mat4x4<f32>();
  var av2 = mat4x4<f32>();
  var av3 = mat4x4<f32>();
  for (var i0 = 0u; i0 < p.lq; i0 += SR) {
    let n = min(SR, p.lq - i0);
    workgroupBarrier();
    for (var e = lid; e < SR * DP4; e += T) {
      let r = e / DP4;
      let c = e - r * DP4;
      var x = vec4(0.0);
      var g = vec4(0.0);
      if (r < n && c < p.dv) {
        x = ld_q(bh * p.lq + i0 + r, c);
        g = ld_go(bh * p.lq + i0 + r, c);
      }
      sa[r * ROW4 + c] = x;
      sb[r * ROW4 + c] = g;
    }
    if (lid < SR) {   // T >= SR as HR >= 16
      var st = vec2(0.0);
      if (lid < n) {
        let row = bh * p.lq + i0 + lid;
        st = vec2(lse[row] * LOG2E, delta[row]);
      }
      srow[lid] = st;
    }
    workgroupBarrier();
    let s = dots_a(hg, sg);    // k · q, base 2
    let dp = dots_b(hg, sg);   // v · do
    let s0 = srow[sg];
    let s1 = srow[sg + SG];
    let s2 = srow[sg + 2u * SG];
    let s3 = srow[sg + 3u * SG];
    let l2 = vec4(s0.x, s1.x, s2.x, s3.x);
    let dl = vec4(s0.y, s1.y, s2.y, s3.y);
    let live = vec4(sg, sg + SG, sg + 2u * SG, sg + 3u * SG) < vec4(n);
    let z = vec4(0.0);
    let p0 = select(z, exp2(s[0] - l2), live);
    let p1 = select(z, exp2(s[1] - l2), live);
    let p2 = select(z, exp2(s[2] - l2), live);
    let p3 = select(z, exp2(s[3] - l2), live);
    put_pt(hg, sg, array(p0, p1, p2, p3));
    put_dt(hg, sg, array(p0 * (dp[0] - dl), p1 * (dp[1] - dl), p2 * (dp[2] - dl), p3 * (dp[3] - dl)));
    workgroupBarrier();
    // dv += p do, dk += ds q
    for (var i = 0u; i < SR; i++) {
      let w = pt[i * PT4 + hg];
      let x = dt[i * PT4 + hg];
      let t = i * ROW4;
      av0 = madd(av0, w, sb[t + col(sg, 0u)]);
      ak0 = madd(ak0, x, sa[t + col(sg, 0u)]);
      if (OC > 1u) {
        av1 = madd(av1, w, sb[t + col(sg, 1u)]);
        ak1 = madd(ak1, x, sa[t + col(sg, 1u)]);
      }
      if (OC > 2u) {
        av2 = madd(av2, w, sb[t + col(sg, 2u)]);
        ak2 = madd(ak2, x, sa[t + col(sg, 2u)]);
      }
      if (OC > 3u) {
        av3 = madd(av3, w, sb[t + col(sg, 3u)]);
        ak3 = madd(ak3, x, sa[t + col(sg, 3u)]);
      }
    }
  }
  let row0 = bh * p.lk + j0;
  put_dk(ak0, 0u, row0, nh, hg, sg, p.scale);
  put_dk(ak1, 1u, row0, nh, hg, sg, p.scale);
  put_dk(ak2, 2u, row0, nh, hg, sg, p.scale);
  put_dk(ak3, 3u, row0, nh, hg, sg, p.scale);
  put_dv(av0, 0u, row0, nh, hg, sg);
  put_dv(av1, 1u, row0, nh, hg, sg);
  put_dv(av2, 2u, row0, nh, hg, sg);
  put_dv(av3, 3u, row0, nh, hg, sg);
}
