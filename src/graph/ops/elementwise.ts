import { Tensor } from '../tensor.js';
import * as E from '../../../kernels/elementwise.js';
import { sumAxes, sumTo } from '../../../kernels/reduce.js';
import * as Q from '../../../kernels/quantile.js';
import { broadcastShapes, normAxes, numel } from '../../../kernels/shape.js';
import { ShapeError, fmtShape } from '../../runtime/errors.js';

function unaryOp(op: E.UnaryOp) {
  return (x: Tensor): Tensor => {
    requireFloat(op, x);
    return Tensor.fromOp(op, E.unary(op, x.data), [x], (gy) => [E.unaryGrad(op, x.data, gy)]);
  };
}

function requireFloat(op: string, ...ts: Tensor[]): void {
  for (const t of ts) if (t.dtype !== 'f32') throw new ShapeError(op, `expects f32 tensors, got ${t.dtype} ${fmtShape(t.shape)}`);
}

export const neg = unaryOp('neg');
export const exp = unaryOp('exp');
export const log = unaryOp('log');
export const sqrt = unaryOp('sqrt');
export const silu = unaryOp('silu');
export const relu = unaryOp('relu');
/** GELU, tanh approximation (PyTorch's approximate='tanh'). */
export const gelu = unaryOp('gelu');
/** GELU in its exact form x·Φ(x) (PyTorch's default, approximate='none'; diffusers' GEGLU). */
export const geluErf = unaryOp('geluErf');
export const tanh = unaryOp('tanh');
export const sigmoid = unaryOp('sigmoid');
export const square = unaryOp('square');
export const sin = unaryOp('sin');
export const cos = unaryOp('cos');
/** |x|; its gradient at 0 is taken as 0. */
export const abs = unaryOp('abs');
/** 1 where x > 0, else 0 (Heaviside); its gradient is 0. */
export const step = unaryOp('step');

function binaryOp(op: E.BinaryOp) {
  return (a: Tensor, b: Tensor): Tensor => {
    requireFloat(op, a, b);
    broadcastShapes(op, a.shape, b.shape);
    const y = E.binary(op, a.data, b.data);
    return Tensor.fromOp(op, y, [a, b], (gy) => {
      const [ga, gb] = E.binaryGrads(op, a.data, b.data, y, gy, a.requiresGrad, b.requiresGrad);
      return [ga && sumTo(ga, a.shape), gb && sumTo(gb, b.shape)];
    });
  };
}

export const add = binaryOp('add');
export const sub = binaryOp('sub');
export const mul = binaryOp('mul');
export const div = binaryOp('div');
export const pow = binaryOp('pow');

/** alpha * x + beta with constants (no scalar tensors needed). */
export function affine(x: Tensor, alpha: number, beta = 0): Tensor {
  requireFloat('affine', x);
  return Tensor.fromOp('affine', E.unary('identity', x.data, alpha, beta), [x], (gy) => [E.unary('identity', gy, alpha)]);
}

export const scale = (x: Tensor, s: number): Tensor => affine(x, s, 0);

export interface ReduceOptions {
  /** Keep reduced axes as size 1 (default false). */
  keepDims?: boolean;
}

function reduceOp(name: 'sum' | 'mean') {
  return (x: Tensor, axes?: number | readonly number[], opts: ReduceOptions = {}): Tensor => {
    requireFloat(name, x);
    const ax = normAxes(name, axes, x.shape.length);
    const count = numel(ax.map((i) => x.shape[i]!));
    const alpha = name === 'mean' ? 1 / count : 1;
    const kept = x.shape.filter((_, i) => !ax.includes(i));
    const y = sumAxes(x.data, ax, alpha);
    const out = opts.keepDims ? y : y.reshape(kept);
    const keepShape = y.shape;
    return Tensor.fromOp(name, out, [x], (gy) => [E.unary('identity', E.expand(gy.reshape(keepShape), x.shape), alpha)]);
  };
}

