// Batched matrix product C = alpha * A·B + bias, C contiguous [batch..., M, N].
//
// A and B are read through strides (row, column and up to 4 batch strides, 0 where broadcast), so
// transposed and broadcast operands (Bᵀ in linear, Aᵀ and Bᵀ in the backward) need no copy. The bias,
// also read through (row, column) strides, is per column (linear) or per row, and is fused into the
// store so linear is one dispatch.
//
// Each thread owns an 8x8 block of C: rows r0 + {0..3} and r0 + 4·WY + {0..3}, columns c0 + {0..3} and
// c0 + 4·WX + {0..3}, held as 16 vec4 accumulators written out by hand (SwiftShader's Subzero backend
// keeps named values in registers but spills a private array, ~3.5x slower). Two entry points share it:
//  - matmul_tiled stages BK-deep tiles of A and B in workgroup memory (the classic GPU kernel);
//  - matmul_regs reads A and B straight from storage, with no workgroup memory and no barrier. On a
//    CPU-emulated adapter workgroup memory saves nothing (the CPU's caches do that job) while barriers
//    cost: at 512^3 on SwiftShader 'regs' runs ~1.2-1.5x faster than 'tiled', so it is the default there.
// A third, matmul_tiled4 (at the end), gives each thread only 4x4 outputs: smaller tiles, more
// workgroups, which is what a large GPU needs; it is the default on real GPUs.
// Edges: row/column indices are clamped for loads (so the k-loop needs no test) and stores are guarded;
// the tiled loads zero-fill past K.

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

// Threads per workgroup along N (x) and M (y); each owns 8x8 outputs, so a tile is (8 WY) x (8 WX)
// (4x4 and (4 WY) x (4 WX) in matmul_tiled4).
override WX: u32 = 8u;
override WY: u32 = 8u;
// Depth of the K tile staged in workgroup memory (matmul_tiled, a multiple of 4, and matmul_tiled4).
override BK: u32 = 16u;

override BM: u32 = 8u * WY;
override BN: u32 = 8u * WX;

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
      c[cbase + m * p.n + nj] = p.alpha * v[j] + bv;
    }
  }
}

// The 16 accumulators: rI holds row I of the thread's block at columns c0.., sI the same row at c0 + 4·WX...
// (rows 0-3 are r0.., rows 4-7 are r0 + 4·WY..).
struct Acc {
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
  let x = p.alpha * u + bu;
  let y = p.alpha * v + bv;
  let at = cbase + m * p.n;
  c[at + n0] = x.x; c[at + n0 + 1u] = x.y; c[at + n0 + 2u] = x.z; c[at + n0 + 3u] = x.w;
  c[at + n1] = y.x; c[at + n1 + 1u] = y.y; c[at + n1 + 2u] = y.z; c[at + n1 + 3u] = y.w;
}

fn store_block(z: u32, row0: u32, col0: u32, t: Acc) {
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
  let row0 = wid.y * BM + 4u * lid.y;
  let col0 = wid.x * BN + 4u * lid.x;
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
  var t: Acc;
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

// ---------------------------------------------------------------- tiled in workgroup memory

// As[k][m/4] and Bs[k][n/4]: a thread's 4 consecutive rows (columns) are one vec4 read.
var<workgroup> As: array<vec4<f32>, BK * BM / 4u>;
var<workgroup> Bs: array<vec4<f32>, BK * BN / 4u>;

fn load_a(base: u32, m: u32, k: u32) -> f32 {
  return select(0.0, a[base + min(m, p.m - 1u) * p.a_rs + k * p.a_cs], k < p.k);
}
fn load_b(base: u32, k: u32, n: u32) -> f32 {
  return select(0.0, b[base + k * p.b_rs + min(n, p.n - 1u) * p.b_cs], k < p.k);
}

@compute @workgroup_size(WX, WY)
fn matmul_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
  let bases = batch_bases(wid.z);
  let tm = wid.y * BM;
  let tn = wid.x * BN;
  let nt = WX * WY;
  var t: Acc;
  for (var k0 = 0u; k0 < p.k; k0 += BK) {
    // Cooperative loads: each slot is 4 consecutive rows (columns) at one k.
    for (var s = li; s < BK * BM / 4u; s += nt) {
      let kk = s % BK;
      let m = tm + 4u * (s / BK);
      let k = k0 + kk;
      As[kk * (BM / 4u) + s / BK] = vec4<f32>(load_a(bases.x, m, k), load_a(bases.x, m + 1u, k),
                                              load_a(bases.x, m + 2u, k), load_a(bases.x, m + 3u, k));
    }
    for (var s = li; s < BK * BN / 4u; s += nt) {
      let kk = s / (BN / 4u);
      let n = tn + 4u * (s % (BN / 4u));
      let k = k0 + kk;
      Bs[s] = vec4<f32>(load_b(bases.y, k, n), load_b(bases.y, k, n + 1u),
                        load_b(bases.y, k, n + 2u), load_b(bases.y, k, n + 3u));
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      let ra = kk * (BM / 4u) + lid.y;
      let rb = kk * (BN / 4u) + lid.x;
      let x0 = As[ra];
      let x1 = As[ra + WY];
      let u = Bs[rb];
      let v = Bs[rb + WX];
      t.r0 = fma(vec4<f32>(x0.x), u, t.r0); t.s0 = fma(vec4<f32>(x0.x), v, t.s0);
      t.r1 = fma(vec4<f32>(x0.y), u, t.r1); t.s1 = fma(vec4<f32>(x0.y), v, t.s1);
      t.r2 = fma(vec4<f32>(x0.z), u, t.r2); t.s2 = fma(vec4<f32>(x0.z), v, t.s2);
      t.r3 = fma(vec4<f32>(x0.w), u, t.r3); t.s3 = fma(vec4<f32>(x0.w), v, t.s3);
      t.r4 = fma(vec4<f32>(x1.x), u, t.r4); t.s4 = fma(vec4<f32>(x1.x), v, t.s4);
      t.r5 = fma(vec4<f32>(x1.y), u, t.r5); t.s5 = fma(vec4<f32>(x1.y), v, t.s5);
      t.r6 = fma(vec4<f32>(x1.z), u, t.r6); t.s6 = fma(vec4<f32>(x1.z), v, t.s6);
      t.r7 = fma(vec4<f32>(x1.w), u, t.r7); t.s7 = fma(vec4<f32>(x1.w), v, t.s7);
    }
    workgroupBarrier();
  }
  store_block(wid.z, tm + 4u * lid.y, tn + 4u * lid.x, t);
}

