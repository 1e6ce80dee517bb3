import { Kernel } from '../src/runtime/kernel.js';
import { DeviceArray } from '../src/runtime/runtime.js';
import source from '../shaders/vq.wgsl';

const kernel = new Kernel('vq', source);

export interface CodeState {
  /** [K, D] codes (written in place where a code restarts). */
  codebook: DeviceArray;
  /** [K] steps since each code was last chosen. */
  age: DeviceArray;
  /** EMA statistics, reset for restarted codes: cluster sizes [K] and sums [K, D]. */
  ema?: { cluster: DeviceArray; sum: DeviceArray } | null;
}

/**
 * After a step: codes chosen (counts [K] > 0) get age 0, the others age by one; a code whose age
 * reaches a multiple of `threshold` (0: never) restarts from vector floor(u[k]·M) of z [N, D, H, W]
 * (u [K] uniform in (0, 1)), as Jukebox's random restarts of dead codes. The age keeps counting (time
 * since last chosen). One dispatch, no host round trip.
 */
export function restartCodes(s: CodeState, counts: DeviceArray, u: DeviceArray, z: DeviceArray, threshold: number): void {
  const rt = z.rt;
  const [n, d, h, w] = z.shape as [number, number, number, number];
  const k = s.codebook.shape[0]!;
  const bindings: Record<string, DeviceArray> = { counts, u, z, codebook: s.codebook, age: s.age };
  if (s.ema) Object.assign(bindings, { cluster: s.ema.cluster, embed_sum: s.ema.sum });
  rt.dispatch(kernel, s.ema ? 'restart_ema' : 'restart', {
    bindings,
    uniforms: { k, d, m: n * h * w, hw: h * w, threshold, _pad0: 0, _pad1: 0, _pad2: 0 },
    workgroups: [Math.ceil(k / 64)],
  });
}

// ------------------------------------------------------------------ float64 reference (tests only)

/** restartCodes on host arrays, in place. */
export function restartCodesRef(
  s: { codebook: Float64Array; age: Float64Array; cluster?: Float64Array; sum?: Float64Array },
  counts: ArrayLike<number>, u: ArrayLike<number>, z: Float64Array, shape: readonly number[], threshold: number,
): void {
  const [n, d, h, w] = shape as [number, number, number, number];
  const m = n * h * w;
  const hw = h * w;
  for (let k = 0; k < s.age.length; k++) {
    if (counts[k]! > 0.5) {
      s.age[k] = 0;
      continue;
    }
    const a = s.age[k]! + 1;
    s.age[k] = a;
    if (!(threshold > 0 && a % threshold === 0)) continue;
    const r = Math.min(Math.floor(Math.fround(u[k]! * m)), m - 1);
    for (let c = 0; c < d; c++) {
      const v = z[Math.floor(r / hw) * d * hw + c * hw + (r % hw)]!;
      s.codebook[k * d + c] = v;
      if (s.sum) s.sum[k * d + c] = v;
    }
    if (s.cluster) s.cluster[k] = 1;
  }
}
