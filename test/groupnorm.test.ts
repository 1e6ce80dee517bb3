import { describe, expect, it } from 'vitest';
import { ops, ShapeError } from '../src/index.js';
import { GROUPNORM_TUNE, groupNormBackward, groupNormForward, groupNormWorkgroup } from '../kernels/groupnorm.js';
import { groupNormGradRef, groupNormRef } from './reference/groupnorm.js';
import { checkOp, expectClose, f32, numel, randn, useDevice } from './helpers.js';

const dev = useDevice();
const EPS = 1e-5;

interface Case {
  shape: number[];
  groups: number;
  affine: 'both' | 'gamma' | 'none';
  silu: boolean;
  /** Added to every input (tests that the variance is computed without cancellation). */
  offset?: number;
  why: string;
}

// A block (n, g) holds L = (C / groups) * S elements; the workgroup has the threads the autotuner
// chose on this adapter (kernels/groupnorm.ts GROUPNORM_TUNE: 4 on SwiftShader, 64 or 256 on GPUs;
// 4 and 64 are both run here), so S and L fall under, at and over both. S % 4 == 0 takes the
// vec4 entries, any other S the scalar ones.
const cases: Case[] = [
  { shape: [2, 6, 5, 7], groups: 3, affine: 'both', silu: false, why: 'S = 35, L = 70, scalar' },
  { shape: [2, 6, 5, 7], groups: 3, affine: 'both', silu: true, why: 'the same with SiLU' },
  { shape: [2, 6, 5, 7], groups: 1, affine: 'both', silu: true, why: 'one group (layer norm over C, H, W)' },
  { shape: [2, 6, 5, 7], groups: 6, affine: 'both', silu: false, why: 'groups = C (instance norm)' },
  { shape: [2, 6, 5, 7], groups: 2, affine: 'none', silu: false, why: 'no affine' },
  { shape: [2, 6, 4, 3], groups: 2, affine: 'none', silu: true, why: 'no affine, SiLU, vec4 (S = 12)' },
  { shape: [3, 4, 5, 7], groups: 2, affine: 'gamma', silu: true, why: 'gamma without beta' },
  { shape: [5, 12], groups: 4, affine: 'both', silu: true, why: '[N, C], no spatial axes: S = 1, L = 3' },
  { shape: [2, 4, 3, 2, 5], groups: 2, affine: 'both', silu: true, why: 'three spatial axes' },
  { shape: [2, 64, 4, 5], groups: 32, affine: 'both', silu: true, why: '32 groups over 64 channels, vec4' },
  { shape: [2, 64, 5, 5], groups: 2, affine: 'both', silu: true, why: 'L = 800 with S = 25: the channel walk wraps' },
  { shape: [1, 4, 17, 19], groups: 2, affine: 'both', silu: false, why: 'S = 323 > 64' },
  { shape: [2, 8, 9, 11], groups: 4, affine: 'both', silu: true, offset: 100, why: 'inputs near 100: stable variance, scalar' },
  { shape: [2, 8, 6, 6], groups: 4, affine: 'both', silu: false, offset: 100, why: 'inputs near 100, vec4' },
  { shape: [2, 4, 16, 16], groups: 2, affine: 'both', silu: false, why: 'sizes that are multiples of every tile, vec4' },
];

// Forward: outputs are O(1); group sums of <= 800 f32 terms and the exp in SiLU leave ~1e-6
// (measured <= 1.4e-6, also for inputs near 1000, since the mean is kept as hi + lo).
const ATOL = 1e-5;
const RTOL = 1e-5;
// Backward: dx subtracts two group means of L terms from dxhat, and dGamma/dBeta add up N * S <= 512
// terms of size ~1, so the f32 error is a few ulp of those sums (measured <= 6e-6).
const GRAD_ATOL = 2e-5;
const GRAD_RTOL = 1e-5;

const tag = (c: Case) =>
  `${JSON.stringify(c.shape)} groups ${c.groups}, affine ${c.affine}${c.silu ? ', SiLU' : ''}${c.offset ? `, offset ${c.offset}` : ''} (${c.why})`;

function inputsOf(c: Case) {
  const C = c.shape[1]!;
  const inputs = [{ shape: c.shape, data: randn(numel(c.shape)).map((v) => v + (c.offset ?? 0)) }];
  if (c.affine !== 'none') inputs.push({ shape: [C], data: randn(C).map((v) => 1 + 0.5 * v) });
  if (c.affine === 'both') inputs.push({ shape: [C], data: randn(C).map((v) => 0.5 * v) });
  return inputs;
}

