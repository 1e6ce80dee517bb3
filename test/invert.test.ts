// DDIM inversion against independent truth. On Gaussian data x0 ~ N(μ, diag s²) the exact ε̂ is known
// in closed form (as in test/samplers.test.ts), so the inversion can be compared step for step with a
// float64 recurrence written here from the equations, and its round trip (inversion, then DDIM
// sampling) with the exact flow: the probability-flow ODE maps x0 to a·μ + √(a²s² + b²)·(x0 − μ)/s.
import { describe, expect, it, vi } from 'vitest';
import { expectClose, useDevice, SEED } from './helpers.js';
import { ops, Tensor } from '../src/index.js';
import { DiscreteVP, makeProcess, NoiseProcess, PredictionType, VPSDE } from '../src/diffusion/process.js';
import { makeSampler, SamplerOptions } from '../src/diffusion/samplers/index.js';
import { Denoiser, NetworkDenoiser, perSample } from '../src/diffusion/denoiser.js';
import { SamplingLoop } from '../src/diffusion/sample.js';
import { ddimInversion, DDIMInverseSampler, invertDDIM } from '../src/diffusion/invert.js';
import { generate } from '../src/diffusion/generate.js';
import { Init } from '../src/nn/module.js';
import { UNet } from '../src/models/unet.js';
import { noGrad } from '../src/graph/tensor.js';
import { mulberry32 } from '../src/data/rng.js';
import { exactGaussianNetwork } from './gaussian-network.js';
import { decodeCheckpoint } from '../src/io/checkpoint.js';
import { loadVQGAN, encodeDataset } from '../src/models/vqgan-latents.js';
import { loadDiffusionModel } from '../src/pipelines/latent.js';
import { invertImages, reconstructImages } from '../src/pipelines/invert.js';
import { makeColorsDataset } from '../src/data/colors.js';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';
import { main, UsageError } from '../src/cli/main.js';
import { encodeCheckpoint } from '../src/io/checkpoint.js';
import { readSafetensorsFile } from '../src/io/file.js';
import { ParameterSet } from '../src/nn/params.js';
import { decodePng, encodePng } from '../src/data/png.js';
import { ksDistanceToNormal, normalCdf } from '../src/metrics/distribution.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const bytes = (p: string) => new Uint8Array(readFileSync(p));

const dev = useDevice();

const D = 16; // dimensions of a sample [1, 4, 4], each with its own mean and variance
const B = 64; // samples
const SHAPE = [B, 1, 4, 4];

function gaussianData(seed: number) {
  const r = mulberry32(seed);
  const mu = Float64Array.from({ length: D }, () => r() - 0.5); // in [-0.5, 0.5]
  const s2 = Float64Array.from({ length: D }, () => (0.3 + 0.5 * r()) ** 2); // s in [0.3, 0.8]
  // B draws from the data (Box–Muller), rounded to f32 as the device holds them.
  const x0 = new Float32Array(B * D);
  for (let i = 0; i < B * D; i++) {
    const z = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
    x0[i] = mu[i % D]! + Math.sqrt(s2[i % D]!) * z;
  }
  return { mu, s2, x0 };
}

/** The exact ε̂ at level (a, b) for data N(μ, s²): b·(x − a·μ)/(a²s² + b²). */
function analyticDenoiser(mu: Tensor, s2: Tensor): Denoiser {
  return (x, l) => {
    const a = perSample(l.a, x);
    const b = perSample(l.b, x);
    return ops.div(ops.mul(b, ops.sub(x, ops.mul(a, mu))), ops.add(ops.mul(ops.square(a), s2), ops.square(b)));
  };
}

/**
 * diffusers' DDIM timesteps, written out again (not the engine's code): trailing round(T − i·T/n) − 1,
 * or leading (n−1−i)·⌊T/n⌋ + offset, noisiest first; and ᾱ after each sampling step: the next grid
 * point's (trailing, the engine's own grid) or that of t − ⌊T/n⌋ (diffusers' grids), 1 or ᾱ_0 at the end.
 */
