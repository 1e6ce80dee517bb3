import { Kernel } from '../src/runtime/kernel.js';
import { DeviceArray } from '../src/runtime/runtime.js';
import source from '../shaders/quantile.wgsl';
import { numel } from './shape.js';

const kernel = new Kernel('quantile', source);

/** Where quantile q falls among m sorted values: order statistic k and the fraction towards k + 1 (torch.quantile's 'linear'). */
export function position(q: number, m: number): { k: number; frac: number } {
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
