// Samplers for the score SDEs of Song et al. 2021 (VP and VE), from t = 1 down to tMin in n equal
// steps of size Δ, then one denoising step x̂0 = (x - b·ε̂)/a at tMin. The score is s = -ε̂/b(t) and
// the drift is f(x, t) = drift(t)·x.
import * as ops from '../../graph/ops/index.js';
import { Tensor } from '../../graph/tensor.js';
import { NoiseProcess, SDEProcess } from '../process.js';
import { Sampler, SamplerError, StepContext, StepPlan, StepResult, checkSteps, lin } from './types.js';

function requireSDE(process: NoiseProcess, name: string): SDEProcess {
  if (!(process instanceof SDEProcess)) {
    throw new SamplerError(`sampler '${name}' needs a score SDE ('vp-sde' or 've-sde'); this model's process is '${process.kind}'`);
  }
  return process;
}

/** t_0 = 1 > t_1 > ... > t_n = tMin. */
function timeGrid(sde: SDEProcess, n: number): number[] {
  const t0 = sde.config.tMin;
  return Array.from({ length: n + 1 }, (_, i) => 1 - (i * (1 - t0)) / n);
}

/** The Tweedie denoising step at tMin: coefficients [1/a, -b/a]. */
function denoisePlan(sde: SDEProcess): StepPlan {
  const l = sde.level(sde.config.tMin);
  return { kind: 'denoise', levels: [l], coef: [1 / l.a, -l.b / l.a] };
}

function denoiseStep(ctx: StepContext): StepResult {
  const x0 = lin([ctx.x, ctx.coef(0)], [ctx.eps(0, ctx.x), ctx.coef(1)]);
  return { x: x0, x0 };
}

abstract class SDESampler implements Sampler {
  abstract readonly name: string;
  readonly stateSize = 0;
  readonly sde: SDEProcess;
  constructor(process: NoiseProcess, name: string) {
    this.sde = requireSDE(process, name);
  }
  initialStd(): number {
    // The prior at t = 1: N(0, 1) for VP, N(0, σmax²) for VE.
    const l = this.sde.level(1);
    return Math.sqrt(l.b * l.b + (this.sde.family === 'vp' ? l.a * l.a : 0));
  }
  abstract plan(steps: number): StepPlan[];
  abstract step(kind: string, ctx: StepContext): StepResult;
}

/**
 * Euler–Maruyama on the reverse-time SDE (eq. 6): dx = [f(x, t) - g(t)²·s(x, t)] dt + g(t) dw̄, i.e. with
 * Δ = t_i - t_{i+1} > 0:  x ← (1 - drift·Δ)·x - (g²Δ/b)·ε̂ + g·sqrt(Δ)·z.
 */
export class EulerMaruyamaSampler extends SDESampler {
  readonly name = 'euler-maruyama';
  constructor(process: NoiseProcess) {
    super(process, 'euler-maruyama');
  }
  plan(n: number): StepPlan[] {
    checkSteps(this.name, n, 100_000);
    const ts = timeGrid(this.sde, n);
    const out: StepPlan[] = ts.slice(0, n).map((t, i) => {
      const d = t - ts[i + 1]!;
      const l = this.sde.level(t);
      const g2 = this.sde.g2(t);
      return { kind: 'step', levels: [l], coef: [1 - this.sde.drift(t) * d, (-g2 * d) / l.b, Math.sqrt(g2 * d), 1 / l.a, -l.b / l.a] };
    });
    return [...out, denoisePlan(this.sde)];
  }
  step(kind: string, ctx: StepContext): StepResult {
    if (kind === 'denoise') return denoiseStep(ctx);
    const e = ctx.eps(0, ctx.x);
    return {
      x: lin([ctx.x, ctx.coef(0)], [e, ctx.coef(1)], [ctx.noise(), ctx.coef(2)]),
      x0: lin([ctx.x, ctx.coef(3)], [e, ctx.coef(4)]),
    };
  }
}

export interface PCOptions {
  /** Signal-to-noise ratio r of the Langevin corrector (default 0.16 for VE, 0.01 for VP, as in the paper's code). */
  snr?: number;
  /** Corrector steps per predictor step (default 1). */
  correctorSteps?: number;
}

/**
 * Predictor–corrector sampling (Algorithms 2 and 3): at each t, M Langevin corrector steps with the
 * step size from the signal-to-noise ratio r,
 *   ε = 2α·(r·‖z‖/‖s‖)²,  x ← x + ε·s + sqrt(2ε)·z
 * (norms per sample, averaged over the batch; α = 1 - β(t)Δ for VP, 1 for VE), then one
 * Euler–Maruyama predictor step.
 */
