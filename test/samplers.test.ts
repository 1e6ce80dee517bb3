// Every sampler against a case with a known answer: data x0 ~ N(μ, diag s²). The optimal denoiser
// then has a closed form, E[ε | x] = b·(x - a·μ)/(a²·s² + b²) at x = a·x0 + b·ε, so a correct sampler
// driven by it must return samples with the data's mean and variance, up to Monte Carlo error and the
// sampler's own discretisation error.
import { describe, expect, it } from 'vitest';
import { expectClose, useDevice, SEED } from './helpers.js';
import { ops, Tensor } from '../src/index.js';
import { makeProcess, NoiseProcess, ProcessConfig } from '../src/diffusion/process.js';
import { makeSampler, SamplerOptions } from '../src/diffusion/samplers/index.js';
import { Denoiser, NetworkDenoiser, networkEps, perSample } from '../src/diffusion/denoiser.js';
import { DiscreteVP, PredictionType } from '../src/diffusion/process.js';
import { sigmaGrid } from '../src/diffusion/samplers/sigma.js';
import { spacedTimesteps } from '../src/diffusion/samplers/timesteps.js';
import { SamplingLoop } from '../src/diffusion/sample.js';
import { mulberry32 } from '../src/data/rng.js';
import { exactGaussianNetwork } from './gaussian-network.js';
import { referenceMoments, pcTrajectoryRef } from './sampler-reference.js';

const dev = useDevice();

const N = 4096; // samples
const SHAPE = [N, 1, 4, 4];
const D = 16; // dimensions, each with its own mean and variance

function gaussianData(seed: number) {
  const r = mulberry32(seed);
  const mu = Float32Array.from({ length: D }, () => r() - 0.5); // in [-0.5, 0.5]
  const s2 = Float32Array.from({ length: D }, () => (0.3 + 0.5 * r()) ** 2); // s in [0.3, 0.8]
  return { mu, s2 };
}

function analyticDenoiser(mu: Tensor, s2: Tensor): Denoiser {
  return (x, l) => {
    const a = perSample(l.a, x);
    const b = perSample(l.b, x);
    const num = ops.mul(b, ops.sub(x, ops.mul(a, mu)));
    return ops.div(num, ops.add(ops.mul(ops.square(a), s2), ops.square(b)));
  };
}

/** Per-dimension sample mean and variance (float64). */
function moments(x: Float32Array): { mean: Float64Array; variance: Float64Array } {
  const mean = new Float64Array(D), m2 = new Float64Array(D);
  for (let i = 0; i < N; i++) for (let d = 0; d < D; d++) mean[d]! += x[i * D + d]! / N;
  for (let i = 0; i < N; i++) for (let d = 0; d < D; d++) m2[d]! += (x[i * D + d]! - mean[d]!) ** 2 / (N - 1);
  return { mean, variance: m2 };
}

interface Case {
  sampler: string;
  process: ProcessConfig;
  steps: number;
  opts?: SamplerOptions;
  /**
   * How far the sampler's exact output (float64 reference) may be from the data at this step count,
   * relative, for the variance; and the reason. Means must be within 1% of s unless meanTol says otherwise.
   */
  varTol: number;
  why: string;
  /** The same bound for the mean, relative to s (default 0.01), where the sampler's bias needs more; and why. */
  meanTol?: number;
  /**
   * No closed-form moments (the step size depends on norms of the batch): compare with the data only.
   * The step itself is checked against a float64 trajectory reference below (pcTrajectoryRef).
   */
  noReference?: boolean;
}

