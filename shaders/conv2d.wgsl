// 2-D convolution, NCHW, weights [Cout, Cin/groups, kh, kw] (PyTorch), as three implicit GEMMs per
// group, none of which materialises im2col (conv2d_common.wgsl, in front, holds the uniforms and
// bindings; conv2d_tile.wgsl is the GPU version of the same GEMMs):
//   forward  y[co, (b,oh,ow)]   = sum over k = (ci,ky,kx)  w[co, k] * x[b, ci, oh*s-p+ky*d, ow*s-p+kx*d] + bias[co]
//   data     dx[ci, (b,ih,iw)]  = sum over k = (co,ky,kx)  w[co, ci, ky, kx] * gy[b, co, oh, ow]
//                                 where oh*s = ih + p - ky*d and ow*s = iw + p - kx*d (else no term)
//   weight   dw[co, (ci,ky,kx)] = sum over k = (b,oh,ow)   gy[b, co, oh, ow] * x[b, ci, oh*s-p+ky*d, ...]
// A workgroup computes a TM x TN tile of the GEMM (M rows, N columns) from TK-deep tiles of A (M x K)
// and B (K x N) staged in workgroup memory; each thread accumulates an 8 x 8 block in registers.
// TM is 16, 32 or 64 (WG_M = 2, 4 or 8 threads along M), picked on the host from M: a 64-row tile
// over a 32-row GEMM would do twice the work. workgroup_id.z = group * splits + split: the weight
// gradient, whose M x N is small and K long, may split K into `splits` ranges of `k_split` (a
// multiple of TK), each writing its own partial dw that the host then sums.
// All index arithmetic happens while loading tiles (B rows are stepped without dividing); the FMA
// loop reads workgroup memory only. Out-of-range elements load as zero, so any size works and the
// FMA loop has no branches.
//
// Tuned for SwiftShader (the CPU adapter), which runs four invocations in one SIMD register: a
// memory read whose address differs between invocations is a per-lane gather costing several FMAs,
// and a dynamically indexed private array becomes gathers and scatters too. Hence the large register
// block (4 vec4 reads feed 64 FMAs per K step) and an accumulator indexed only by constants. A branch
// costs more than a store there, so a thread whose block lies inside the output stores it without
// one per element. Measured and rejected there: 8 x 16 blocks (~4% faster, not worth the registers
// on GPUs), 8 x 4 blocks (1.3x slower), unrolling the FMA loop (1.25x slower: Subzero spills more),
// A read straight from storage, and a register-only variant over a zero-padded input (~10% faster
// than tiled, less than the padding costs).

const RM = 8u;     // rows per thread
const RN = 8u;     // columns per thread
override WG_M: u32 = 8u;   // threads along M: 8, 4 or 2
override WG_N: u32 = 8u;   // threads along N
override TK: u32 = 32u;    // K depth of a tile; NT must be a multiple of TK
override NT = WG_M * WG_N;
override TM = WG_M * RM;
override TN = WG_N * RN;
// B columns each thread loads, NT apart: 1 (WG_M = 8), 2 (WG_M = 4) or 4 (WG_M = 2).
override COLS = 8u / WG_M;

// a_tile[kk * TM/4 + m/4][m % 4] = A[m0 + m, k0 + kk]; b_tile[kk * TN/4 + n/4][n % 4] = B[k0 + kk, n0 + n].
// vec4 words, as a vec4 read costs less than four scalar ones.
var<workgroup> a_tile: array<vec4<f32>, TM * TK / 4u>;
var<workgroup> b_tile: array<vec4<f32>, TK * TN / 4u>;

