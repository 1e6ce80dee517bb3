// Sum over any set of axes, scaled by alpha (alpha = 1/count gives the mean). The host merges axes
// whose strides chain, so the reduced axes are few and the innermost is long (contiguous for a bias
// gradient over [N, C, H, W] -> C: [N, H*W]). Reads walk that innermost reduced axis (a "run")
// without dividing; only the index of the run is unravelled, once per run. Two entry points:
//  - sum_each: one thread per output, for many outputs or short sums;
//  - sum_wg: one workgroup per output, its threads splitting the sum, for few long ones.
// As in elementwise.wgsl, the ranks are pipeline constants and the axes are packed innermost first
// with the outermost's stride apart, so that unravelling reads the uniform at constant indices and
// takes no branch.

struct Params {
  n_out: u32,
  red_count: u32,   // elements summed per output
  inner: u32,       // length of a run
  inner_stride: u32,
  alpha: f32,
  out_outer: u32,   // stride of the outermost kept axis
  red_outer: u32,   // stride of the outermost reduced axis other than the runs'
  _pad0: u32,
  out_shape: array<vec4<u32>, 2>,   // the other kept axes, innermost first
  out_strides: array<vec4<u32>, 2>, // their input strides
  red_shape: array<vec4<u32>, 2>,   // the other reduced axes (runs' excluded), innermost first
  red_strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

override OUT_RANK: u32 = 1u; // kept axes after merging (0 to 8)
override RED_RANK: u32 = 1u; // reduced axes after merging, the runs' included (1 to 8)
const WG = 64u;
var<workgroup> partial: array<f32, WG>;

fn axis(rem: ptr<function, u32>, off: ptr<function, u32>, d: u32, s: u32) {
  *off += (*rem % d) * s;
  *rem = *rem / d;
}

// Input offset of output o.
fn out_offset(o: u32) -> u32 {
  var rem = o;
  var off = 0u;
  if (OUT_RANK > 1u) { axis(&rem, &off, p.out_shape[0].x, p.out_strides[0].x); }
  if (OUT_RANK > 2u) { axis(&rem, &off, p.out_shape[0].y, p.out_strides[0].y); }
  if (OUT_RANK > 3u) { axis(&rem, &off, p.out_shape[0].z, p.out_strides[0].z); }
  if (OUT_RANK > 4u) { axis(&rem, &off, p.out_shape[0].w, p.out_strides[0].w); }
  if (OUT_RANK > 5u) { axis(&rem, &off, p.out_shape[1].x, p.out_strides[1].x); }
  if (OUT_RANK > 6u) { axis(&rem, &off, p.out_shape[1].y, p.out_strides[1].y); }
  if (OUT_RANK > 7u) { axis(&rem, &off, p.out_shape[1].z, p.out_strides[1].z); }
  return off + rem * p.out_outer;
}

// Offset of run q (an index over the reduced axes but the runs').
fn run_offset(q: u32) -> u32 {
  var rem = q;
  var off = 0u;
  if (RED_RANK - 1u > 1u) { axis(&rem, &off, p.red_shape[0].x, p.red_strides[0].x); }
  if (RED_RANK - 1u > 2u) { axis(&rem, &off, p.red_shape[0].y, p.red_strides[0].y); }
  if (RED_RANK - 1u > 3u) { axis(&rem, &off, p.red_shape[0].z, p.red_strides[0].z); }
  if (RED_RANK - 1u > 4u) { axis(&rem, &off, p.red_shape[0].w, p.red_strides[0].w); }
  if (RED_RANK - 1u > 5u) { axis(&rem, &off, p.red_shape[1].x, p.red_strides[1].x); }
  if (RED_RANK - 1u > 6u) { axis(&rem, &off, p.red_shape[1].y, p.red_strides[1].y); }
  return off + rem * p.red_outer;
}

// Elements first, first + step, ... of every run, summed.
fn sum_runs(base: u32, first: u32, step: u32) -> f32 {
  var acc = 0.0;
  for (var q = 0u; q < p.red_count / p.inner; q++) {
    let at = base + run_offset(q);
    for (var i = first; i < p.inner; i += step) { acc += x[at + i * p.inner_stride]; }
  }
  return acc;
}

@compute @workgroup_size(WG)
fn sum_each(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = gid.x + gid.y * nwg.x * WG;
  if (o >= p.n_out) { return; }
  out[o] = p.alpha * sum_runs(out_offset(o), 0u, 1u);
}

@compute @workgroup_size(WG)
fn sum_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let o = wid.x + wid.y * nwg.x;
  // o is uniform across the workgroup, so this early return keeps barriers in uniform control flow.
  if (o >= p.n_out) { return; }
  let base = out_offset(o);
  var acc = 0.0;
  if (p.inner >= WG) {
    acc = sum_runs(base, lid, WG);
  } else {
    // Short runs: the threads split the flat reduced index instead.
    for (var r = lid; r < p.red_count; r += WG) {
      acc += x[base + run_offset(r / p.inner) + (r % p.inner) * p.inner_stride];
    }
  }
  partial[lid] = acc;
  // One barrier, then one thread adds the 64 partial sums: barriers cost more than 64 adds on CPU
  // emulation, and no more than a tree's 6 rounds on a GPU.
  workgroupBarrier();
  if (lid == 0u) {
    var total = 0.0;
    for (var i = 0u; i < WG; i++) { total += partial[i]; }
    out[o] = p.alpha * total;
  }
}