// ---------------------------------------------------------------- 4x4 outputs per thread (real GPUs)

// With 8x8 outputs per thread a 512^2 product is only 64 workgroups of 64 threads: a GPU with 100+
// SMs sits mostly idle (H200: 0.44 ms at 512^3, 4x slower than tfjs). Here each thread owns a 4x4
// block, rows r0 + {0..3} at columns c0 + {0..3}, so a tile is (4·WY) x (4·WX): 16x16 threads give
// 64x64 tiles of 256 threads, 8x8 give 32x32 tiles; the host takes 64x64 unless it pads much more
// work (measured on an H200: bench/h200/README.md). Staging is as in matmul_tiled: A4[k][m/4] and B4[k][n/4], each row
// padded by one vec4 so that threads storing along k hit different banks.
var<workgroup> A4: array<vec4<f32>, BK * (WY + 1u)>;
var<workgroup> B4: array<vec4<f32>, BK * (WX + 1u)>;

// Row m, columns n..n+3, when all of them lie inside C: no branch per element.
fn put4(cbase: u32, m: u32, n: u32, v: vec4<f32>) {
  var bv = vec4<f32>(0.0);
  if (p.has_bias != 0u) {
    let b = p.bias_off + m * p.bias_rs;
    bv = vec4<f32>(bias[b + n * p.bias_cs], bias[b + (n + 1u) * p.bias_cs], bias[b + (n + 2u) * p.bias_cs], bias[b + (n + 3u) * p.bias_cs]);
  }
  let x = p.alpha * v + bv;
  let at = cbase + m * p.n + n;
  c[at] = x.x; c[at + 1u] = x.y; c[at + 2u] = x.z; c[at + 3u] = x.w;
}

@compute @workgroup_size(WX, WY)
fn matmul_tiled4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
  let bases = batch_bases(wid.z);
  let tm = wid.y * 4u * WY;
  let tn = wid.x * 4u * WX;
  let nt = WX * WY;
  let ra = WY + 1u; // padded row lengths of A4 and B4, in vec4
  let rb = WX + 1u;
  // Consecutive threads load along whichever dim of the operand is contiguous in memory, so a warp's
  // reads coalesce: along k for A (m for Aᵀ), along n for B (k for Bᵀ, as in linear).
  let a_kfast = p.a_cs == 1u;
  let b_kfast = p.b_rs == 1u && p.b_cs != 1u;
  var r0 = vec4<f32>(0.0);
  var r1 = vec4<f32>(0.0);
  var r2 = vec4<f32>(0.0);
  var r3 = vec4<f32>(0.0);
  for (var k0 = 0u; k0 < p.k; k0 += BK) {
    for (var s = li; s < BK * WY; s += nt) {
      let kk = select(s / WY, s % BK, a_kfast);
      let mq = select(s % WY, s / BK, a_kfast);
      let m = tm + 4u * mq;
      let k = k0 + kk;
      A4[kk * ra + mq] = vec4<f32>(load_a(bases.x, m, k), load_a(bases.x, m + 1u, k),
                                   load_a(bases.x, m + 2u, k), load_a(bases.x, m + 3u, k));
    }
    for (var s = li; s < BK * WX; s += nt) {
      let kk = select(s / WX, s % BK, b_kfast);
      let nq = select(s % WX, s / BK, b_kfast);
      let n = tn + 4u * nq;
      let k = k0 + kk;
      B4[kk * rb + nq] = vec4<f32>(load_b(bases.y, k, n), load_b(bases.y, k, n + 1u),
                                   load_b(bases.y, k, n + 2u), load_b(bases.y, k, n + 3u));
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      let x = A4[kk * ra + lid.y];
      let u = B4[kk * rb + lid.x];
      r0 = fma(vec4<f32>(x.x), u, r0);
      r1 = fma(vec4<f32>(x.y), u, r1);
      r2 = fma(vec4<f32>(x.z), u, r2);
      r3 = fma(vec4<f32>(x.w), u, r3);
    }
    workgroupBarrier();
  }
  let cbase = p.c_off + wid.z * p.m * p.n;
  let row0 = tm + 4u * lid.y;
  let col0 = tn + 4u * lid.x;
  if (row0 + 3u < p.m && col0 + 3u < p.n) {
    put4(cbase, row0, col0, r0);
    put4(cbase, row0 + 1u, col0, r1);
    put4(cbase, row0 + 2u, col0, r2);
    put4(cbase, row0 + 3u, col0, r3);
    return;
  }
  store4(cbase, row0, col0, r0);
  store4(cbase, row0 + 1u, col0, r1);
  store4(cbase, row0 + 2u, col0, r2);
  store4(cbase, row0 + 3u, col0, r3);
}
