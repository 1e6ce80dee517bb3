// Softmax row reductions of the flash forward (attention_flash.wgsl) through workgroup memory: the
// path for adapters without the 'subgroups' feature. The LPR lanes that share a row are consecutive
// invocations; each writes its partial value and reads its group's.

var<workgroup> red: array<f32, T>;

fn lanes_max(x: f32, lid: u32) -> f32 {
  if (LPR == 1u) { return x; }
  red[lid] = x;
  workgroupBarrier();
  let b = lid & ~(LPR - 1u);
  var m = red[b];
  for (var i = 1u; i < LPR; i++) { m = max(m, red[b + i]); }
  return m;
}

fn lanes_sum(x: f32, lid: u32) -> f32 {
  if (LPR == 1u) { return x; }
  red[lid] = x;
  workgroupBarrier();
  let b = lid & ~(LPR - 1u);
  var s = red[b];
  for (var i = 1u; i < LPR; i++) { s += red[b + i]; }
  return s;
}
