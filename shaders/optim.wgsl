// The optimizer over all parameters at once: parameters, gradients and moments each live in one flat
// buffer with the same layout, so one dispatch updates the whole model. The step count, learning rate
// and clipping factor live in a small state buffer on the device: a compiled training step replays
// without the host writing anything.
//
// state: [0] step t (updates done so far), [1] gradient norm before clipping, [2] clip factor,
//        [3] learning rate of the last update, [4] beta1^t, [5] beta2^t (running products: pow() in
//        f32 loses ~3e-4 of 1 - beta2^t through log2 near 1; the products stay within ulps)

struct Params {
  n: u32,          // elements in the flat buffers
  partials: u32,   // workgroups of the norm's first pass
  kind: u32,       // 0 Adam (L2 weight decay added to the gradient), 1 AdamW (decoupled decay)
  schedule: u32,   // 0 constant, 1 cosine to min_lr, 2 linear to min_lr (after warm-up)
  lr: f32,
  min_lr: f32,
  warmup: f32,     // steps of linear warm-up from 0
  total: f32,      // steps over which the schedule decays
  beta1: f32,
  beta2: f32,
  eps: f32,
  weight_decay: f32,
  max_norm: f32,   // clip the global gradient norm to this (0: no clipping)
  ema_decay: f32,
  ema_warmup: u32, // 1: decay min(ema_decay, (1 + t)/(10 + t)) after t earlier updates (diffusers' EMA warm-up)
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> state: array<f32>;
@group(0) @binding(6) var<storage, read_write> partial: array<f32>;
@group(0) @binding(7) var<storage, read> params_in: array<f32>;
@group(0) @binding(8) var<storage, read_write> ema: array<f32>;
@group(0) @binding(9) var<storage, read_write> ema_count: array<f32>;

const WG = 256u;
var<workgroup> acc: array<f32, WG>;

fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * WG; }

// Pass 1 of the global norm: each workgroup sums the squares of a strided share of the gradient.
@compute @workgroup_size(WG)
fn norm_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  var s = 0.0;
  for (var i = wid.x * WG + t; i < p.n; i += p.partials * WG) {
    let g = grad[i];
    s += g * g;
  }
  acc[t] = s;
  workgroupBarrier();
  for (var w = WG / 2u; w > 0u; w /= 2u) {
    if (t < w) { acc[t] += acc[t + w]; }
    workgroupBarrier();
  }
  if (t == 0u) { partial[wid.x] = acc[0]; }
}

// Pass 2: the norm, the clip factor and this update's learning rate.
@compute @workgroup_size(WG)
fn norm_final(@builtin(local_invocation_index) t: u32) {
  var s = 0.0;
  for (var i = t; i < p.partials; i += WG) { s += partial[i]; }
  acc[t] = s;
  workgroupBarrier();
  for (var w = WG / 2u; w > 0u; w /= 2u) {
    if (t < w) { acc[t] += acc[t + w]; }
    workgroupBarrier();
  }
  if (t == 0u) {
    let norm = sqrt(acc[0]);
    state[1] = norm;
    // As torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1.
    state[2] = select(1.0, min(1.0, p.max_norm / (norm + 1e-6)), p.max_norm > 0.0);
    let step = state[0] + 1.0;
    var lr = p.lr;
    if (p.warmup > 0.0 && step < p.warmup) { lr = p.lr * step / p.warmup; }
    else if (p.schedule != 0u) {
      let frac = clamp((step - p.warmup) / max(p.total - p.warmup, 1.0), 0.0, 1.0);
      var k = 1.0 - frac;
      if (p.schedule == 1u) { k = 0.5 * (1.0 + sincos(3.141592653589793 * frac).y); }
      lr = p.min_lr + (p.lr - p.min_lr) * k;
    }
    state[3] = lr;
    state[4] = state[4] * p.beta1;
    state[5] = state[5] * p.beta2;
  }
}

// Adam (Kingma & Ba 2015, Algorithm 1) and AdamW (Loshchilov & Hutter 2019, Algorithm 2).
@compute @workgroup_size(WG)
fn adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  if (i >= p.n) { return; }
  let lr = state[3];
  var g = grad[i] * state[2];
  var x = param[i];
  if (p.kind == 0u) { g += p.weight_decay * x; }
  else { x -= lr * p.weight_decay * x; }
  let mi = p.beta1 * m[i] + (1.0 - p.beta1) * g;
  let vi = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
  m[i] = mi;
  v[i] = vi;
  let mhat = mi / (1.0 - state[4]);
  let vhat = vi / (1.0 - state[5]);
  param[i] = x - lr * mhat / (sqrt(vhat) + p.eps);
}

// Ends an update: one more step done.
@compute @workgroup_size(1)
fn finish() {
  state[0] = state[0] + 1.0;
}

// Exponential moving average of the weights: ema = d·ema + (1 - d)·param, with d warming up from the
// count of earlier updates so that the first weights do not linger in the average.
@compute @workgroup_size(WG)
fn ema_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  if (i >= p.n) { return; }
  let t = ema_count[0];
  let d = select(p.ema_decay, min(p.ema_decay, (1.0 + t) / (10.0 + t)), p.ema_warmup != 0u);
  ema[i] = d * ema[i] + (1.0 - d) * params_in[i];
}

// After ema_update: one more update counted (a separate dispatch, so no thread reads a count that
// another has already bumped).
@compute @workgroup_size(1)
fn ema_count_step() {
  ema_count[0] = ema_count[0] + 1.0;
}
