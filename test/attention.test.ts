import { describe, expect, it } from 'vitest';
import { ops, ShapeError } from '../src/index.js';
import { MAX_HEAD_DIM, ATTENTION_TUNE, chooseAttention, forceAttentionCandidate, fits, attentionCandidate, attentionKernels } from '../kernels/attention.js';
import { attentionRef, attentionVjpRef, AttnShape } from './reference/attention.js';
import { setChoice, tuningOf } from '../src/runtime/autotune.js';
import { TUNED_PROBLEMS } from '../src/graph/tune.js';
import { checkOp, randn, useDevice } from './helpers.js';

const dev = useDevice();

interface Case {
  name: string;
  s: AttnShape;
  scale?: number;
  /** Multiplies q (large logits). */
  qMul?: number;
  atol: number;
  rtol: number;
  gradAtol: number;
  gradRtol: number;
  /** Check gradients of k and v (default true). */
  kvGrad?: boolean;
  /** Forward only. */
  noGrad?: boolean;
  /** The kernel to run (ATTENTION_CANDIDATES); default 'rows4'. */
  cand?: string;
  /** The backward's kernel when `cand` does not fit the backward at this D. */
  bwdFallback?: string;
}

// Tolerances. Inputs are N(0, 1) rounded to f32, so the float64 reference sees exactly what the GPU
// sees and only the kernels' f32 arithmetic differs. A score is a D-term dot product (absolute error
// ≈ √D·eps ≈ 1e-6 for unit logits), which perturbs its probability by that much relatively; o, dq,
// dk, dv are sums of Lk (or Lq) such terms of magnitude ≲ 4, and tiles only reorder the sums. Over
// 20 seeds of every case below the worst errors were 6e-7 (forward) and 1.5e-6 (gradients), under
// 10% of these tolerances, while a wrong mask, rescale or dropped term errs by >= 1e-3.
const unit = { atol: 4e-6, rtol: 2e-5, gradAtol: 1e-5, gradRtol: 5e-5 };
// With |s| up to ~150 a score's absolute error grows to ≈ |s|·√D·eps ≈ 4e-5, a relative error of
// every probability; worst seen 4e-6 (forward) and 7e-5 (gradients, up to ~|ref|·3e-5).
const large = { atol: 1e-4, rtol: 1e-4, gradAtol: 1e-4, gradRtol: 3e-4 };

const cases: Case[] = [
  { name: 'cross, Lq 19, Lk 23, D 8, B 2, H 3 (nothing a tile multiple)', s: { b: 2, h: 3, lq: 19, lk: 23, d: 8 }, ...unit },
  { name: 'cross, Lq 33, Lk 77 (two key tiles), D 16', s: { b: 1, h: 2, lq: 33, lk: 77, d: 16 }, ...unit },
  { name: 'self, L 70 (three 32-row query blocks), D 5 (not a multiple of 4)', s: { b: 1, h: 2, lq: 70, lk: 70, d: 5 }, ...unit },
  { name: 'self, L 128, D 32 (exact multiples: two 64-row blocks, two 64-row tiles)', s: { b: 1, h: 2, lq: 128, lk: 128, d: 32 }, ...unit },
  { name: 'cross, Lq 40, Lk 45, D 64 (32-row tiles)', s: { b: 1, h: 2, lq: 40, lk: 45, d: 64 }, ...unit },
  { name: 'cross, Lq 9, Lk 37, D 128 (largest head, 16-row tiles)', s: { b: 1, h: 1, lq: 9, lk: 37, d: MAX_HEAD_DIM }, ...unit },
  { name: 'cross, Lq 11, Lk 20, D 70 (wide variant, partial vec4)', s: { b: 1, h: 2, lq: 11, lk: 20, d: 70 }, ...unit },
  { name: 'custom scale 0.3, Lq 12, Lk 13, D 12', s: { b: 1, h: 2, lq: 12, lk: 13, d: 12 }, scale: 0.3, ...unit },
  { name: 'one query, one key (o = v)', s: { b: 1, h: 1, lq: 1, lk: 1, d: 4 }, ...unit },
  { name: 'only q needs a gradient (k, v backward skipped)', s: { b: 1, h: 2, lq: 10, lk: 30, d: 16 }, kvGrad: false, ...unit },
  // Logits with |s| up to ~150 (exp overflows f32 past 88): a softmax without a running max gives inf/NaN.
  // Lk 150 spans three 64-row tiles, so the running maximum changes between tiles.
  { name: 'large logits (q x 10, |s| ~ 150), Lq 21, Lk 150, D 16', s: { b: 1, h: 2, lq: 21, lk: 150, d: 16 }, qMul: 10, ...large },
  // Forward only: at scale 40 the softmax is nearly one-hot and its third derivatives, ~(40·|k|)³,
  // defeat central differences of the reference; the q x 10 case checks gradients at large logits.
  // |s| reaches ~500 here, so the forward's error bound is ~3x the one above.
  { name: 'large custom scale 40 (|s| ~ 500), Lq 17, Lk 70, D 8, forward', s: { b: 1, h: 1, lq: 17, lk: 70, d: 8 }, scale: 40, noGrad: true, ...large, atol: 3e-4 },
];