function ddimGrid(p: NoiseProcess, n: number, o: SamplerOptions = {}): { ab: number[]; abNext: number[] } {
  if (p instanceof VPSDE) {
    // From t = 1 down to tMin in n points, then the clean data.
    const ab = Array.from({ length: n }, (_, i) => p.alphaBar(n === 1 ? 1 : 1 - (i * (1 - p.config.tMin)) / (n - 1)));
    return { ab, abNext: ab.map((_, i) => (i + 1 < n ? ab[i + 1]! : 1)) };
  }
  if (!(p instanceof DiscreteVP)) throw new Error('reference: VP processes only');
  const T = p.T, ac = p.alphasCumprod;
  if (!o.timestepSpacing) {
    const ts = Array.from({ length: n }, (_, i) => Math.round(T - (i * T) / n) - 1);
    return { ab: ts.map((t) => ac[t]!), abNext: ts.map((_, i) => (i + 1 < n ? ac[ts[i + 1]!]! : 1)) };
  }
  if (o.timestepSpacing !== 'leading') throw new Error('reference: trailing (engine) or leading grids only');
  const ts = Array.from({ length: n }, (_, i) => (n - 1 - i) * Math.floor(T / n) + (o.stepsOffset ?? 0));
  const final = o.setAlphaToOne === false ? ac[0]! : 1;
  return { ab: ts.map((t) => ac[t]!), abNext: ts.map((t) => (t - Math.floor(T / n) >= 0 ? ac[t - Math.floor(T / n)]! : final)) };
}

/**
 * Float64 DDIM inversion of one value in dimension k (diffusers' DDIMInverseScheduler with an ε
 * model): from ᾱ_f back to the step's ᾱ, ε evaluated at the step's level on the current x.
 */
function invertRef(x0: number, mu: number, s2: number, g: { ab: number[]; abNext: number[] }): number {
  let x = x0;
  for (let i = g.ab.length - 1; i >= 0; i--) {
    const a = Math.sqrt(g.ab[i]!), b = Math.sqrt(1 - g.ab[i]!);
    const af = Math.sqrt(g.abNext[i]!), bf = Math.sqrt(1 - g.abNext[i]!);
    const e = (b * (x - a * mu)) / (a * a * s2 + b * b);
    const x0hat = (x - bf * e) / af;
    x = a * x0hat + b * e;
  }
  return x;
}

/** The same with ε̂ evaluated at the cleaner level ᾱ_f (explicit Euler forward in time): a different x_T. */
function invertAtCleanerLevel(x0: number, mu: number, s2: number, g: { ab: number[]; abNext: number[] }): number {
  let x = x0;
  for (let i = g.ab.length - 1; i >= 0; i--) {
    const a = Math.sqrt(g.ab[i]!), b = Math.sqrt(1 - g.ab[i]!);
    const af = Math.sqrt(g.abNext[i]!), bf = Math.sqrt(1 - g.abNext[i]!);
    const e = (bf * (x - af * mu)) / (af * af * s2 + bf * bf);
    x = a * ((x - bf * e) / af) + b * e;
  }
  return x;
}

/** Float64 DDIM sampling (eta 0, Song et al. eq. 12) of one value from x_T. */
function sampleRef(xT: number, mu: number, s2: number, g: { ab: number[]; abNext: number[] }): number {
  let x = xT;
  for (let i = 0; i < g.ab.length; i++) {
    const a = Math.sqrt(g.ab[i]!), b = Math.sqrt(1 - g.ab[i]!);
    const e = (b * (x - a * mu)) / (a * a * s2 + b * b);
    x = Math.sqrt(g.abNext[i]!) * ((x - b * e) / a) + Math.sqrt(1 - g.abNext[i]!) * e;
  }
  return x;
}

const rms = (a: ArrayLike<number>, b: ArrayLike<number>) => Math.sqrt(Array.from(a, (v, i) => (v - b[i]!) ** 2).reduce((s, v) => s + v, 0) / a.length);

