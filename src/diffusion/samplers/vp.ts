// Samplers over a variance-preserving process (discrete DDPM or the continuous VP SDE): DDPM
// ancestral, DDIM and PLMS. All three move from level i (ᾱ_i) to the next, less noisy one (ᾱ_next,
// 1 after the last step) by
//   x̂0 = (x - b·ε̂)/a,   x_next = c_x0·x̂0 + c_eps·ε̂ + c_z·z,
// and differ only in the coefficients and in which ε̂ they use.
import { Tensor } from '../../graph/tensor.js';
import * as ops from '../../graph/ops/index.js';
import { DiscreteVP, NoiseProcess, VPSDE, Level } from '../process.js';
import { Sampler, SamplerError, StepContext, StepPlan, StepResult, checkSteps, clamp, lin } from './types.js';
import { TimestepSpacing, spacedTimesteps } from './timesteps.js';

export interface VPSamplerOptions {
  /** Clip x̂0 to [-clipRange, clipRange] at every step (diffusers' clip_sample); off by default. */
  clipSample?: boolean;
  /** The bound of that clip (diffusers' clip_sample_range); 1, the pixel range, by default. */
  clipRange?: number;
  /**
   * Dynamic thresholding instead of the clip (Saharia et al. 2022, Imagen; diffusers' thresholding
   * with dynamic_thresholding_ratio): per sample, s is this quantile of |x̂0| (e.g. 0.995), kept
   * within [clipRange, thresholdMax]; x̂0 is clipped to ±s and scaled by clipRange/s. Where the
   * static clip flattens every value beyond the range (and shifts the values' proportions), this
   * shrinks the whole sample back into it.
   */
  thresholdRatio?: number;
  /** The largest s (diffusers' sample_max_value); unbounded by default, as in Imagen. */
  thresholdMax?: number;
  /**
   * Follow diffusers' schedulers' timesteps (DDPMScheduler, DDIMScheduler, PNDMScheduler): the grid
   * of this timestep_spacing, NumPy's rounding, and each step going to t − ⌊T/n⌋ as those schedulers
   * take it. Unset: the engine's own grid, trailing, each step going to the next level of the grid.
   * Discrete DDPM chains only.
   */
  timestepSpacing?: TimestepSpacing;
  /** Added to 'leading' timesteps (diffusers' steps_offset). */
  stepsOffset?: number;
  /**
   * DDIM and PLMS with timestepSpacing: ᾱ after the last step is 1 (true, the default) or ᾱ_0
   * (diffusers' set_alpha_to_one = false). DDPM always ends at 1, as diffusers' DDPMScheduler.
   */
  setAlphaToOne?: boolean;
}

/** How x̂0 is held within ±range at every step: clipped, or thresholded per sample (ratio set). */
export interface X0Limit {
  range: number;
  ratio?: number;
  max?: number;
}

/** max(x, lo) from a ReLU, so that it fuses. */
const atLeast = (x: Tensor, lo: number) => ops.affine(ops.relu(ops.affine(x, 1, -lo)), 1, lo);
/** min(x, hi) from a ReLU. */
const atMost = (x: Tensor, hi: number) => ops.affine(ops.relu(ops.affine(x, -1, hi)), -1, hi);

export function limitX0(x0: Tensor, lim: X0Limit): Tensor {
  if (lim.ratio === undefined) return clamp(x0, -lim.range, lim.range);
  const q = atLeast(ops.absQuantile(x0, lim.ratio), lim.range);
  const s = (lim.max !== undefined ? atMost(q, lim.max) : q).reshape([x0.shape[0]!, ...x0.shape.slice(1).map(() => 1)]);
  // clip(x̂0, -s, s)/s = clip(x̂0/s, -1, 1) as s > 0; then back to ±range.
  return ops.scale(clamp(ops.div(x0, s), -1, 1), lim.range);
}

