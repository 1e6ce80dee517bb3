// float64 references of kernels/quantile.ts, for the tests only (not shipped with the package).
import { position } from '../../kernels/quantile.js';

/** absQuantile on a host array of shape [n, m]: sort each row's |x| and interpolate. */
export function absQuantileRef(x: ArrayLike<number>, n: number, m: number, q: number): Float64Array {
  const { k, frac } = position(q, m);
  const out = new Float64Array(n);
  for (let r = 0; r < n; r++) {
    const row = Float64Array.from({ length: m }, (_, i) => Math.abs(x[r * m + i]!)).sort();
    const v = row[k]!;
    out[r] = v + ((row[Math.min(k + 1, m - 1)]! - v) * frac);
  }
  return out;
}
