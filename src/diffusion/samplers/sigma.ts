// Samplers that step in the noise level σ = √((1 − ᾱ)/ᾱ) of a discrete DDPM chain, as diffusers'
// EulerDiscrete, HeunDiscrete and DPMSolverMultistep schedulers do, by default over Karras et al.'s
// σ spacing (2022, eq. 5, ρ = 7). Euler and Heun integrate the probability-flow ODE of the
// variance-exploding view x = x0 + σ·ε (x_VP/α; the network sees x/√(σ² + 1) = x_VP, so the
// denoiser's c_in is exactly that scaling); DPM-Solver++(2M) works on x_VP itself with the
// data-prediction form of Lu et al. 2022.
import { Tensor } from '../../graph/tensor.js';
import * as ops from '../../graph/ops/index.js';
import { DiscreteVP, Level, NoiseProcess } from '../process.js';
import { Sampler, SamplerError, StepContext, StepPlan, StepResult, checkSteps, lin } from './types.js';
import { TimestepSpacing, chainSigmas, karrasSigmas, sigmaAt, spacedTimesteps, timestepOf } from './timesteps.js';
import { VPSamplerOptions, X0Limit, checkLimitOptions, limitX0, x0Limit } from './vp.js';

export interface SigmaSamplerOptions extends Pick<VPSamplerOptions, 'clipSample' | 'clipRange' | 'thresholdRatio' | 'thresholdMax'> {
  /** Karras σ spacing (true, the default) or the σ of the timestep grid (diffusers' use_karras_sigmas). */
  karras?: boolean;
  /** The timestep grid, as diffusers' schedulers space it (default 'linspace', their default). */
  timestepSpacing?: TimestepSpacing;
  stepsOffset?: number;
  /** Karras: the range of σ (diffusers' Euler sigma_min / sigma_max); default the chain's, or the grid's for Euler and Heun. */
  sigmaMin?: number;
  sigmaMax?: number;
}

/** One noise level of a σ grid: σ, and the (possibly fractional) timestep the network is told. */
interface SigmaLevel {
  sigma: number;
  t: number;
}

/**
 * The σ of an n-step sampler, noisiest first, then σ = 0. Without Karras spacing, σ at the grid's
 * timesteps (interpolated between whole steps). With it, n values from σmax to σmin evenly in σ^(1/7)
 * and their timesteps by log-σ interpolation; `fullRange`: σmin, σmax of the whole chain (diffusers'
 * DPM-Solver) rather than of the grid (Euler, Heun); `round`: whole timesteps (DPM-Solver).
 */
export function sigmaGrid(p: DiscreteVP, n: number, o: SigmaSamplerOptions, family: 'sigma' | 'dpm'): SigmaLevel[] {
  const sigmas = chainSigmas(p);
  const ts = spacedTimesteps(p.T, n, o.timestepSpacing ?? 'linspace', o.stepsOffset ?? 0, family);
  let grid: SigmaLevel[];
  if (o.karras ?? true) {
    const lo = o.sigmaMin ?? (family === 'dpm' ? sigmas[0]! : sigmaAt(sigmas, ts[ts.length - 1]!));
    const hi = o.sigmaMax ?? (family === 'dpm' ? sigmas[p.T - 1]! : sigmaAt(sigmas, ts[0]!));
    grid = karrasSigmas(n, lo, hi).map((s) => {
      const t = timestepOf(sigmas, s);
      return { sigma: s, t: family === 'dpm' ? Math.round(t) : t };
    });
  } else {
    grid = ts.map((t) => ({ sigma: sigmaAt(sigmas, t), t }));
  }
  return [...grid, { sigma: 0, t: 0 }];
}

