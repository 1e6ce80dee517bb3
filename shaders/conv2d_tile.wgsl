// 2-D convolution as the three implicit GEMMs of conv2d.wgsl (see there), on the register-tiled GPU
// core of gemm_tile.wgsl: compiled as gemm_tile.wgsl + conv2d_common.wgsl + this file.
//   forward  y[co, (b,oh,ow)]  = w[co, (ci,ky,kx)] · x-patches,  M = cout_g, N = batch·out_h·out_w
//   data     dx[ci, (b,ih,iw)] = wᵀ[ci, (co,ky,kx)] · gy-taps,  M = cin_g,  N = batch·in_h·in_w
//   weight   dw[co, (ci,ky,kx)] = gy[co, (b,oh,ow)] · x-patches, M = cout_g, N = cin_g·kh·kw, K split
// workgroup_id.z is the group (forward, data) or group·splits + split (weight).
//
// Loads of B (the gathered operand): each thread owns one column n of the tile (t % BN: consecutive
// threads take consecutive pixels, so a warp's reads coalesce along a row of the image) and EB rows
// GT/BN apart. The column's geometry (where its window starts, its image's base) is worked out once;
// the rows' decomposition k -> (c, y, x) is stepped by BK per K step with two compares, never divided
// in the loop. Loads of A: forward reads the weights as vec4 along K where K % 4 == 0 (W_VEC), else
// scalars; data and weight give each thread one k of the step (t % BK: consecutive threads walk the
// contiguous kernel taps / pixels) and EA rows, dividing once per step.
// Out-of-range elements load as zero, so any size works; the epilogue adds the bias and, forward, the
// residual (HAS_RES), and writes NCHW directly.

override W_VEC: bool = false;  // forward: weights as vec4 along K (K % 4 == 0)

// ---------------------------------------------------------------- K rows as (c, y, x), stepped

// Rows k = k_first + e·(GT/BN) (e < EB) of the thread's B loads, decomposed as k = (hi·H + mid)·W + lo
// over dims (W, H): (ci, ky, kx) with (k_w, k_h) forward and data, (b, oh, ow) with (out_w, out_h)
// weight. (Names here avoid those of the bindings: the host reflects bindings by name.)
struct Walk { hi: array<u32, 8>, mid: array<u32, 8>, lo: array<u32, 8> }

fn walk_init(k_first: u32, w: u32, h: u32) -> Walk {
  var s: Walk;
  for (var e = 0u; e < EB; e++) {
    let k = k_first + e * (GT / BN);
    s.lo[e] = k % w;
    s.mid[e] = (k / w) % h;
    s.hi[e] = k / (w * h);
  }
  return s;
}

// Every row += BK: BK = (sh·H + sm)·W + sl with sl < W, sm < H, so each digit wraps at most once.
fn walk_step(s: ptr<function, Walk>, w: u32, h: u32) {
  let sl = BK % w;
  let sm = (BK / w) % h;
  let sh = BK / (w * h);
  for (var e = 0u; e < EB; e++) {
    var lo = (*s).lo[e] + sl;
    var mid = (*s).mid[e] + sm;
    let c_lo = lo >= w;
    lo = select(lo, lo - w, c_lo);
    mid += u32(c_lo);
    let c_mid = mid >= h;
    (*s).lo[e] = lo;
    (*s).mid[e] = select(mid, mid - h, c_mid);
    (*s).hi[e] += sh + u32(c_mid);
  }
}

// Stores the thread's B registers: column t % BN, rows t / BN + e·(GT/BN).
fn store_b_cols(stage: u32, t: u32, r: ptr<function, Regs>) {
  let n = t % BN;
  for (var e = 0u; e < EB; e++) {
    Bs[bs_word(stage, t / BN + e * (GT / BN), n)][n % 4u] = reg_get(r, e);
  }
}

// Stores the thread's A registers: K row t % BK, tile rows t / BK + e·(GT/BK).
fn store_a_krow(stage: u32, t: u32, r: ptr<function, Regs>) {
  for (var e = 0u; e < EA; e++) {
    let m = t / BK + e * (GT / BK);
    As[as_word(stage, t % BK, m)][m % 4u] = reg_get(r, e);
  }
}

// ---------------------------------------------------------------- forward

