import { Kernel } from '../src/runtime/kernel.js';
import { DeviceArray } from '../src/runtime/runtime.js';
import { ShapeError, fmtShape } from '../src/runtime/errors.js';
import source from '../shaders/elementwise.wgsl';
import opsSource from '../shaders/elementwise_ops.wgsl';
import { broadcastShapes, broadcastStrides, checkRank, mergeAxes, numel, stridesOf } from './shape.js';

const kernel = new Kernel('elementwise', opsSource + source);

/** The op functions alone, for the fused kernels that compiled steps generate. */
export const ELEMENTWISE_OPS_WGSL = opsSource;

export const UNARY = ['identity', 'neg', 'exp', 'log', 'sqrt', 'silu', 'relu', 'gelu', 'tanh', 'sigmoid', 'square', 'recip', 'sin', 'cos', 'abs', 'step', 'geluErf'] as const;
export type UnaryOp = (typeof UNARY)[number];
export const BINARY = ['add', 'sub', 'mul', 'div', 'pow'] as const;
export type BinaryOp = (typeof BINARY)[number];

export interface View {
  shape: readonly number[];
  strides: readonly number[];
  offset: number;
}

export const contiguous = (shape: readonly number[], offset = 0): View => ({ shape, strides: stridesOf(shape), offset });

/**
 * dst[view] = alpha * f(src[view]) + beta over `shape`. With f = identity this one kernel is copy,
 * broadcast (zero strides), slice (offsets) and permute (permuted strides).
 */
export function stridedMap(op: UnaryOp, src: DeviceArray, srcView: View, dst: DeviceArray, dstView: View, alpha = 1, beta = 0): void {
  const shape = srcView.shape;
  checkRank(op, shape);
  const n = numel(shape);
  const rt = src.rt;
  // Fusable when the result is written whole and contiguously (not a slice of a larger array).
  const whole = dst.size === n && dstView.offset === 0 && sameStrides(dstView.strides, stridesOf(shape), shape);
  const m = mergeAxes(shape, [srcView.strides, dstView.strides]);
  rt.dispatch(kernel, 'unary', {
    bindings: { a: src, out: dst },
    uniforms: {
      n, _pad0: 0, a_offset: srcView.offset, b_offset: dstView.offset, alpha, beta,
      ...innermostFirst(m),
    },
    workgroups: rt.grid1d(n, 256),
    constants: { OP: UNARY.indexOf(op), RANK: m.shape.length },
    fuse: whole ? { kind: 'unary', op: UNARY.indexOf(op), alpha, beta, shape, inputs: [{ array: src, offset: srcView.offset, strides: srcView.strides }], out: dst } : undefined,
  });
}

/** The kernel's shape and stride uniforms: merged axes, the outermost apart, the others innermost first (see shaders/elementwise.wgsl). */
function innermostFirst(m: { shape: number[]; strides: number[][] }) {
  const inner = (v: number[]) => v.slice(1).reverse();
  return {
    a_outer: m.strides[0]![0] ?? 0, b_outer: m.strides[1]![0] ?? 0,
    shape: inner(m.shape), a_strides: inner(m.strides[0]!), b_strides: inner(m.strides[1]!),
  };
}

/** Equal strides on every axis longer than 1 (the stride of a size-1 axis never matters). */
function sameStrides(a: readonly number[], b: readonly number[], shape: readonly number[]): boolean {
  return shape.every((d, i) => d === 1 || a[i] === b[i]);
}

/** alpha * f(x) + beta, elementwise, as a new array. */
export function unary(op: UnaryOp, x: DeviceArray, alpha = 1, beta = 0): DeviceArray {
  const out = x.rt.alloc(x.shape, 'f32', op);
  stridedMap(op, x, contiguous(x.shape), out, contiguous(x.shape), alpha, beta);
  return out;
}

/** gy * f'(x) for unary op f. */
export function unaryGrad(op: UnaryOp, x: DeviceArray, gy: DeviceArray): DeviceArray {
  const rt = x.rt;
  const out = rt.alloc(x.shape, 'f32', op);
  rt.dispatch(kernel, 'unary_grad', {
    bindings: { a: x, b: gy, out },
    uniforms: zeroUniforms(x.size),
    workgroups: rt.grid1d(x.size, 256),
    constants: { OP: UNARY.indexOf(op) },
    fuse: {
      kind: 'unaryGrad', op: UNARY.indexOf(op), alpha: 1, beta: 0, shape: x.shape,
      inputs: [{ array: x, offset: 0, strides: stridesOf(x.shape) }, { array: gy, offset: 0, strides: stridesOf(x.shape) }], out,
    },
  });
  return out;
}

