import { describe, expect, it } from 'vitest';
import { ops } from '../src/index.js';
import { ShapeError } from '../src/runtime/errors.js';
import { downsample2xGradRef, downsample2xRef, upsample2xGradRef, upsample2xRef } from './reference/resample.js';
import { checkOp, useDevice } from './helpers.js';

const dev = useDevice();

// Odd channel counts, non-square and odd spatial sizes, one larger than a 256-thread workgroup.
const upShapes = [[1, 1, 1, 1], [2, 3, 5, 7], [1, 5, 4, 9], [3, 1, 17, 11]];
const downShapes = [[1, 1, 2, 2], [2, 3, 6, 10], [1, 5, 8, 4], [3, 1, 18, 34]];

describe('upsample2x', () => {
  for (const shape of upShapes) {
    it(`nearest 2x of ${JSON.stringify(shape)}`, async () => {
      // Forward is an exact copy; the gradient sums 4 values (f32 rounding ~1e-7 relative).
      await checkOp(dev(), {
        name: 'upsample2x',
        inputs: [{ shape }],
        run: ([x]) => ops.upsample2x(x!),
        ref: ([x]) => upsample2xRef(x!, shape),
        refGrad: (_, gy) => [upsample2xGradRef(gy, shape)],
        atol: 1e-6,
        rtol: 1e-6,
      });
    });
  }
});

describe('downsample2x', () => {
  for (const shape of downShapes) {
    it(`2x2 average pool of ${JSON.stringify(shape)}`, async () => {
      // A mean of 4 values and a scale by 1/4 (exact): f32 rounding ~2e-7 relative.
      await checkOp(dev(), {
        name: 'downsample2x',
        inputs: [{ shape }],
        run: ([x]) => ops.downsample2x(x!),
        ref: ([x]) => downsample2xRef(x!, shape),
        refGrad: (_, gy) => [downsample2xGradRef(gy, shape)],
        atol: 1e-6,
        rtol: 1e-6,
      });
    });
  }

  it('round trip: downsample2x(upsample2x(x)) == x exactly', async () => {
    const x = dev().tensor(Float32Array.from({ length: 2 * 3 * 5 * 7 }, (_, i) => Math.sin(i)), [2, 3, 5, 7]);
    const y = ops.downsample2x(ops.upsample2x(x));
    expect(y.shape).toEqual([2, 3, 5, 7]);
    expect(await y.read()).toEqual(await x.read());
  });

  it('rejects odd sizes and wrong ranks, naming the shape', () => {
    const odd = dev().zeros([1, 3, 5, 4]);
    expect(() => ops.downsample2x(odd)).toThrow(ShapeError);
    expect(() => ops.downsample2x(odd)).toThrow(/downsample2x: .*\[1, 3, 5, 4\].*even/);
    expect(() => ops.upsample2x(dev().zeros([3, 4, 4]))).toThrow(/upsample2x: .*\[3, 4, 4\].*\[N, C, H, W\]/);
  });
});
