// DDIM inversion: the DDIM update (η = 0) run backwards, from a clean x0 to an x_T that DDIM sampling
// with the same steps and grid takes back to about x0 (Song, Meng & Ermon 2021, §4.3; Dhariwal & Nichol
// 2021, appendix F; diffusers' DDIMInverseScheduler). It is the first of the image-embedding methods of
// Asperti et al. ("Image embedding for denoising generative models", 2023).
//
// Sampling step i goes from level l_i = (a_i, b_i) to ᾱ_f = abNext[i] (a_f = √ᾱ_f, b_f = √(1 − ᾱ_f)):
//   x̂0 = (x_i − b_i·ε̂(x_i, l_i))/a_i,   x_f = a_f·x̂0 + b_f·ε̂.
// Inversion undoes the steps last first. It has x_f, not x_i, so it takes ε̂(x_i, l_i) ≈ ε̂(x_f, l_i):
// the network is asked at the step's own level (its time, c_in, and the v/x0 → ε conversion), on the
// point it has:
//   x̂0 = (x_f − b_f·ε̂(x_f, l_i))/a_f,   x_i = a_i·x̂0 + b_i·ε̂.
// For an ε network that is exactly DDIMInverseScheduler (which calls the model at the noisier timestep
// on the cleaner sample); for v and x0 networks diffusers converts the output at the cleaner level, this
// at the step's (the level the network was told). The error of the approximation, ε̂ at x_f instead of
// x_i, is O(step) per step: the round trip is first order, its error about halving when the steps
// double (test/invert.test.ts measures it on Gaussian data, whose exact ε̂ is known).
//
// The step is traced once and replayed by the sampling loop, like any sampler's: the inverse is a
// Sampler whose plan is the DDIM plan reversed, started from x0 instead of noise.
import type { Device } from '../graph/device.js';
import { Tensor } from '../graph/tensor.js';
import type { UNet } from '../models/unet.js';
import { ShapeError, fmtShape } from '../runtime/errors.js';
import type { NoiseProcess } from './process.js';
import type { Denoiser } from './denoiser.js';
import { SamplingLoop, SampleResult } from './sample.js';
import { ConditioningOptions, conditionedDenoiser, startTensor } from './generate.js';
import { vpGrid, VPSamplerOptions } from './samplers/vp.js';
import type { SamplerOptions } from './samplers/index.js';
import { Sampler, SamplerError, StepContext, StepPlan, StepResult, lin } from './samplers/types.js';

/** The sampler options that set the DDIM grid: inversion and the sampling that undoes it must share them. */
export type DDIMGridOptions = Pick<VPSamplerOptions, 'timestepSpacing' | 'stepsOffset' | 'setAlphaToOne'>;

/** Of a sampler's options, the ones that set the DDIM grid (a model's clip defaults are for sampling alone). */
export function ddimGridOptions(o: SamplerOptions = {}): DDIMGridOptions {
  const r: DDIMGridOptions = {};
  if (o.timestepSpacing !== undefined) r.timestepSpacing = o.timestepSpacing;
  if (o.stepsOffset !== undefined) r.stepsOffset = o.stepsOffset;
  if (o.setAlphaToOne !== undefined) r.setAlphaToOne = o.setAlphaToOne;
  return r;
}

const NAME = 'DDIM inversion';

/** DDIM runs on variance-preserving processes only (ddpm, vp-sde); anything else is refused by name. */
export function checkInvertible(process: NoiseProcess): void {
  if (process.family !== 'vp') throw new SamplerError(`${NAME} needs a variance-preserving process (ddpm or vp-sde); this model's process is '${process.kind}'`);
}

/**
 * The inverse of a deterministic DDIM run, as a sampler over the same grid: its plan is DDIM's, last
 * step first, each step taking the data from ᾱ_f back to the step's level. Started from x0 (the
 * loop's xT), it ends at x_T.
 */
export class DDIMInverseSampler implements Sampler {
  readonly name = 'ddim-inverse';
  readonly stateSize = 0;
  readonly grid: DDIMGridOptions;
  constructor(readonly process: NoiseProcess, opts: SamplerOptions = {}) {
    checkInvertible(process);
    const eta = opts.eta ?? 0;
    if (eta !== 0) throw new SamplerError(`${NAME}: eta = ${eta}, but only the deterministic DDIM update (eta = 0) can be run backwards`);
    if (opts.clipSample || opts.thresholdRatio !== undefined) {
      throw new SamplerError(`${NAME}: x̂0 is not ${opts.clipSample ? 'clipped' : 'thresholded'} when inverting (a clipped step has no inverse); drop clipSample and thresholdRatio, and sample the reconstruction without them`);
    }
    this.grid = ddimGridOptions(opts);
    vpGrid(process, 1, NAME, this.grid);
  }

