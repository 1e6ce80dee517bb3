import { describe, expect, it } from 'vitest';
import { ops, Tensor } from '../src/index.js';
import { ShapeError } from '../src/runtime/errors.js';
import { codebookGradRef, codebookRef, distRef, nearestRef, vectorOffset } from '../kernels/codebook.js';
import { vqRef, runVq as run, Through, separatedCodebookInputs } from './codebook-check.js';
import { checkOp, expectClose, f32, numel, randn, rng, SEED, useDevice } from './helpers.js';

const dev = useDevice();
const r = rng(SEED + 11);

const separated = (shape: number[], k: number) => separatedCodebookInputs(shape, k, r);

// [z shape, K], one or more per kernel variant. nearest_d4 (D <= 4, 256-code tiles, 512 vectors per
// workgroup): K = 37 is one partial tile, K = 300 a full and a partial one. nearest_d8 (D <= 8, 256-code
// tiles, 512 vectors per workgroup): D = 6, K = 300. nearest_d16 (128-code tiles, 256 vectors): D = 12, K = 150. nearest (D > 16:
// q = 4 * ceil(D / 16) vec4s per code, min(128, 512 / q) codes per tile, dimensions past 16 re-read):
// D = 20, 40, 70, 130 with 2 or 3 tiles of codes. No M (70, 396, 24, 15, 12, 9, 6, 6) is a multiple
// of 64 or of the vectors per workgroup.
const cases: [number[], number][] = [
  [[2, 3, 5, 7], 37],
  [[1, 4, 9, 11], 300],
  [[2, 6, 3, 4], 300],
  [[1, 12, 5, 3], 150],
  [[2, 20, 2, 3], 100],
  [[1, 40, 3, 3], 70],
  [[1, 70, 2, 3], 37],
  [[1, 130, 3, 2], 30],
];

describe('codebookLookup forward', () => {
  for (const [shape, k] of cases) {
    it(`z ${JSON.stringify(shape)}, K = ${k}: indices exact, zq and loss vs float64`, async () => {
      const beta = 0.25;
      const { z, cb } = separated(shape, k);
      const zt = dev().tensor(Float32Array.from(z), shape);
      const ct = dev().tensor(Float32Array.from(cb), [k, shape[1]!]);
      const { zq, indices, loss } = ops.codebookLookup(zt, ct, { beta });
      const want = nearestRef(z, shape, cb, k).indices;
      expect(indices.dtype).toBe('i32');
      expect(indices.shape).toEqual([shape[0], shape[2], shape[3]]);
      expect(zq.shape).toEqual(shape);
      expect(loss.shape).toEqual([]);
      expect(Array.from(await indices.read())).toEqual(Array.from(want));
      const ref = codebookRef(z, shape, cb, want, beta);
      // zq is a copy of codebook entries: exact.
      expectClose('zq', await zq.read(), ref.zq, 0, 0);
      // A mean of at most 780 squared differences, summed in f32: relative error ~1e-6.
      expectClose('loss', [await loss.item()], [ref.loss], 1e-6, 1e-5);
    });
  }

  it('ties go to the lowest index (duplicate codes, and an all-equal codebook)', async () => {
    const shape = [1, 4, 3, 5];
    const d = 4;
    const cb = f32(randn(6 * d, r));
    for (let c = 0; c < d; c++) cb[4 * d + c] = cb[2 * d + c]!; // code 4 duplicates code 2
    // Vectors close to code 2 (so also to code 4): the answer must be 2.
    const z = new Float64Array(numel(shape));
    for (let m = 0; m < 15; m++) for (let c = 0; c < d; c++) z[vectorOffset(m, c, shape)] = cb[2 * d + c]! + 0.01 * (r() - 0.5);
    const { indices } = ops.codebookLookup(dev().tensor(Float32Array.from(z), shape), dev().tensor(Float32Array.from(cb), [6, d]));
    expect(Array.from(await indices.read())).toEqual(new Array(15).fill(2));
    const same = new Float32Array(70 * d).fill(0.5);
    const all = ops.codebookLookup(dev().tensor(Float32Array.from(z), shape), dev().tensor(same, [70, d]));
    expect(Array.from(await all.indices.read())).toEqual(new Array(15).fill(0));
  });

  it('K = 1024, D = 4 over 4096 vectors: indices match the float64 argmin up to near-ties', async () => {
    const shape = [1, 4, 64, 64];
    const k = 1024;
    const z = f32(randn(numel(shape), r));
    const cb = f32(randn(k * 4, r));
    const { zq, indices, loss } = ops.codebookLookup(dev().tensor(Float32Array.from(z), shape), dev().tensor(Float32Array.from(cb), [k, 4]));
    const got = (await indices.read()) as Int32Array;
    const ref = nearestRef(z, shape, cb, k);
    // The GPU scores |e|^2 - 2 z.e in f32 (terms up to ~40, rounding ~1e-5 at worst): where two
    // distances are within 2e-5 in float64 either index is right; elsewhere it must be exact.
    let inexact = 0;
    for (let m = 0; m < got.length; m++) {
      if (got[m] === ref.indices[m]) continue;
      inexact++;
      const excess = distRef(z, shape, cb, m, got[m]!) - ref.best[m]!;
      if (!(got[m]! >= 0 && got[m]! < k && excess <= 2e-5)) {
        throw new Error(`vector ${m}: index ${got[m]} is ${excess} farther than the nearest ${ref.indices[m]} (TEST_SEED=${SEED})`);
      }
    }
    expect(inexact).toBeLessThanOrEqual(8);
    const want = codebookRef(z, shape, cb, got, 0.25);
    expectClose('zq', await zq.read(), want.zq, 0, 0);
    // 16384 squared differences summed in a fixed tree: relative error ~1e-6.
    expectClose('loss', [await loss.item()], [want.loss], 1e-6, 1e-5);
  });
});

