import { Kernel } from '../src/runtime/kernel.js';
import { DeviceArray } from '../src/runtime/runtime.js';
import { ShapeError, fmtShape } from '../src/runtime/errors.js';
import source from '../shaders/elementwise.wgsl';
import opsSource from '../shaders/elementwise_ops.wgsl';
import { broadcastShapes, broadcastStrides, checkRank, mergeAxes, numel, stridesOf } from './shape.js';

/**
 * The elementwise ops, one table: each op's WGSL (in terms of x, or x and y), its derivative's, and
 * for binary ops the gradient rules. The op codes, the WGSL switch functions and the gradients are
 * all generated from it, so adding an op touches one place. The float64 references for the tests are
 * in test/reference/elementwise.ts, which checks that it covers exactly this table.
 */
const UNARY_TABLE = {
  identity: { f: 'x', df: '1.0' },
  neg: { f: '-x', df: '-1.0' },
  exp: { f: 'exp(x)', df: 'exp(x)' },
  log: { f: 'log(x)', df: '1.0 / x' },
  sqrt: { f: 'sqrt(x)', df: '0.5 / sqrt(x)' },
  silu: { f: 'x * sigmoid(x)', df: 'silu_df(x)' },
  relu: { f: 'max(x, 0.0)', df: 'select(0.0, 1.0, x > 0.0)' },
  /** GELU, tanh approximation (PyTorch's approximate='tanh'). */
  gelu: { f: 'gelu_tanh(x)', df: 'gelu_tanh_df(x)' },
  /** GELU in its exact form x·Φ(x) (PyTorch's default approximate='none'; diffusers' GEGLU). */
  geluErf: { f: 'x * normal_cdf(x)', df: 'gelu_erf_df(x)' },
  tanh: { f: 'tanh_s(x)', df: '1.0 - tanh_s(x) * tanh_s(x)' },
  sigmoid: { f: 'sigmoid(x)', df: 'sigmoid(x) * (1.0 - sigmoid(x))' },
  square: { f: 'x * x', df: '2.0 * x' },
  sin: { f: 'sincos(x).x', df: 'sincos(x).y' },
  cos: { f: 'sincos(x).y', df: '-sincos(x).x' },
  /** Its derivative at 0 is taken as 0. */
  abs: { f: 'abs(x)', df: 'sign(x)' },
  /** Heaviside: 1 where x > 0; its derivative is 0. */
  step: { f: 'select(0.0, 1.0, x > 0.0)', df: '0.0' },
} as const satisfies Record<string, { f: string; df: string }>;

type Grad = (a: DeviceArray, b: DeviceArray, y: DeviceArray, gy: DeviceArray) => DeviceArray;
/** Named apart from the table only because its gradients call binary(), whose type needs it; Record keeps the two equal. */
export type BinaryOp = 'add' | 'sub' | 'mul' | 'div' | 'pow';
const BINARY_TABLE: Record<BinaryOp, { f: string; gradA: Grad; gradB: Grad }> = {
  add: { f: 'x + y', gradA: (_a, _b, _y, gy) => gy, gradB: (_a, _b, _y, gy) => gy },
  sub: { f: 'x - y', gradA: (_a, _b, _y, gy) => gy, gradB: (_a, _b, _y, gy) => unary('neg', gy) },
  mul: { f: 'x * y', gradA: (_a, b, _y, gy) => binary('mul', gy, b), gradB: (a, _b, _y, gy) => binary('mul', gy, a) },
  // d/db (a / b) = -a / b² = -y / b
  div: { f: 'x / y', gradA: (_a, b, _y, gy) => binary('div', gy, b), gradB: (_a, b, y, gy) => unary('neg', binary('mul', gy, binary('div', y, b))) },
  // d/da a^b = b·a^(b-1); d/db a^b = a^b · ln a
  pow: {
    f: 'pow_signed(x, y)',
    gradA: (a, b, _y, gy) => binary('mul', gy, binary('mul', b, binary('pow', a, unary('identity', b, 1, -1)))),
    gradB: (a, _b, y, gy) => binary('mul', gy, binary('mul', y, unary('log', a))),
  },
};

export type UnaryOp = keyof typeof UNARY_TABLE;
export const UNARY = Object.keys(UNARY_TABLE) as UnaryOp[];
export const BINARY = Object.keys(BINARY_TABLE) as BinaryOp[];

/** A switch over the table's op codes; an unknown code gives NaN (see not_an_op), never a silent value. */
function switchFn(signature: string, cases: string[]): string {
  const body = cases.map((c, i) => `    case ${i}u: { return ${c}; }`).join('\n');
  return `fn ${signature} -> f32 {\n  switch op {\n${body}\n    default: { return not_an_op(); }\n  }\n}\n`;
}

/** The op functions (helpers from elementwise_ops.wgsl, switches from the table), for the fused kernels that compiled steps generate. */
export const ELEMENTWISE_OPS_WGSL = [
  opsSource,
  switchFn('unary_f(op: u32, x: f32)', UNARY.map((o) => UNARY_TABLE[o].f)),
  switchFn('unary_df(op: u32, x: f32)', UNARY.map((o) => UNARY_TABLE[o].df)),
  switchFn('binary_f(op: u32, x: f32, y: f32)', BINARY.map((o) => BINARY_TABLE[o].f)),
].join('\n');

const kernel = new Kernel('elementwise', ELEMENTWISE_OPS_WGSL + source);

/** The gradients of binary op `op` with respect to a and b, at their broadcast shape (sum them back to the inputs' shapes). */
export function binaryGrads(op: BinaryOp, a: DeviceArray, b: DeviceArray, y: DeviceArray, gy: DeviceArray, needA: boolean, needB: boolean): [DeviceArray | null, DeviceArray | null] {
  const t = BINARY_TABLE[op];
  return [needA ? t.gradA(a, b, y, gy) : null, needB ? t.gradB(a, b, y, gy) : null];
}

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
    constants: { OP: opCode(UNARY, op), RANK: m.shape.length },
    fuse: whole ? { kind: 'unary', op: opCode(UNARY, op), alpha, beta, shape, inputs: [{ array: src, offset: srcView.offset, strides: srcView.strides }], out: dst } : undefined,
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

/** The op code of `op` in its table: an op that is not there is an error here, not NaN on the device. */
function opCode<T extends string>(table: readonly T[], op: T): number {
  const i = table.indexOf(op);
  if (i < 0) throw new Error(`elementwise: unknown op '${op}' (have: ${table.join(', ')})`);
  return i;
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
    constants: { OP: opCode(UNARY, op) },
    fuse: {
      kind: 'unaryGrad', op: opCode(UNARY, op), alpha: 1, beta: 0, shape: x.shape,
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
    constants: { OP: opCode(BINARY, op), RANK: m.shape.length },
    fuse: {
      kind: 'binary', op: opCode(BINARY, op), alpha: 1, beta: 0, shape,
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