export class PredictorCorrectorSampler extends SDESampler {
  readonly name = 'pc';
  constructor(process: NoiseProcess, readonly opts: PCOptions = {}) {
    super(process, 'pc');
    const m = opts.correctorSteps ?? 1;
    if (!Number.isInteger(m) || m < 1 || m > 10) throw new SamplerError(`pc: correctorSteps = ${m} is outside the allowed range 1..10`);
    const r = this.snr;
    if (!(r > 0)) throw new SamplerError(`pc: snr = ${r} must be positive`);
  }
  get snr(): number {
    return this.opts.snr ?? (this.sde.family === 've' ? 0.16 : 0.01);
  }
  plan(n: number): StepPlan[] {
    checkSteps(this.name, n, 100_000);
    const ts = timeGrid(this.sde, n);
    const m = this.opts.correctorSteps ?? 1;
    const out: StepPlan[] = ts.slice(0, n).map((t, i) => {
      const d = t - ts[i + 1]!;
      const l = this.sde.level(t);
      const g2 = this.sde.g2(t);
      const alpha = this.sde.family === 'vp' ? 1 - g2 * d : 1;
      const r = this.snr;
      // [predictor: x, ε̂, z; x̂0: x, ε̂; corrector: -1/b (score from ε̂), 2α·r²]
      const coef = [1 - this.sde.drift(t) * d, (-g2 * d) / l.b, Math.sqrt(g2 * d), 1 / l.a, -l.b / l.a, -1 / l.b, 2 * alpha * r * r];
      return { kind: 'step', levels: Array<typeof l>(m + 1).fill(l), coef };
    });
    return [...out, denoisePlan(this.sde)];
  }
  step(kind: string, ctx: StepContext): StepResult {
    if (kind === 'denoise') return denoiseStep(ctx);
    const m = this.opts.correctorSteps ?? 1;
    let x = ctx.x;
    for (let j = 0; j < m; j++) {
      const score = ops.mul(ctx.eps(j, x), ctx.coef(5));
      const z = ctx.noise();
      // Step size from the batch-mean norms of the noise and the score.
      const ratio = ops.div(meanNorm(z), meanNorm(score));
      const eps = ops.mul(ops.square(ratio), ctx.coef(6));
      x = ops.add(ops.add(x, ops.mul(score, eps)), ops.mul(z, ops.sqrt(ops.scale(eps, 2))));
    }
    const e = ctx.eps(m, x);
    return {
      x: lin([x, ctx.coef(0)], [e, ctx.coef(1)], [ctx.noise(), ctx.coef(2)]),
      x0: lin([x, ctx.coef(3)], [e, ctx.coef(4)]),
    };
  }
}

/** Mean over the batch of each sample's L2 norm, as a [1] tensor. */
function meanNorm(x: Tensor): Tensor {
  const axes = x.shape.map((_, i) => i).slice(1);
  return ops.mean(ops.sqrt(ops.sum(ops.square(x), axes)), [0], { keepDims: true });
}

/**
 * The probability-flow ODE (eq. 13), dx/dt = f(x, t) - ½g(t)²·s(x, t) = k(t)·x + m(t)·ε̂ with
 * k = drift and m = g²/(2b), integrated by Heun's second-order method (two evaluations a step).
 * Deterministic: the only randomness is the initial noise.
 */
export class ProbabilityFlowSampler extends SDESampler {
  readonly name = 'ode';
  constructor(process: NoiseProcess) {
    super(process, 'ode');
  }
  plan(n: number): StepPlan[] {
    checkSteps(this.name, n, 100_000);
    const ts = timeGrid(this.sde, n);
    const km = (t: number) => {
      const l = this.sde.level(t);
      return [this.sde.drift(t), this.sde.g2(t) / (2 * l.b)] as const;
    };
    const out: StepPlan[] = ts.slice(0, n).map((t, i) => {
      const tn = ts[i + 1]!;
      const h = tn - t; // negative
      const [k1, m1] = km(t);
      const [k2, m2] = km(tn);
      const l = this.sde.level(t);
      // x_e = (1 + h·k1)·x + h·m1·ε1;  x_next = (1 + h·k1/2)·x + (h·m1/2)·ε1 + (h·k2/2)·x_e + (h·m2/2)·ε2
      const coef = [1 + h * k1, h * m1, 1 + (h * k1) / 2, (h * m1) / 2, (h * k2) / 2, (h * m2) / 2, 1 / l.a, -l.b / l.a];
      return { kind: 'step', levels: [l, this.sde.level(tn)], coef };
    });
    return [...out, denoisePlan(this.sde)];
  }
  step(kind: string, ctx: StepContext): StepResult {
    if (kind === 'denoise') return denoiseStep(ctx);
    const c = (i: number) => ctx.coef(i);
    const e1 = ctx.eps(0, ctx.x);
    const xe = lin([ctx.x, c(0)], [e1, c(1)]);
    const e2 = ctx.eps(1, xe);
    return {
      x: lin([ctx.x, c(2)], [e1, c(3)], [xe, c(4)], [e2, c(5)]),
      x0: lin([ctx.x, c(6)], [e1, c(7)]),
    };
  }
}
