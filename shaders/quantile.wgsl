// The q-quantile of |x| in each row of x [N, M] (contiguous), for dynamic thresholding (Imagen;
// diffusers' _threshold_sample). As torch.quantile, it interpolates linearly between order
// statistics: at position q·(M-1) = k + frac, the k-th smallest |x| (0-based) plus frac times the
// step to the next one.
// Non-negative floats order as their bit patterns do, so the k-th smallest |x| is found by bisection
// over u32 bit patterns in [0, +inf]: 31 rounds, each counting how many |x| are at most the middle.
// A workgroup per row: the rows are few (a batch) and short (one image or latent), so a sort or a
// per-element rank would cost more than 32 reading passes.

struct Params {
  n: u32,        // rows
  m: u32,        // elements per row
  k: u32,        // floor(q·(M-1))
  frac: f32,     // q·(M-1) - k
  gx: u32,       // workgroups along x (rows are spread over x and y)
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG = 256u;
const INF_BITS = 0x7f800000u;
var<workgroup> count: atomic<u32>;
var<workgroup> next_bits: atomic<u32>;

@compute @workgroup_size(WG)
fn abs_quantile(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let row = wg.x + wg.y * p.gx; // the same for the whole workgroup: returning is uniform
  if (row >= p.n) { return; }
  let base = row * p.m;
  // Invariant: the answer's bits lie in [lo, hi]; the answer is the least b with #{|x| <= b} > k.
  var lo = 0u;
  var hi = INF_BITS;
  for (var round = 0u; round < 31u; round++) {
    let mid = lo + (hi - lo) / 2u;
    if (t == 0u) { atomicStore(&count, 0u); }
    workgroupBarrier();
    var c = 0u;
    for (var i = t; i < p.m; i += WG) {
      if (bitcast<u32>(abs(x[base + i])) <= mid) { c++; }
    }
    atomicAdd(&count, c);
    workgroupBarrier();
    let total = atomicLoad(&count);
    workgroupBarrier(); // everyone has read it before the next round clears it
    if (total > p.k) { hi = mid; } else { lo = min(mid + 1u, hi); }
  }
  // The next order statistic: the same value if it repeats, else the least |x| above it.
  if (t == 0u) {
    atomicStore(&count, 0u);
    atomicStore(&next_bits, INF_BITS);
  }
  workgroupBarrier();
  var c = 0u;
  var above = INF_BITS;
  for (var i = t; i < p.m; i += WG) {
    let b = bitcast<u32>(abs(x[base + i]));
    if (b <= lo) { c++; } else { above = min(above, b); }
  }
  atomicAdd(&count, c);
  atomicMin(&next_bits, above);
  workgroupBarrier();
  if (t == 0u) {
    let v = bitcast<f32>(lo);
    var w = v;
    if (p.frac > 0.0 && atomicLoad(&count) <= p.k + 1u) { w = bitcast<f32>(atomicLoad(&next_bits)); }
    out[row] = v + (w - v) * p.frac;
  }
}
