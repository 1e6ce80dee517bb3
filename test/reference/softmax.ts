// float64 references of kernels/softmax.ts, for the tests only (not shipped with the package).
import { softmaxDims, type SoftmaxDims } from '../../kernels/softmax.js';

function forEachRow(d: SoftmaxDims, f: (base: number) => void): void {
  for (let o = 0; o < d.outer; o++) for (let i = 0; i < d.inner; i++) f(o * d.len * d.inner + i);
}

export function softmaxRef(x: Float64Array, shape: readonly number[], axis: number): Float64Array {
  const d = softmaxDims(shape, axis);
  const y = new Float64Array(x.length);
  forEachRow(d, (base) => {
    let m = -Infinity;
    for (let k = 0; k < d.len; k++) m = Math.max(m, x[base + k * d.inner]!);
    let s = 0;
    for (let k = 0; k < d.len; k++) s += Math.exp(x[base + k * d.inner]! - m);
    for (let k = 0; k < d.len; k++) y[base + k * d.inner] = Math.exp(x[base + k * d.inner]! - m) / s;
  });
  return y;
}

/** Vector-Jacobian product of softmaxRef with gy. */
export function softmaxGradRef(x: Float64Array, shape: readonly number[], axis: number, gy: Float64Array): Float64Array {
  const d = softmaxDims(shape, axis);
  const y = softmaxRef(x, shape, axis);
  const dx = new Float64Array(x.length);
  forEachRow(d, (base) => {
    let dot = 0;
    for (let k = 0; k < d.len; k++) dot += gy[base + k * d.inner]! * y[base + k * d.inner]!;
    for (let k = 0; k < d.len; k++) {
      const i = base + k * d.inner;
      dx[i] = y[i]! * (gy[i]! - dot);
    }
  });
  return dx;
}