struct FwdCol { ih0: i32, iw0: i32, xbase: u32, ok: bool }
fn fwd_col(n: u32, g: u32) -> FwdCol {
  let ohw = p.out_h * p.out_w;
  let nr = n % ohw;
  return FwdCol(i32((nr / p.out_w) * p.stride_h) - i32(p.pad_h), i32((nr % p.out_w) * p.stride_w) - i32(p.pad_w),
                ((n / ohw) * p.cin + g * p.cin_g) * p.in_h * p.in_w, n < p.gemm_n);
}

fn fwd_load_b(col: FwdCol, s: ptr<function, Walk>, r: ptr<function, Regs>) {
  for (var e = 0u; e < EB; e++) {
    let ci = (*s).hi[e];
    let ih = col.ih0 + i32((*s).mid[e] * p.dil_h);
    let iw = col.iw0 + i32((*s).lo[e] * p.dil_w);
    // Negative ih/iw wrap to huge u32 values and fail the bound checks.
    let ok = col.ok && ci < p.cin_g && u32(ih) < p.in_h && u32(iw) < p.in_w;
    reg_set(r, e, select(0.0, x[select(0u, col.xbase + (ci * p.in_h + u32(ih)) * p.in_w + u32(iw), ok)], ok));
  }
}

// A = w[g·cout_g + m, k], rows of K = cin_g·kh·kw contiguous.
fn fwd_load_a(g: u32, tm: u32, k0: u32, t: u32, r: ptr<function, Regs>) {
  let base = g * p.cout_g * p.gemm_k;
  if (W_VEC) {
    for (var q = 0u; q < EA / 4u; q++) {
      let s = t + q * GT;
      let m = tm + s / (BK / 4u);
      let k = k0 + 4u * (s % (BK / 4u));
      let ok = m < p.gemm_m && k < p.gemm_k;
      (*r)[q] = select(vec4<f32>(0.0), wt_v4[select(0u, (base + m * p.gemm_k + k) / 4u, ok)], ok);
    }
  } else {
    for (var e = 0u; e < EA; e++) {
      let m = tm + t / BK + e * (GT / BK);
      let k = k0 + t % BK;
      let ok = m < p.gemm_m && k < p.gemm_k;
      reg_set(r, e, select(0.0, wt[select(0u, base + m * p.gemm_k + k, ok)], ok));
    }
  }
}

fn fwd_store_a(stage: u32, t: u32, r: ptr<function, Regs>) {
  if (W_VEC) {
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
  } else {
    store_a_krow(stage, t, r);
  }
}

@compute @workgroup_size(GT)
fn conv_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let g = wid.z;
  let tm = wid.y * BM;
  let tn = wid.x * BN;
  let col = fwd_col(tn + t % BN, g);
  var walk = walk_init(t / BN, p.k_w, p.k_h);
  var acc: Acc;
  var ra: Regs;
  var rb: Regs;
  let steps = (p.gemm_k + BK - 1u) / BK;
  if (steps > 0u) {
    fwd_load_a(g, tm, 0u, t, &ra);
    fwd_load_b(col, &walk, &rb);
    fwd_store_a(0u, t, &ra);
    store_b_cols(0u, t, &rb);
  }
  workgroupBarrier();
  for (var s = 0u; s < steps; s++) {
    let cur = select(0u, s % 2u, STAGES == 2u);
    let more = s + 1u < steps;
    if (more) {
      walk_step(&walk, p.k_w, p.k_h);
      fwd_load_a(g, tm, (s + 1u) * BK, t, &ra);
      fwd_load_b(col, &walk, &rb);
    }
    mma(cur, t / GX, t % GX, &acc);
    if (more) {
      if (STAGES == 1u) { workgroupBarrier(); }
      let nxt = select(0u, 1u - cur, STAGES == 2u);
      fwd_store_a(nxt, t, &ra);
      store_b_cols(nxt, t, &rb);
      workgroupBarrier();
    }
  }
  let ohw = p.out_h * p.out_w;
  for (var j = 0u; j < TN / 4u; j++) {
    for (var jj = 0u; jj < 4u; jj++) {
      let n = tn + tile_col(t % GX, j) + jj;
      if (n >= p.gemm_n) { continue; }
      let ob = (n / ohw) * p.cout * ohw + n % ohw;
      for (var i = 0u; i < TM; i++) {
        let m = tm + tile_row(t / GX, i);
        if (m >= p.gemm_m) { continue; }
        let co = g * p.cout_g + m;
        let at = ob + co * ohw;
        var v = acc[2u * i + j][jj];
        if (HAS_BIAS) { v += bias[co]; }
        if (HAS_RES) { v += res[at]; }
        y[at] = v;
      }
    }
  }
}

// ---------------------------------------------------------------- data gradient