// Thread (tm, tn) owns rows tm*8 .. tm*8+7 and columns tn*8 .. tn*8+7. acc[2j] holds rows 0-3 of
// column j, acc[2j+1] rows 4-7.
fn mma(tm: u32, tn: u32, acc: ptr<function, array<vec4<f32>, 16>>) {
  for (var kk = 0u; kk < TK; kk++) {
    let ab = kk * (TM / 4u) + tm * 2u;
    let a0 = a_tile[ab];
    let a1 = a_tile[ab + 1u];
    let bb = kk * (TN / 4u) + tn * 2u;
    let b0 = b_tile[bb];
    let b1 = b_tile[bb + 1u];
    (*acc)[0] = fma(a0, vec4<f32>(b0.x), (*acc)[0]);
    (*acc)[1] = fma(a1, vec4<f32>(b0.x), (*acc)[1]);
    (*acc)[2] = fma(a0, vec4<f32>(b0.y), (*acc)[2]);
    (*acc)[3] = fma(a1, vec4<f32>(b0.y), (*acc)[3]);
    (*acc)[4] = fma(a0, vec4<f32>(b0.z), (*acc)[4]);
    (*acc)[5] = fma(a1, vec4<f32>(b0.z), (*acc)[5]);
    (*acc)[6] = fma(a0, vec4<f32>(b0.w), (*acc)[6]);
    (*acc)[7] = fma(a1, vec4<f32>(b0.w), (*acc)[7]);
    (*acc)[8] = fma(a0, vec4<f32>(b1.x), (*acc)[8]);
    (*acc)[9] = fma(a1, vec4<f32>(b1.x), (*acc)[9]);
    (*acc)[10] = fma(a0, vec4<f32>(b1.y), (*acc)[10]);
    (*acc)[11] = fma(a1, vec4<f32>(b1.y), (*acc)[11]);
    (*acc)[12] = fma(a0, vec4<f32>(b1.z), (*acc)[12]);
    (*acc)[13] = fma(a1, vec4<f32>(b1.z), (*acc)[13]);
    (*acc)[14] = fma(a0, vec4<f32>(b1.w), (*acc)[14]);
    (*acc)[15] = fma(a1, vec4<f32>(b1.w), (*acc)[15]);
  }
}

// Column j of a thread's block, rows 0-3 (lo) and 4-7 (hi), to out[at + i * rs]. Used when the whole
// block lies inside the output, with constant accumulator indices: the general path's branch per
// element costs more than the store on CPU emulation (10-30% of a 1x1 convolution).
fn put8_y(at: u32, rs: u32, lo: vec4<f32>, hi: vec4<f32>) {
  var l = lo;
  var h = hi;
  if (HAS_RES) {
    l += vec4<f32>(res[at], res[at + rs], res[at + 2u * rs], res[at + 3u * rs]);
    h += vec4<f32>(res[at + 4u * rs], res[at + 5u * rs], res[at + 6u * rs], res[at + 7u * rs]);
  }
  y[at] = l.x; y[at + rs] = l.y; y[at + 2u * rs] = l.z; y[at + 3u * rs] = l.w;
  y[at + 4u * rs] = h.x; y[at + 5u * rs] = h.y; y[at + 6u * rs] = h.z; y[at + 7u * rs] = h.w;
}
fn put8_dx(at: u32, rs: u32, lo: vec4<f32>, hi: vec4<f32>) {
  dx[at] = lo.x; dx[at + rs] = lo.y; dx[at + 2u * rs] = lo.z; dx[at + 3u * rs] = lo.w;
  dx[at + 4u * rs] = hi.x; dx[at + 5u * rs] = hi.y; dx[at + 6u * rs] = hi.z; dx[at + 7u * rs] = hi.w;
}
fn put8_dw(at: u32, rs: u32, lo: vec4<f32>, hi: vec4<f32>) {
  dw[at] = lo.x; dw[at + rs] = lo.y; dw[at + 2u * rs] = lo.z; dw[at + 3u * rs] = lo.w;
  dw[at + 4u * rs] = hi.x; dw[at + 5u * rs] = hi.y; dw[at + 6u * rs] = hi.z; dw[at + 7u * rs] = hi.w;
}

fn put_a(kk: u32, mm: u32, v: f32) { a_tile[kk * (TM / 4u) + mm / 4u][mm % 4u] = v; }
fn put_b(kk: u32, bn: u32, v: f32) { b_tile[kk * (TN / 4u) + bn / 4u][bn % 4u] = v; }

// Loader roles: for A, thread t loads column t % TK, rows t / TK + r * (NT / TK); for B, column t and,
// when COLS > 1, columns t + NT, t + 2 NT, ... A thread's columns never change, so their index math
// is done once.

