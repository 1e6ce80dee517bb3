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