describe('groupNorm', () => {
  for (const c of cases) {
    it(tag(c), async () => {
      const inputs = inputsOf(c);
      await checkOp(dev(), {
        name: 'groupNorm',
        inputs,
        run: ([x, g, b]) => ops.groupNorm(x!, c.groups, g ?? null, b ?? null, { eps: EPS, silu: c.silu }),
        ref: ([x, g, b]) => groupNormRef(x!, c.shape, c.groups, g ?? null, b ?? null, EPS, c.silu),
        refGrad: ([x, g, b], gy) => {
          const r = groupNormGradRef(x!, c.shape, c.groups, g ?? null, b ?? null, EPS, c.silu, gy);
          return [r.dx, r.dgamma, r.dbeta].slice(0, inputs.length);
        },
        atol: ATOL,
        rtol: RTOL,
        gradAtol: GRAD_ATOL,
        gradRtol: GRAD_RTOL,
      });
    });
  }

  it('rejects C not divisible by groups, naming the op, the shape and the groups', () => {
    const x = dev().zeros([2, 6, 4, 4]);
    expect(() => ops.groupNorm(x, 4)).toThrow(ShapeError);
    expect(() => ops.groupNorm(x, 4)).toThrow(/groupNorm: x has shape \[2, 6, 4, 4\] with C = 6 channels, which cannot be split into 4 groups/);
  });

  it('rejects gamma or beta of the wrong size, and x without a channel axis', () => {
    const x = dev().zeros([2, 6, 4, 4]);
    expect(() => ops.groupNorm(x, 3, dev().ones([4]))).toThrow(/groupNorm: gamma has shape \[4\], expected \[6\]/);
    expect(() => ops.groupNorm(x, 3, dev().ones([6]), dev().zeros([6, 1]))).toThrow(/groupNorm: beta has shape \[6, 1\], expected \[6\]/);
    expect(() => ops.groupNorm(dev().zeros([6]), 3)).toThrow(/groupNorm: x has shape \[6\], expected \[N, C, \.\.\.spatial\]/);
  });
});

// The op uses the workgroup size the autotuner chose on this adapter; the kernels also run with every
// other candidate (kernels/groupnorm.ts GROUPNORM_TUNE).
describe('groupNorm kernels at the other workgroup sizes', () => {
  for (const c of cases.filter((_, i) => [1, 5, 7, 10, 11, 12, 13].includes(i))) {
    it(tag(c), async () => {
      const d = dev();
      for (const wg of GROUPNORM_TUNE.candidates.map((k) => Number(k.slice(2))).filter((w) => w !== groupNormWorkgroup(d.rt))) {
        const [xs, gs, bs] = inputsOf(c).map((s) => f32(s.data));
        const up = (a: Float64Array | undefined, shape: number[]) => (a ? d.rt.upload(Float32Array.from(a), shape) : null);
        const C = c.shape[1]!;
        const x = up(xs, c.shape)!;
        const g = up(gs, [C]);
        const b = up(bs, [C]);
        const gy = f32(randn(xs!.length));
        const { y, stats } = groupNormForward(x, c.groups, g, b, EPS, c.silu, wg);
        expectClose(`forward, ${wg} threads`, await d.rt.read(y), groupNormRef(xs!, c.shape, c.groups, gs ?? null, bs ?? null, EPS, c.silu), ATOL, RTOL);
        const grads = groupNormBackward(x, d.rt.upload(Float32Array.from(gy), c.shape), c.groups, g, b, stats, c.silu, { x: true, gamma: true, beta: true }, wg);
        const r = groupNormGradRef(xs!, c.shape, c.groups, gs ?? null, bs ?? null, EPS, c.silu, gy);
        expectClose(`dx, ${wg} threads`, await d.rt.read(grads.dx!), r.dx, GRAD_ATOL, GRAD_RTOL);
        expectClose(`dgamma, ${wg} threads`, await d.rt.read(grads.dgamma!), r.dgamma, GRAD_ATOL, GRAD_RTOL);
        expectClose(`dbeta, ${wg} threads`, await d.rt.read(grads.dbeta!), r.dbeta, GRAD_ATOL, GRAD_RTOL);
      }
    });
  }
});