// Forward B column n = (b, oh, ow): where its input window starts, and its image's base in x.
struct FwdCol { ih0: i32, iw0: i32, xbase: u32, ok: bool }
fn fwd_col(n: u32, g: u32) -> FwdCol {
  let ohw = p.out_h * p.out_w;
  let nr = n % ohw;
  return FwdCol(i32((nr / p.out_w) * p.stride_h) - i32(p.pad_h), i32((nr % p.out_w) * p.stride_w) - i32(p.pad_w),
                ((n / ohw) * p.cin + g * p.cin_g) * p.in_h * p.in_w, n < p.gemm_n);
}
fn fwd_load(c: FwdCol, ci: u32, ky: u32, kx: u32, k_ok: bool) -> f32 {
  let ih = c.ih0 + i32(ky * p.dil_h);
  let iw = c.iw0 + i32(kx * p.dil_w);
  // Negative ih/iw wrap to huge u32 values and fail the bound checks.
  let ok = c.ok && k_ok && u32(ih) < p.in_h && u32(iw) < p.in_w;
  return select(0.0, x[select(0u, c.xbase + (ci * p.in_h + u32(ih)) * p.in_w + u32(iw), ok)], ok);
}

// y as a GEMM: M = cout_g, N = batch*out_h*out_w, K = cin_g*kh*kw.
@compute @workgroup_size(NT)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let g = wid.z;
  let m0 = wid.y * TM;
  let n0 = wid.x * TN;
  let khw = p.k_h * p.k_w;
  let c0 = fwd_col(n0 + t, g);
  let c1 = fwd_col(n0 + t + NT, g);
  let c2 = fwd_col(n0 + t + 2u * NT, g);
  let c3 = fwd_col(n0 + t + 3u * NT, g);
  let ak = t % TK;
  let am = t / TK;
  let wbase = g * p.cout_g;

  var acc: array<vec4<f32>, 16>;
  for (var k0 = 0u; k0 < p.gemm_k; k0 += TK) {
    // A[co, k] = w[g*cout_g + co, k]
    let ka = k0 + ak;
    for (var r = 0u; r < TM * TK / NT; r++) {
      let mm = am + r * (NT / TK);
      let m = m0 + mm;
      let ok = m < p.gemm_m && ka < p.gemm_k;
      put_a(ak, mm, select(0.0, wt[select(0u, (wbase + m) * p.gemm_k + ka, ok)], ok));
    }
    // B[(ci,ky,kx), (b,oh,ow)]: rows k0 .. k0+TK-1, stepping (ci, ky, kx).
    var ci = k0 / khw;
    var ky = (k0 % khw) / p.k_w;
    var kx = k0 % p.k_w;
    for (var kk = 0u; kk < TK; kk++) {
      let k_ok = k0 + kk < p.gemm_k;
      put_b(kk, t, fwd_load(c0, ci, ky, kx, k_ok));
      if (COLS > 1u) { put_b(kk, t + NT, fwd_load(c1, ci, ky, kx, k_ok)); }
      if (COLS > 2u) {
        put_b(kk, t + 2u * NT, fwd_load(c2, ci, ky, kx, k_ok));
        put_b(kk, t + 3u * NT, fwd_load(c3, ci, ky, kx, k_ok));
      }
      kx += 1u;
      let wx = kx == p.k_w;
      kx = select(kx, 0u, wx);
      ky += u32(wx);
      let wy = ky == p.k_h;
      ky = select(ky, 0u, wy);
      ci += u32(wy);
    }
    workgroupBarrier();
    mma(t / WG_N, t % WG_N, &acc);
    workgroupBarrier();
  }

  let tm = t / WG_N;
  let tn = t % WG_N;
  let ohw = p.out_h * p.out_w;
  let n = n0 + tn * RN;
  let m = m0 + tm * RM;
  if (n + RN <= p.gemm_n && m + RM <= p.gemm_m) {
    // The whole 8 x 8 block is inside: no branch per element (see put8_y).
    let co = wbase + m;
    var bl = vec4<f32>(0.0);
    var bh = vec4<f32>(0.0);
    if (HAS_BIAS) {
      bl = vec4<f32>(bias[co], bias[co + 1u], bias[co + 2u], bias[co + 3u]);
      bh = vec4<f32>(bias[co + 4u], bias[co + 5u], bias[co + 6u], bias[co + 7u]);
    }
    put8_y(((n) / ohw * p.cout + co) * ohw + (n) % ohw, ohw, acc[0] + bl, acc[1] + bh);
    put8_y(((n + 1u) / ohw * p.cout + co) * ohw + (n + 1u) % ohw, ohw, acc[2] + bl, acc[3] + bh);
    put8_y(((n + 2u) / ohw * p.cout + co) * ohw + (n + 2u) % ohw, ohw, acc[4] + bl, acc[5] + bh);
    put8_y(((n + 3u) / ohw * p.cout + co) * ohw + (n + 3u) % ohw, ohw, acc[6] + bl, acc[7] + bh);
    put8_y(((n + 4u) / ohw * p.cout + co) * ohw + (n + 4u) % ohw, ohw, acc[8] + bl, acc[9] + bh);
    put8_y(((n + 5u) / ohw * p.cout + co) * ohw + (n + 5u) % ohw, ohw, acc[10] + bl, acc[11] + bh);
    put8_y(((n + 6u) / ohw * p.cout + co) * ohw + (n + 6u) % ohw, ohw, acc[12] + bl, acc[13] + bh);
    put8_y(((n + 7u) / ohw * p.cout + co) * ohw + (n + 7u) % ohw, ohw, acc[14] + bl, acc[15] + bh);
  } else {
    for (var j = 0u; j < RN; j++) {
      let n = n0 + tn * RN + j;
      if (n >= p.gemm_n) { continue; }
      let ob = (n / ohw) * p.cout * ohw + n % ohw;
      for (var i = 0u; i < RM; i++) {
        let m = m0 + tm * RM + i;
        if (m >= p.gemm_m) { continue; }
        let co = wbase + m;
        var v = acc[2u * j + i / 4u][i % 4u];
        if (HAS_BIAS) { v += bias[co]; }
        if (HAS_RES) { v += res[ob + co * ohw]; }
        y[ob + co * ohw] = v;
      }
    }
  }
}