// The flash kernels (shaders/attention_flash.wgsl), each case on a tiling chosen to cover: the
// subgroup ('sg') and workgroup-memory softmax reductions with 1, 2 and 4 lanes per row (SR 16, 32,
// 64); vec4 (D % 4 = 0) and scalar (D = 30) access; every head-dimension bucket (D 8, 30, 64, 128);
// lengths that are no multiple of a tile (1, 7, 77, 130) on both sides, self and cross; and logits
// large enough that a softmax without a running maximum overflows. The tolerances are the ones above,
// for the same reasons: the flash kernels sum the same terms in another order.
const flashCases: Case[] = [
  { name: 'self, L 130, D 64 (query and key tiles partial)', s: { b: 1, h: 2, lq: 130, lk: 130, d: 64 }, cand: 'flash 16x32 sg', ...unit },
  { name: 'cross, Lq 77, Lk 130, D 64', s: { b: 1, h: 1, lq: 77, lk: 130, d: 64 }, cand: 'flash 16x32', ...unit },
  { name: 'cross, Lq 7, Lk 77, D 30 (scalar access), B 2', s: { b: 2, h: 1, lq: 7, lk: 77, d: 30 }, cand: 'flash 32x16', ...unit },
  { name: 'cross, Lq 77, Lk 7, D 30', s: { b: 1, h: 2, lq: 77, lk: 7, d: 30 }, cand: 'flash 16x32 sg', ...unit },
  { name: 'one query, Lk 7, D 8', s: { b: 1, h: 3, lq: 1, lk: 7, d: 8 }, cand: 'flash 16x64 sg', ...unit },
  { name: 'self, L 1, D 8 (o = v)', s: { b: 1, h: 1, lq: 1, lk: 1, d: 8 }, cand: 'flash 16x64', ...unit },
  // D 128 fits the forward's workgroup memory here (32 KiB), not the backward's: that runs 'rows4'.
  { name: 'cross, Lq 9, Lk 37, D 128', s: { b: 1, h: 1, lq: 9, lk: 37, d: MAX_HEAD_DIM }, cand: 'flash 16x32 sg', bwdFallback: 'rows4', ...unit },
  { name: 'large logits (q x 10, |s| ~ 150), Lq 21, Lk 150, D 16', s: { b: 1, h: 2, lq: 21, lk: 150, d: 16 }, qMul: 10, cand: 'flash 16x64', ...large },
  { name: 'large logits (q x 10), Lq 40, Lk 150, D 16, subgroups', s: { b: 1, h: 1, lq: 40, lk: 150, d: 16 }, qMul: 10, cand: 'flash 32x32 sg', ...large },
  { name: 'large custom scale 40 (|s| ~ 500), Lq 17, Lk 70, D 8, forward', s: { b: 1, h: 1, lq: 17, lk: 70, d: 8 }, scale: 40, noGrad: true, cand: 'flash 32x32', ...large, atol: 3e-4 },
];

