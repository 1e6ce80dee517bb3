// Batched matrix product C = alpha * A·B + bias (+ residual), C contiguous [batch..., M, N].
//
// A and B are read through strides (row, column and up to 4 batch strides, 0 where broadcast), so
// transposed and broadcast operands (Bᵀ in linear, Aᵀ and Bᵀ in the backward) need no copy. The bias,
// also read through (row, column) strides, is per column (linear) or per row, and is fused into the
// store so linear is one dispatch; so is the optional residual (HAS_RES: a tensor of C's shape added
// to the result, for the fusion of residual adds into the producing kernel).
//
// Two entry points, chosen per adapter by the autotuner (kernels/matmul.ts MATMUL_TUNE):
//  - matmul_tile, for GPUs: the register-tiled core of gemm_tile.wgsl (prepended to this file), with
//    vec4 loads along whichever dimension of an operand is contiguous (A_VEC, B_VEC) and a scalar path
//    for strides and sizes that do not allow them;
//  - matmul_regs, for CPU emulation: each thread owns an 8x8 block of C — rows r0 + {0..3} and
//    r0 + 4·WY + {0..3}, columns c0 + {0..3} and c0 + 4·WX + {0..3} — held as 16 named vec4
//    accumulators (SwiftShader's Subzero backend keeps named values in registers but spills a private
//    array, ~3.5x slower), reading A and B straight from storage with no workgroup memory and no
//    barrier: a CPU's caches already do what workgroup memory would, and barriers cost fibre switches.
// Edges: rows and columns past C are clamped or zero-filled on load and not stored; K past its end
// loads zeros.

