import { afterAll, beforeAll } from 'vitest';
import { fileURLToPath } from 'node:url';
import { createDevice, Device } from '../src/graph/device.js';
import { autotuneFileStore } from '../src/runtime/autotune-file.js';
import { nearestRef, vectorOffset } from '../kernels/codebook.js';
import { f32, numel, randn } from './check.js';

export * from './check.js';

/**
 * Kernel variants as the autotuner chooses them on this adapter, measured once for the whole suite
 * (the first test file pays a few seconds on SwiftShader) and kept in the project's .cache/.
 * Every variant is also tested explicitly, whichever is chosen.
 */
export const TEST_TUNE_STORE = autotuneFileStore(fileURLToPath(new URL('../.cache/autotune.json', import.meta.url)));

/** One device per test file; buffers are poisoned with NaN so an unwritten output cannot pass. */
export function useDevice(): () => Device {
  let dev: Device | null = null;
  beforeAll(async () => {
    dev = await createDevice({ log: () => {}, tune: { store: TEST_TUNE_STORE } });
    dev.rt.poison = true;
  });
  afterAll(() => dev?.destroy());
  return () => dev!;
}

/**
 * z [N,D,H,W] and a codebook [k,D] (f32-representable) in which every vector's nearest code beats the
 * second nearest by at least `gap` in squared distance: far above f32 rounding of the distances
 * (~1e-6), so the GPU's argmin must equal the float64 one exactly, and above the change 2h|e_a - e_b|
 * ~ 1e-4 that a finite-difference step h = 1e-5 can cause, so no probe switches an assignment.
 */
export function separatedCodebookInputs(shape: number[], k: number, r: () => number, gap = 1e-3): { z: Float64Array; cb: Float64Array } {
  const d = shape[1]!;
  const cb = f32(randn(k * d, r));
  const z = f32(randn(numel(shape), r));
  for (let round = 0; round < 100; round++) {
    const { best, second } = nearestRef(z, shape, cb, k);
    let redrawn = 0;
    best.forEach((b, m) => {
      if (second[m]! - b >= gap) return;
      redrawn++;
      for (let c = 0; c < d; c++) z[vectorOffset(m, c, shape)] = Math.fround(randn(1, r)[0]!);
    });
    if (redrawn === 0) return { z, cb };
  }
  throw new Error('could not draw separated inputs');
}