abstract class SigmaSampler implements Sampler {
  abstract readonly name: string;
  abstract readonly stateSize: number;
  protected readonly chain: DiscreteVP;
  constructor(readonly process: NoiseProcess, readonly opts: SigmaSamplerOptions, name: string) {
    if (!(process instanceof DiscreteVP)) throw new SamplerError(`sampler '${name}' steps through the σ of a discrete DDPM chain; this model's process is '${process.kind}'`);
    this.chain = process;
    checkLimitOptions(opts);
    for (const k of ['sigmaMin', 'sigmaMax'] as const) if (opts[k] !== undefined && !(opts[k]! > 0)) throw new SamplerError(`${name}: ${k} = ${opts[k]} must be a number > 0`);
  }
  protected get limit(): X0Limit | null {
    return x0Limit(this.opts);
  }
  protected grid(n: number, family: 'sigma' | 'dpm'): SigmaLevel[] {
    checkSteps(this.name, n, this.chain.T);
    return sigmaGrid(this.chain, n, this.opts, family);
  }
  /** Samplers in σ start from x_T = x0 + σmax·ε, of variance σmax² + Var(x0) ≈ σmax² + 1. */
  initialStd(steps: number): number {
    const s = this.grid(steps, 'sigma')[0]!.sigma;
    return Math.sqrt(s * s + 1);
  }
  abstract plan(steps: number): StepPlan[];
  abstract step(kind: string, ctx: StepContext): StepResult;
}

/** The level of x = x0 + σ·ε (a = 1, b = σ) at timestep t. */
const veLevel = (g: SigmaLevel): Level => ({ a: 1, b: g.sigma, time: g.t });

/**
 * The ODE's direction d = (x − x̂0)/σ at one level from ε̂, with x̂0 = x − σ·ε̂ limited when asked:
 * unlimited, d is ε̂ itself.
 */
function direction(x: Tensor, eps: Tensor, sigma: Tensor, invSigma: Tensor, limit: X0Limit | null): { d: Tensor; x0: Tensor } {
  const x0 = lin(x, [eps, ops.neg(sigma)]);
  if (!limit) return { d: eps, x0 };
  const l = limitX0(x0, limit);
  return { d: ops.mul(ops.sub(x, l), invSigma), x0: l };
}

// Coefficients: σ_i, 1/σ_i, Δσ = σ_{i+1} − σ_i, σ_{i+1}, 1/σ_{i+1}.
const SIG = 0, INV = 1, DS = 2, SIG_N = 3, INV_N = 4;

/** Euler's method on the probability-flow ODE dx/dσ = (x − x̂0)/σ (Karras et al. 2022, Algorithm 1 without churn). */
export class EulerSampler extends SigmaSampler {
  readonly name = 'euler';
  readonly stateSize = 0;
  constructor(process: NoiseProcess, opts: SigmaSamplerOptions = {}) {
    super(process, opts, 'euler');
  }
  plan(n: number): StepPlan[] {
    const g = this.grid(n, 'sigma');
    return g.slice(0, n).map((l, i) => ({ kind: 'euler', levels: [veLevel(l)], coef: [l.sigma, 1 / l.sigma, g[i + 1]!.sigma - l.sigma] }));
  }
  step(_kind: string, ctx: StepContext): StepResult {
    const { d, x0 } = direction(ctx.x, ctx.eps(0, ctx.x), ctx.coef(SIG), ctx.coef(INV), this.limit);
    return { x: lin(ctx.x, [d, ctx.coef(DS)]), x0 };
  }
}

/**
 * Heun's second-order method on the same ODE (Karras et al. 2022, Algorithm 1): an Euler step, then
 * the average of the directions at both ends; the last step, to σ = 0, is Euler's (no evaluation at
 * σ = 0), as diffusers' HeunDiscreteScheduler: 2n − 1 evaluations.
 */