function zeroUniforms(n: number) {
  return { n, _pad0: 0, a_offset: 0, b_offset: 0, alpha: 1, beta: 0, a_outer: 0, b_outer: 0, shape: [], a_strides: [], b_strides: [] };
}

/** g(a, b) with NumPy broadcasting. */
export function binary(op: BinaryOp, a: DeviceArray, b: DeviceArray): DeviceArray {
  const shape = broadcastShapes(op, a.shape, b.shape);
  const rt = a.rt;
  const out = rt.alloc(shape, 'f32', op);
  const n = numel(shape);
  const aStrides = broadcastStrides(a.shape, shape);
  const bStrides = broadcastStrides(b.shape, shape);
  // out is contiguous: its strides take part in the merge so that out[i] stays element i.
  const m = mergeAxes(shape, [aStrides, bStrides, stridesOf(shape)]);
  rt.dispatch(kernel, 'binary', {
    bindings: { a, b, out },
    uniforms: {
      n, _pad0: 0, a_offset: 0, b_offset: 0, alpha: 1, beta: 0,
      ...innermostFirst(m),
    },
    workgroups: rt.grid1d(n, 256),
    constants: { OP: BINARY.indexOf(op), RANK: m.shape.length },
    fuse: {
      kind: 'binary', op: BINARY.indexOf(op), alpha: 1, beta: 0, shape,
      inputs: [{ array: a, offset: 0, strides: aStrides }, { array: b, offset: 0, strides: bStrides }], out,
    },
  });
  return out;
}

/** Materialise x broadcast to `shape`. */
export function expand(x: DeviceArray, shape: readonly number[]): DeviceArray {
  broadcastShapes('expand', x.shape, shape);
  const out = x.rt.alloc(shape, 'f32', 'expand');
  stridedMap('identity', x, { shape, strides: broadcastStrides(x.shape, shape), offset: 0 }, out, contiguous(shape));
  return out;
}

/** Permute axes (a copy). */
export function permute(x: DeviceArray, perm: readonly number[]): DeviceArray {
  if (perm.length !== x.shape.length || [...perm].sort().some((v, i) => v !== i)) {
    throw new ShapeError('permute', `permutation [${perm.join(', ')}] does not fit shape ${fmtShape(x.shape)}`);
  }
  const st = stridesOf(x.shape);
  const shape = perm.map((p) => x.shape[p]!);
  const out = x.rt.alloc(shape, 'f32', 'permute');
  stridedMap('identity', x, { shape, strides: perm.map((p) => st[p]!), offset: 0 }, out, contiguous(shape));
  return out;
}

/** x[..., start:start+length, ...] along `axis` (a copy). */
export function slice(x: DeviceArray, axis: number, start: number, length: number): DeviceArray {
  const shape = x.shape.slice();
  shape[axis] = length;
  const st = stridesOf(x.shape);
  const out = x.rt.alloc(shape, 'f32', 'slice');
  stridedMap('identity', x, { shape, strides: st, offset: start * st[axis]! }, out, contiguous(shape));
  return out;
}

/** Write src into dst[..., start:start+len, ...] along axis. */
export function writeSlice(src: DeviceArray, dst: DeviceArray, axis: number, start: number): void {
  const st = stridesOf(dst.shape);
  stridedMap('identity', src, contiguous(src.shape), dst, { shape: src.shape, strides: st, offset: start * st[axis]! });
}

/** Concatenate along an axis. */
export function concat(parts: DeviceArray[], axis: number): DeviceArray {
  const first = parts[0]!;
  const shape = first.shape.slice();
  shape[axis] = parts.reduce((s, p) => s + p.shape[axis]!, 0);
  const out = first.rt.alloc(shape, 'f32', 'concat');
  let at = 0;
  for (const p of parts) {
    writeSlice(p, out, axis, at);
    at += p.shape[axis]!;
  }
  return out;
}

// ------------------------------------------------------------------ float64 references (tests only)

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
    case 'recip': return 1 / x;
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
    case 'recip': return -1 / (x * x);
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