/** The clip and threshold options checked; errors name the option and its allowed range. */
export function checkLimitOptions(opts: VPSamplerOptions): void {
  const r = opts.clipRange ?? 1;
  if (!(r > 0)) throw new SamplerError(`clipRange = ${opts.clipRange} must be a number > 0`);
  const q = opts.thresholdRatio;
  if (q !== undefined && !(q > 0 && q <= 1)) throw new SamplerError(`thresholdRatio = ${q} is outside the allowed range (0, 1]`);
  const m = opts.thresholdMax;
  if (m !== undefined && !(m >= r)) throw new SamplerError(`thresholdMax = ${m} must be a number >= clipRange (${r})`);
}

/** How the options limit x̂0 at every step, or null when they do not. */
export function x0Limit(opts: VPSamplerOptions): X0Limit | null {
  const range = opts.clipRange ?? 1;
  if (opts.thresholdRatio !== undefined) return { range, ratio: opts.thresholdRatio, max: opts.thresholdMax };
  return opts.clipSample ? { range } : null;
}

/** Noise levels visited by an n-step sampler, noisiest first, and ᾱ after each step. */
export function vpGrid(process: NoiseProcess, n: number, name: string, opts: VPSamplerOptions = {}): { levels: Level[]; abNext: number[] } {
  if (opts.timestepSpacing !== undefined && !(process instanceof DiscreteVP)) {
    throw new SamplerError(`${name}: timestepSpacing is for discrete DDPM chains; this model's process is '${process.kind}'`);
  }
  if (process instanceof DiscreteVP && opts.timestepSpacing !== undefined) {
    checkSteps(name, n, process.T);
    // diffusers: prev_t = t − ⌊T/n⌋, and ᾱ = 1 (or ᾱ_0 without set_alpha_to_one) once prev_t < 0.
    const ts = spacedTimesteps(process.T, n, opts.timestepSpacing, opts.stepsOffset ?? 0, 'discrete');
    const stride = Math.floor(process.T / n);
    const final = name === 'ddpm' || (opts.setAlphaToOne ?? true) ? 1 : process.alphaBar(0);
    return { levels: ts.map((t) => process.levelAt(t)), abNext: ts.map((t) => (t - stride >= 0 ? process.alphaBar(t - stride) : final)) };
  }
  if (process instanceof DiscreteVP) {
    checkSteps(name, n, process.T);
    // "Trailing" spacing (Lin et al. 2024): the first step is at t = T - 1, the noisiest level.
    const ts = Array.from({ length: n }, (_, i) => Math.round(process.T - (i * process.T) / n) - 1);
    return { levels: ts.map((t) => process.levelAt(t)), abNext: ts.map((_, i) => (i + 1 < n ? process.alphaBar(ts[i + 1]!) : 1)) };
  }
  if (process instanceof VPSDE) {
    checkSteps(name, n, Infinity);
    const t0 = process.config.tMin;
    // From t = 1 down to tMin; the last step then goes to the clean data.
    const ts = Array.from({ length: n }, (_, i) => (n === 1 ? 1 : 1 - (i * (1 - t0)) / (n - 1)));
    return { levels: ts.map((t) => process.level(t)), abNext: ts.map((_, i) => (i + 1 < n ? process.alphaBar(ts[i + 1]!) : 1)) };
  }
  throw new SamplerError(`sampler '${name}' needs a variance-preserving process ('ddpm' or 'vp-sde'); this model's process is '${process.kind}'`);
}

// Coefficient layout shared by the three samplers.
const INV_A = 0, NEG_B_OVER_A = 1, NEG_A_OVER_B = 2, INV_B = 3, C_X0 = 4, C_EPS = 5, C_Z = 6;

function baseCoef(l: Level, cX0: number, cEps: number, cZ: number): number[] {
  return [1 / l.a, -l.b / l.a, -l.a / l.b, 1 / l.b, cX0, cEps, cZ];
}