export class HeunSampler extends SigmaSampler {
  readonly name = 'heun';
  readonly stateSize = 0;
  constructor(process: NoiseProcess, opts: SigmaSamplerOptions = {}) {
    super(process, opts, 'heun');
  }
  plan(n: number): StepPlan[] {
    const g = this.grid(n, 'sigma');
    return g.slice(0, n).map((l, i) => {
      const next = g[i + 1]!;
      const coef = [l.sigma, 1 / l.sigma, next.sigma - l.sigma];
      return next.sigma > 0
        ? { kind: 'heun', levels: [veLevel(l), veLevel(next)], coef: [...coef, next.sigma, 1 / next.sigma] }
        : { kind: 'euler', levels: [veLevel(l)], coef };
    });
  }
  step(kind: string, ctx: StepContext): StepResult {
    const c = (i: number) => ctx.coef(i);
    const first = direction(ctx.x, ctx.eps(0, ctx.x), c(SIG), c(INV), this.limit);
    const xe = lin(ctx.x, [first.d, c(DS)]);
    if (kind === 'euler') return { x: xe, x0: first.x0 };
    const second = direction(xe, ctx.eps(1, xe), c(SIG_N), c(INV_N), this.limit);
    return { x: lin(ctx.x, [ops.add(first.d, second.d), ops.scale(c(DS), 0.5)]), x0: first.x0 };
  }
}

/**
 * DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2, midpoint form as diffusers'
 * solver_type 'midpoint'): on x_VP = α·x0 + σ_VP·ε with λ = ln(α/σ_VP) and h = λ_next − λ,
 *   x_next = (σ_next/σ)·x − α_next·(e^(−h) − 1)·(D0 + D1/2),  D0 = x̂0, D1 = (x̂0 − x̂0_prev)/r, r = h_prev/h,
 * first order (D1 = 0) on the first step and on the last, to σ = 0 (diffusers' lower_order_final and
 * final_sigmas_type 'zero'). The previous x̂0 travels as state.
 */
export class DPMSolverPP2MSampler extends SigmaSampler {
  readonly name = 'dpm++2m';
  readonly stateSize = 1;
  constructor(process: NoiseProcess, opts: SigmaSamplerOptions = {}) {
    super(process, opts, 'dpm++2m');
  }
  override initialStd(): number {
    return 1;
  }
  plan(n: number): StepPlan[] {
    const g = this.grid(n, 'dpm');
    const alpha = (s: number) => 1 / Math.sqrt(s * s + 1);
    const lambda = (s: number) => -Math.log(s); // ln(α/σ_VP) = ln(1/σ)
    return g.slice(0, n).map((l, i) => {
      const a = alpha(l.sigma), b = l.sigma * a;
      const level: Level = { a, b, time: l.t };
      const next = g[i + 1]!;
      // x̂0 = x/a − (b/a)·ε̂.
      const base = [1 / a, -b / a];
      if (next.sigma === 0) return { kind: 'first', levels: [level], coef: [...base, 0, 1, 1, 0] };
      const an = alpha(next.sigma), bn = next.sigma * an;
      const h = lambda(next.sigma) - lambda(l.sigma);
      const cx = bn / b, c0 = -an * Math.expm1(-h);
      if (i === 0) return { kind: 'first', levels: [level], coef: [...base, cx, c0, 1, 0] };
      const r = (lambda(l.sigma) - lambda(g[i - 1]!.sigma)) / h;
      // D0 + D1/2 = (1 + 1/(2r))·x̂0 − 1/(2r)·x̂0_prev.
      return { kind: 'second', levels: [level], coef: [...base, cx, c0, 1 + 1 / (2 * r), -1 / (2 * r)] };
    });
  }
  step(kind: string, ctx: StepContext): StepResult {
    const c = (i: number) => ctx.coef(i);
    let x0 = lin([ctx.x, c(0)], [ctx.eps(0, ctx.x), c(1)]);
    const limit = this.limit;
    if (limit) x0 = limitX0(x0, limit);
    const mix = kind === 'second' ? lin([x0, c(4)], [ctx.state[0]!, c(5)]) : x0;
    return { x: lin([ctx.x, c(2)], [mix, c(3)]), x0, state: [x0] };
  }
}
