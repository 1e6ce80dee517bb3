// Sum over any set of axes, scaled by alpha (alpha = 1/count gives the mean). One workgroup per
// output element; its threads stride over the reduced elements and combine in workgroup memory.

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

fn offset_of(idx: u32, rank: u32, shape: array<vec4<u32>, 2>, strides: array<vec4<u32>, 2>) -> u32 {
  var rem = idx;
  var off = 0u;
  for (var k = i32(rank) - 1; k >= 0; k--) {
    let d = dim(shape, u32(k));
    off += (rem % d) * dim(strides, u32(k));
    rem = rem / d;
  }
  return off;
}

@compute @workgroup_size(WG)
fn sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
  let o = wid.x + wid.y * nwg.x;
  // o is uniform across the workgroup, so this early return keeps barriers in uniform control flow.
  if (o >= p.n_out) { return; }
  let base = offset_of(o, p.out_rank, p.out_shape, p.out_strides);
  var acc = 0.0;
  for (var r = lid; r < p.red_count; r += WG) {
    acc += x[base + offset_of(r, p.red_rank, p.red_shape, p.red_strides)];
  }
  partial[lid] = acc;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { partial[lid] += partial[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) { out[o] = p.alpha * partial[0]; }
}