const DDPM: ProcessConfig = { kind: 'ddpm', timesteps: 1000, betaSchedule: 'linear' };
const CASES: Case[] = [
  { sampler: 'ddpm', process: DDPM, steps: 1000, varTol: 0.03, why: "β̃ (Ho et al. §3.2) is the smaller of the two reverse variances: -2.5% at s = 0.3" },
  { sampler: 'ddpm', process: { ...DDPM, betaSchedule: 'cosine' }, steps: 250, varTol: 0.05, why: 'respaced to 250 steps, β̃ again: -4.6% at s = 0.3' },
  { sampler: 'ddim', process: DDPM, steps: 250, opts: { eta: 0 }, varTol: 0.04, why: 'a first-order deterministic discretisation shrinks the variance: -3.7% at s = 0.3, 250 steps' },
  { sampler: 'ddim', process: DDPM, steps: 250, opts: { eta: 1 }, varTol: 0.09, why: 'eta = 1 is DDPM respaced to 250 linear steps: -8.5% at s = 0.3' },
  { sampler: 'plms', process: DDPM, steps: 50, varTol: 0.01, why: 'fourth-order multistep: -0.8% at s = 0.3, 50 steps' },
  { sampler: 'ddim', process: { kind: 'vp-sde' }, steps: 250, varTol: 0.04, why: 'as DDIM on the discrete chain: -3.5% at s = 0.3' },
  { sampler: 'langevin', process: { kind: 'ncsn', levels: 10, sigmaMin: 0.01, sigmaMax: 1 }, steps: 100, opts: { stepSize: 5e-5 }, varTol: 0.03, why: 'finite Langevin steps barely mix at the low levels: +2.5%' },
  { sampler: 'euler-maruyama', process: { kind: 'vp-sde' }, steps: 250, varTol: 0.01, why: 'first order, Δ = 0.004: +0.6%' },
  { sampler: 'euler-maruyama', process: { kind: 've-sde' }, steps: 250, varTol: 0.01, why: 'first order: < 0.1%' },
  { sampler: 'ode', process: { kind: 'vp-sde' }, steps: 50, varTol: 0.01, why: "Heun's second order: +0.7% at s = 0.3" },
  { sampler: 'ode', process: { kind: 've-sde' }, steps: 100, varTol: 0.015, why: "Heun's second order over σ from 50 to 0.01: +1.0%", meanTol: 0.015 }, // mean bias up to 1.005% of s (μ = ±0.5, s = 0.3; float64 reference over the data's range)
  { sampler: 'pc', process: { kind: 'vp-sde' }, steps: 100, varTol: 0.03, noReference: true, why: 'EM predictor plus one Langevin corrector step (snr 0.01)' },
  { sampler: 'pc', process: { kind: 've-sde' }, steps: 100, varTol: 0.05, noReference: true, why: 'EM predictor plus one Langevin corrector step (snr 0.16): a finite Langevin step widens the distribution slightly' },
  // diffusers' grids (DDPMScheduler, DDIMScheduler, PNDMScheduler): each step to t − ⌊T/n⌋. Few steps
  // keep these cheap; the samples must still follow the float64 reference (the check above), and
  // the reference's distance from the data is what that step count gives on this narrow Gaussian.
  { sampler: 'ddim', process: DDPM, steps: 20, opts: { timestepSpacing: 'leading', stepsOffset: 1, setAlphaToOne: false }, varTol: 0.36, why: "leading + steps_offset 1 and ᾱ_0 after the last step (Stable Diffusion's DDIM settings): -34.7% at s = 0.3 in 20 first-order steps" },
  { sampler: 'ddim', process: DDPM, steps: 25, opts: { timestepSpacing: 'linspace' }, varTol: 0.22, meanTol: 0.03, why: 'linspace, 25 steps: -20.9%, and the mean 2.6% of s off (the first step jumps from t = 999 to 959)' },
  { sampler: 'ddpm', process: DDPM, steps: 50, opts: { timestepSpacing: 'leading', varianceType: 'large' }, varTol: 0.17, why: "β as the reverse variance (fixed_large), the larger of Ho et al.'s two: +15.6% in 50 steps" },
  { sampler: 'plms', process: DDPM, steps: 20, opts: { timestepSpacing: 'leading', stepsOffset: 1 }, varTol: 0.02, why: 'PNDM with skip_prk_steps on a leading grid: +1.4% in 20 steps' },
  // σ-space samplers on Karras et al.'s σ (ρ = 7, from σ(999) = 157 to σ(0) = 0.01 on the linear chain).
  { sampler: 'euler', process: DDPM, steps: 30, varTol: 0.21, why: 'first order in σ: -20.0% at s = 0.3 in 30 steps' },
  { sampler: 'euler', process: DDPM, steps: 30, opts: { karras: false }, varTol: 0.27, why: 'σ at linspace timesteps: -26.0% in 30 steps' },
  { sampler: 'heun', process: DDPM, steps: 15, varTol: 0.24, why: "Heun's second order, 15 steps (29 evaluations): +23.2%, the σ ratios near s being large" },
  { sampler: 'dpm++2m', process: DDPM, steps: 20, varTol: 0.12, why: 'second-order multistep: +11.0% at 20 steps' },
  { sampler: 'dpm++2m', process: DDPM, steps: 10, varTol: 0.27, why: 'at 10 steps: +25.7% from the data, and the samples still follow the float64 reference step for step' },
];

