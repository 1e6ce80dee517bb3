// float64 references of the elementwise ops (kernels/elementwise.ts), for the tests only: keyed by the
// same names as the op table, which the elementwise tests check this file covers exactly.
import type { UnaryOp, BinaryOp } from '../../kernels/elementwise.js';

const GELU_C = Math.sqrt(2 / Math.PI);
const sig = (x: number) => 1 / (1 + Math.exp(-x));

export function unaryRef(op: UnaryOp, x: number): number {
  switch (op) {
    case 'identity': return x;
    case 'neg': return -x;
    case 'exp': return Math.exp(x);
    case 'log': return Math.log(x);
    case 'sqrt': return Math.sqrt(x);
    case 'silu': return x * sig(x);
    case 'relu': return Math.max(x, 0);
    case 'gelu': return 0.5 * x * (1 + Math.tanh(GELU_C * (x + 0.044715 * x ** 3)));
    case 'tanh': return Math.tanh(x);
    case 'sigmoid': return sig(x);
    case 'square': return x * x;
    case 'sin': return Math.sin(x);
    case 'cos': return Math.cos(x);
    case 'abs': return Math.abs(x);
    case 'step': return x > 0 ? 1 : 0;
    case 'geluErf': return x * normalCdfRef(x);
  }
}

export function unaryDerivRef(op: UnaryOp, x: number): number {
  switch (op) {
    case 'identity': return 1;
    case 'neg': return -1;
    case 'exp': return Math.exp(x);
    case 'log': return 1 / x;
    case 'sqrt': return 0.5 / Math.sqrt(x);
    case 'silu': { const s = sig(x); return s * (1 + x * (1 - s)); }
    case 'relu': return x > 0 ? 1 : 0;
    case 'gelu': {
      const t = Math.tanh(GELU_C * (x + 0.044715 * x ** 3));
      return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * x * x);
    }
    case 'tanh': return 1 - Math.tanh(x) ** 2;
    case 'sigmoid': return sig(x) * (1 - sig(x));
    case 'square': return 2 * x;
    case 'sin': return Math.cos(x);
    case 'cos': return -Math.sin(x);
    case 'abs': return Math.sign(x);
    case 'step': return 0;
    case 'geluErf': return normalCdfRef(x) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
  }
}

/** Φ(x) = erfc(-x/√2)/2 in float64. */
function normalCdfRef(x: number): number {
  return 0.5 * erfcRef(-x / Math.SQRT2);
}

/**
 * erfc in float64, by other means than the kernel's fit: the Taylor series of erf for |x| < 3 (terms
 * up to e^9 ≈ 8e3 cancel, leaving ~1e-12), the continued fraction of erfc beyond (60 levels, exact
 * to double precision there).
 */
export function erfcRef(x: number): number {
  const z = Math.abs(x);
  let r: number;
  if (z < 3) {
    let term = z, sum = z;
    for (let n = 1; n < 200 && Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
      term *= (-z * z) / n;
      sum += term / (2 * n + 1);
    }
    r = 1 - (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    // erfc(z) = e^{-z²}/√π · 1/(z + (1/2)/(z + 1/(z + (3/2)/(z + ...))))
    let f = z;
    for (let k = 60; k >= 1; k--) f = z + k / 2 / f;
    r = Math.exp(-z * z) / Math.sqrt(Math.PI) / f;
  }
  return x >= 0 ? r : 2 - r;
}

export function binaryRef(op: BinaryOp, a: number, b: number): number {
  switch (op) {
    case 'add': return a + b;
    case 'sub': return a - b;
    case 'mul': return a * b;
    case 'div': return a / b;
    case 'pow': return Math.pow(a, b);
  }
}

/** [d/da, d/db] of binary op at (a, b). */
export function binaryDerivRef(op: BinaryOp, a: number, b: number): [number, number] {
  switch (op) {
    case 'add': return [1, 1];
    case 'sub': return [1, -1];
    case 'mul': return [b, a];
    case 'div': return [1 / b, -a / (b * b)];
    case 'pow': return [b * Math.pow(a, b - 1), Math.pow(a, b) * Math.log(a)];
  }
}