describe('attention', () => {
  for (const c of [...cases, ...flashCases]) {
    const cand = c.cand ?? 'rows4';
    it(`${cand}: ${c.name}: ${c.noGrad ? 'forward vs float64' : 'forward and backward vs float64, reference vs finite differences'}`, async () => {
      const rt = dev().rt;
      if (attentionCandidate(cand).subgroups && !rt.device.features.has('subgroups')) return; // adapter without subgroups: nothing to test
      forceAttentionCandidate(rt, cand);
      try {
      const { b, h, lq, lk, d } = c.s;
      // The forced kernel is the one that runs (and the stated fallback where it does not fit).
      expect(chooseAttention(rt, 'forward', d).name).toBe(cand);
      expect(chooseAttention(rt, 'backward', d).name).toBe(c.bwdFallback ?? cand);
      const scale = c.scale ?? 1 / Math.sqrt(d);
      const qShape = [b, h, lq, d];
      const kShape = [b, h, lk, d];
      const q = randn(b * h * lq * d).map((x) => x * (c.qMul ?? 1));
      await checkOp(dev(), {
        name: `attention ${JSON.stringify(c.s)}`,
        inputs: [{ shape: qShape, data: q }, { shape: kShape, grad: c.kvGrad }, { shape: kShape, grad: c.kvGrad }],
        run: ([q, k, v]) => ops.attention(q!, k!, v!, c.scale === undefined ? {} : { scale: c.scale }),
        ref: ([q, k, v]) => attentionRef(q!, k!, v!, c.s, scale),
        refGrad: c.noGrad ? undefined : ([q, k, v], go) => attentionVjpRef(q!, k!, v!, go, c.s, scale),
        atol: c.atol,
        rtol: c.rtol,
        gradAtol: c.gradAtol,
        gradRtol: c.gradRtol,
      });
      } finally {
        forceAttentionCandidate(rt, null);
      }
    });
  }

  it('one tensor as q, k and v: the three gradients accumulate', async () => {
    const s = { b: 1, h: 2, lq: 13, lk: 13, d: 8 };
    const scale = 1 / Math.sqrt(8);
    await checkOp(dev(), {
      name: 'attention(x, x, x)',
      inputs: [{ shape: [1, 2, 13, 8] }],
      run: ([x]) => ops.attention(x!, x!, x!),
      ref: ([x]) => attentionRef(x!, x!, x!, s, scale),
      refGrad: ([x], go) => {
        const [gq, gk, gv] = attentionVjpRef(x!, x!, x!, go, s, scale);
        return [gq.map((g, i) => g + gk[i]! + gv[i]!)];
      },
      ...unit,
    });
  });

  it('every entry point of every attention module binds at most 8 storage buffers (the default limit per stage)', () => {
    const entries = attentionKernels().flatMap((k) => [...k.entries.values()].map((e) => [`${k.name}:${e.name}`, e.storage.length] as const));
    expect(entries.length).toBe(3 + 4 * 3);
    for (const [name, n] of entries) expect(n, name).toBeLessThanOrEqual(8);
  });

  it('rejects mismatched shapes and heads wider than the limit, naming the shapes', () => {
    const d = dev();
    const t = (shape: number[]) => d.zeros(shape);
    const q = t([1, 2, 5, 8]);
    // k and v differ
    expect(() => ops.attention(q, t([1, 2, 7, 8]), t([1, 2, 6, 8]))).toThrow(ShapeError);
    expect(() => ops.attention(q, t([1, 2, 7, 8]), t([1, 2, 6, 8]))).toThrow(/v has shape \[1, 2, 6, 8\], expected the shape of k, \[1, 2, 7, 8\]/);
    // head dimension differs between q and k
    expect(() => ops.attention(q, t([1, 2, 7, 4]), t([1, 2, 7, 4]))).toThrow(/k has shape \[1, 2, 7, 4\] but q has shape \[1, 2, 5, 8\]/);
    // batch or heads differ
    expect(() => ops.attention(q, t([1, 3, 7, 8]), t([1, 3, 7, 8]))).toThrow(ShapeError);
    // rank
    expect(() => ops.attention(t([2, 5, 8]), t([2, 7, 8]), t([2, 7, 8]))).toThrow(/q has shape \[2, 5, 8\], expected rank 4/);
    // D past the limit
    const w = MAX_HEAD_DIM + 4;
    expect(() => ops.attention(t([1, 1, 2, w]), t([1, 1, 3, w]), t([1, 1, 3, w]))).toThrow(new RegExp(`D = ${w} .* supported range 1\\.\\.${MAX_HEAD_DIM}`));
    // no keys
    expect(() => ops.attention(q, t([1, 2, 0, 8]), t([1, 2, 0, 8]))).toThrow(/Lk = 0/);
  });
  it("the autotuner's choice (measured at D = 64) runs at every D it fits, the default where it does not; the tuning workloads run", async () => {
    const rt = dev().rt;
    const saved = tuningOf(rt);
    expect(TUNED_PROBLEMS).toContain(ATTENTION_TUNE.forward);
    expect(TUNED_PROBLEMS).toContain(ATTENTION_TUNE.backward);
    try {
      setChoice(rt, ATTENTION_TUNE.forward, 'rows4');
      for (const d of [8, 30, 64, 128]) expect(chooseAttention(rt, 'forward', d).name).toBe('rows4');
      setChoice(rt, ATTENTION_TUNE.forward, 'flash 64x16');
      expect(chooseAttention(rt, 'forward', 64).name).toBe('flash 64x16');
      // An invocation owns at most 4 vec4 columns of an output row: SR 16 holds D <= 64.
      expect(fits(rt, attentionCandidate('flash 64x16'), 'forward', 128)).toBe(false);
      const c128 = chooseAttention(rt, 'forward', 128);
      expect(c128.name).not.toBe('flash 64x16');
      expect(fits(rt, c128, 'forward', 128)).toBe(true);
      // The tuner only times candidates that fit.
      for (const name of ATTENTION_TUNE.backward.candidates) {
        expect(ATTENTION_TUNE.backward.usable!(rt, name)).toBe(fits(rt, attentionCandidate(name), 'backward', 64));
      }
      for (const pass of ['forward', 'backward'] as const) {
        const bench = ATTENTION_TUNE[pass].workloads[0]!.setup(rt);
        bench.run('flash 32x16');
        bench.run('rows4');
        await rt.sync();
        bench.dispose();
      }
    } finally {
      for (const pass of ['forward', 'backward'] as const) {
        const r = saved[ATTENTION_TUNE[pass].key];
        if (r) setChoice(rt, ATTENTION_TUNE[pass], r.choice, r.source, r);
      }
    }
  });
});
