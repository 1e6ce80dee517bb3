// SamplingLoop's onSnapshot (the lab's live view): each snapshot is handed over as it is taken, and
// the loop waits for the callback before it submits the next step, without changing the samples.
import { describe, expect, it } from 'vitest';
import { useDevice } from './helpers.js';
import { makeProcess, makeSampler, ops, SamplingLoop } from '../src/index.js';

const dev = useDevice();

describe('SamplingLoop onSnapshot', () => {
  it('is awaited with each snapshot in order, before the next step, and the samples are unchanged', async () => {
    const d = dev();
    // Any denoiser that depends on x will do: the test is about the loop, not the samples' quality.
    const loop = new SamplingLoop(d, makeSampler('ddim', makeProcess('ddpm'), { eta: 0 }), (x) => ops.scale(x, 0.5), [2, 1, 4, 4]);
    const events: string[] = [];
    const seen: Float32Array[] = [];
    const r = await loop.run(10, {
      seed: 3,
      snapshotEvery: 4,
      onStep: (i) => events.push(`step ${i}`),
      onSnapshot: async (snap, n) => {
        events.push(`snapshot ${snap.step}/${n} start`);
        seen.push((await snap.x0.read()) as Float32Array); // waits for the GPU to reach this step
        events.push(`snapshot ${snap.step}/${n} end`);
      },
    });
    const at = (e: string) => events.indexOf(e);
    expect(r.snapshots.map((s) => s.step)).toEqual([3, 7, 9]);
    for (const [s, next] of [[3, 4], [7, 8]] as const) {
      expect(at(`snapshot ${s}/10 end`)).toBeGreaterThan(at(`snapshot ${s}/10 start`));
      expect(at(`step ${next}`)).toBeGreaterThan(at(`snapshot ${s}/10 end`));
    }
    expect(events.filter((e) => e.startsWith('step')).length).toBe(10);
    // What the callback read is what the run returns as that snapshot (the copy is not overwritten).
    for (let k = 0; k < 3; k++) expect(Array.from(seen[k]!)).toEqual(Array.from(await r.snapshots[k]!.x0.read()));
    expect(new Set(seen.map((s) => s.join())).size).toBe(3);
    // Waiting between steps changes nothing: a run without the callback gives the same samples.
    const plain = await loop.run(10, { seed: 3 });
    expect(Array.from(await plain.x.read())).toEqual(Array.from(await r.x.read()));
    loop.destroy();
  });
});
