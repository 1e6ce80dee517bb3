// Row gather by index and its adjoint, the deterministic segment sum by index. The embedding op uses
// both; the codebook lookup uses the segment sum for its codebook gradient.
//
// A "source row" m of the segment sum is a strided vector: element c of row m lives at
//   (m / inner) * outer_stride + (m % inner) * inner_stride + c * col_stride,
// so [M, E] row-major data (inner = 1) and the spatial vectors of an NCHW tensor (inner = H*W,
// col_stride = H*W) are both read in place.

struct Params {
  rows: u32,          // M: number of indices (source rows)
  table_rows: u32,    // V: rows of the table / of the segment sum
  width: u32,         // E: row length
  inner: u32,
  outer_stride: u32,
  inner_stride: u32,
  col_stride: u32,
  alpha: f32,         // segment_reduce: out = alpha * sum
  parts: u32,         // segment sum: rows are split into `parts` runs of `part_rows` rows
  part_rows: u32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> indices: array<i32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> a: array<f32>;
@group(0) @binding(5) var<storage, read> b: array<f32>;

// segment_scatter sums a - b instead of a (the codebook gradient sums e_k - z without a temporary).
override SUB_B: bool = false;

// out[r, c] = table[indices[r], c]; an index outside [0, V) reads 0. Clamping first keeps every
// memory access in bounds whatever the index holds.
@compute @workgroup_size(256)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.rows * p.width) { return; }
  let r = i / p.width;
  let c = i - r * p.width;
  let k = indices[r];
  let kc = clamp(k, 0, i32(p.table_rows) - 1);
  out[i] = select(0.0, table[u32(kc) * p.width + c], k == kc);
}

fn src(base: u32, col: u32) -> f32 {
  if (col >= p.width) { return 0.0; }
  let o = base + col * p.col_stride;
  if (SUB_B) { return a[o] - b[o]; }
  return a[o];
}

// Segment sum, pass 1: rows are split into `parts` runs of `part_rows`; one thread per (run, block of
// 4 columns) adds its rows, in increasing order, into that run's own zeroed slab out[part, V, E].
// Each slab has a single writer per element, so no atomics are needed and the order is fixed.
@compute @workgroup_size(64)
fn segment_scatter(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 64u;
  let blocks = (p.width + 3u) / 4u;
  if (i >= p.parts * blocks) { return; }
  let part = i / blocks;
  let col0 = (i - part * blocks) * 4u;
  let m0 = part * p.part_rows;
  let m1 = min(m0 + p.part_rows, p.rows);
  let slab = part * p.table_rows * p.width + col0;
  // Row m sits at (m / inner) * outer_stride + (m % inner) * inner_stride: step the quotient and
  // remainder instead of dividing per row.
  var q = m0 / p.inner;
  var r = m0 - q * p.inner;
  for (var m = m0; m < m1; m++) {
    let base = q * p.outer_stride + r * p.inner_stride;
    let k = indices[m];
    if (k >= 0 && u32(k) < p.table_rows) {
      let o = slab + u32(k) * p.width;
      out[o] += src(base, col0);
      if (col0 + 1u < p.width) { out[o + 1u] += src(base, col0 + 1u); }
      if (col0 + 2u < p.width) { out[o + 2u] += src(base, col0 + 2u); }
      if (col0 + 3u < p.width) { out[o + 3u] += src(base, col0 + 3u); }
    }
    r += 1u;
    let wrap = r == p.inner;
    r = select(r, 0u, wrap);
    q += select(0u, 1u, wrap);
  }
}

// Segment sum, pass 2: out[j] = alpha * sum over parts of a[part, j], parts in increasing order.
@compute @workgroup_size(256)
fn segment_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let j = gid.x + gid.y * nwg.x * 256u;
  let n = p.table_rows * p.width;
  if (j >= n) { return; }
  var s = 0.0;
  for (var part = 0u; part < p.parts; part++) { s += a[part * n + j]; }
  out[j] = p.alpha * s;
}