struct Params {
  m: u32,
  n: u32,
  k: u32,
  has_bias: u32,
  a_off: u32,
  a_rs: u32,      // A's element strides along M and K
  a_cs: u32,
  alpha: f32,
  b_off: u32,
  b_rs: u32,      // B's element strides along K and N
  b_cs: u32,
  bias_off: u32,
  bias_rs: u32,   // bias strides along M and N (one of them 0)
  bias_cs: u32,
  c_off: u32,     // where batch 0 of C starts
  _pad0: u32,
  batch_shape: array<vec4<u32>, 1>, // output batch dims, outermost first, padded in front with 1
  a_bstrides: array<vec4<u32>, 1>,  // A's strides for those dims (0 where broadcast)
  b_bstrides: array<vec4<u32>, 1>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<storage, read> res: array<f32>;  // HAS_RES: added to C, same layout
// A and B again as vec4 words (read-only aliases of the same buffers), for matmul_tile's vec4 loads.
@group(0) @binding(6) var<storage, read> av4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> bv4: array<vec4<f32>>;

// matmul_regs: threads per workgroup along N (x) and M (y); each owns 8x8 outputs, so a tile is
// (8 WY) x (8 WX).
override WX: u32 = 8u;
override WY: u32 = 8u;
override HAS_RES: bool = false;

// Offsets of batch z (the workgroup's z index) into A and B: one div/mod chain per thread, outside loops.
fn batch_bases(z: u32) -> vec2<u32> {
  var rem = z;
  var off = vec2<u32>(p.a_off, p.b_off);
  for (var d = 3i; d >= 0; d--) {
    let s = p.batch_shape[0][d];
    let i = rem % s;
    rem = rem / s;
    off += i * vec2<u32>(p.a_bstrides[0][d], p.b_bstrides[0][d]);
  }
  return off;
}

// alpha * v + bias for 4 consecutive columns n..n+3 of row m, skipping what lies outside C.
fn store4(cbase: u32, m: u32, n: u32, v: vec4<f32>) {
  if (m >= p.m) { return; }
  for (var j = 0u; j < 4u; j++) {
    let nj = n + j;
    if (nj < p.n) {
      let bv = select(0.0, bias[p.bias_off + m * p.bias_rs + nj * p.bias_cs], p.has_bias != 0u);
      let at = cbase + m * p.n + nj;
      var r = 0.0;
      if (HAS_RES) { r = res[at]; }
      c[at] = p.alpha * v[j] + bv + r;
    }
  }
}

// The 16 accumulators: rI holds row I of the thread's block at columns c0.., sI the same row at c0 + 4·WX...
// (rows 0-3 are r0.., rows 4-7 are r0 + 4·WY..).
struct Block8 {
  r0: vec4<f32>, r1: vec4<f32>, r2: vec4<f32>, r3: vec4<f32>,
  r4: vec4<f32>, r5: vec4<f32>, r6: vec4<f32>, r7: vec4<f32>,
  s0: vec4<f32>, s1: vec4<f32>, s2: vec4<f32>, s3: vec4<f32>,
  s4: vec4<f32>, s5: vec4<f32>, s6: vec4<f32>, s7: vec4<f32>,
}

// Row m of the thread's block (columns n0.. and n1..) when the whole block lies inside C: no branch
// per element, which on CPU emulation costs more than the store (a tenth of a K = 64 product).
fn put_row(cbase: u32, m: u32, n0: u32, n1: u32, u: vec4<f32>, v: vec4<f32>) {
  var bu = vec4<f32>(0.0);
  var bv = vec4<f32>(0.0);
  if (p.has_bias != 0u) {
    let b = p.bias_off + m * p.bias_rs;
    bu = vec4<f32>(bias[b + n0 * p.bias_cs], bias[b + (n0 + 1u) * p.bias_cs], bias[b + (n0 + 2u) * p.bias_cs], bias[b + (n0 + 3u) * p.bias_cs]);
    bv = vec4<f32>(bias[b + n1 * p.bias_cs], bias[b + (n1 + 1u) * p.bias_cs], bias[b + (n1 + 2u) * p.bias_cs], bias[b + (n1 + 3u) * p.bias_cs]);
  }
  var x = p.alpha * u + bu;
  var y = p.alpha * v + bv;
  let at = cbase + m * p.n;
  if (HAS_RES) {
    x += vec4<f32>(res[at + n0], res[at + n0 + 1u], res[at + n0 + 2u], res[at + n0 + 3u]);
    y += vec4<f32>(res[at + n1], res[at + n1 + 1u], res[at + n1 + 2u], res[at + n1 + 3u]);
  }
  c[at + n0] = x.x; c[at + n0 + 1u] = x.y; c[at + n0 + 2u] = x.z; c[at + n0 + 3u] = x.w;
  c[at + n1] = y.x; c[at + n1 + 1u] = y.y; c[at + n1 + 2u] = y.z; c[at + n1 + 3u] = y.w;
}

fn store_block(z: u32, row0: u32, col0: u32, t: Block8) {
  let cbase = p.c_off + z * p.m * p.n;
  let m1 = row0 + 4u * WY;
  let n1 = col0 + 4u * WX;
  if (m1 + 3u < p.m && n1 + 3u < p.n) {
    put_row(cbase, row0, col0, n1, t.r0, t.s0);
    put_row(cbase, row0 + 1u, col0, n1, t.r1, t.s1);
    put_row(cbase, row0 + 2u, col0, n1, t.r2, t.s2);
    put_row(cbase, row0 + 3u, col0, n1, t.r3, t.s3);
    put_row(cbase, m1, col0, n1, t.r4, t.s4);
    put_row(cbase, m1 + 1u, col0, n1, t.r5, t.s5);
    put_row(cbase, m1 + 2u, col0, n1, t.r6, t.s6);
    put_row(cbase, m1 + 3u, col0, n1, t.r7, t.s7);
    return;
  }
  store4(cbase, row0, col0, t.r0); store4(cbase, row0, n1, t.s0);
  store4(cbase, row0 + 1u, col0, t.r1); store4(cbase, row0 + 1u, n1, t.s1);
  store4(cbase, row0 + 2u, col0, t.r2); store4(cbase, row0 + 2u, n1, t.s2);
  store4(cbase, row0 + 3u, col0, t.r3); store4(cbase, row0 + 3u, n1, t.s3);
  store4(cbase, m1, col0, t.r4); store4(cbase, m1, n1, t.s4);
  store4(cbase, m1 + 1u, col0, t.r5); store4(cbase, m1 + 1u, n1, t.s5);
  store4(cbase, m1 + 2u, col0, t.r6); store4(cbase, m1 + 2u, n1, t.s6);
  store4(cbase, m1 + 3u, col0, t.r7); store4(cbase, m1 + 3u, n1, t.s7);
}

// ---------------------------------------------------------------- register-blocked, no workgroup memory

@compute @workgroup_size(WX, WY)
fn matmul_regs(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let bases = batch_bases(wid.z);
  let row0 = wid.y * 8u * WY + 4u * lid.y;
  let col0 = wid.x * 8u * WX + 4u * lid.x;
  let m1 = row0 + 4u * WY;
  let n1 = col0 + 4u * WX;
  // Clamped row and column starts: out-of-range rows/columns re-read the last one and are not stored.
  let lm = p.m - 1u;
  let ln = p.n - 1u;
  let a0 = bases.x + min(row0, lm) * p.a_rs;
  let a1 = bases.x + min(row0 + 1u, lm) * p.a_rs;
  let a2 = bases.x + min(row0 + 2u, lm) * p.a_rs;
  let a3 = bases.x + min(row0 + 3u, lm) * p.a_rs;
  let a4 = bases.x + min(m1, lm) * p.a_rs;
  let a5 = bases.x + min(m1 + 1u, lm) * p.a_rs;
  let a6 = bases.x + min(m1 + 2u, lm) * p.a_rs;
  let a7 = bases.x + min(m1 + 3u, lm) * p.a_rs;
  let b0 = bases.y + min(col0, ln) * p.b_cs;
  let b1 = bases.y + min(col0 + 1u, ln) * p.b_cs;
  let b2 = bases.y + min(col0 + 2u, ln) * p.b_cs;
  let b3 = bases.y + min(col0 + 3u, ln) * p.b_cs;
  let b4 = bases.y + min(n1, ln) * p.b_cs;
  let b5 = bases.y + min(n1 + 1u, ln) * p.b_cs;
  let b6 = bases.y + min(n1 + 2u, ln) * p.b_cs;
  let b7 = bases.y + min(n1 + 3u, ln) * p.b_cs;
  var t: Block8;
  for (var k = 0u; k < p.k; k++) {
    let ka = k * p.a_cs;
    let kb = k * p.b_rs;
    let u = vec4<f32>(b[b0 + kb], b[b1 + kb], b[b2 + kb], b[b3 + kb]);
    let v = vec4<f32>(b[b4 + kb], b[b5 + kb], b[b6 + kb], b[b7 + kb]);
    var x = vec4<f32>(a[a0 + ka]); t.r0 = fma(x, u, t.r0); t.s0 = fma(x, v, t.s0);
    x = vec4<f32>(a[a1 + ka]); t.r1 = fma(x, u, t.r1); t.s1 = fma(x, v, t.s1);
    x = vec4<f32>(a[a2 + ka]); t.r2 = fma(x, u, t.r2); t.s2 = fma(x, v, t.s2);
    x = vec4<f32>(a[a3 + ka]); t.r3 = fma(x, u, t.r3); t.s3 = fma(x, v, t.s3);
    x = vec4<f32>(a[a4 + ka]); t.r4 = fma(x, u, t.r4); t.s4 = fma(x, v, t.s4);
    x = vec4<f32>(a[a5 + ka]); t.r5 = fma(x, u, t.r5); t.s5 = fma(x, v, t.s5);
    x = vec4<f32>(a[a6 + ka]); t.r6 = fma(x, u, t.r6); t.s6 = fma(x, v, t.s6);
    x = vec4<f32>(a[a7 + ka]); t.r7 = fma(x, u, t.r7); t.s7 = fma(x, v, t.s7);
  }
  store_block(wid.z, row0, col0, t);
}

// ---------------------------------------------------------------- register-tiled (GPUs)

// How each operand's tile is loaded (the host picks from strides, sizes and alignment):
// A_VEC 1: vec4 along M (a_rs = 1: Aᵀ); 2: vec4 along K (a_cs = 1: A row-major, stored transposed);
// 0: scalars, consecutive threads along K if A_KFAST (a_cs = 1 but unaligned), else along M.
// B_VEC 1: vec4 along N (b_cs = 1: B row-major); 2: vec4 along K (b_rs = 1: Bᵀ, stored transposed);
// 0: scalars, along K if B_KFAST, else along N. Consecutive threads walk the contiguous dimension so
// that a warp's reads coalesce.
override A_VEC: u32 = 2u;
override B_VEC: u32 = 1u;
override A_KFAST: bool = true;
override B_KFAST: bool = false;

// Global loads of A's step at k0 into the thread's registers (zeros past M or K).
fn tile_load_a(base: u32, tm: u32, k0: u32, t: u32, r: ptr<function, Regs>) {
  if (A_VEC == 2u) {
    for (var q = 0u; q < EA / 4u; q++) {
      let s = t + q * GT;
      let m = tm + s / (BK / 4u);
      let k = k0 + 4u * (s % (BK / 4u));
      let ok = m < p.m && k < p.k;
      (*r)[q] = select(vec4<f32>(0.0), av4[select(0u, (base + m * p.a_rs + k) / 4u, ok)], ok);
    }
  } else if (A_VEC == 1u) {
    for (var q = 0u; q < EA / 4u; q++) {
      let s = t + q * GT;
      let k = k0 + s / (BM / 4u);
      let m = tm + 4u * (s % (BM / 4u));
      let ok = m < p.m && k < p.k;
      (*r)[q] = select(vec4<f32>(0.0), av4[select(0u, (base + k * p.a_cs + m) / 4u, ok)], ok);
    }
  } else {
    for (var e = 0u; e < EA; e++) {
      let s = t + e * GT;
      let m = tm + select(s % BM, s / BK, A_KFAST);
      let k = k0 + select(s / BM, s % BK, A_KFAST);
      let ok = m < p.m && k < p.k;
      reg_set(r, e, select(0.0, a[select(0u, base + m * p.a_rs + k * p.a_cs, ok)], ok));
    }
  }
}

fn tile_store_a(stage: u32, t: u32, r: ptr<function, Regs>) {
  if (A_VEC == 2u) {
    for (var q = 0u; q < EA / 4u; q++) {
      let s = t + q * GT;
      let m = s / (BK / 4u);
      let k = 4u * (s % (BK / 4u));
      let v = (*r)[q];
      As[as_word(stage, k, m)][m % 4u] = v.x;
      As[as_word(stage, k + 1u, m)][m % 4u] = v.y;
      As[as_word(stage, k + 2u, m)][m % 4u] = v.z;
      As[as_word(stage, k + 3u, m)][m % 4u] = v.w;
    }
  } else if (A_VEC == 1u) {
    for (var q = 0u; q < EA / 4u; q++) {
      let s = t + q * GT;
      As[as_word(stage, s / (BM / 4u), 4u * (s % (BM / 4u)))] = (*r)[q];
    }
  } else {
    for (var e = 0u; e < EA; e++) {
      let s = t + e * GT;
      let m = select(s % BM, s / BK, A_KFAST);
      let k = select(s / BM, s % BK, A_KFAST);
      As[as_word(stage, k, m)][m % 4u] = reg_get(r, e);
    }
  }
}

fn tile_load_b(base: u32, tn: u32, k0: u32, t: u32, r: ptr<function, Regs>) {
  if (B_VEC == 1u) {
    for (var q = 0u; q < EB / 4u; q++) {
      let s = t + q * GT;
      let k = k0 + s / (BN / 4u);
      let n = tn + 4u * (s % (BN / 4u));
      let ok = n < p.n && k < p.k;
      (*r)[q] = select(vec4<f32>(0.0), bv4[select(0u, (base + k * p.b_rs + n) / 4u, ok)], ok);
    }
  } else if (B_VEC == 2u) {
    for (var q = 0u; q < EB / 4u; q++) {
      let s = t + q * GT;
      let n = tn + s / (BK / 4u);
      let k = k0 + 4u * (s % (BK / 4u));
      let ok = n < p.n && k < p.k;
      (*r)[q] = select(vec4<f32>(0.0), bv4[select(0u, (base + n * p.b_cs + k) / 4u, ok)], ok);
    }
  } else {
    for (var e = 0u; e < EB; e++) {
      let s = t + e * GT;
      let n = tn + select(s % BN, s / BK, B_KFAST);
      let k = k0 + select(s / BN, s % BK, B_KFAST);
      let ok = n < p.n && k < p.k;
      reg_set(r, e, select(0.0, b[select(0u, base + k * p.b_rs + n * p.b_cs, ok)], ok));
    }
  }
}

fn tile_store_b(stage: u32, t: u32, r: ptr<function, Regs>) {
  if (B_VEC == 1u) {
    for (var q = 0u; q < EB / 4u; q++) {
      let s = t + q * GT;
      Bs[bs_word(stage, s / (BN / 4u), 4u * (s % (BN / 4u)))] = (*r)[q];
    }
  } else if (B_VEC == 2u) {
    for (var q = 0u; q < EB / 4u; q++) {
      let s = t + q * GT;
      let n = s / (BK / 4u);
      let k = 4u * (s % (BK / 4u));
      let v = (*r)[q];
      Bs[bs_word(stage, k, n)][n % 4u] = v.x;
      Bs[bs_word(stage, k + 1u, n)][n % 4u] = v.y;
      Bs[bs_word(stage, k + 2u, n)][n % 4u] = v.z;
      Bs[bs_word(stage, k + 3u, n)][n % 4u] = v.w;
    }
  } else {
    for (var e = 0u; e < EB; e++) {
      let s = t + e * GT;
      let n = select(s % BN, s / BK, B_KFAST);
      let k = select(s / BN, s % BK, B_KFAST);
      Bs[bs_word(stage, k, n)][n % 4u] = reg_get(r, e);
    }
  }
}

// alpha * acc + bias (+ residual) for row m, columns n..n+3 (those inside C).
fn tile_put(cbase: u32, m: u32, n: u32, v: vec4<f32>, full: bool) {
  if (m >= p.m) { return; }
  let at = cbase + m * p.n + n;
  for (var j = 0u; j < 4u; j++) {
    if (full || n + j < p.n) {
      var o = p.alpha * v[j];
      if (p.has_bias != 0u) { o += bias[p.bias_off + m * p.bias_rs + (n + j) * p.bias_cs]; }
      if (HAS_RES) { o += res[at + j]; }
      c[at + j] = o;
    }
  }
}

@compute @workgroup_size(GT)
fn matmul_tile(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let bases = batch_bases(wid.z);
  let tm = wid.y * BM;
  let tn = wid.x * BN;
  let tx = t % GX;
  let ty = t / GX;
  var acc: Acc;
  var ra: Regs;
  var rb: Regs;
  let steps = (p.k + BK - 1u) / BK;
  if (steps > 0u) {
    tile_load_a(bases.x, tm, 0u, t, &ra);
    tile_load_b(bases.y, tn, 0u, t, &rb);
    tile_store_a(0u, t, &ra);
    tile_store_b(0u, t, &rb);
  }
  workgroupBarrier();
  for (var s = 0u; s < steps; s++) {
    let cur = select(0u, s % 2u, STAGES == 2u);
    let more = s + 1u < steps;
    // The next step's loads are in flight while this step's FMAs run.
    if (more) {
      tile_load_a(bases.x, tm, (s + 1u) * BK, t, &ra);
      tile_load_b(bases.y, tn, (s + 1u) * BK, t, &rb);
    }
    mma(cur, ty, tx, &acc);
    if (more) {
      if (STAGES == 1u) { workgroupBarrier(); }
      let nxt = select(0u, 1u - cur, STAGES == 2u);
      tile_store_a(nxt, t, &ra);
      tile_store_b(nxt, t, &rb);
      workgroupBarrier();
    }
  }
  let cbase = p.c_off + wid.z * p.m * p.n;
  let full = tm + BM <= p.m && tn + BN <= p.n;
  for (var i = 0u; i < TM; i++) {
    for (var j = 0u; j < TN / 4u; j++) {
      tile_put(cbase, tm + tile_row(ty, i), tn + tile_col(tx, j), acc[2u * i + j], full);
    }
  }
}