struct DataCol { ihp: i32, iwp: i32, gbase: u32, ok: bool }
fn data_col(n: u32, g: u32) -> DataCol {
  let hw = p.in_h * p.in_w;
  let nr = n % hw;
  return DataCol(i32(nr / p.in_w + p.pad_h), i32(nr % p.in_w + p.pad_w),
                 ((n / hw) * p.cout + g * p.cout_g) * p.out_h * p.out_w, n < p.gemm_n);
}

// B[(co,ky,kx), (b,ih,iw)] = gy[b, co, oh, ow] where oh·stride = ih + pad - ky·dil (same along w);
// the quotient is taken in f32, exact below 2^24 (checked on the host); none with stride 1.
fn data_load_b(col: DataCol, s: ptr<function, Walk>, r: ptr<function, Regs>) {
  for (var e = 0u; e < EB; e++) {
    let co = (*s).hi[e];
    var oh = col.ihp - i32((*s).mid[e] * p.dil_h);
    var ow = col.iwp - i32((*s).lo[e] * p.dil_w);
    var hit = true;
    if (!UNIT_STRIDE) {
      let th = oh;
      let tw = ow;
      oh = i32(floor(f32(th) / f32(p.stride_h)));
      ow = i32(floor(f32(tw) / f32(p.stride_w)));
      hit = oh * i32(p.stride_h) == th && ow * i32(p.stride_w) == tw;
    }
    let ok = col.ok && co < p.cout_g && hit && u32(oh) < p.out_h && u32(ow) < p.out_w;
    reg_set(r, e, select(0.0, gy[select(0u, col.gbase + (co * p.out_h + u32(oh)) * p.out_w + u32(ow), ok)], ok));
  }
}

// A[ci, (co,ky,kx)] = w[g·cout_g + co, ci, ky, kx]: the thread's k = k0 + t % BK, rows m.
fn data_load_a(g: u32, tm: u32, k0: u32, t: u32, r: ptr<function, Regs>) {
  let khw = p.k_h * p.k_w;
  let k = k0 + t % BK;
  let base = ((g * p.cout_g + k / khw) * p.cin_g) * khw + k % khw;
  for (var e = 0u; e < EA; e++) {
    let m = tm + t / BK + e * (GT / BK);
    let ok = m < p.gemm_m && k < p.gemm_k;
    reg_set(r, e, select(0.0, wt[select(0u, base + m * khw, ok)], ok));
  }
}

@compute @workgroup_size(GT)
fn conv_data(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let g = wid.z;
  let tm = wid.y * BM;
  let tn = wid.x * BN;
  let col = data_col(tn + t % BN, g);
  var walk = walk_init(t / BN, p.k_w, p.k_h);
  var acc: Acc;
  var ra: Regs;
  var rb: Regs;
  let steps = (p.gemm_k + BK - 1u) / BK;
  if (steps > 0u) {
    data_load_a(g, tm, 0u, t, &ra);
    data_load_b(col, &walk, &rb);
    store_a_krow(0u, t, &ra);
    store_b_cols(0u, t, &rb);
  }
  workgroupBarrier();
  for (var s = 0u; s < steps; s++) {
    let cur = select(0u, s % 2u, STAGES == 2u);
    let more = s + 1u < steps;
    if (more) {
      walk_step(&walk, p.k_w, p.k_h);
      data_load_a(g, tm, (s + 1u) * BK, t, &ra);
      data_load_b(col, &walk, &rb);
    }
    mma(cur, t / GX, t % GX, &acc);
    if (more) {
      if (STAGES == 1u) { workgroupBarrier(); }
      let nxt = select(0u, 1u - cur, STAGES == 2u);
      store_a_krow(nxt, t, &ra);
      store_b_cols(nxt, t, &rb);
      workgroupBarrier();
    }
  }
  let hw = p.in_h * p.in_w;
  for (var j = 0u; j < TN / 4u; j++) {
    for (var jj = 0u; jj < 4u; jj++) {
      let n = tn + tile_col(t % GX, j) + jj;
      if (n >= p.gemm_n) { continue; }
      let ob = ((n / hw) * p.cin + g * p.cin_g) * hw + n % hw;
      for (var i = 0u; i < TM; i++) {
        let m = tm + tile_row(t / GX, i);
        if (m >= p.gemm_m) { continue; }
        dx[ob + m * hw] = acc[2u * i + j][jj];
      }
    }
  }
}

// ---------------------------------------------------------------- weight gradient

