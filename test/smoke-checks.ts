// A subset of the kernel checks, run unchanged in Node (test/smoke.test.ts) and in headless Chromium
// (test/browser.test.ts), so both runtimes are held to the same float64 references: an elementwise op
// and a reduction, and the fused kernels a diffusion model spends its time in (convolution, group norm
// with SiLU, attention, the codebook lookup), forward and backward. Shapes and tolerances are cases of
// the kernels' own test files, whose comments give the reasons; the shapes are tile multiples nowhere.
import { ops } from '../src/index.js';
import { OpCheck, rng } from './check.js';
import { conv2dGeometry } from '../kernels/conv2d.js';
import { conv2dGradRef, conv2dRef } from './reference/conv2d.js';
import { groupNormGradRef, groupNormRef } from './reference/groupnorm.js';
import { attentionRef, attentionVjpRef } from './reference/attention.js';
import { separatedCodebookInputs, vqRef, runVq } from './codebook-check.js';
import { unaryRef, unaryDerivRef } from './reference/elementwise.js';
import { absQuantileRef } from './reference/quantile.js';

export function smokeChecks(seed: number): OpCheck[] {
  const conv = conv2dGeometry([2, 5, 7, 6], [6, 5, 3, 3], [6], { padding: 1 });
  const attn = { b: 2, h: 3, lq: 19, lk: 23, d: 8 };
  const vq = separatedCodebookInputs([2, 3, 5, 7], 37, rng(seed));
  const vqCheck = vqRef(vq.z, vq.cb, [2, 3, 5, 7], 37, 0.25, 'both');
  return [
    {
      name: 'silu',
      inputs: [{ shape: [3, 37] }],
      run: ([x]) => ops.silu(x!),
      ref: ([x]) => x!.map((v) => unaryRef('silu', v)),
      refGrad: ([x], gy) => [x!.map((v, i) => unaryDerivRef('silu', v) * gy[i]!)],
      // one f32 exp and divide per element
      atol: 1e-5,
      rtol: 1e-5,
    },
    {
      name: 'mean over axis 1',
      inputs: [{ shape: [3, 70, 2] }],
      run: ([x]) => ops.mean(x!, 1),
      ref: ([x]) => {
        const y = new Float64Array(6);
        for (let a = 0; a < 3; a++) for (let b = 0; b < 70; b++) for (let c = 0; c < 2; c++) y[a * 2 + c]! += x![(a * 70 + b) * 2 + c]! / 70;
        return y;
      },
      refGrad: (_, gy) => [Float64Array.from({ length: 420 }, (_, k) => gy[Math.floor(k / 140) * 2 + (k % 2)]! / 70)],
      // 70-term f32 sums of N(0,1) values
      atol: 1e-5,
      rtol: 1e-5,
    },
    {
      // Bisection over bit patterns with workgroup atomics and barriers: rows longer than the workgroup.
      name: 'absQuantile',
      inputs: [{ shape: [3, 300] }],
      run: ([x]) => ops.absQuantile(x!, 0.995),
      ref: ([x]) => absQuantileRef(x!, 3, 300, 0.995),
      // two exact order statistics interpolated in f32
      atol: 0,
      rtol: 3e-7,
    },
    {
      // dot products of K = 45 terms forward, up to 54 (dx) and 84 (dw, db) backward: 1e-6·K (test/conv2d.test.ts)
      name: 'conv2d 3x3, padding 1, bias',
      inputs: [{ shape: [2, 5, 7, 6] }, { shape: [6, 5, 3, 3] }, { shape: [6] }],
      run: ([x, w, b]) => ops.conv2d(x!, w!, b!, { padding: 1 }),
      ref: ([x, w, b]) => conv2dRef(x!, w!, b!, conv),
      refGrad: ([x, w], gy) => {
        const r = conv2dGradRef(x!, w!, gy, conv);
        return [r.dx, r.dw, r.db];
      },
      atol: 45e-6,
      rtol: 1e-6,
      gradAtol: 84e-6,
      gradRtol: 1e-6,
    },
    {
      // as test/groupnorm.test.ts
      name: 'groupNorm + SiLU, 3 groups',
      inputs: [{ shape: [2, 6, 5, 7] }, { shape: [6] }, { shape: [6] }],
      run: ([x, g, b]) => ops.groupNorm(x!, 3, g!, b!, { eps: 1e-5, silu: true }),
      ref: ([x, g, b]) => groupNormRef(x!, [2, 6, 5, 7], 3, g!, b!, 1e-5, true),
      refGrad: ([x, g, b], gy) => {
        const r = groupNormGradRef(x!, [2, 6, 5, 7], 3, g!, b!, 1e-5, true, gy);
        return [r.dx, r.dgamma, r.dbeta];
      },
      atol: 1e-5,
      rtol: 1e-5,
      gradAtol: 2e-5,
      gradRtol: 1e-5,
    },
    {
      // as test/attention.test.ts ('unit' tolerances)
      name: 'attention, cross, Lq 19, Lk 23, D 8, 3 heads',
      inputs: [{ shape: [2, 3, 19, 8] }, { shape: [2, 3, 23, 8] }, { shape: [2, 3, 23, 8] }],
      run: ([q, k, v]) => ops.attention(q!, k!, v!),
      ref: ([q, k, v]) => attentionRef(q!, k!, v!, attn, 1 / Math.sqrt(8)),
      refGrad: ([q, k, v], go) => attentionVjpRef(q!, k!, v!, go, attn, 1 / Math.sqrt(8)),
      atol: 4e-6,
      rtol: 2e-5,
      gradAtol: 1e-5,
      gradRtol: 5e-5,
    },
    {
      // indices exact (the nearest code wins by >= 1e-3), as test/codebook.test.ts
      name: 'codebookLookup, K = 37: zq and loss, straight-through and codebook gradients',
      inputs: [{ shape: [2, 3, 5, 7], data: vq.z }, { shape: [37, 3], data: vq.cb }],
      run: runVq('both', 0.25),
      ref: vqCheck.ref,
      refGrad: vqCheck.refGrad,
      atol: 1e-6,
      rtol: 1e-5,
    },
  ];
}
