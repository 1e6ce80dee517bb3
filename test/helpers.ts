import { afterAll, beforeAll } from 'vitest';
import { createDevice, Device } from '../src/graph/device.js';

export * from './check.js';

/** One device per test file; buffers are poisoned with NaN so an unwritten output cannot pass. */
export function useDevice(): () => Device {
  let dev: Device | null = null;
  beforeAll(async () => {
    dev = await createDevice({ log: () => {} });
    dev.rt.poison = true;
  });
  afterAll(() => dev?.destroy());
  return () => dev!;
}