// Column n = (ci, ky, kx): the tap's offset from the output pixel's window start, and x's channel base.
struct WeightCol { oy: i32, ox: i32, xcol: u32, ok: bool }
fn weight_col(n: u32, g: u32) -> WeightCol {
  let khw = p.k_h * p.k_w;
  let kyx = n % khw;
  return WeightCol(i32((kyx / p.k_w) * p.dil_h) - i32(p.pad_h), i32((kyx % p.k_w) * p.dil_w) - i32(p.pad_w),
                   (g * p.cin_g + n / khw) * p.in_h * p.in_w, n < p.gemm_n);
}

// B[(b,oh,ow), (ci,ky,kx)] = x[b, g·cin_g + ci, oh·stride + ky·dil - pad, ...], rows below k_end.
fn weight_load_b(col: WeightCol, s: ptr<function, Walk>, k_row0: u32, k_end: u32, r: ptr<function, Regs>) {
  for (var e = 0u; e < EB; e++) {
    let ih = i32((*s).mid[e] * p.stride_h) + col.oy;
    let iw = i32((*s).lo[e] * p.stride_w) + col.ox;
    let ok = col.ok && k_row0 + e * (GT / BN) < k_end && u32(ih) < p.in_h && u32(iw) < p.in_w;
    reg_set(r, e, select(0.0, x[select(0u, (*s).hi[e] * p.cin * p.in_h * p.in_w + col.xcol + u32(ih) * p.in_w + u32(iw), ok)], ok));
  }
}

// A[co, (b,oh,ow)] = gy[b, g·cout_g + co, oh, ow]: the thread's k = k0 + t % BK, rows m.
fn weight_load_a(g: u32, tm: u32, k0: u32, k_end: u32, t: u32, r: ptr<function, Regs>) {
  let ohw = p.out_h * p.out_w;
  let k = k0 + t % BK;
  let base = ((k / ohw) * p.cout + g * p.cout_g) * ohw + k % ohw;
  for (var e = 0u; e < EA; e++) {
    let m = tm + t / BK + e * (GT / BK);
    let ok = m < p.gemm_m && k < k_end;
    reg_set(r, e, select(0.0, gy[select(0u, base + m * ohw, ok)], ok));
  }
}

@compute @workgroup_size(GT)
fn conv_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let g = wid.z / p.splits;
  let split = wid.z % p.splits;
  let tm = wid.y * BM;
  let tn = wid.x * BN;
  let k_beg = split * p.k_split;
  let k_end = min(p.gemm_k, k_beg + p.k_split);
  let col = weight_col(tn + t % BN, g);
  var walk = walk_init(k_beg + t / BN, p.out_w, p.out_h);
  var acc: Acc;
  var ra: Regs;
  var rb: Regs;
  let steps = (k_end - k_beg + BK - 1u) / BK;
  if (steps > 0u) {
    weight_load_a(g, tm, k_beg, k_end, t, &ra);
    weight_load_b(col, &walk, k_beg + t / BN, k_end, &rb);
    store_a_krow(0u, t, &ra);
    store_b_cols(0u, t, &rb);
  }
  workgroupBarrier();
  for (var s = 0u; s < steps; s++) {
    let cur = select(0u, s % 2u, STAGES == 2u);
    let more = s + 1u < steps;
    if (more) {
      let k0 = k_beg + (s + 1u) * BK;
      walk_step(&walk, p.out_w, p.out_h);
      weight_load_a(g, tm, k0, k_end, t, &ra);
      weight_load_b(col, &walk, k0 + t / BN, k_end, &rb);
    }
    mma(cur, t / GX, t % GX, &acc);
    if (more) {
      if (STAGES == 1u) { workgroupBarrier(); }
      let nxt = select(0u, 1u - cur, STAGES == 2u);
      store_a_krow(nxt, t, &ra);
      store_b_cols(nxt, t, &rb);
      workgroupBarrier();
    }
  }
  // Split s writes its partial sums to dw[s] (dw is [splits, cout, gemm_n]).
  let base = (split * p.cout + g * p.cout_g) * p.gemm_n;
  for (var i = 0u; i < TM; i++) {
    let m = tm + tile_row(t / GX, i);
    if (m >= p.gemm_m) { continue; }
    for (var j = 0u; j < TN / 4u; j++) {
      for (var jj = 0u; jj < 4u; jj++) {
        let n = tn + tile_col(t % GX, j) + jj;
        if (n < p.gemm_n) { dw[base + m * p.gemm_n + n] = acc[2u * i + j][jj]; }
      }
    }
  }
}
