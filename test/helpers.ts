import { afterAll, beforeAll } from 'vitest';
import { fileURLToPath } from 'node:url';
import { createDevice, Device } from '../src/graph/device.js';
import { autotuneFileStore } from '../src/io/autotune-file.js';

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