describe('samplers on Gaussian data with the optimal denoiser', () => {
  for (const c of CASES) {
    const name = `${c.sampler} (${c.process.kind}${c.process.betaSchedule ? ' ' + c.process.betaSchedule : ''}, ${c.steps} steps${c.opts ? ' ' + JSON.stringify(c.opts) : ''})`;
    it(`${name} reproduces the data's mean and variance`, async () => {
      const d = dev();
      const { mu, s2 } = gaussianData(SEED + CASES.indexOf(c));
      const proc: NoiseProcess = makeProcess(c.process);
      const sampler = makeSampler(c.sampler, proc, c.opts);
      const den = analyticDenoiser(d.tensor(mu, [1, 1, 4, 4]), d.tensor(s2, [1, 1, 4, 4]));
      const loop = new SamplingLoop(d, sampler, den, SHAPE);
      const { x } = await loop.run(c.steps, { seed: SEED });
      const got = moments((await x.read()) as Float32Array);
      loop.destroy();
      // The exact output moments of this sampler (float64), or the data's where there is no reference.
      const ref = Array.from(mu, (m, k) => (c.noReference ? { mean: m, variance: s2[k]! } : referenceMoments(c.sampler, proc, c.steps, m, s2[k]!, c.opts)));
      // Monte Carlo: a mean's standard error is σ/sqrt(N) (1.6% of σ), a variance's sqrt(2/(N-1)) (2.2%).
      // Each dimension within 4.5 standard errors (the largest of 16: p ≈ 1e-4); the average over the 16
      // dimensions, whose standard error is a quarter, within 4.5 of those: this catches a systematic bias.
      const seM = 1 / Math.sqrt(N), seV = Math.sqrt(2 / (N - 1));
      const zMean = ref.map((r, k) => (got.mean[k]! - r.mean) / Math.sqrt(r.variance));
      const zVar = ref.map((r, k) => got.variance[k]! / r.variance - 1);
      const slack = c.noReference ? c.varTol : 0;
      zMean.forEach((z, k) => expect(Math.abs(z), `mean of dim ${k} vs ${c.noReference ? 'data' : 'reference'} (TEST_SEED=${SEED})`).toBeLessThan(4.5 * seM + (c.noReference ? 0.01 : 0)));
      zVar.forEach((z, k) => expect(Math.abs(z), `variance of dim ${k} vs ${c.noReference ? 'data' : 'reference'} (TEST_SEED=${SEED})`).toBeLessThan(4.5 * seV + slack));
      const avg = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
      expect(Math.abs(avg(zMean)), `average standardised mean error (TEST_SEED=${SEED})`).toBeLessThan((4.5 * seM) / 4 + (c.noReference ? 0.01 : 0));
      expect(Math.abs(avg(zVar)), `average relative variance error (TEST_SEED=${SEED})`).toBeLessThan((4.5 * seV) / 4 + slack);
      // The sampler itself, at this step count, is close to the data: its discretisation bias is bounded (c.why).
      ref.forEach((r, k) => {
        expect(Math.abs(r.mean - mu[k]!) / Math.sqrt(s2[k]!), `reference mean of dim ${k} (TEST_SEED=${SEED})`).toBeLessThan(c.meanTol ?? 0.01);
        expect(Math.abs(r.variance / s2[k]! - 1), `reference variance of dim ${k}: ${c.why} (TEST_SEED=${SEED})`).toBeLessThan(c.varTol);
      });
    }, 600_000);
  }

  for (const kind of ['vp-sde', 've-sde'] as const) {
    it(`pc (${kind}): every sample follows the float64 trajectory of Algorithms 2-3 driven by the same noise`, async () => {
      const d = dev();
      const { mu, s2 } = gaussianData(SEED + 7);
      const proc = makeProcess({ kind });
      const snr = kind === 've-sde' ? 0.16 : 0.01;
      const sampler = makeSampler('pc', proc, { snr });
      const B = 16, steps = 40;
      const loop = new SamplingLoop(d, sampler, analyticDenoiser(d.tensor(mu, [1, 1, 4, 4]), d.tensor(s2, [1, 1, 4, 4])), [B, 1, 4, 4]);
      const got = (await (await loop.run(steps, { seed: SEED })).x.read()) as Float32Array;
      loop.destroy();
      const ref = pcTrajectoryRef(proc, steps, snr, mu, s2, B, SEED);
      // The engine's normals agree with randomRef to 3e-3 (test/random.test.ts: f32 log and sin/cos in
      // Box–Muller), scaled here by sqrt(2ε) and sqrt(g²h) < 1 and contracted by the drift; measured max
      // |diff| 1.4e-4 to 2.6e-4 over seeds 1-5 and one random one. 1.5e-3 leaves room for tails, while a
      // corrector that does nothing moves the samples by more than 0.02 (checked below) and a step size
      // 10% off (snr 5% off) moves them by 4e-3 (VP) and 0.1 (VE), measured.
      expectClose(`pc ${kind} (TEST_SEED=${SEED})`, got, ref, 1.5e-3, 1e-4);
      const noCorrector = pcTrajectoryRef(proc, steps, 1e-12, mu, s2, B, SEED);
      const moved = Math.max(...ref.map((v, k) => Math.abs(v - noCorrector[k]!)));
      expect(moved, 'the corrector changes the samples far beyond the tolerance').toBeGreaterThan(0.02);
    }, 600_000);
  }

  it('DDIM with eta = 0 is deterministic for a seed, and another seed gives other samples', async () => {
    const d = dev();
    const { mu, s2 } = gaussianData(SEED);
    const sampler = makeSampler('ddim', makeProcess(DDPM), { eta: 0 });
    const loop = new SamplingLoop(d, sampler, analyticDenoiser(d.tensor(mu, [1, 1, 4, 4]), d.tensor(s2, [1, 1, 4, 4])), [8, 1, 4, 4]);
    const a = await (await loop.run(20, { seed: 5 })).x.read();
    const b = await (await loop.run(20, { seed: 5 })).x.read();
    const c = await (await loop.run(20, { seed: 6 })).x.read();
    expect(Array.from(b)).toEqual(Array.from(a));
    expect(Array.from(c)).not.toEqual(Array.from(a));
    loop.destroy();
  });

  it('snapshots hold x̂0 every k steps, ending at the result', async () => {
    const d = dev();
    const { mu, s2 } = gaussianData(SEED);
    const sampler = makeSampler('ddim', makeProcess(DDPM));
    const loop = new SamplingLoop(d, sampler, analyticDenoiser(d.tensor(mu, [1, 1, 4, 4]), d.tensor(s2, [1, 1, 4, 4])), [4, 1, 4, 4]);
    const r = await loop.run(10, { seed: 1, snapshotEvery: 4 });
    expect(r.snapshots.map((s) => s.step)).toEqual([3, 7, 9]);
    // At the last DDIM step ᾱ_next = 1, so x equals x̂0.
    expect(Array.from(await r.snapshots[2]!.x0.read())).toEqual(Array.from(await r.x.read()));
    loop.destroy();
  });
});

