// Long-run health: over a few hundred training steps and a few hundred sampling batches, device memory
// (live arrays, the pool, buffers created) and host memory stay flat once the first mark is passed.
// The loop is bench/health.ts's, which also records the figures.
import { describe, expect, it } from 'vitest';
import { useDevice } from './helpers.js';
import { growth, measureHealth } from '../bench/health.js';

const dev = useDevice();

describe('long-run health', () => {
  it('300 training steps and 300 sampling batches keep device and host memory flat', async () => {
    const h = await measureHealth(dev(), { trainSteps: 300, sampleBatches: 300, every: 50 });
    expect(h.marks).toHaveLength(12);
    for (const phase of ['train', 'sample'] as const) {
      const g = growth(h.marks, phase);
      console.log(`health ${phase}: rise after the first mark ${JSON.stringify(g)}; first mark ${JSON.stringify(h.marks.find((m) => m.phase === phase))}`);
      // Steady state creates no buffers: steps and sampling loops are compiled once, eager
      // temporaries come back to the pool. A few are allowed for readback staging of a new size.
      expect(g.buffersCreated, phase).toBeLessThanOrEqual(4);
      // Live and pooled device bytes may move by the odd small temporary the collector has not yet
      // returned (256-byte buckets), not by anything that grows with the step count.
      expect(g.liveBytes, phase).toBeLessThanOrEqual(16 * 1024);
      expect(g.pooledBytes, phase).toBeLessThanOrEqual(16 * 1024);
      // Host memory after a collection: within 4 MiB (V8's own caches move by about that).
      expect(g.heapBytes, phase).toBeLessThan(4 * 2 ** 20);
      expect(g.arrayBufferBytes, phase).toBeLessThan(2 * 2 ** 20);
    }
  }, 600_000);
});