describe('codebookLookup gradients', () => {
  const gradCases: [number[], number, Through, number][] = [
    [[2, 3, 5, 7], 37, 'zq', 0.25],
    [[2, 3, 5, 7], 37, 'loss', 0.25],
    [[2, 3, 5, 7], 37, 'both', 0.25],
    [[1, 4, 9, 11], 300, 'both', 0.7],
    [[2, 6, 3, 4], 150, 'loss', 1.5],
    [[2, 12, 3, 3], 150, 'both', 0.25],
    [[1, 70, 2, 3], 37, 'both', 0.25],
    // 330 vectors: two runs of 165 rows in the segment sum, the second starting inside image 1.
    [[3, 3, 10, 11], 37, 'loss', 0.25],
  ];
  for (const [shape, k, through, beta] of gradCases) {
    it(`through ${through}: z ${JSON.stringify(shape)}, K = ${k}, beta = ${beta}`, async () => {
      const { z, cb } = separated(shape, k);
      const { ref, refGrad } = vqRef(z, cb, shape, k, beta, through);
      // Forward: zq exact, the loss a sum of <= 990 f32 squares (~1e-6 relative). Gradients: dz is the
      // upstream value plus one f32 product; dcodebook sums up to ~20 vectors per code scaled by 2/numel
      // (values ~1e-2, rounding ~1e-8): 1e-6 absolute, 1e-5 relative covers both with margin.
      await checkOp(dev(), {
        name: `codebookLookup (${through})`,
        inputs: [{ shape, data: z }, { shape: [k, shape[1]!], data: cb, grad: through !== 'zq' }],
        run: run(through, beta),
        ref,
        refGrad,
        atol: 1e-6,
        rtol: 1e-5,
      });
    });
  }

  it('the codebook gets no gradient through zq (only through the loss)', async () => {
    const shape = [1, 3, 4, 5];
    const { z, cb } = separated(shape, 7);
    const zt = dev().tensor(Float32Array.from(z), shape, { requiresGrad: true });
    const ct = dev().tensor(Float32Array.from(cb), [7, 3], { requiresGrad: true });
    await ops.sum(ops.codebookLookup(zt, ct).zq).backward();
    expect(ct.grad).toBeNull();
    expectClose('dz', await zt.grad!.read(), new Float64Array(z.length).fill(1), 0, 0);
  });

  it('K = 1024, D = 4, 4096 vectors: both gradients vs float64', async () => {
    const shape = [1, 4, 64, 64];
    const k = 1024;
    const z = f32(randn(numel(shape), r));
    const cb = f32(randn(k * 4, r));
    const zt = dev().tensor(Float32Array.from(z), shape, { requiresGrad: true });
    const ct = dev().tensor(Float32Array.from(cb), [k, 4], { requiresGrad: true });
    const { zq, indices, loss } = ops.codebookLookup(zt, ct, { beta: 0.25 });
    const gy = f32(randn(z.length, r));
    const total = ops.add(ops.sum(ops.mul(zq, dev().tensor(Float32Array.from(gy), shape))), ops.scale(loss, 3));
    await total.backward();
    // Assignments as the GPU made them (near-ties may differ from float64, see the forward test).
    const idx = (await indices.read()) as Int32Array;
    const want = codebookGradRef(z, shape, cb, k, idx, 0.25, gy, 3);
    // dcodebook sums ~4 vectors per code (at most ~30) of size 6/16384 ~ 4e-4: rounding < 1e-9.
    expectClose('dz', await zt.grad!.read(), want.dz, 1e-6, 1e-5);
    expectClose('dcodebook', await ct.grad!.read(), want.dcb, 1e-8, 1e-5);
  });
});

describe('codebookLookup errors', () => {
  it('names the op and the shapes', () => {
    const z = dev().zeros([1, 4, 3, 3]);
    expect(() => ops.codebookLookup(z, dev().zeros([8, 3]))).toThrow(ShapeError);
    expect(() => ops.codebookLookup(z, dev().zeros([8, 3]))).toThrow(/codebookLookup: codebook has shape \[8, 3\], expected \[K, 4\].*z \[1, 4, 3, 3\]/);
    expect(() => ops.codebookLookup(dev().zeros([4, 9]), dev().zeros([8, 4]))).toThrow(/codebookLookup: z has shape \[4, 9\], expected rank 4/);
  });
});
