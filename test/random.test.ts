import { describe, expect, it } from 'vitest';
import { useDevice, expectClose, SEED } from './helpers.js';
import { ops } from '../src/index.js';
import { randomRef, threefryRef } from './reference/random.js';

const dev = useDevice();

describe('random', () => {
  it('the Threefry-2x32-20 reference matches the published known-answer vectors', () => {
    // Random123's kat_vectors for threefry2x32_20.
    expect(threefryRef(0, 0, 0, 0).map((x) => x.toString(16))).toEqual(['6b200159', '99ba4efe']);
    expect(threefryRef(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff).map((x) => x.toString(16))).toEqual(['1cb996fc', 'bb002be7']);
    expect(threefryRef(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344).map((x) => x.toString(16))).toEqual(['c4923a9c', '483df7a0']);
  });

  for (const dist of ['normal', 'uniform'] as const) {
    it(`${dist}: the GPU draws the reference's numbers for (seed, counter, stream); odd sizes`, async () => {
      const d = dev();
      const seed = SEED >>> 0, counter = 7, stream = 3, n = 1001;
      const key = d.randomKey(seed, counter);
      const f = dist === 'normal' ? ops.randn : ops.rand;
      const got = await f([7, 11, 13], key, stream).read();
      // The integer bits are identical. Uniforms are exact up to f32 rounding (1e-7). Normals go through
      // WGSL's cos and sin, whose absolute error is bounded by 2^-11 on [-π, π], times a radius of at
      // most sqrt(-2 ln 2^-25) ≈ 5.9: 3e-3 absolute.
      const atol = dist === 'normal' ? 3e-3 : 1e-7;
      expectClose(`${dist} vs reference`, got, randomRef(seed, counter, stream, n, dist), atol, 0);
    });
  }

  it('moments of 2^16 normals, streams and counters are independent, advanceKey moves the counter', async () => {
    const d = dev();
    const key = d.randomKey(SEED >>> 0);
    const n = 1 << 16;
    const a = (await ops.randn([n], key, 0).read()) as Float32Array;
    const b = (await ops.randn([n], key, 1).read()) as Float32Array;
    ops.advanceKey(key);
    const c = (await ops.randn([n], key, 0).read()) as Float32Array;
    const mean = (x: Float32Array) => x.reduce((s, v) => s + v, 0) / x.length;
    const dot = (x: Float32Array, y: Float32Array) => x.reduce((s, v, i) => s + v * y[i]!, 0) / x.length;
    // Standard errors at n = 65536: mean 0.004, variance 0.0055, correlation 0.004; 5 sigma bounds.
    expect(Math.abs(mean(a))).toBeLessThan(0.02);
    expect(Math.abs(dot(a, a) - 1)).toBeLessThan(0.03);
    expect(Math.abs(dot(a, b))).toBeLessThan(0.02);
    expect(Math.abs(dot(a, c))).toBeLessThan(0.02);
    expect(Array.from(await key.read())).toEqual([SEED | 0, 1]);
  });
});