describe('sampler options', () => {
  const ddpm = makeProcess(DDPM);
  it('an unknown sampler names the allowed values', () => {
    expect(() => makeSampler('k-euler', ddpm)).toThrow(/sampler 'k-euler' is unknown; allowed values: ddpm, ddim, plms, langevin, euler-maruyama, pc, ode, euler, heun, dpm\+\+2m/);
  });
  it('steps beyond the schedule name the allowed range', () => {
    expect(() => makeSampler('ddim', ddpm).plan(1001)).toThrow(/steps = 1001 is outside the allowed range 1\.\.1000/);
  });
  it('a sampler on the wrong process says which processes it needs', () => {
    expect(() => makeSampler('langevin', ddpm)).toThrow(/needs a noise-conditional process \('ncsn' or 've-sde'\); this model's process is 'ddpm'/);
    expect(() => makeSampler('pc', ddpm)).toThrow(/needs a score SDE/);
    expect(() => makeSampler('ddim', makeProcess('ncsn'))).toThrow(/needs a variance-preserving process/);
  });
  it('an unknown process kind names the allowed values', () => {
    expect(() => makeProcess({ kind: 'edm' as never })).toThrow(/allowed values: ddpm, ncsn, vp-sde, ve-sde/);
  });
  it('ddim eta outside [0, 1] is refused', () => {
    expect(() => makeSampler('ddim', ddpm, { eta: 2 })).toThrow(/eta = 2 is outside the allowed range \[0, 1\]/);
  });
});

describe('classifier-free guidance', () => {
  it('ε̂ = ε̂_u + s·(ε̂_c - ε̂_u) per sample from one batched forward, and the null class for ε̂_u', async () => {
    const d = dev();
    // A stand-in network whose ε̂ is x·w[label] + t/1000, with w a per-class table: ε̂_c and ε̂_u differ.
    const w = Float32Array.from([0.5, -1.5, 2, 0.25]); // classes 0..2 and the null class 3
    const table = d.tensor(w, [4, 1]);
    let calls = 0;
    const net = {
      forward(x: Tensor, t: Tensor, labels?: Tensor | null) {
        calls++;
        const k = ops.embedding(labels!, table).reshape([x.shape[0]!, 1, 1, 1]);
        return ops.add(ops.mul(x, k), ops.scale(t.reshape([x.shape[0]!, 1, 1, 1]), 1e-3));
      },
    };
    const B = 3;
    const x = Float32Array.from(randnF(B * 4));
    const labels = Int32Array.from([0, 1, 2]);
    const scales = [0, 2.5, 7];
    const den = new NetworkDenoiser(d, net, B, { labels, nullClass: 3, guidance: scales });
    const level = { a: d.tensor(new Float32Array(B).fill(0.6), [B]), b: d.tensor(new Float32Array(B).fill(0.8), [B]), time: d.tensor(Float32Array.from([10, 500, 900]), [B]) };
    const got = (await den.denoise(d.tensor(x, [B, 1, 2, 2]), level).read()) as Float32Array;
    expect(calls).toBe(1);
    for (let i = 0; i < B; i++) {
      for (let p = 0; p < 4; p++) {
        // c_in = 1/sqrt(0.6² + 0.8²) = 1
        const ec = x[i * 4 + p]! * w[labels[i]!]! + [10, 500, 900][i]! * 1e-3;
        const eu = x[i * 4 + p]! * w[3]! + [10, 500, 900][i]! * 1e-3;
        // f32 products and sums of numbers of order 1: 1e-6.
        expect(Math.abs(got[i * 4 + p]! - (eu + scales[i]! * (ec - eu)))).toBeLessThan(1e-5);
      }
    }
    // Guidance 1 everywhere: the conditional model alone, one forward of B.
    calls = 0;
    const plain = new NetworkDenoiser(d, net, B, { labels, nullClass: 3, guidance: 1 });
    const y = (await plain.denoise(d.tensor(x, [B, 1, 2, 2]), level).read()) as Float32Array;
    expect(calls).toBe(1);
    expect(plain.guided).toBe(false);
    for (let i = 0; i < B; i++) expect(Math.abs(y[i * 4]! - (x[i * 4]! * w[labels[i]!]! + [10, 500, 900][i]! * 1e-3))).toBeLessThan(1e-5);
  });
});

describe("diffusers' timestep grids and σ schedules", () => {
  // Expected values: diffusers v0.27.2's set_timesteps and _sigma_to_t, their NumPy lines run in
  // float64 on the linear chain (diffusers' own ᾱ are float32 torch, which moves σ by ~1e-6).
  const T = 1000;
  it('spacing: leading (+ steps_offset), trailing, linspace, per scheduler family; NumPy rounds halves to even', () => {
    expect(spacedTimesteps(T, 10, 'leading', 1, 'discrete')).toEqual([901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
    expect(spacedTimesteps(T, 16, 'trailing', 0, 'discrete')).toEqual([999, 937, 874, 811, 749, 687, 624, 561, 499, 437, 374, 311, 249, 187, 124, 61]);
    expect(spacedTimesteps(T, 16, 'linspace', 0, 'discrete')).toEqual([999, 932, 866, 799, 733, 666, 599, 533, 466, 400, 333, 266, 200, 133, 67, 0]);
    expect(spacedTimesteps(T, 7, 'linspace', 0, 'sigma')).toEqual([999, 832.5, 666, 499.5, 333, 166.5, 0]);
    expect(spacedTimesteps(T, 10, 'linspace', 0, 'dpm')).toEqual([999, 899, 799, 699, 599, 500, 400, 300, 200, 100]);
    expect(spacedTimesteps(T, 10, 'leading', 1, 'dpm')).toEqual([901, 811, 721, 631, 541, 451, 361, 271, 181, 91]);
    expect(() => spacedTimesteps(T, 10, 'uniform' as never, 0, 'discrete')).toThrow(/timestepSpacing 'uniform' is unknown; allowed values: leading, trailing, linspace/);
  });

  it('Karras σ from σ(T − 1) to σ(0) and their fractional timesteps (Euler), rounded (DPM-Solver)', () => {
    const p = makeProcess(DDPM) as DiscreteVP;
    const g = sigmaGrid(p, 10, {}, 'sigma');
    const sig = [157.407, 85.7105, 44.0474, 21.1054, 9.27461, 3.65257, 1.24633, 0.349693, 0.0739262, 0.0100005, 0];
    const ts = [999.0, 936.922, 863.829, 775.133, 662.637, 510.703, 300.985, 102.161, 18.308, 0.0, 0];
    // Six significant digits as printed.
    g.forEach((l, i) => {
      expect(Math.abs(l.sigma - sig[i]!)).toBeLessThanOrEqual(5e-6 * sig[i]! + 1e-12);
      expect(Math.abs(l.t - ts[i]!)).toBeLessThan(1e-3);
    });
    expect(sigmaGrid(p, 10, {}, 'dpm').map((l) => l.t)).toEqual(ts.map(Math.round));
  });
});

describe('prediction types: every sampler takes ε, v and x0 networks', () => {
  it("networkEps turns a v or x0 network's output into ε̂ (float64 check, variance-preserving and exploding levels)", async () => {
    const d = dev();
    const B = 4, P = 8;
    const r = mulberry32(SEED + 5);
    const x0 = Float64Array.from({ length: B * P }, () => r() * 2 - 1);
    const eps = Float64Array.from(randnF(B * P));
    // (a, b): two VP levels (a² + b² = 1) and two VE ones (a = 1, b = σ), where c_in = 1/√(1 + σ²) matters.
    const as = [0.9, 0.2, 1, 1], bs = [Math.sqrt(1 - 0.81), Math.sqrt(1 - 0.04), 3, 40];
    const xt = Float32Array.from(x0, (v, i) => as[Math.floor(i / P)]! * v + bs[Math.floor(i / P)]! * eps[i]!);
    const level = { a: d.tensor(Float32Array.from(as), [B]), b: d.tensor(Float32Array.from(bs), [B]), time: d.zeros([B]) };
    for (const pred of ['epsilon', 'v_prediction', 'sample'] as PredictionType[]) {
      // The network's exact output for this parameterisation, in float64: v = α·ε − σ·x0 with α = a·c_in, σ = b·c_in.
      const out = Float32Array.from(x0, (v, i) => {
        const k = Math.floor(i / P), cin = 1 / Math.hypot(as[k]!, bs[k]!);
        return pred === 'epsilon' ? eps[i]! : pred === 'sample' ? v : as[k]! * cin * eps[i]! - bs[k]! * cin * v;
      });
      const net = { forward: () => d.tensor(out, [B, 1, 2, 4]) };
      const got = (await networkEps(net, d.tensor(xt, [B, 1, 2, 4]), level, null, pred).read()) as Float32Array;
      // f32 rounding of x_t (|x| up to ~120 at σ = 40) divided back by b: 1e-5 relative to |x_t|/b + 1.
      got.forEach((g, i) => {
        const k = Math.floor(i / P);
        expect(Math.abs(g - eps[i]!), `${pred} sample ${k}`).toBeLessThan(1e-5 * (1 + Math.abs(xt[i]!) / bs[k]!));
      });
    }
  });

  it('DDIM with a v or an x0 network gives the samples of the ε network it is equivalent to', async () => {
    const d = dev();
    const { mu, s2 } = gaussianData(SEED + 3);
    const proc = makeProcess(DDPM) as DiscreteVP;
    const netFor = exactGaussianNetwork(d, proc, mu, s2);
    const run = async (pred: PredictionType) => {
      const den = new NetworkDenoiser(d, netFor(pred), 32, { prediction: pred });
      const loop = new SamplingLoop(d, makeSampler('ddim', proc), den.denoise, [32, 1, 4, 4]);
      const x = (await (await loop.run(10, { seed: SEED })).x.read()) as Float32Array;
      loop.destroy();
      return x;
    };
    const ref = await run('epsilon');
    // Converting ε → v or x0 in the network and back in the denoiser rounds twice in f32; at the noisiest
    // level x0 = (x − bε)/a divides by a = 0.006, so x0-networks lose ~1e-4 there, which DDIM carries on.
    for (const pred of ['v_prediction', 'sample'] as PredictionType[]) expectClose(pred, await run(pred), ref, 2e-3, 2e-3);
  });
});

describe('x̂0 clipping', () => {
  it('clipSample clips x̂0 to [-clipRange, clipRange] (1 by default) and leaves it alone when off', async () => {
    const d = dev();
    const process = makeProcess('ddpm');
    // ε̂ = -x: one DDIM step from the noisiest level gives x̂0 = x·(1 + b)/a, hundreds of times x.
    const den: Denoiser = (x) => ops.scale(x, -1);
    const cases: [SamplerOptions, number][] = [[{}, Infinity], [{ clipSample: true }, 1], [{ clipSample: true, clipRange: 0.25 }, 0.25]];
    for (const [opts, bound] of cases) {
      for (const name of ['ddim', 'ddpm', 'plms']) {
        const loop = new SamplingLoop(d, makeSampler(name, process, opts), den, [2, 1, 4, 4]);
        const v = (await (await loop.run(1, { seed: 1 })).x.read()) as Float32Array;
        loop.destroy();
        const m = v.reduce((a, b) => Math.max(a, Math.abs(b)), 0);
        if (bound === Infinity) expect(m, name).toBeGreaterThan(10);
        else expect(m, `${name} ${JSON.stringify(opts)}`).toBeCloseTo(bound, 6);
      }
    }
    expect(() => makeSampler('ddim', process, { clipSample: true, clipRange: 0 })).toThrow(/clipRange = 0 must be a number > 0/);
  });

  it('dynamic thresholding: per sample, x̂0 clipped to ±s and scaled by R/s, s the quantile of |x̂0| held in [R, max]', async () => {
    const d = dev();
    const process = makeProcess('ddpm');
    // A denoiser whose x̂0 is a fixed target: ε̂ = (x - a·T)/b. One DDIM step ends at ᾱ = 1, where
    // x = x̂0 after the limit. Per-sample scales put s below R (a plain clip), between R and max, and above max.
    const B = 3, M = 16;
    const r = mulberry32(SEED);
    const scales = [0.4, 3, 40];
    const target = Float64Array.from({ length: B * M }, (_, i) => scales[Math.floor(i / M)]! * (2 * r() - 1) * (1 + r()));
    const T = d.tensor(Float32Array.from(target), [B, 1, 4, 4]);
    const den: Denoiser = (x, l) => ops.div(ops.sub(x, ops.mul(perSample(l.a, x), T)), perSample(l.b, x));
    for (const [ratio, range, max] of [[0.9, 1, undefined], [0.995, 2, 6], [1, 0.5, undefined]] as const) {
      // (PLMS shares the update; its one-step run evaluates ε̂ a second time at ᾱ = 1, where this denoiser divides by b = 0.)
      for (const name of ['ddim', 'ddpm']) {
        const loop = new SamplingLoop(d, makeSampler(name, process, { thresholdRatio: ratio, clipRange: range, thresholdMax: max }), den, [B, 1, 4, 4]);
        const got = (await (await loop.run(1, { seed: 2 })).x.read()) as Float32Array;
        loop.destroy();
        const want = new Float64Array(B * M);
        for (let b = 0; b < B; b++) {
          const row = Array.from(target.subarray(b * M, (b + 1) * M));
          const sorted = row.map(Math.abs).sort((u, v) => u - v);
          const pos = ratio * (M - 1), k = Math.floor(pos);
          const q = sorted[k]! + (sorted[Math.min(k + 1, M - 1)]! - sorted[k]!) * (pos - k);
          const sb = Math.min(Math.max(q, range), max ?? Infinity);
          row.forEach((v, i) => (want[b * M + i] = (Math.min(Math.max(v, -sb), sb) / sb) * range));
        }
        // x̂0 = x/a - (b/a)·ε̂ cancels at the noisiest level (a = √ᾱ ≈ 6e-3): f32 rounding of |x| ≤ 5
        // gives errors near 6e-8·5/6e-3 ≈ 5e-5 in x̂0, before the limit (which only shrinks them).
        // DDPM adds posterior noise scaled by the last step's σ, which is 0 when ᾱ_next = 1.
        expectClose(`${name} ratio ${ratio} range ${range} max ${max}`, got, want, 2e-4, 0);
      }
    }
    expect(() => makeSampler('ddim', process, { thresholdRatio: 0 })).toThrow(/thresholdRatio = 0 is outside the allowed range \(0, 1\]/);
    expect(() => makeSampler('ddim', process, { thresholdRatio: 0.99, clipRange: 2, thresholdMax: 1 })).toThrow(/thresholdMax = 1 must be a number >= clipRange \(2\)/);
  });
});

describe('guidance rescale', () => {
  it('φ·guided·σ_c/σ_g + (1 − φ)·guided per sample, σ over each sample; φ = 0 is plain guidance', async () => {
    const d = dev();
    const w = Float32Array.from([0.5, -1.5, 2, 0.25]);
    const table = d.tensor(w, [4, 1]);
    const net = {
      forward(x: Tensor, t: Tensor, labels?: Tensor | null) {
        const k = ops.embedding(labels!, table).reshape([x.shape[0]!, 1, 1, 1]);
        return ops.add(ops.mul(x, k), ops.scale(t.reshape([x.shape[0]!, 1, 1, 1]), 1e-3));
      },
    };
    const B = 3, P = 16;
    const x = Float32Array.from(randnF(B * P));
    const labels = Int32Array.from([0, 1, 2]);
    const scales = [1.5, 4, 9];
    const times = [10, 500, 900];
    const level = { a: d.tensor(new Float32Array(B).fill(0.6), [B]), b: d.tensor(new Float32Array(B).fill(0.8), [B]), time: d.tensor(Float32Array.from(times), [B]) };
    const std = (v: number[]) => {
      const m = v.reduce((a, b) => a + b, 0) / v.length;
      return Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / v.length);
    };
    for (const phi of [0, 0.7, 1]) {
      const den = new NetworkDenoiser(d, net, B, { labels, nullClass: 3, guidance: scales, guidanceRescale: phi });
      const got = (await den.denoise(d.tensor(x, [B, 1, 4, 4]), level).read()) as Float32Array;
      for (let i = 0; i < B; i++) {
        const xi = Array.from(x.subarray(i * P, (i + 1) * P));
        const ec = xi.map((v) => v * w[labels[i]!]! + times[i]! * 1e-3);
        const eu = xi.map((v) => v * w[3]! + times[i]! * 1e-3);
        const g = ec.map((c, p) => eu[p]! + scales[i]! * (c - eu[p]!));
        const ratio = std(ec) / std(g);
        // f32 sums of 16 squares and a square root, values of order 1-10: 1e-5 relative.
        g.forEach((gv, p) => expect(Math.abs(got[i * P + p]! - gv * (phi * ratio + 1 - phi))).toBeLessThan(1e-5 * (1 + Math.abs(gv))));
      }
      // φ = 1: each sample's guided ε̂ has the conditional one's standard deviation.
      if (phi === 1) for (let i = 0; i < B; i++) expect(std(Array.from(got.subarray(i * P, (i + 1) * P)))).toBeCloseTo(std(Array.from(x.subarray(i * P, (i + 1) * P)).map((v) => v * w[labels[i]!]!)), 4);
    }
    expect(() => new NetworkDenoiser(d, net, B, { labels, nullClass: 3, guidance: 2, guidanceRescale: 1.5 })).toThrow(/guidance rescale = 1.5 must be in \[0, 1\]/);
  });
});

describe('projected guidance (guidanceParallel η)', () => {
  it('matches the x̂0-space definition in float64: x̂0_c + (s − 1)·(Δ⊥ + η·Δ∥), per sample, at different a and b; η = 1 is plain guidance', async () => {
    const d = dev();
    const w = Float32Array.from([0.5, -1.5, 2, 0.25]);
    const table = d.tensor(w, [4, 1]);
    // ε̂ = k_label·x + c_label: the offset makes ε̂_c and ε̂_u point different ways, so Δ has both parts.
    const offs = Float32Array.from([0.3, -0.2, 0.1, -0.4]);
    const offTable = d.tensor(offs, [4, 1]);
    const net = {
      forward(x: Tensor, _t: Tensor, labels?: Tensor | null) {
        const shape = [x.shape[0]!, 1, 1, 1];
        return ops.add(ops.mul(x, ops.embedding(labels!, table).reshape(shape)), ops.embedding(labels!, offTable).reshape(shape));
      },
    };
    const B = 3, P = 16;
    const x = Float32Array.from(randnF(B * P));
    const labels = Int32Array.from([0, 1, 2]);
    const scales = [1.5, 4, 15];
    // Variance-preserving levels (c_in = 1) from nearly clean to very noisy.
    const as = [0.95, 0.6, 0.2];
    const bs = as.map((a) => Math.sqrt(1 - a * a));
    const level = { a: d.tensor(Float32Array.from(as), [B]), b: d.tensor(Float32Array.from(bs), [B]), time: d.tensor(new Float32Array(B), [B]) };
    const dot = (u: number[], v: number[]) => u.reduce((acc, ui, p) => acc + ui * v[p]!, 0);
    for (const eta of [0, 0.5, 1]) {
      const den = new NetworkDenoiser(d, net, B, { labels, nullClass: 3, guidance: scales, guidanceParallel: eta });
      const got = (await den.denoise(d.tensor(x, [B, 1, 4, 4]), level).read()) as Float32Array;
      for (let i = 0; i < B; i++) {
        const a = as[i]!, b = bs[i]!, s = scales[i]!;
        // The network's f32 outputs, in float64 from here on.
        const xi = Array.from(x.subarray(i * P, (i + 1) * P));
        const ec = xi.map((v) => Math.fround(Math.fround(v * w[labels[i]!]!) + offs[labels[i]!]!));
        const eu = xi.map((v) => Math.fround(Math.fround(v * w[3]!) + offs[3]!));
        const x0c = xi.map((v, p) => (v - b * ec[p]!) / a);
        const x0u = xi.map((v, p) => (v - b * eu[p]!) / a);
        const delta = x0c.map((c, p) => c - x0u[p]!);
        const k = dot(delta, x0c) / dot(x0c, x0c);
        const x0 = x0c.map((c, p) => c + (s - 1) * (delta[p]! - (1 - eta) * k * c));
        const want = xi.map((v, p) => (v - a * x0[p]!) / b);
        // f32 dot products of 16 terms of order 1-10 and the ε-space form's other rounding: 1e-5
        // relative, scaled by s (the update is multiplied by s − 1).
        want.forEach((v, p) => expect(Math.abs(got[i * P + p]! - v), `η ${eta}, sample ${i}, pixel ${p}`).toBeLessThan(1e-5 * s * (1 + Math.abs(v))));
        if (eta === 1) xi.forEach((_, p) => expect(Math.abs(got[i * P + p]! - (eu[p]! + s * (ec[p]! - eu[p]!)))).toBeLessThan(1e-5 * s * (1 + Math.abs(ec[p]!))));
        if (eta === 0) {
          // The guided x̂0 differs from x̂0_c only orthogonally to x̂0_c. Both are recovered from f32 ε̂ by
          // dividing by a, which scales ε̂'s rounding by b/a: 1e-4 of the two norms' product, over a.
          const x0got = xi.map((v, p) => (v - b * got[i * P + p]!) / a);
          const moved = x0got.map((v, p) => v - x0c[p]!);
          expect(Math.abs(dot(moved, x0c))).toBeLessThan(1e-4 * Math.sqrt(dot(moved, moved) * dot(x0c, x0c)) / a);
        }
      }
    }
    expect(() => new NetworkDenoiser(d, net, B, { labels, nullClass: 3, guidance: 2, guidanceParallel: -0.5 })).toThrow(/guidance parallel weight η = -0.5 must be in \[0, 1\]/);
  });
});

describe('guidance interval', () => {
  it('guides only samples whose σ = b/a lies in (lo, hi]; the others get the conditional ε̂ alone', async () => {
    const d = dev();
    const table = d.tensor(Float32Array.from([0.5, -1.5, 2, 0.25]), [4, 1]);
    const net = { forward: (x: Tensor, _t: Tensor, labels?: Tensor | null) => ops.mul(x, ops.embedding(labels!, table).reshape([x.shape[0]!, 1, 1, 1])) };
    const B = 3, P = 16;
    const x = Float32Array.from(randnF(B * P));
    const labels = Int32Array.from([0, 1, 2]);
    const w = [0.5, -1.5, 2];
    // σ = 0.33, 1.33 and 4.9: below, inside and above the interval (0.5, 3].
    const as = [0.95, 0.6, 0.2];
    const level = { a: d.tensor(Float32Array.from(as), [B]), b: d.tensor(Float32Array.from(as.map((a) => Math.sqrt(1 - a * a))), [B]), time: d.tensor(new Float32Array(B), [B]) };
    const den = new NetworkDenoiser(d, net, B, { labels, nullClass: 3, guidance: 7, guidanceInterval: [0.5, 3] });
    const got = (await den.denoise(d.tensor(x, [B, 1, 4, 4]), level).read()) as Float32Array;
    for (let i = 0; i < B; i++) {
      for (let p = 0; p < P; p++) {
        const v = x[i * P + p]!;
        const ec = v * w[i]!, eu = v * 0.25;
        const want = i === 1 ? eu + 7 * (ec - eu) : ec;
        // One f32 multiply-add of values of order 10: 1e-5 relative.
        expect(Math.abs(got[i * P + p]! - want), `sample ${i}, pixel ${p}`).toBeLessThan(1e-5 * (1 + Math.abs(want)));
      }
    }
    expect(() => new NetworkDenoiser(d, net, B, { labels, nullClass: 3, guidance: 2, guidanceInterval: [3, 1] })).toThrow(/guidance interval \[3, 1\] must be two noise levels σ = b\/a with 0 <= lo < hi/);
  });
});

function randnF(n: number): number[] {
  const r = mulberry32(SEED + 77);
  return Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r()));
}

