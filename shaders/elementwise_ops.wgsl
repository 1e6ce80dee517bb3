// Helpers of the elementwise op functions. The functions themselves (unary_f, unary_df, binary_f:
// a switch on a constant op code, folded away when the code is a literal or an override) are generated
// from the op table in kernels/elementwise.ts and appended to this file; elementwise.wgsl and the
// fused kernels of compiled steps share them.

// (sin x, cos x) to a few ulp for |x| up to ~1e4: WGSL only bounds the built-ins' error by 2^-11 on
// [-π, π] (and not at all outside), too coarse for timestep embeddings of t in the thousands. Cody-Waite
// reduction by π/2 in three parts, then Cephes' sinf/cosf minimax polynomials on [-π/4, π/4].
fn sincos(x: f32) -> vec2<f32> {
  let q = round(x * 0.6366197723675814);
  let r = ((x - q * 1.5703125) - q * 4.837512969970703e-4) - q * 7.549789954891882e-8;
  let z = r * r;
  let s = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * r + r;
  let c = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z - 0.5 * z + 1.0;
  switch (i32(q) & 3) {
    case 0: { return vec2<f32>(s, c); }
    case 1: { return vec2<f32>(c, -s); }
    case 2: { return vec2<f32>(-s, -c); }
    default: { return vec2<f32>(-c, s); }
  }
}

fn sigmoid(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }

// tanh from exp, stable for large |x| (some drivers' tanh returns NaN past |x| ~ 45).
fn tanh_s(x: f32) -> f32 {
  let e = exp(-2.0 * abs(x));
  return sign(x) * (1.0 - e) / (1.0 + e);
}

const GELU_C = 0.7978845608028654; // sqrt(2/pi), tanh approximation as in GPT-2 / PyTorch 'tanh'

fn gelu_tanh(x: f32) -> f32 { return 0.5 * x * (1.0 + tanh_s(GELU_C * (x + 0.044715 * x * x * x))); }
fn gelu_tanh_df(x: f32) -> f32 {
  let t = tanh_s(GELU_C * (x + 0.044715 * x * x * x));
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * 0.044715 * x * x);
}
// erfc(x) with a relative error below 1.2e-7 everywhere (Numerical Recipes' erfcc, a Chebyshev fit of
// erfc(z)·exp(z²) in t = 1/(1 + z/2)): relative, so both tails of the normal CDF stay accurate.
fn erfc_f(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807
    + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  let r = t * exp(-z * z + p);
  return select(2.0 - r, r, x >= 0.0);
}

// Φ(x), the standard normal CDF: exact (erf) GELU is x·Φ(x), PyTorch's approximate='none'.
fn normal_cdf(x: f32) -> f32 { return 0.5 * erfc_f(-0.7071067811865476 * x); }
fn gelu_erf_df(x: f32) -> f32 { return normal_cdf(x) + x * 0.3989422804014327 * exp(-0.5 * x * x); }
fn silu_df(x: f32) -> f32 { let s = sigmoid(x); return s * (1.0 + x * (1.0 - s)); }

// pow with a negative base and an integer exponent, as in PyTorch.
fn pow_signed(x: f32, y: f32) -> f32 {
  if (x < 0.0 && y == round(y)) {
    let m = pow(-x, y);
    return select(m, -m, (i32(y) & 1) == 1);
  }
  return pow(x, y);
}

// An op code outside the table: NaN, so that a mistake cannot pass for a result (through a var: a
// constant NaN is a shader-creation error).
fn not_an_op() -> f32 {
  var bits = 0x7fc00000u;
  return bitcast<f32>(bits);
}