describe('DDIM inversion on Gaussian data with the exact ε̂', () => {
  const DDPM = { kind: 'ddpm' as const, timesteps: 1000, betaSchedule: 'linear' as const };

  async function invert(proc: NoiseProcess, den: Denoiser, x0: Float32Array, steps: number, o: SamplerOptions = {}): Promise<Float32Array> {
    const r = await ddimInversion(dev(), proc, den, dev().tensor(x0, SHAPE), steps, { samplerOptions: o });
    return (await r.x.read()) as Float32Array;
  }

  it('each inverse step is the float64 recurrence: the engine\'s grid, diffusers\' leading grid with ᾱ_0 at the clean end, the VP SDE', async () => {
    const d = dev();
    const { mu, s2, x0 } = gaussianData(SEED);
    const den = analyticDenoiser(d.tensor(Float32Array.from(mu), [1, 1, 4, 4]), d.tensor(Float32Array.from(s2), [1, 1, 4, 4]));
    const cases: [NoiseProcess, number, SamplerOptions][] = [
      [makeProcess(DDPM), 10, {}],
      [makeProcess(DDPM), 25, { timestepSpacing: 'leading', stepsOffset: 1, setAlphaToOne: false }],
      [makeProcess('vp-sde'), 10, {}],
    ];
    for (const [proc, steps, o] of cases) {
      const got = await invert(proc, den, x0, steps, o);
      const g = ddimGrid(proc, steps, o);
      const ref = Array.from(x0, (v, i) => invertRef(v, mu[i % D]!, s2[i % D]!, g));
      // f32 rounding of 10 or 25 affine steps on values up to 3.5: max |diff| 0.9e-6 to 1.5e-6 measured
      // over seeds 1-3. Evaluating ε̂ at the cleaner level ᾱ_f instead (the other way to lag it) moves
      // x_T by far more than this bound (checked below), as does any wrong coefficient.
      expectClose(`inversion (${proc.kind}) ${steps} steps ${JSON.stringify(o)} (TEST_SEED=${SEED})`, got, ref, 1e-5, 1e-5);
      const other = Array.from(x0, (v, i) => invertAtCleanerLevel(v, mu[i % D]!, s2[i % D]!, g));
      expect(rms(other, ref), 'ε̂ at the cleaner level gives another x_T').toBeGreaterThan(1e-2);
    }
  });

  it('inversion then DDIM sampling returns x0, the error halving as the steps double (first order)', async () => {
    const d = dev();
    const { mu, s2, x0 } = gaussianData(SEED + 1);
    const proc = makeProcess(DDPM) as DiscreteVP;
    const den = analyticDenoiser(d.tensor(Float32Array.from(mu), [1, 1, 4, 4]), d.tensor(Float32Array.from(s2), [1, 1, 4, 4]));
    const errors: number[] = [], flow: number[] = [], refErrors: number[] = [];
    const ddim = makeSampler('ddim', proc);
    const loop = new SamplingLoop(d, ddim, den, SHAPE);
    for (const steps of [5, 10, 20, 40]) {
      const xT = await invert(proc, den, x0, steps);
      const back = (await (await loop.run(steps, { xT: d.tensor(xT, SHAPE) })).x.read()) as Float32Array;
      errors.push(rms(back, x0));
      const g = ddimGrid(proc, steps);
      refErrors.push(rms(Array.from(x0, (v, i) => sampleRef(invertRef(v, mu[i % D]!, s2[i % D]!, g), mu[i % D]!, s2[i % D]!, g)), x0));
      // The exact flow takes x0 to a·μ + √(a²s² + b²)·(x0 − μ)/s at the noisiest level (t = T − 1).
      const a = Math.sqrt(proc.alphasCumprod[proc.T - 1]!), b = Math.sqrt(1 - a * a);
      flow.push(rms(xT, Array.from(x0, (v, i) => a * mu[i % D]! + Math.sqrt(a * a * s2[i % D]! + b * b) * ((v - mu[i % D]!) / Math.sqrt(s2[i % D]!)))));
    }
    loop.destroy();
    // Measured (TEST_SEED 1-3): round trip rms 0.25-0.27, 0.13-0.14, 0.068-0.073, 0.035-0.037 at 5, 10,
    // 20, 40 steps: n·error is 1.27-1.48. Over 500 data draws of this kind (float64, the same
    // recurrences) n·error stays within [1.20, 1.65] and each doubling divides the error by 1.76-2.05;
    // x_T's distance from the exact flow has n·distance within [0.87, 2.08], each doubling dividing it
    // by 1.59-1.98. A first-order method's error is C/n: the bounds below are 2/n (round trip) and
    // 2.5/n (x_T), and a ratio in [1.6, 2.4] (1.4 for x_T): a method that does not converge (ratio 1)
    // or converges faster than first order (ratio ~4) fails.
    console.log(`round trip rms at 5, 10, 20, 40 steps: ${errors.map((e) => e.toFixed(4)).join(', ')}; x_T from the exact flow: ${flow.map((e) => e.toFixed(4)).join(', ')} (TEST_SEED=${SEED})`);
    [5, 10, 20, 40].forEach((n, k) => {
      // The device's round trip is the float64 one (rounding: |diff| ~1e-7 measured).
      expect(Math.abs(errors[k]! - refErrors[k]!), `round trip at ${n} steps vs float64`).toBeLessThan(1e-5);
      expect(errors[k]!, `round trip rms at ${n} steps (TEST_SEED=${SEED})`).toBeLessThan(2 / n);
      expect(flow[k]!, `x_T from the exact flow at ${n} steps (TEST_SEED=${SEED})`).toBeLessThan(2.5 / n);
      if (k > 0) {
        const ratio = errors[k - 1]! / errors[k]!;
        expect(ratio, `round trip error ${n / 2} -> ${n} steps (TEST_SEED=${SEED})`).toBeGreaterThan(1.6);
        expect(ratio, `round trip error ${n / 2} -> ${n} steps (TEST_SEED=${SEED})`).toBeLessThan(2.4);
        expect(flow[k - 1]! / flow[k]!, `x_T error ${n / 2} -> ${n} steps (TEST_SEED=${SEED})`).toBeGreaterThan(1.4);
      }
    });
  });

  it('v and x0 networks invert as the ε network they are equivalent to', async () => {
    const d = dev();
    const { mu, s2, x0 } = gaussianData(SEED + 3);
    const proc = makeProcess(DDPM) as DiscreteVP;
    const netFor = exactGaussianNetwork(d, proc, mu, s2);
    const run = async (pred: PredictionType) => invert(proc, new NetworkDenoiser(d, netFor(pred), B, { prediction: pred }).denoise, x0, 10);
    const ref = await run('epsilon');
    expectClose('ε network vs float64', ref, Array.from(x0, (v, i) => invertRef(v, mu[i % D]!, s2[i % D]!, ddimGrid(proc, 10))), 1e-5, 1e-5);
    for (const pred of ['v_prediction', 'sample'] as PredictionType[]) {
      const got = await run(pred);
      // Converting ε → v or x0 in the network and back in the denoiser rounds twice in f32; inversion
      // never divides by the noisiest level's a (it multiplies by it): max |diff| 1.2e-6 measured.
      expectClose(pred, got, ref, 1e-5, 1e-5);
    }
  });

  it('refuses what it cannot invert: a variance-exploding process, eta > 0, a clipped x̂0', () => {
    for (const kind of ['ncsn', 've-sde'] as const) {
      expect(() => new DDIMInverseSampler(makeProcess(kind))).toThrow(new RegExp(`^DDIM inversion needs a variance-preserving process \\(ddpm or vp-sde\\); this model's process is '${kind}'$`));
    }
    const p = makeProcess(DDPM);
    expect(() => new DDIMInverseSampler(p, { eta: 0.5 })).toThrow(/^DDIM inversion: eta = 0.5, but only the deterministic DDIM update \(eta = 0\) can be run backwards$/);
    expect(() => new DDIMInverseSampler(p, { clipSample: true })).toThrow(/^DDIM inversion: x̂0 is not clipped when inverting/);
    expect(() => new DDIMInverseSampler(p, { thresholdRatio: 0.99 })).toThrow(/^DDIM inversion: x̂0 is not thresholded when inverting/);
    expect(() => new DDIMInverseSampler(p).plan(1001)).toThrow(/^DDIM inversion: steps = 1001 is outside the allowed range 1\.\.1000/);
    // Options that do not change the grid (a model's clip defaults turned off, karras) are fine.
    expect(new DDIMInverseSampler(p, { clipSample: false, eta: 0, karras: true }).plan(3)).toHaveLength(3);
  });
});

