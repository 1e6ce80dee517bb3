import { describe, expect, it } from 'vitest';
import { ops } from '../src/index.js';
import { ShapeError } from '../src/runtime/errors.js';
import { gatherRowsRef, segmentSumRef } from './reference/gather.js';
import { checkOp, rng, SEED, useDevice } from './helpers.js';

const dev = useDevice();
const r = rng(SEED + 5);

/** Random indices in [0, v); the first index is repeated at the end so some row always accumulates. */
function drawIndices(n: number, v: number): Int32Array {
  const idx = Int32Array.from({ length: n }, () => Math.floor(r() * v));
  if (n >= 4) {
    idx[n - 1] = idx[0]!;
    idx[n - 2] = idx[0]!;
  }
  return idx;
}

describe('embedding', () => {
  // [indices shape, V, E]: E below, at and above the 4-column and 64-column blocks of segment_sum;
  // indices with rank 1..3 and many repeats (more indices than rows).
  const cases: [number[], number, number][] = [
    [[5], 3, 1],
    [[7], 10, 4],
    [[2, 9], 6, 13],
    [[3, 2, 5], 11, 64],
    [[40], 7, 150],
    [[20, 31], 9, 6], // 620 indices: the segment sum splits them into 3 runs of 207
  ];
  for (const [ishape, v, e] of cases) {
    it(`indices ${JSON.stringify(ishape)} into a [${v}, ${e}] table, repeated indices accumulate`, async () => {
      const n = ishape.reduce((a, b) => a * b, 1);
      const idx = drawIndices(n, v);
      const indices = dev().tensor(idx, ishape);
      // Forward is an exact copy; the gradient sums up to ~100 terms of magnitude ~1 in a fixed order:
      // f32 error ~ sqrt(100) * 6e-8 * sum|g| < 1e-5.
      await checkOp(dev(), {
        name: 'embedding',
        inputs: [{ shape: [v, e] }],
        run: ([t]) => {
          const y = ops.embedding(indices, t!);
          expect(y.shape).toEqual([...ishape, e]);
          return y;
        },
        ref: ([t]) => gatherRowsRef(idx, t!, v, e),
        refGrad: (_, gy) => [segmentSumRef(idx, gy, v, e)],
        atol: 1e-5,
        rtol: 1e-5,
      });
    });
  }

  it('an out-of-range index reads zeros and gets no gradient', async () => {
    const idx = Int32Array.from([1, -1, 3, 0, 1]); // V = 3: -1 and 3 are out of range
    const indices = dev().tensor(idx, [5]);
    await checkOp(dev(), {
      name: 'embedding (out of range)',
      inputs: [{ shape: [3, 6] }],
      run: ([t]) => ops.embedding(indices, t!),
      ref: ([t]) => gatherRowsRef(idx, t!, 3, 6),
      refGrad: (_, gy) => [segmentSumRef(idx, gy, 3, 6)],
      atol: 1e-6, // copies and sums of two values
      rtol: 1e-6,
    });
  });

  it('the gradient is deterministic (bit-identical over repeated runs)', async () => {
    const idx = drawIndices(300, 4);
    const indices = dev().tensor(idx, [300]);
    const gy = dev().tensor(Float32Array.from({ length: 300 * 5 }, () => r() - 0.5), [300, 5]);
    const runs: Float32Array[] = [];
    for (let i = 0; i < 3; i++) {
      const t = dev().tensor(new Float32Array(20), [4, 5], { requiresGrad: true });
      await ops.embedding(indices, t).backward(gy);
      runs.push((await t.grad!.read()) as Float32Array);
    }
    expect(runs[1]).toEqual(runs[0]);
    expect(runs[2]).toEqual(runs[0]);
  });

  it('rejects float indices and a table that is not 2-D', () => {
    const t = dev().zeros([4, 3]);
    expect(() => ops.embedding(dev().zeros([2]), t)).toThrow(ShapeError);
    expect(() => ops.embedding(dev().zeros([2]), t)).toThrow(/embedding: indices must be an i32 tensor, got f32 \[2\]/);
    expect(() => ops.embedding(dev().tensor(new Int32Array(2), [2]), dev().zeros([4, 3, 2]))).toThrow(/embedding: table has shape \[4, 3, 2\].*\[V, E\]/);
  });
});
