// Elementwise kernels: a strided unary map (which also serves as copy, broadcast, slice, permute and
// concat), its gradient, and a broadcasting binary map. The op is chosen by the override constant OP,
// so each op is its own specialised pipeline; shapes and strides travel in the uniform (rank <= 8).

struct Params {
  n: u32,          // number of output elements
  rank: u32,
  a_offset: u32,
  b_offset: u32,   // unary: offset into out
  alpha: f32,      // unary: out = alpha * f(x) + beta
  beta: f32,
  _pad0: u32,
  _pad1: u32,
  shape: array<vec4<u32>, 2>,     // iteration shape
  a_strides: array<vec4<u32>, 2>, // element strides of the first input (0 where broadcast)
  b_strides: array<vec4<u32>, 2>, // second input (binary) or output (unary)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

override OP: u32 = 0u;
override WG: u32 = 256u;

// unary op codes
const U_IDENTITY = 0u; const U_NEG = 1u; const U_EXP = 2u; const U_LOG = 3u; const U_SQRT = 4u;
const U_SILU = 5u; const U_RELU = 6u; const U_GELU = 7u; const U_TANH = 8u; const U_SIGMOID = 9u;
const U_SQUARE = 10u; const U_RECIP = 11u;
// binary op codes
const B_ADD = 0u; const B_SUB = 1u; const B_MUL = 2u; const B_DIV = 3u; const B_POW = 4u;

fn dim(v: array<vec4<u32>, 2>, i: u32) -> u32 { return v[i / 4u][i % 4u]; }

fn sigmoid(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }

// tanh from exp, stable for large |x| (some drivers' tanh returns NaN past |x| ~ 45).
fn tanh_s(x: f32) -> f32 {
  let e = exp(-2.0 * abs(x));
  return sign(x) * (1.0 - e) / (1.0 + e);
}

const GELU_C = 0.7978845608028654; // sqrt(2/pi), tanh approximation as in GPT-2 / PyTorch 'tanh'

fn unary_f(x: f32) -> f32 {
  switch OP {
    case 0u: { return x; }
    case 1u: { return -x; }
    case 2u: { return exp(x); }
    case 3u: { return log(x); }
    case 4u: { return sqrt(x); }
    case 5u: { return x * sigmoid(x); }
    case 6u: { return max(x, 0.0); }
    case 7u: { return 0.5 * x * (1.0 + tanh_s(GELU_C * (x + 0.044715 * x * x * x))); }
    case 8u: { return tanh_s(x); }
    case 9u: { return sigmoid(x); }
    case 10u: { return x * x; }
    case 11u: { return 1.0 / x; }
    default: { return x; }
  }
}

// d f / d x at x
fn unary_df(x: f32) -> f32 {
  switch OP {
    case 0u: { return 1.0; }
    case 1u: { return -1.0; }
    case 2u: { return exp(x); }
    case 3u: { return 1.0 / x; }
    case 4u: { return 0.5 / sqrt(x); }
    case 5u: { let s = sigmoid(x); return s * (1.0 + x * (1.0 - s)); }
    case 6u: { return select(0.0, 1.0, x > 0.0); }
    case 7u: {
      let u = GELU_C * (x + 0.044715 * x * x * x);
      let t = tanh_s(u);
      return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * 0.044715 * x * x);
    }
    case 8u: { let t = tanh_s(x); return 1.0 - t * t; }
    case 9u: { let s = sigmoid(x); return s * (1.0 - s); }
    case 10u: { return 2.0 * x; }
    case 11u: { return -1.0 / (x * x); }
    default: { return 1.0; }
  }
}

fn binary_f(x: f32, y: f32) -> f32 {
  switch OP {
    case 0u: { return x + y; }
    case 1u: { return x - y; }
    case 2u: { return x * y; }
    case 3u: { return x / y; }
    case 4u: {
      // pow with a negative base and an integer exponent, as in PyTorch.
      if (x < 0.0 && y == round(y)) {
        let m = pow(-x, y);
        return select(m, -m, (i32(y) & 1) == 1);
      }
      return pow(x, y);
    }
    default: { return x; }
  }
}

fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * WG; }

// out[b_offset + sum(i_k * b_strides_k)] = alpha * f(a[a_offset + sum(i_k * a_strides_k)]) + beta
@compute @workgroup_size(WG)
fn unary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  if (i >= p.n) { return; }
  var rem = i;
  var ai = p.a_offset;
  var oi = p.b_offset;
  for (var k = i32(p.rank) - 1; k >= 0; k--) {
    let d = dim(p.shape, u32(k));
    let c = rem % d;
    rem = rem / d;
    ai += c * dim(p.a_strides, u32(k));
    oi += c * dim(p.b_strides, u32(k));
  }
  out[oi] = p.alpha * unary_f(a[ai]) + p.beta;
}

// out = b * f'(a), contiguous and same-shaped: the gradient of unary op OP (a: input, b: upstream grad).
@compute @workgroup_size(WG)
fn unary_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  if (i >= p.n) { return; }
  out[i] = b[i] * unary_df(a[i]);
}

// out[i] = g(a[...], b[...]) with broadcasting through zero strides; out is contiguous.
@compute @workgroup_size(WG)
fn binary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear_id(gid, nwg);
  if (i >= p.n) { return; }
  var rem = i;
  var ai = p.a_offset;
  var bi = p.b_offset;
  for (var k = i32(p.rank) - 1; k >= 0; k--) {
    let d = dim(p.shape, u32(k));
    let c = rem % d;
    rem = rem / d;
    ai += c * dim(p.a_strides, u32(k));
    bi += c * dim(p.b_strides, u32(k));
  }
  out[i] = binary_f(a[ai], b[bi]);
}