describe('DDIM inversion of a U-Net through the compiled path', () => {
  // A small class-conditional U-Net, random weights (its output is not zero: ε̂ is some function of x, t and the class).
  const TINY = { sampleSize: 8, inChannels: 1, outChannels: 1, blockOutChannels: [8, 16], normGroups: 4, attentionHeads: 2, attentionResolutions: [4], conditioning: 'class' as const, numClasses: 3 };

  it('one inverse step traced and replayed; inversion and sampling deterministic; guided ε̂ as by hand from eager forwards', async () => {
    const d = dev();
    const net = new UNet(new Init(d, SEED), TINY).eval();
    const proc = makeProcess('ddpm') as DiscreteVP;
    const r = mulberry32(SEED);
    const Bn = 3;
    const x0 = Float32Array.from({ length: Bn * 64 }, () => r() * 2 - 1);
    const labels = [0, 2, 1];
    const compile = vi.spyOn(d, 'compile');
    const a = await invertDDIM(d, net, proc, x0, { steps: 6, labels, guidance: 2 });
    // Six steps, one step traced: the same compiled step run six times, with new levels and coefficients.
    expect(compile).toHaveBeenCalledTimes(1);
    const step = await compile.mock.results[0]!.value;
    expect(step.runs).toBe(6);
    expect(a.steps).toBe(6);
    expect(a.shape).toEqual([3, 1, 8, 8]);
    const b = await invertDDIM(d, net, proc, x0, { steps: 6, labels, guidance: 2 });
    expect(Array.from(b.xT)).toEqual(Array.from(a.xT));
    // Sampling from x_T: deterministic, whatever the seed (eta = 0 draws no noise).
    compile.mockClear();
    const s1 = await generate(d, net, proc, { sampler: 'ddim', steps: 6, labels, guidance: 2, xT: a.xT, seed: 1 });
    const s2 = await generate(d, net, proc, { sampler: 'ddim', steps: 6, labels, guidance: 2, xT: a.xT, seed: 9 });
    expect(compile).toHaveBeenCalledTimes(2);
    expect(Array.from(s2.images)).toEqual(Array.from(s1.images));
    compile.mockRestore();

    // By hand, eagerly: two steps of the trailing grid (t = 999, 499). Inversion first undoes the last
    // sampling step (from ᾱ = 1 at t = 499), then the first (from ᾱ_499 at t = 999); the guided ε̂ is
    // ε̂_u + s·(ε̂_c − ε̂_u), ε̂_u from the null class (label 3).
    const s = 2;
    const epsAt = (x: Float32Array, t: number) => noGrad(() => {
      const xt = d.tensor(x, [Bn, 1, 8, 8]);
      const time = d.tensor(new Float32Array(Bn).fill(t), [Bn]);
      const ec = net.forward(xt, time, d.tensor(Int32Array.from(labels), [Bn]));
      const eu = net.forward(xt, time, d.tensor(new Int32Array(Bn).fill(3), [Bn]));
      return Promise.all([ec.read(), eu.read()]);
    });
    const ac = proc.alphasCumprod;
    const byHand = async (s: number) => {
      let x = Float64Array.from(x0);
      for (const [t, abFrom] of [[499, 1], [999, ac[499]!]] as const) {
        const [ec, eu] = (await epsAt(Float32Array.from(x), t)) as Float32Array[];
        const a = Math.sqrt(ac[t]!), b = Math.sqrt(1 - ac[t]!), af = Math.sqrt(abFrom), bf = Math.sqrt(1 - abFrom);
        x = x.map((v, i) => {
          const e = eu![i]! + s * (ec![i]! - eu![i]!);
          return a * ((v - bf * e) / af) + b * e;
        });
      }
      return x;
    };
    const x = await byHand(s);
    const two = await invertDDIM(d, net, proc, x0, { steps: 2, labels, guidance: s });
    // Compiled (fused) and eager kernels round differently: measured max |diff| 1.8e-6 on values of order 1.
    expectClose('two guided inverse steps vs eager by hand', two.xT, x, 2e-5, 2e-5);
    // Guidance ignored (s = 1) would be far outside that bound.
    expect(rms(await byHand(1), x), 'x_T without guidance').toBeGreaterThan(1e-3);
  }, 300_000);
});

