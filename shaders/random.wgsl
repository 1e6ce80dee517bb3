// Counter-based random numbers: Threefry-2x32 with 20 rounds (Salmon et al., "Parallel random numbers:
// as easy as 1, 2, 3", SC 2011), keyed by (seed, stream), counter (pair index, call counter). Only
// adds, rotations and xors: the same bits on every device. Pair i gives elements 2i and 2i+1.

struct Params {
  n: u32,        // elements to write
  stream: u32,   // second key word: which use of the seed (noise, dropout, step index, ...)
  kind: u32,     // 0 = standard normal (Box-Muller), 1 = uniform in (0, 1)
  _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// key[0] = seed, key[1] = counter: per-call values in a buffer, so a compiled step can change them.
@group(0) @binding(1) var<storage, read> key: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

fn rotl(x: u32, r: u32) -> u32 { return (x << r) | (x >> (32u - r)); }

fn threefry(c0: u32, c1: u32, k0: u32, k1: u32) -> vec2<u32> {
  var R = array<u32, 8>(13u, 15u, 26u, 6u, 17u, 29u, 16u, 24u);
  var ks = array<u32, 3>(k0, k1, 0x1BD11BDAu ^ k0 ^ k1);
  var x0 = c0 + k0;
  var x1 = c1 + k1;
  for (var r = 0u; r < 20u; r++) {
    x0 += x1;
    x1 = rotl(x1, R[r % 8u]);
    x1 ^= x0;
    if (r % 4u == 3u) {
      let s = r / 4u + 1u;
      x0 += ks[s % 3u];
      x1 += ks[(s + 1u) % 3u] + s;
    }
  }
  return vec2<u32>(x0, x1);
}

// The top 24 bits as a float strictly inside (0, 1): log() never sees 0.
fn unit(x: u32) -> f32 { return (f32(x >> 8u) + 0.5) * (1.0 / 16777216.0); }

@compute @workgroup_size(256)
fn generate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (2u * i >= p.n) { return; }
  let bits = threefry(i, key[1], key[0], p.stream);
  let u0 = unit(bits.x);
  let u1 = unit(bits.y);
  var a = u0;
  var b = u1;
  if (p.kind == 0u) {
    let rad = sqrt(-2.0 * log(u0));
    // An angle in [-π, π], where WGSL bounds cos and sin's absolute error (2^-11).
    let th = 6.283185307179586 * u1 - 3.141592653589793;
    a = rad * cos(th);
    b = rad * sin(th);
  }
  out[2u * i] = a;
  if (2u * i + 1u < p.n) { out[2u * i + 1u] = b; }
}

// key[1] += 1: advances the call counter on the device, so a replayed step draws new numbers.
@group(0) @binding(3) var<storage, read_write> counter: array<u32>;
@compute @workgroup_size(1)
fn advance() {
  counter[1] = counter[1] + 1u;
}