// Data-gradient B column n = (b, ih, iw): padded input position and its image's base in gy.
struct DataCol { ihp: i32, iwp: i32, gbase: u32, ok: bool }
fn data_col(n: u32, g: u32) -> DataCol {
  let hw = p.in_h * p.in_w;
  let nr = n % hw;
  return DataCol(i32(nr / p.in_w + p.pad_h), i32(nr % p.in_w + p.pad_w),
                 ((n / hw) * p.cout + g * p.cout_g) * p.out_h * p.out_w, n < p.gemm_n);
}
// B[(co,ky,kx), (b,ih,iw)] = gy[b, co, oh, ow] where oh*stride = ih + pad - ky*dil (same for w). The
// quotient by the stride is taken in f32: exact for numerators below 2^24 (checked on the host), and
// vectorised, unlike u32 division; with stride 1 (UNIT_STRIDE) there is none (14% of dx's time).
fn data_load(c: DataCol, co: u32, ky: u32, kx: u32, k_ok: bool) -> f32 {
  var oh = c.ihp - i32(ky * p.dil_h);
  var ow = c.iwp - i32(kx * p.dil_w);
  var hit = true;
  if (!UNIT_STRIDE) {
    let th = oh;
    let tw = ow;
    oh = i32(floor(f32(th) / f32(p.stride_h)));
    ow = i32(floor(f32(tw) / f32(p.stride_w)));
    hit = oh * i32(p.stride_h) == th && ow * i32(p.stride_w) == tw;
  }
  // Negative quotients wrap to huge u32 values and fail the range checks.
  let ok = c.ok && k_ok && hit && u32(oh) < p.out_h && u32(ow) < p.out_w;
  return select(0.0, gy[select(0u, c.gbase + (co * p.out_h + u32(oh)) * p.out_w + u32(ow), ok)], ok);
}