describe('DDIM inversion of a latent model', () => {
  it('encodes with the VQ-GAN and the latent scale, inverts the latents, and samples and decodes them back (the shipped colours model)', async () => {
    const d = dev();
    const dir = join(ROOT, 'examples', 'checkpoints', 'colors');
    const m = loadDiffusionModel(d, bytes(join(dir, 'latent.safetensors')), bytes(join(dir, 'vqgan.safetensors')));
    const ds = makeColorsDataset({ n: 2, size: 16, seed: SEED });
    const labels = Array.from(ds.labels);
    const shape = [2, 3, 16, 16] as [number, number, number, number];
    // The model's sampler defaults clip x̂0 to its latents' range: that is for sampling from noise; the
    // inversion takes only their grid and is not refused.
    expect(m.samplerDefaults.clipSample).toBe(true);
    const steps = 20;
    const inv = await invertImages(d, m, ds.images, shape, { steps, labels });
    expect(inv.shape).toEqual([2, 4, 4, 4]);
    // What was inverted is the training set's kind of latent: the encoder's z times the recorded scale.
    const z = await encodeDataset(loadVQGAN(d, decodeCheckpoint(bytes(join(dir, 'vqgan.safetensors')))), ds.images, shape, 32);
    expect(Array.from(inv.x0)).toEqual(Array.from(z.latents.map((v) => v * m.config.latent!.scale)));
    const back = await reconstructImages(d, m, inv.xT, { steps, labels });
    expect(back.samples.shape).toEqual([2, 4, 4, 4]);
    expect(back.shape).toEqual(shape);
    const latentErr = rms(back.samples.values, inv.x0);
    const ceiling = await m.firstStage!.roundTrip(ds.images, shape);
    // Measured (TEST_SEED 1, 5, 6): the latents come back within rms 0.074-0.083 (the latents' own rms
    // is 1.04; from x_T = 0 instead the sampler lands 0.19-0.37 away, at 10 steps the round trip is
    // 0.33, at 40 0.053, at 80 0.031), and the decoded images are as far from the originals as the
    // VQ-GAN's own round trip (rms 0.29-0.39, within ±0.01 of it): the VQ-GAN is the floor here.
    expect(latentErr, `latent round trip rms (TEST_SEED=${SEED})`).toBeLessThan(0.15);
    expect(Math.abs(rms(back.images, ds.images) - rms(ceiling, ds.images)), `decoded reconstruction vs the VQ-GAN's round trip (TEST_SEED=${SEED})`).toBeLessThan(0.05);
  }, 300_000);
});

