import { Tensor } from '../../graph/tensor.js';
import * as ops from '../../graph/ops/index.js';
import type { Level } from '../process.js';

/**
 * One step of a sampler as the host plans it: which compiled step function runs (`kind`), the noise
 * levels at which it evaluates the denoiser, and its scalar coefficients. The numbers travel to the
 * device as step inputs, so one compiled function serves every step of its kind.
 */
export interface StepPlan {
  kind: string;
  levels: Level[];
  coef: number[];
}

/** What a step function sees while it is traced. */
export interface StepContext {
  /** The current sample [B, C, H, W]. */
  x: Tensor;
  /** Tensors the sampler carries between steps (PLMS's past ε), each shaped like x. */
  state: readonly Tensor[];
  /** Coefficient i of the step as a [1] tensor (broadcasts against x). */
  coef(i: number): Tensor;
  /** The denoiser's ε̂ at the step's level j, for any x. */
  eps(j: number, x: Tensor): Tensor;
  /** Fresh standard normal noise shaped like x (new numbers every call and every step). */
  noise(): Tensor;
}

export interface StepResult {
  x: Tensor;
  /** The current estimate of the clean sample, x̂0 (for live views and intermediate strips). */
  x0: Tensor;
  state?: Tensor[];
}

/**
 * A sampler: a small object over a noise process, in the manner of diffusers' schedulers. It plans
 * the steps on the host and expresses one step in engine ops; it holds no state between steps (what
 * a multistep method remembers lives in `state`, passed through the step).
 */
export interface Sampler {
  readonly name: string;
  /** How many state tensors the steps carry. */
  readonly stateSize: number;
  /** Standard deviation of the initial noise x_T of a run of `steps` steps. */
  initialStd(steps: number): number;
  /** The plan for `steps` steps; errors name the option and its allowed range. */
  plan(steps: number): StepPlan[];
  /** Step function of one kind, in engine ops. */
  step(kind: string, ctx: StepContext): StepResult;
}

/** Σ c_i·x_i over terms that are (tensor, [1] coefficient) pairs or plain tensors (c = 1): one fused kernel in a compiled step. */
export function lin(...terms: (Tensor | [Tensor, Tensor])[]): Tensor {
  let acc: Tensor | null = null;
  for (const term of terms) {
    const t = term instanceof Tensor ? term : ops.mul(term[0], term[1]);
    acc = acc ? ops.add(acc, t) : t;
  }
  return acc!;
}

/** min(max(x, lo), hi) from ReLUs, so that it fuses: x - relu(x - hi) + relu(lo - x). */
export function clamp(x: Tensor, lo: number, hi: number): Tensor {
  return ops.add(ops.sub(x, ops.relu(ops.affine(x, 1, -hi))), ops.relu(ops.affine(x, -1, lo)));
}

export class SamplerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SamplerError';
  }
}

export function checkSteps(name: string, steps: number, max: number): void {
  if (!Number.isInteger(steps) || steps < 1 || steps > max) {
    throw new SamplerError(`${name}: steps = ${steps} is outside the allowed range 1..${max}${Number.isFinite(max) ? ' (the number of steps in the schedule)' : ''}`);
  }
}
