enable subgroups;

// Softmax row reductions of the flash forward (attention_flash.wgsl) with subgroup shuffles, for
// adapters with the 'subgroups' feature: no workgroup memory and no barrier. The LPR (<= 4) lanes that
// share a row are consecutive invocations, hence (subgroups being at least 4 wide, and invocations
// numbered into subgroups in order) an aligned group of lanes of one subgroup, which a butterfly of
// XOR shuffles reduces. (The spec does not promise that numbering; every implementation known to us
// follows it. Untuned devices run the workgroup-memory path.)

fn lanes_max(x: f32, lid: u32) -> f32 {
  var m = x;
  if (LPR >= 2u) { m = max(m, subgroupShuffleXor(m, 1u)); }
  if (LPR >= 4u) { m = max(m, subgroupShuffleXor(m, 2u)); }
  return m;
}

fn lanes_sum(x: f32, lid: u32) -> f32 {
  var s = x;
  if (LPR >= 2u) { s += subgroupShuffleXor(s, 1u); }
  if (LPR >= 4u) { s += subgroupShuffleXor(s, 2u); }
  return s;
}