describe('the normal distribution figures of the report', () => {
  it('Φ against tabulated values; the KS distance of N(0, 1) quantiles is 1/(2n), of N(0.5, 1) quantiles Φ(0.25) − Φ(−0.25)', () => {
    // Φ(1), Φ(−2), Φ(0.25) to 16 digits (Abramowitz & Stegun table 26.1); erfcc's error is below 1.2e-7.
    for (const [x, p] of [[0, 0.5], [1, 0.8413447460685429], [-2, 0.022750131948179195], [0.25, 0.5987063256829237], [-4, 3.167124183311998e-5]]) {
      expect(Math.abs(normalCdf(x!) - p!), `Φ(${x})`).toBeLessThan(1.2e-7 * Math.max(p!, 1 - p!));
    }
    // Quantiles by bisection of Φ itself: the empirical steps straddle Φ by exactly 1/(2n).
    const quantile = (p: number) => {
      let lo = -10, hi = 10;
      for (let k = 0; k < 100; k++) (normalCdf((lo + hi) / 2) < p ? (lo = (lo + hi) / 2) : (hi = (lo + hi) / 2));
      return (lo + hi) / 2;
    };
    const n = 200;
    const q = Array.from({ length: n }, (_, i) => quantile((i + 0.5) / n));
    expect(Math.abs(ksDistanceToNormal(q) - 1 / (2 * n))).toBeLessThan(1e-9);
    // The order of the values does not matter.
    expect(ksDistanceToNormal([...q].reverse())).toBe(ksDistanceToNormal(q));
    const shifted = q.map((v) => v + 0.5);
    expect(Math.abs(ksDistanceToNormal(shifted) - (0.5987063256829237 - (1 - 0.5987063256829237)))).toBeLessThan(1 / n);
  });
});