/** The shared update from ε̂; with x̂0 limited, ε̂ is recomputed from the limited x̂0 so both stay consistent. */
function vpUpdate(ctx: StepContext, eps: Tensor, limit: X0Limit | null, noise: boolean): StepResult {
  const c = (i: number) => ctx.coef(i);
  let x0 = lin([ctx.x, c(INV_A)], [eps, c(NEG_B_OVER_A)]);
  if (limit !== null) {
    x0 = limitX0(x0, limit);
    eps = lin([ctx.x, c(INV_B)], [x0, c(NEG_A_OVER_B)]);
  }
  const terms: [Tensor, Tensor][] = [[x0, c(C_X0)], [eps, c(C_EPS)]];
  if (noise) terms.push([ctx.noise(), c(C_Z)]);
  return { x: lin(...terms), x0 };
}

/** What the three samplers share: a variance-preserving process (checked up front) and x_T ~ N(0, I). */
abstract class VPSampler<O extends VPSamplerOptions> implements Sampler {
  abstract readonly name: string;
  abstract readonly stateSize: number;
  constructor(readonly process: NoiseProcess, readonly opts: O, name: string) {
    vpGrid(process, 1, name, opts);
    checkLimitOptions(opts);
  }
  /** How x̂0 is limited at every step, or null when it is not. */
  protected get clip(): X0Limit | null {
    return x0Limit(this.opts);
  }
  initialStd(): number {
    return 1;
  }
  abstract plan(steps: number): StepPlan[];
  abstract step(kind: string, ctx: StepContext): StepResult;
}

export interface DDPMSamplerOptions extends VPSamplerOptions {
  /**
   * The reverse step's variance (Ho et al. §3.2): 'small', the posterior's β̃ (diffusers'
   * fixed_small, the default), or 'large', β itself (fixed_large).
   */
  varianceType?: 'small' | 'large';
}

/** DDPM ancestral sampling (Ho et al. 2020, Algorithm 2), on any subsequence of levels via the posterior q(x_next | x_t, x0) (eqs. 6-7). */
export class DDPMSampler extends VPSampler<DDPMSamplerOptions> {
  readonly name = 'ddpm';
  readonly stateSize = 0;
  constructor(process: NoiseProcess, opts: DDPMSamplerOptions = {}) {
    super(process, opts, 'ddpm');
    const v = opts.varianceType ?? 'small';
    if (v !== 'small' && v !== 'large') throw new SamplerError(`ddpm: varianceType '${v}' is unknown; allowed values: small, large`);
  }
  plan(n: number): StepPlan[] {
    const { levels, abNext } = vpGrid(this.process, n, this.name, this.opts);
    return levels.map((l, i) => {
      const ab = l.a * l.a, abn = abNext[i]!;
      const beta = 1 - ab / abn; // β of the respaced chain
      // Posterior mean  c1·x̂0 + c2·x_t  (eq. 7), rewritten with x_t = a·x̂0 + b·ε̂.
      const c1 = (Math.sqrt(abn) * beta) / (1 - ab);
      const c2 = (Math.sqrt(1 - beta) * (1 - abn)) / (1 - ab);
      const variance = this.opts.varianceType === 'large' ? beta : (beta * (1 - abn)) / (1 - ab); // β or β̃ (eq. 7)
      // diffusers adds no noise at t = 0, which only matters for 'large' (β̃ is 0 there).
      const std = this.opts.varianceType === 'large' && l.time <= 0 ? 0 : Math.sqrt(Math.max(variance, 0));
      return { kind: 'step', levels: [l], coef: baseCoef(l, c1 + c2 * l.a, c2 * l.b, std) };
    });
  }
  step(_kind: string, ctx: StepContext): StepResult {
    return vpUpdate(ctx, ctx.eps(0, ctx.x), this.clip, true);
  }
}