/** Sum over the given axes (all by default). */
export const sum = reduceOp('sum');
/** Mean over the given axes (all by default). */
export const mean = reduceOp('mean');

/** Mean squared error, mean((a - b)^2) over all elements. */
export function mse(a: Tensor, b: Tensor): Tensor {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new ShapeError('mse', `prediction ${fmtShape(a.shape)} and target ${fmtShape(b.shape)} must have the same shape`);
  }
  return mean(square(sub(a, b)));
}

/** Permute axes. */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => (inv[p] = i));
  return Tensor.fromOp('permute', E.permute(x.data, perm), [x], (gy) => [E.permute(gy, inv)]);
}

/** Concatenate along an axis (channels by default). */
export function concat(parts: Tensor[], axis = 1): Tensor {
  if (parts.length === 0) throw new ShapeError('concat', 'needs at least one tensor');
  const rank = parts[0]!.shape.length;
  const ax = normAxes('concat', axis, rank)[0]!;
  for (const p of parts) {
    if (p.shape.length !== rank || p.shape.some((d, i) => i !== ax && d !== parts[0]!.shape[i])) {
      throw new ShapeError('concat', `shapes ${parts.map((q) => fmtShape(q.shape)).join(', ')} differ outside axis ${ax}`);
    }
  }
  const y = E.concat(parts.map((p) => p.data), ax);
  return Tensor.fromOp('concat', y, parts, (gy) => {
    let at = 0;
    return parts.map((p) => {
      const g = p.requiresGrad ? E.slice(gy, ax, at, p.shape[ax]!) : null;
      at += p.shape[ax]!;
      return g;
    });
  });
}

/** x[..., start:start+length, ...] along an axis (channels by default). */
export function slice(x: Tensor, start: number, length: number, axis = 1): Tensor {
  const ax = normAxes('slice', axis, x.shape.length)[0]!;
  const d = x.shape[ax]!;
  if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 || start + length > d) {
    throw new ShapeError('slice', `range [${start}, ${start + length}) is outside axis ${ax} of size ${d} in ${fmtShape(x.shape)}`);
  }
  const y = E.slice(x.data, ax, start, length);
  return Tensor.fromOp('slice', y, [x], (gy) => {
    const g = x.rt.alloc(x.shape, 'f32', 'slice');
    x.rt.fillValue(g, 0);
    E.writeSlice(gy, g, ax, start);
    return [g];
  });
}

/**
 * Write `value` into `target`'s memory (same number of elements), with no gradient: a state update
 * (an EMA statistic, a codebook) that a compiled step records and replays like an optimizer update.
 */
export function assign(target: Tensor, value: Tensor): void {
  if (target.size !== value.size || target.dtype !== value.dtype) {
    throw new ShapeError('assign', `value ${value.dtype} ${fmtShape(value.shape)} does not fit target ${target.dtype} ${fmtShape(target.shape)}`);
  }
  E.stridedMap('identity', value.data, E.contiguous([value.size]), target.data, E.contiguous([target.size]));
}

/**
 * The q-quantile of |x| for each item of a batch, over all axes but the first: [N, ...] → [N] (as
 * torch.quantile(x.abs().flatten(1), q, dim=1)). A statistic for thresholds (dynamic thresholding in
 * the samplers): it passes no gradient back.
 */
export function absQuantile(x: Tensor, q: number): Tensor {
  requireFloat('absQuantile', x);
  if (!(q >= 0 && q <= 1)) throw new ShapeError('absQuantile', `q = ${q} is outside the allowed range [0, 1]`);
  if (x.shape.length < 2 || x.size === 0) throw new ShapeError('absQuantile', `expects a non-empty batch [N, ...] of rank 2 or more, got ${fmtShape(x.shape)}`);
  return Tensor.fromOp('absQuantile', Q.absQuantile(x.data, q), [x], () => [null]);
}
