// Codebook upkeep for the vector quantizer, after each training step (no gradient: state updates, as
// the optimizer's kernels). One thread per code k:
//   used this step (count > 0): age = 0;
//   otherwise age += 1, and whenever age reaches a multiple of threshold (threshold > 0) the code
//   restarts from a random encoder output of the batch, vector r = floor(u[k] * M) of z (NCHW). The age
//   counts on through a restart (it is the time since the code was last chosen), so a restarted code
//   that stays unused restarts again `threshold` steps later.
// restart_ema also resets the EMA statistics of a restarted code to one vector: cluster = 1, sum = z_r.

struct Params {
  k: u32,           // codes
  d: u32,           // code length
  m: u32,           // vectors in z: N*H*W
  hw: u32,          // H*W
  threshold: f32,   // steps unused before a restart; 0 turns restarts off
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> counts: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;
@group(0) @binding(3) var<storage, read> z: array<f32>;
@group(0) @binding(4) var<storage, read_write> codebook: array<f32>;
@group(0) @binding(5) var<storage, read_write> age: array<f32>;
@group(0) @binding(6) var<storage, read_write> cluster: array<f32>;
@group(0) @binding(7) var<storage, read_write> embed_sum: array<f32>;

// Where element c of vector r of z lives; r is clamped so that u = 1 - 2^-24 stays in bounds.
fn z_at(r: u32, c: u32) -> u32 {
  return (r / p.hw) * p.d * p.hw + c * p.hw + (r % p.hw);
}

// The new age of code k, and whether it restarts now.
fn next_age(k: u32) -> f32 {
  if (counts[k] > 0.5) { return 0.0; }
  return age[k] + 1.0;
}

fn restarts(a: f32) -> bool {
  return p.threshold > 0.0 && a > 0.0 && a % p.threshold == 0.0;
}

fn source_row(k: u32) -> u32 {
  return min(u32(u[k] * f32(p.m)), p.m - 1u);
}

@compute @workgroup_size(64)
fn restart(@builtin(global_invocation_id) gid: vec3<u32>) {
  let k = gid.x;
  if (k >= p.k) { return; }
  let a = next_age(k);
  if (!restarts(a)) { age[k] = a; return; }
  let r = source_row(k);
  for (var c = 0u; c < p.d; c++) { codebook[k * p.d + c] = z[z_at(r, c)]; }
  age[k] = a;
}

@compute @workgroup_size(64)
fn restart_ema(@builtin(global_invocation_id) gid: vec3<u32>) {
  let k = gid.x;
  if (k >= p.k) { return; }
  let a = next_age(k);
  if (!restarts(a)) { age[k] = a; return; }
  let r = source_row(k);
  for (var c = 0u; c < p.d; c++) {
    let v = z[z_at(r, c)];
    codebook[k * p.d + c] = v;
    embed_sum[k * p.d + c] = v;
  }
  cluster[k] = 1.0;
  age[k] = a;
}
