// Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1) over NCSN's noise levels.
import { NCSNProcess, NoiseProcess, VESDE, Level } from '../process.js';
import { Sampler, SamplerError, StepContext, StepPlan, StepResult, checkSteps, lin } from './types.js';

export interface LangevinOptions {
  /** ε of Algorithm 1: the step at level i is α_i = ε·σ_i²/σ_L² (default 2e-5, as NCSN on CIFAR-10). */
  stepSize?: number;
  /** On a VE SDE, the number of geometric levels between σmax and σmin (default 10). */
  levels?: number;
  /** End with one denoising step x̂0 = x + σ_L²·s(x, σ_L) (Jolicoeur-Martineau et al. 2021); default true. */
  denoise?: boolean;
}

/**
 * `steps` is the number of Langevin steps per noise level (T in Algorithm 1); the run takes
 * steps · L evaluations, plus one for the final denoising step. With s = -ε̂/σ, each step is
 *   (1)  x ← x + (α_i/2)·s(x, σ_i) + sqrt(α_i)·z = x - α_i/(2σ_i)·ε̂ + sqrt(α_i)·z.
 */
export class AnnealedLangevinSampler implements Sampler {
  readonly name = 'langevin';
  readonly stateSize = 0;
  private readonly levels: Level[];
  constructor(readonly process: NoiseProcess, readonly opts: LangevinOptions = {}) {
    if (process instanceof NCSNProcess) this.levels = Array.from(process.sigmas, (s) => process.levelOfSigma(s));
    else if (process instanceof VESDE) {
      const L = opts.levels ?? 10;
      if (!Number.isInteger(L) || L < 1) throw new SamplerError(`langevin: levels = ${L} must be a positive integer`);
      this.levels = Array.from({ length: L }, (_, i) => process.level(L === 1 ? 1 : 1 - i / (L - 1)));
    } else {
      throw new SamplerError(`sampler 'langevin' needs a noise-conditional process ('ncsn' or 've-sde'); this model's process is '${process.kind}'`);
    }
    const eps = opts.stepSize ?? 2e-5;
    if (!(eps > 0)) throw new SamplerError(`langevin: stepSize = ${eps} must be positive`);
  }
  initialStd(): number {
    return this.levels[0]!.b;
  }
  plan(steps: number): StepPlan[] {
    checkSteps(this.name, steps, 100_000);
    const eps = this.opts.stepSize ?? 2e-5;
    const sL = this.levels[this.levels.length - 1]!.b;
    const out: StepPlan[] = [];
    for (const l of this.levels) {
      const alpha = (eps * l.b * l.b) / (sL * sL);
      for (let t = 0; t < steps; t++) out.push({ kind: 'langevin', levels: [l], coef: [-alpha / (2 * l.b), Math.sqrt(alpha), -l.b] });
    }
    const last = this.levels[this.levels.length - 1]!;
    if (this.opts.denoise ?? true) out.push({ kind: 'denoise', levels: [last], coef: [-last.b] });
    return out;
  }
  step(kind: string, ctx: StepContext): StepResult {
    const e = ctx.eps(0, ctx.x);
    // Tweedie: x̂0 = x + σ²·s = x - σ·ε̂ (the denoising step's output, and the live estimate).
    const x0 = lin(ctx.x, [e, ctx.coef(kind === 'denoise' ? 0 : 2)]);
    if (kind === 'denoise') return { x: x0, x0 };
    return { x: lin(ctx.x, [e, ctx.coef(0)], [ctx.noise(), ctx.coef(1)]), x0 };
  }
}