describe('wgd invert', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wgd-invert-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const TINY = { sampleSize: 8, inChannels: 1, outChannels: 1, blockOutChannels: [8, 16], normGroups: 4, attentionHeads: 2, attentionResolutions: [4], conditioning: 'class' as const, numClasses: 3 };
  const classes = ['a', 'b', 'c'];
  /** A checkpoint of a small class-conditional U-Net (random weights) on this process. */
  async function checkpoint(name: string, process: Parameters<typeof makeProcess>[0]): Promise<string> {
    const net = new UNet(new Init(dev(), SEED), TINY);
    const path = join(dir, name);
    writeFileSync(path, await encodeCheckpoint({ params: new ParameterSet(net.namedParameters()), config: { kind: 'diffusion', model: net.config, process: makeProcess(process).config, train: {}, step: 0, classes } }));
    return path;
  }
  /** A PNG of random pixels (RGBA: with random alpha too). */
  const png = (name: string, w: number, h: number, c: 1 | 3 | 4, seed: number) => {
    const r = mulberry32(seed);
    const path = join(dir, name);
    writeFileSync(path, encodePng(Uint8Array.from({ length: w * h * c }, () => Math.floor(r() * 256)), w, h, c));
    return path;
  };
  const failure = async (args: string[]): Promise<Error> => {
    try {
      await main(args);
    } catch (e) {
      return e as Error;
    }
    throw new Error(`wgd ${args.join(' ')} did not fail`);
  };

  it('inverts PNGs end to end: the grid, the JSON\'s figures and the x_T file, as the library gives them', async () => {
    const ck = await checkpoint('tiny.safetensors', 'ddpm');
    const images = [png('i0.png', 8, 8, 1, 1), png('i1.png', 8, 8, 1, 2)];
    const out = join(dir, 'inv', 'out.png');
    const args = ['invert', '--ckpt', ck, '--image', images.join(','), '--label', 'b,0', '--steps', '3', '--guidance', '2', '--out', out];
    expect(await main(args)).toBe(0);
    const grid = decodePng(new Uint8Array(readFileSync(out)));
    // A row per image, three tiles of 8 px at 8x (viewScale) with 2 px gaps.
    expect([grid.width, grid.height, grid.channels]).toEqual([3 * 66 + 2, 2 * 66 + 2, 1]);
    const rec = JSON.parse(readFileSync(join(dir, 'inv', 'out.json'), 'utf8'));
    expect(rec).toMatchObject({ kind: 'ddim-inversion', steps: 3, guidance: 2, space: 'pixel', xTShape: [2, 1, 8, 8] });
    expect(rec.images.map((i: { label: string }) => i.label)).toEqual(['b', 'a']);
    const st = await readSafetensorsFile(join(dir, 'inv', 'out.safetensors'));
    const xT = st.tensors.get('xT')!;
    expect(xT.shape).toEqual([2, 1, 8, 8]);
    expect(JSON.parse(st.metadata.labels!)).toEqual([1, 0]);
    // The same by the library: the images' values, inverted and sampled back on their own.
    const d = dev();
    const { net, process } = (await import('../src/diffusion/train.js')).modelFromCheckpoint(d, decodeCheckpoint(bytes(ck)));
    const x0 = new Float32Array(128);
    images.forEach((f, i) => {
      const p = decodePng(bytes(f));
      for (let k = 0; k < 64; k++) x0[i * 64 + k] = (p.data[k * p.channels]! / 255) * 2 - 1;
    });
    const inv = await invertDDIM(d, net, process, x0, { steps: 3, labels: [1, 0], guidance: 2 });
    expect(Array.from(xT.data)).toEqual(Array.from(inv.xT));
    const back = await generate(d, net, process, { sampler: 'ddim', steps: 3, labels: [1, 0], guidance: 2, xT: inv.xT });
    rec.images.forEach((r: { mse: number; psnr: number; xT: { mean: number; std: number; ks: number } }, i: number) => {
      const e = rms(back.images.subarray(i * 64, (i + 1) * 64), x0.subarray(i * 64, (i + 1) * 64)) ** 2;
      expect(Math.abs(r.mse - e), `image ${i} MSE`).toBeLessThan(1e-6); // rounded to 6 digits in the JSON
      expect(Math.abs(r.psnr - 10 * Math.log10(4 / e))).toBeLessThan(0.01);
      const z = Array.from(inv.xT.subarray(i * 64, (i + 1) * 64));
      const mean = z.reduce((a, v) => a + v, 0) / 64;
      expect(Math.abs(r.xT.mean - mean)).toBeLessThan(1e-4);
      expect(Math.abs(r.xT.std - Math.sqrt(z.reduce((a, v) => a + (v - mean) ** 2, 0) / 64))).toBeLessThan(1e-4);
      expect(Math.abs(r.xT.ks - ksDistanceToNormal(z))).toBeLessThan(1e-4);
    });
    // The PNG's reconstruction column is those images; wgd sample --start reproduces them from the file.
    const tile = (g: ReturnType<typeof decodePng>, col: number, row: number) => Array.from({ length: 64 }, (_, k) => g.data[(2 + row * 66 + 8 * Math.floor(k / 8)) * g.width + 2 + col * 66 + 8 * (k % 8)]!);
    const px = (v: number) => Math.round(Math.min(1, Math.max(0, (v + 1) / 2)) * 255);
    const want = (i: number) => Array.from(back.images.subarray(i * 64, (i + 1) * 64), px);
    for (const i of [0, 1]) expect(tile(grid, 2, i), `reconstruction ${i} in the grid`).toEqual(want(i));
    const again = join(dir, 'inv', 'again.png');
    expect(await main(['sample', '--ckpt', ck, '--start', join(dir, 'inv', 'out.safetensors'), '--steps', '3', '--guidance', '2', '--clip', 'off', '--out', again])).toBe(0);
    const g2 = decodePng(bytes(again));
    for (const i of [0, 1]) expect(tile(g2, i, 0), `wgd sample --start, image ${i}`).toEqual(want(i));
    await expect(main(['sample', '--ckpt', ck, '--start', join(dir, 'inv', 'out.safetensors'), '--label', 'a,b,c', '--out', join(dir, 'x3.png')])).rejects.toThrow(/^--label: 3 labels for the 2 images of .*out\.safetensors; give one for all, or one per image$/);
    await expect(main(['sample', '--ckpt', join(ROOT, 'examples', 'checkpoints', 'letters', 'letters.safetensors'), '--start', join(dir, 'inv', 'out.safetensors'), '--out', join(dir, 'x4.png')])).rejects.toThrow(/^--start .*out\.safetensors: x_T is \[2, 1, 8, 8\]; this model samples \[N, 1, 16, 16\]$/);
    // Outputs are checked before any work: existing ones need --force, and an input is never written.
    expect((await failure(args)).message).toMatch(/out\.png, .*out\.json, .*out\.safetensors exist; pass --force/);
    expect((await failure([...args.slice(0, -1), images[0]!, '--force'])).message).toMatch(/i0\.png is this command's own input .*never overwritten, not even with --force/);
    expect((await failure([...args.slice(0, -1), join(dir, 'out.jpg')])).message).toMatch(/^--out .*out\.jpg: expected a \.png file name/);
  }, 300_000);

  it('bad input, each a one-line error naming the limit: image size and channels, checkpoint kind, process, eta, labels', async () => {
    const ck = await checkpoint('tiny2.safetensors', 'ddpm');
    const ok = png('ok.png', 8, 8, 1, 3);
    const run = (over: Record<string, string>) => failure(['invert', ...Object.entries({ '--ckpt': ck, '--image': ok, '--label': 'a', '--steps': '2', '--out': join(dir, `bad-${Math.random().toString(36).slice(2)}.png`), ...over }).flat()]);
    const cases: [Record<string, string>, RegExp, boolean][] = [
      [{ '--image': png('big.png', 16, 16, 1, 4) }, /^--image .*big\.png is 16x16; this model takes 8x8 images$/, false],
      [{ '--image': png('rgb.png', 8, 8, 3, 5) }, /^--image .*rgb\.png has 3 channels \(RGB\); this model takes 1-channel \(grey\) images$/, false],
      [{ '--image': png('rgba.png', 8, 8, 4, 6) }, /^--image .*rgba\.png has transparent pixels; this model takes opaque 1-channel \(grey\) images$/, false],
      [{ '--ckpt': join(ROOT, 'examples', 'checkpoints', 'colors', 'vqgan.safetensors') }, /^--ckpt .*vqgan\.safetensors: load: this checkpoint is not a diffusion model \(its config has kind 'vqgan'\)/, false],
      [{ '--ckpt': join(ROOT, 'examples', 'checkpoints', 'letters', 'classifier.safetensors') }, /^--ckpt .*classifier\.safetensors: load: this checkpoint is not a diffusion model \(its config has kind 'classifier'\)/, false],
      [{ '--ckpt': await checkpoint('ncsn.safetensors', { kind: 'ncsn' }) }, /^--ckpt .*ncsn\.safetensors: DDIM inversion needs a variance-preserving process \(ddpm or vp-sde\); this model's process is 'ncsn'$/, false],
      [{ '--ckpt': await checkpoint('ve.safetensors', { kind: 've-sde' }) }, /this model's process is 've-sde'$/, false],
      [{ '--eta': '0.5' }, /^--eta = '0\.5': DDIM inversion runs the deterministic update \(eta 0\) backwards/, true],
      [{ '--label': 'a,b' }, /^--label: 2 labels for 1 images; give one for all, or one per image$/, false],
      [{ '--label': 'z' }, /^label 'z' is not a class of this model; allowed values: a, b, c/, false],
      [{ '--image': join(dir, 'missing.png') }, /^--image .*missing\.png: no such file$/, false],
      [{ '--steps': '0' }, /^--steps = '0': expected an integer >= 1$/, true],
    ];
    for (const [over, message, usage] of cases) {
      const e = await run(over);
      expect(e.message, JSON.stringify(over)).toMatch(message);
      expect(e.message.includes('\n'), 'one line').toBe(false);
      expect(e instanceof UsageError, `${JSON.stringify(over)}: a usage error (exit 2) or not (exit 1)`).toBe(usage);
    }
    const noLabel = await failure(['invert', '--ckpt', ck, '--image', ok, '--out', join(dir, 'nl.png')]);
    expect(noLabel.message).toMatch(/^--label: .*tiny2\.safetensors is class-conditional; give the images' class \(one for all, or one per image\): a, b, c$/);
    // As a user meets them: one line on stderr, exit 1 for bad input, 2 for a mistake in the command line.
    const wgd = (args: string[]) => spawnSync(process.execPath, [join(ROOT, 'bin', 'wgd.mjs'), 'invert', ...args], { cwd: dir, encoding: 'utf8', env: process.env, timeout: 240_000 });
    const big = wgd(['--ckpt', ck, '--image', join(dir, 'big.png'), '--label', 'a', '--out', join(dir, 'x.png')]);
    expect(big.status, big.stderr).toBe(1);
    expect(big.stderr.split('\n').filter((l) => l.startsWith('wgd: '))).toEqual([`wgd: --image ${join(dir, 'big.png')} is 16x16; this model takes 8x8 images`]);
    const eta = wgd(['--ckpt', ck, '--image', ok, '--eta', '1', '--out', join(dir, 'x.png')]);
    expect(eta.status, eta.stderr).toBe(2);
    expect(existsSync(join(dir, 'x.png'))).toBe(false);
  }, 300_000);
});