describe('noise processes against their closed forms', () => {
  it('DDPM: linear betas from 1e-4 to 0.02; ᾱ the running product; cosine ᾱ_t = f(t+1)/f(0) with f = cos²((t/T + s)/(1 + s)·π/2)', () => {
    const lin = makeProcess({ kind: 'ddpm', timesteps: 1000 }) as import('../src/diffusion/process.js').DiscreteVP;
    expect(lin.betas[0]).toBeCloseTo(1e-4, 12);
    expect(lin.betas[999]).toBeCloseTo(0.02, 12);
    expect(lin.betas[500]! - lin.betas[499]!).toBeCloseTo((0.02 - 1e-4) / 999, 12);
    let p = 1;
    for (let t = 0; t < 1000; t++) p *= 1 - (1e-4 + ((0.02 - 1e-4) * t) / 999);
    expect(lin.alphaBar(999) / p).toBeCloseTo(1, 10);
    const cos = makeProcess({ kind: 'ddpm', timesteps: 1000, betaSchedule: 'cosine' }) as import('../src/diffusion/process.js').DiscreteVP;
    const f = (t: number) => Math.cos(((t / 1000 + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
    // Until β hits its 0.999 clip near the end, ᾱ_t = f(t + 1)/f(0) exactly (float64 products: 1e-12).
    for (const t of [0, 10, 500, 900]) expect(cos.alphaBar(t)).toBeCloseTo(f(t + 1) / f(0), 10);
    expect(Math.max(...cos.betas)).toBeLessThanOrEqual(0.999);
  });

  it('VP SDE: ᾱ(t) = exp(-∫β) against a numerical integral; VE: σ(t) from σmin to σmax geometrically; NCSN: 10 geometric σ from 1 to 0.01', () => {
    const vp = makeProcess('vp-sde') as import('../src/diffusion/process.js').VPSDE;
    for (const t of [0.1, 0.5, 1]) {
      let integral = 0;
      const n = 10000;
      for (let i = 0; i < n; i++) integral += (vp.beta(((i + 0.5) * t) / n) * t) / n; // midpoint rule, exact for linear β
      expect(vp.alphaBar(t)).toBeCloseTo(Math.exp(-integral), 12);
      const l = vp.level(t);
      expect(l.a * l.a + l.b * l.b).toBeCloseTo(1, 12);
    }
    const ve = makeProcess('ve-sde') as import('../src/diffusion/process.js').VESDE;
    expect(ve.sigma(0)).toBeCloseTo(0.01, 12);
    expect(ve.sigma(1)).toBeCloseTo(50, 9);
    expect(ve.sigma(0.5)).toBeCloseTo(Math.sqrt(0.01 * 50), 9);
    // g² = dσ²/dt = 2σ² ln(σmax/σmin)
    const h = 1e-6;
    expect(ve.g2(0.3) / ((ve.sigma(0.3 + h) ** 2 - ve.sigma(0.3 - h) ** 2) / (2 * h))).toBeCloseTo(1, 6);
    const nc = makeProcess('ncsn') as import('../src/diffusion/process.js').NCSNProcess;
    expect(nc.sigmas.length).toBe(10);
    expect(nc.sigmas[0]).toBeCloseTo(1, 12);
    expect(nc.sigmas[9]).toBeCloseTo(0.01, 12);
    for (let i = 1; i < 10; i++) expect(nc.sigmas[i]! / nc.sigmas[i - 1]!).toBeCloseTo(0.01 ** (1 / 9), 12);
    expect(nc.trainLevel(0).time).toBeCloseTo(999, 9); // σmax
    expect(nc.trainLevel(0.999).time).toBeCloseTo(0, 9); // σmin
  });
});