// dx as a GEMM: M = cin_g, N = batch*in_h*in_w, K = cout_g*kh*kw.
@compute @workgroup_size(NT)
fn backward_data(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let g = wid.z;
  let m0 = wid.y * TM;
  let n0 = wid.x * TN;
  let khw = p.k_h * p.k_w;
  let hw = p.in_h * p.in_w;
  let c0 = data_col(n0 + t, g);
  let c1 = data_col(n0 + t + NT, g);
  let c2 = data_col(n0 + t + 2u * NT, g);
  let c3 = data_col(n0 + t + 3u * NT, g);
  let ak = t % TK;
  let am = t / TK;

  var acc: array<vec4<f32>, 16>;
  for (var k0 = 0u; k0 < p.gemm_k; k0 += TK) {
    // A[ci, (co,ky,kx)] = w[g*cout_g + co, ci, ky, kx]
    let ka = k0 + ak;
    let a_co = ka / khw;
    let a_kyx = ka % khw;
    for (var r = 0u; r < TM * TK / NT; r++) {
      let mm = am + r * (NT / TK);
      let m = m0 + mm;
      let ok = m < p.gemm_m && ka < p.gemm_k;
      put_a(ak, mm, select(0.0, wt[select(0u, ((g * p.cout_g + a_co) * p.cin_g + m) * khw + a_kyx, ok)], ok));
    }
    // Rows k0 .. k0+TK-1, stepping (co, ky, kx).
    var co = k0 / khw;
    var ky = (k0 % khw) / p.k_w;
    var kx = k0 % p.k_w;
    for (var kk = 0u; kk < TK; kk++) {
      let k_ok = k0 + kk < p.gemm_k;
      put_b(kk, t, data_load(c0, co, ky, kx, k_ok));
      if (COLS > 1u) { put_b(kk, t + NT, data_load(c1, co, ky, kx, k_ok)); }
      if (COLS > 2u) {
        put_b(kk, t + 2u * NT, data_load(c2, co, ky, kx, k_ok));
        put_b(kk, t + 3u * NT, data_load(c3, co, ky, kx, k_ok));
      }
      kx += 1u;
      let wx = kx == p.k_w;
      kx = select(kx, 0u, wx);
      ky += u32(wx);
      let wy = ky == p.k_h;
      ky = select(ky, 0u, wy);
      co += u32(wy);
    }
    workgroupBarrier();
    mma(t / WG_N, t % WG_N, &acc);
    workgroupBarrier();
  }

  let tm = t / WG_N;
  let tn = t % WG_N;
  let n = n0 + tn * RN;
  let m = m0 + tm * RM;
  if (n + RN <= p.gemm_n && m + RM <= p.gemm_m) {
    let ci = g * p.cin_g + m;
    put8_dx(((n) / hw * p.cin + ci) * hw + (n) % hw, hw, acc[0], acc[1]);
    put8_dx(((n + 1u) / hw * p.cin + ci) * hw + (n + 1u) % hw, hw, acc[2], acc[3]);
    put8_dx(((n + 2u) / hw * p.cin + ci) * hw + (n + 2u) % hw, hw, acc[4], acc[5]);
    put8_dx(((n + 3u) / hw * p.cin + ci) * hw + (n + 3u) % hw, hw, acc[6], acc[7]);
    put8_dx(((n + 4u) / hw * p.cin + ci) * hw + (n + 4u) % hw, hw, acc[8], acc[9]);
    put8_dx(((n + 5u) / hw * p.cin + ci) * hw + (n + 5u) % hw, hw, acc[10], acc[11]);
    put8_dx(((n + 6u) / hw * p.cin + ci) * hw + (n + 6u) % hw, hw, acc[12], acc[13]);
    put8_dx(((n + 7u) / hw * p.cin + ci) * hw + (n + 7u) % hw, hw, acc[14], acc[15]);
  } else {
    for (var j = 0u; j < RN; j++) {
      let n = n0 + tn * RN + j;
      if (n >= p.gemm_n) { continue; }
      let ob = ((n / hw) * p.cin + g * p.cin_g) * hw + n % hw;
      for (var i = 0u; i < RM; i++) {
        let m = m0 + tm * RM + i;
        if (m >= p.gemm_m) { continue; }
        dx[ob + m * hw] = acc[2u * j + i / 4u][i % 4u];
      }
    }
  }
}

// Weight-gradient B column n = (ci, ky, kx): the tap's offset from the output pixel, and x's channel base.
struct WeightCol { oy: i32, ox: i32, xcol: u32, ok: bool }
fn weight_col(n: u32, g: u32) -> WeightCol {
  let khw = p.k_h * p.k_w;
  let kyx = n % khw;
  return WeightCol(i32((kyx / p.k_w) * p.dil_h) - i32(p.pad_h), i32((kyx % p.k_w) * p.dil_w) - i32(p.pad_w),
                   (g * p.cin_g + n / khw) * p.in_h * p.in_w, n < p.gemm_n);
}
// B[(b,oh,ow), (ci,ky,kx)] = x[b, g*cin_g + ci, oh*stride + ky*dil - pad, ...]
fn weight_load(c: WeightCol, kb: u32, oh: u32, ow: u32, k_ok: bool) -> f32 {
  let ih = i32(oh * p.stride_h) + c.oy;
  let iw = i32(ow * p.stride_w) + c.ox;
  let ok = c.ok && k_ok && u32(ih) < p.in_h && u32(iw) < p.in_w;
  return select(0.0, x[select(0u, kb * p.cin * p.in_h * p.in_w + c.xcol + u32(ih) * p.in_w + u32(iw), ok)], ok);
}

