// Sum over any set of axes, scaled by alpha (alpha = 1/count gives the mean). The host merges axes
// whose strides chain, so the reduced axes are few and the innermost is long (contiguous for a bias
// gradient over [N, C, H, W] -> C: [N, H*W]). Reads walk it without dividing; only the outer reduced
// index is decoded, once per run of `inner` elements. Two entry points:
//  - sum_each: one thread per output, for many outputs or short sums;
//  - sum_wg: one workgroup per output, its threads splitting the sum, for few long ones.

struct Params {
  n_out: u32,
  out_rank: u32,
  red_rank: u32,
  red_count: u32,
  alpha: f32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
  out_shape: array<vec4<u32>, 2>,   // kept axes, in input order
  out_strides: array<vec4<u32>, 2>, // their input strides
  red_shape: array<vec4<u32>, 2>,   // reduced axes
  red_strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG = 64u;
var<workgroup> partial: array<f32, WG>;

fn dim(v: array<vec4<u32>, 2>, i: u32) -> u32 { return v[i / 4u][i % 4u]; }

// Offset of flat index idx (< the shape's element count) in a strided view; the outermost axis
// needs no division.
fn offset_of(idx: u32, rank: u32, shape: array<vec4<u32>, 2>, strides: array<vec4<u32>, 2>) -> u32 {
  if (rank == 0u) { return 0u; }
  var rem = idx;
  var off = 0u;
  for (var k = rank - 1u; k > 0u; k--) {
    let d = dim(shape, k);
    off += (rem % d) * dim(strides, k);
    rem = rem / d;
  }
  return off + rem * dim(strides, 0u);
}

// Elements first, first + step, ... of each run along the innermost reduced axis, summed.
fn sum_runs(base: u32, first: u32, step: u32) -> f32 {
  let last = p.red_rank - 1u;
  let inner = dim(p.red_shape, last);
  let stride = dim(p.red_strides, last);
  var acc = 0.0;
  for (var q = 0u; q < p.red_count / inner; q++) {
    let at = base + offset_of(q, last, p.red_shape, p.red_strides);
    for (var i = first; i < inner; i += step) { acc += x[at + i * stride]; }
  }
  return acc;
}

@compute @workgroup_size(WG)
fn sum_each(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = gid.x + gid.y * nwg.x * WG;
  if (o >= p.n_out) { return; }
  out[o] = p.alpha * sum_runs(offset_of(o, p.out_rank, p.out_shape, p.out_strides), 0u, 1u);
}

@compute @workgroup_size(WG)
fn sum_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let o = wid.x + wid.y * nwg.x;
  // o is uniform across the workgroup, so this early return keeps barriers in uniform control flow.
  if (o >= p.n_out) { return; }
  let base = offset_of(o, p.out_rank, p.out_shape, p.out_strides);
  var acc = 0.0;
  if (dim(p.red_shape, p.red_rank - 1u) >= WG) {
    acc = sum_runs(base, lid, WG);
  } else {
    // Short runs: the threads split the flat reduced index instead, decoding each element.
    for (var r = lid; r < p.red_count; r += WG) {
      acc += x[base + offset_of(r, p.red_rank, p.red_shape, p.red_strides)];
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