/** DDIM (Song, Meng & Ermon 2021), eq. 12 with σ from eq. 16 scaled by eta: 0 is deterministic, 1 is DDPM-like. */
export class DDIMSampler extends VPSampler<VPSamplerOptions & { eta?: number }> {
  readonly name = 'ddim';
  readonly stateSize = 0;
  constructor(process: NoiseProcess, opts: VPSamplerOptions & { eta?: number } = {}) {
    super(process, opts, 'ddim');
    const eta = opts.eta ?? 0;
    if (!(eta >= 0 && eta <= 1)) throw new SamplerError(`ddim: eta = ${eta} is outside the allowed range [0, 1]`);
  }
  plan(n: number): StepPlan[] {
    const eta = this.opts.eta ?? 0;
    const { levels, abNext } = vpGrid(this.process, n, this.name, this.opts);
    return levels.map((l, i) => {
      const ab = l.a * l.a, abn = abNext[i]!;
      const sigma = eta * Math.sqrt(((1 - abn) / (1 - ab)) * (1 - ab / abn));
      return { kind: eta > 0 ? 'stochastic' : 'deterministic', levels: [l], coef: baseCoef(l, Math.sqrt(abn), Math.sqrt(Math.max(1 - abn - sigma * sigma, 0)), sigma) };
    });
  }
  step(kind: string, ctx: StepContext): StepResult {
    return vpUpdate(ctx, ctx.eps(0, ctx.x), this.clip, kind === 'stochastic');
  }
}

/**
 * PLMS, the pseudo linear multistep sampler of Liu et al. 2022 (PNDM) as latent diffusion uses it:
 * the DDIM (eta = 0) update with ε' from the Adams-Bashforth combination of the current and up to
 * three past ε̂ (eq. 12 of the paper), and a pseudo improved-Euler first step (two evaluations).
 * The past ε̂ travel as state [ε_{-1}, ε_{-2}, ε_{-3}].
 */
export class PLMSSampler extends VPSampler<VPSamplerOptions> {
  readonly name = 'plms';
  readonly stateSize = 3;
  constructor(process: NoiseProcess, opts: VPSamplerOptions = {}) {
    super(process, opts, 'plms');
  }
  plan(n: number): StepPlan[] {
    const { levels, abNext } = vpGrid(this.process, n, this.name, this.opts);
    const AB = [[1], [3 / 2, -1 / 2], [23 / 12, -16 / 12, 5 / 12], [55 / 24, -59 / 24, 37 / 24, -9 / 24]];
    return levels.map((l, i) => {
      const abn = abNext[i]!;
      const base = baseCoef(l, Math.sqrt(abn), Math.sqrt(1 - abn), 0);
      if (i === 0) {
        // The second evaluation is at the next level (after one DDIM step); its own coefficients follow.
        const next: Level = i + 1 < levels.length ? levels[i + 1]! : { a: Math.sqrt(abn), b: Math.sqrt(Math.max(1 - abn, 1e-12)), time: l.time };
        return { kind: 'first', levels: [l, next], coef: base };
      }
      const w = AB[Math.min(i, 3)]!;
      return { kind: 'multistep', levels: [l], coef: [...base, w[0]!, w[1] ?? 0, w[2] ?? 0, w[3] ?? 0] };
    });
  }
  step(kind: string, ctx: StepContext): StepResult {
    const clip = this.clip;
    const e = ctx.eps(0, ctx.x);
    let ePrime: Tensor;
    if (kind === 'first') {
      // Pseudo improved Euler: ε' = (ε(x_t) + ε(x_next)) / 2 with x_next from a DDIM step on ε(x_t).
      const xNext = vpUpdate(ctx, e, clip, false).x;
      ePrime = ops.scale(ops.add(e, ctx.eps(1, xNext)), 0.5);
    } else {
      ePrime = lin([e, ctx.coef(7)], [ctx.state[0]!, ctx.coef(8)], [ctx.state[1]!, ctx.coef(9)], [ctx.state[2]!, ctx.coef(10)]);
    }
    const r = vpUpdate(ctx, ePrime, clip, false);
    return { ...r, state: [e, ctx.state[0]!, ctx.state[1]!] };
  }
}