// dw as a GEMM: M = cout_g, N = cin_g*kh*kw, K = batch*out_h*out_w, this workgroup's split of K only.
@compute @workgroup_size(NT)
fn backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let g = wid.z / p.splits;
  let split = wid.z % p.splits;
  let m0 = wid.y * TM;
  let n0 = wid.x * TN;
  let ohw = p.out_h * p.out_w;
  let c0 = weight_col(n0 + t, g);
  let c1 = weight_col(n0 + t + NT, g);
  let c2 = weight_col(n0 + t + 2u * NT, g);
  let c3 = weight_col(n0 + t + 3u * NT, g);
  let ak = t % TK;
  let am = t / TK;
  let k_beg = split * p.k_split;
  let k_end = min(p.gemm_k, k_beg + p.k_split);

  var acc: array<vec4<f32>, 16>;
  for (var k0 = k_beg; k0 < k_end; k0 += TK) {
    // A[co, (b,oh,ow)] = gy[b, g*cout_g + co, oh, ow]
    let ka = k0 + ak;
    let a_base = ((ka / ohw) * p.cout + g * p.cout_g) * ohw + ka % ohw;
    for (var r = 0u; r < TM * TK / NT; r++) {
      let mm = am + r * (NT / TK);
      let m = m0 + mm;
      let ok = m < p.gemm_m && ka < k_end;
      put_a(ak, mm, select(0.0, gy[select(0u, a_base + m * ohw, ok)], ok));
    }
    // Rows k0 .. k0+TK-1, stepping (b, oh, ow).
    var kb = k0 / ohw;
    var oh = (k0 % ohw) / p.out_w;
    var ow = k0 % p.out_w;
    for (var kk = 0u; kk < TK; kk++) {
      let k_ok = k0 + kk < k_end;
      put_b(kk, t, weight_load(c0, kb, oh, ow, k_ok));
      if (COLS > 1u) { put_b(kk, t + NT, weight_load(c1, kb, oh, ow, k_ok)); }
      if (COLS > 2u) {
        put_b(kk, t + 2u * NT, weight_load(c2, kb, oh, ow, k_ok));
        put_b(kk, t + 3u * NT, weight_load(c3, kb, oh, ow, k_ok));
      }
      ow += 1u;
      let wx = ow == p.out_w;
      ow = select(ow, 0u, wx);
      oh += u32(wx);
      let wy = oh == p.out_h;
      oh = select(oh, 0u, wy);
      kb += u32(wy);
    }
    workgroupBarrier();
    mma(t / WG_N, t % WG_N, &acc);
    workgroupBarrier();
  }

  // Split s writes its partial sums to dw[s] (dw is [splits, cout, gemm_n]).
  let tm = t / WG_N;
  let tn = t % WG_N;
  let base = (split * p.cout + g * p.cout_g) * p.gemm_n;
  let n = n0 + tn * RN;
  let m = m0 + tm * RM;
  if (n + RN <= p.gemm_n && m + RM <= p.gemm_m) {
    let at = base + m * p.gemm_n;
    put8_dw(at + n, p.gemm_n, acc[0], acc[1]);
    put8_dw(at + n + 1u, p.gemm_n, acc[2], acc[3]);
    put8_dw(at + n + 2u, p.gemm_n, acc[4], acc[5]);
    put8_dw(at + n + 3u, p.gemm_n, acc[6], acc[7]);
    put8_dw(at + n + 4u, p.gemm_n, acc[8], acc[9]);
    put8_dw(at + n + 5u, p.gemm_n, acc[10], acc[11]);
    put8_dw(at + n + 6u, p.gemm_n, acc[12], acc[13]);
    put8_dw(at + n + 7u, p.gemm_n, acc[14], acc[15]);
  } else {
    for (var j = 0u; j < RN; j++) {
      let n = n0 + tn * RN + j;
      if (n >= p.gemm_n) { continue; }
      for (var i = 0u; i < RM; i++) {
        let m = m0 + tm * RM + i;
        if (m >= p.gemm_m) { continue; }
        dw[base + m * p.gemm_n + n] = acc[2u * j + i / 4u][i % 4u];
      }
    }
  }
}
