import { ShapeError, fmtShape } from '../src/runtime/errors.js';

export const MAX_RANK = 8;

export const numel = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

export function stridesOf(shape: readonly number[]): number[] {
  const st = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= shape[i]!;
  }
  return st;
}

/**
 * Drops size-1 axes and merges neighbouring axes along which every view's strides chain (the outer
 * stride is the inner one times the inner size): the same elements in the same order, fewer axes, so
 * kernels that unravel a flat index divide less. Broadcast (zero-stride) axes merge with each other.
 */
export function mergeAxes(shape: readonly number[], strides: readonly (readonly number[])[]): { shape: number[]; strides: number[][] } {
  const out: number[] = [];
  const outStrides: number[][] = strides.map(() => []);
  shape.forEach((d, i) => {
    if (d === 1) return;
    const last = out.length - 1;
    if (last >= 0 && strides.every((s, j) => outStrides[j]![last] === s[i]! * d)) {
      out[last]! *= d;
      strides.forEach((s, j) => (outStrides[j]![last] = s[i]!));
    } else {
      out.push(d);
      strides.forEach((s, j) => outStrides[j]!.push(s[i]!));
    }
  });
  return { shape: out, strides: outStrides };
}

export function checkRank(op: string, shape: readonly number[]): void {
  if (shape.length > MAX_RANK) throw new ShapeError(op, `rank ${shape.length} of ${fmtShape(shape)} exceeds the limit of ${MAX_RANK}`);
}

/** NumPy broadcasting of two shapes; names the op and both shapes when they do not broadcast. */
export function broadcastShapes(op: string, a: readonly number[], b: readonly number[]): number[] {
  const r = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < r; i++) {
    const da = a[a.length - r + i] ?? 1;
    const db = b[b.length - r + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new ShapeError(op, `shapes ${fmtShape(a)} and ${fmtShape(b)} do not broadcast (axis ${i - r}: ${da} vs ${db})`);
    }
    out.push(da === 1 ? db : da);
  }
  checkRank(op, out);
  return out;
}

/** Strides that read an array of `shape` as if it had `target` shape (zeros on broadcast axes). */
export function broadcastStrides(shape: readonly number[], target: readonly number[]): number[] {
  const st = stridesOf(shape);
  const off = target.length - shape.length;
  return target.map((_, i) => (i < off || shape[i - off] === 1 ? 0 : st[i - off]!));
}

/** Normalise possibly negative axes; throws naming the op on out-of-range axes. */
export function normAxes(op: string, axes: number | readonly number[] | undefined, rank: number): number[] {
  if (axes === undefined) return [...Array(rank).keys()];
  const list = typeof axes === 'number' ? [axes] : [...axes];
  const out = list.map((a) => {
    const k = a < 0 ? a + rank : a;
    if (!Number.isInteger(k) || k < 0 || k >= rank) throw new ShapeError(op, `axis ${a} is out of range for rank ${rank}`);
    return k;
  });
  return [...new Set(out)].sort((x, y) => x - y);
}
