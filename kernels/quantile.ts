import { Kernel } from '../src/runtime/kernel.js';
import { DeviceArray } from '../src/runtime/runtime.js';
import source from '../shaders/quantile.wgsl';
import { numel } from './shape.js';

const kernel = new Kernel('quantile', source);

/** Where quantile q falls among m sorted values: order statistic k and the fraction towards k + 1 (torch.quantile's 'linear'). */
function position(q: number, m: number): { k: number; frac: number } {
  const pos = q * (m - 1);
  const k = Math.min(Math.floor(pos), m - 1);
  return { k, frac: pos - k };
}

/** The q-quantile (0 ≤ q ≤ 1) of |x| over all axes but the first: [N, ...] → [N]. */
export function absQuantile(x: DeviceArray, q: number): DeviceArray {
  const rt = x.rt;
  const n = x.shape[0]!;
  const m = numel(x.shape.slice(1));
  const { k, frac } = position(q, m);
  const out = rt.alloc([n], 'f32', 'absQuantile');
  const gx = Math.min(n, rt.limits.maxComputeWorkgroupsPerDimension);
  rt.dispatch(kernel, 'abs_quantile', {
    bindings: { x, out },
    uniforms: { n, m, k, frac, gx, _pad0: 0, _pad1: 0, _pad2: 0 },
    workgroups: [gx, Math.ceil(n / gx)],
  });
  return out;
}

// ------------------------------------------------------------------ float64 reference (tests only)

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