  /** Unused: inversion starts from the data, never from noise. */
  initialStd(): number {
    return 1;
  }

  plan(n: number): StepPlan[] {
    const { levels, abNext } = vpGrid(this.process, n, NAME, this.grid);
    return levels
      .map((l, i) => {
        const af = Math.sqrt(abNext[i]!), bf = Math.sqrt(Math.max(1 - abNext[i]!, 0));
        // x̂0 = x/a_f − (b_f/a_f)·ε̂, then x_i = a_i·x̂0 + b_i·ε̂ (ε̂ at the step's level l_i).
        return { kind: 'inverse', levels: [l], coef: [1 / af, -bf / af, l.a, l.b] };
      })
      .reverse();
  }

  step(_kind: string, ctx: StepContext): StepResult {
    const eps = ctx.eps(0, ctx.x);
    const x0 = lin([ctx.x, ctx.coef(0)], [eps, ctx.coef(1)]);
    return { x: lin([x0, ctx.coef(2)], [eps, ctx.coef(3)]), x0 };
  }
}

/**
 * DDIM inversion with any denoiser (a network's, or an analytic one in tests): x0 [B, ...] to x_T in
 * `steps` steps of the DDIM grid `opts` sets (the engine's trailing grid by default). The result's `x`
 * is x_T, a device tensor; its snapshots, when asked for, hold the x̂0 of each step.
 */
export async function ddimInversion(
  dev: Device, process: NoiseProcess, denoiser: Denoiser, x0: Tensor, steps: number,
  opts: { samplerOptions?: SamplerOptions; onStep?: (i: number, n: number) => void; snapshotEvery?: number } = {},
): Promise<SampleResult> {
  const loop = new SamplingLoop(dev, new DDIMInverseSampler(process, opts.samplerOptions), denoiser, x0.shape);
  try {
    // The loop's start is x0 here; the "x_T" it returns is the inversion's.
    return await loop.run(steps, { xT: x0, onStep: opts.onStep, snapshotEvery: opts.snapshotEvery });
  } finally {
    await dev.sync();
    loop.destroy();
  }
}

/** How to invert a batch: the steps, and the labels and guidance of the denoiser (as generate takes them). */
export interface InvertOptions extends ConditioningOptions {
  steps: number;
  /** The DDIM grid (timestepSpacing, stepsOffset, setAlphaToOne), as the sampling that undoes it; eta ≠ 0 and clipping are refused. */
  samplerOptions?: SamplerOptions;
  onStep?: (i: number, n: number) => void;
}

export interface InversionResult {
  /** x_T [B, C, H, W] as host values: generate's `xT` (with sampler 'ddim' and the same steps and grid) takes them back. */
  xT: Float32Array;
  shape: [number, number, number, number];
  steps: number;
  hostMs: number;
  dispatches: number;
}

/**
 * DDIM inversion of a batch of clean samples x0 [B, C, H, W] (host values, or a device tensor) with a
 * network: the ε̂ of each step is generate's (labels, classifier-free guidance and its variants, any
 * prediction type). Returns x_T read back.
 */
export async function invertDDIM(dev: Device, net: UNet, process: NoiseProcess, x0: Float32Array | Tensor, opts: InvertOptions): Promise<InversionResult> {
  const cfg = net.config;
  checkInvertible(process);
  const per = cfg.inChannels * cfg.sampleSize * cfg.sampleSize;
  const B = x0 instanceof Tensor ? x0.shape[0]! : x0.length / per;
  if (!(Number.isInteger(B) && B >= 1)) throw new ShapeError(NAME, `x0 has ${x0 instanceof Tensor ? fmtShape(x0.shape) : `${x0.length} values`}: not a whole batch of [${cfg.inChannels}, ${cfg.sampleSize}, ${cfg.sampleSize}] samples (${per} values each)`);
  const labels = opts.labels ?? null;
  if (labels && labels.length !== B) throw new ShapeError(NAME, `got ${labels.length} labels for ${B} samples`);
  const shape: [number, number, number, number] = [B, cfg.inChannels, cfg.sampleSize, cfg.sampleSize];
  if (x0 instanceof Tensor && (x0.shape.length !== 4 || x0.shape.some((d, i) => d !== shape[i]))) throw new ShapeError(NAME, `x0 has shape ${fmtShape(x0.shape)}, expected ${fmtShape(shape)}`);
  const den = conditionedDenoiser(dev, net, process, B, opts);
  const r = await ddimInversion(dev, process, den.denoise, startTensor(dev, x0, shape, 'x0'), opts.steps, { samplerOptions: opts.samplerOptions, onStep: opts.onStep });
  return { xT: (await r.x.read()) as Float32Array, shape, steps: r.steps, hostMs: r.hostMs, dispatches: r.dispatches };
}
