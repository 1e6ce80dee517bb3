// Softmax along one axis of x viewed as [outer, len, inner]: a row (o, i) has `len` elements lying
// `inner` apart (inner = 1 for the last axis). A workgroup of WG threads handles WG / T rows with T
// threads each (T = 1 for short rows: no barrier at all). Max-subtracted, so large logits are safe.

struct Params {
  rows: u32,   // outer * inner
  len: u32,    // size of the softmax axis
  inner: u32,  // product of the axes after it (the stride along the row)
  _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;   // backward: the forward's output
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const WG = 64u;
override T: u32 = 1u;  // threads per row: a power of two <= WG

// Row reductions: each thread writes its partial, then adds up its row's T partials itself, so a
// reduction costs one barrier (SwiftShader pays a fibre switch per 4-lane subgroup per barrier).
// One array per reduction, so no barrier is needed before the next one reuses workgroup memory.
var<workgroup> red_a: array<f32, WG>;
var<workgroup> red_b: array<f32, WG>;

const F32_MAX = 3.4028234663852886e38;

struct Row { base: u32, len: u32, t: u32, first: u32 }

// This thread's row: first element, length (0 past the last row, so idle threads still reach every
// barrier), its index within the row's T threads, and where the row's partials start in red_*.
fn row_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Row {
  let slot = lid / T;
  let r = (wid.x + wid.y * nwg.x) * (WG / T) + slot;
  let o = r / p.inner;
  let base = o * p.len * p.inner + (r - o * p.inner);
  return Row(base, select(0u, p.len, r < p.rows), lid % T, slot * T);
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg, lid);
  let st = p.inner;

  var m = -F32_MAX;
  for (var k = row.t; k < row.len; k += T) { m = max(m, x[row.base + k * st]); }
  if (T > 1u) {
    red_a[lid] = m;
    workgroupBarrier();
    for (var i = 0u; i < T; i++) { m = max(m, red_a[row.first + i]); }
  }

  // exp once per element: store it, then rescale what this same thread stored.
  var s = 0.0;
  for (var k = row.t; k < row.len; k += T) {
    let e = exp(x[row.base + k * st] - m);
    out[row.base + k * st] = e;
    s += e;
  }
  if (T > 1u) {
    red_b[lid] = s;
    workgroupBarrier();
    s = 0.0;
    for (var i = 0u; i < T; i++) { s += red_b[row.first + i]; }
  }
  let inv = 1.0 / s;
  for (var k = row.t; k < row.len; k += T) { out[row.base + k * st] *= inv; }
}

// dx = y * (dy - sum(dy * y)) along the row.
@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg, lid);
  let st = p.inner;

  var dot = 0.0;
  for (var k = row.t; k < row.len; k += T) { dot += dy[row.base + k * st] * y[row.base + k * st]; }
  if (T > 1u) {
    red_a[lid] = dot;
    workgroupBarrier();
    dot = 0.0;
    for (var i = 0u; i < T; i++) { dot += red_a[row.first + i]; }
  }
  for (var k = row.t; k < row.len; k += T) {
    let i = row.base + k * st;
    out[i] = y[i] * (dy[i] - dot);
  }
}
