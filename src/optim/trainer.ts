// What every trainer of the engine offers (diffusion, VQ-GAN, classifier), so that the CLI's run
// loop, the lab page and the bench drive any of them the same way. It lives in optim, the lowest layer
// that knows what an optimisation step is: it names only a Tensor (graph) and plain bytes and records,
// and each trainer (models/, diffusion/) sits above it and brings its own checkpoint format from io/.
import type { Tensor } from '../graph/tensor.js';
import { ShapeError } from '../runtime/errors.js';

/** Figures of the last step, read back from the device (one sync). */
export interface TrainerProgress {
  /** Optimisation steps done. */
  step: number;
  /** The last step's loss: the objective the optimiser minimised, a mean over the step's whole batch. */
  loss: number;
  /** The learning rate of the last update. */
  lr: number;
  /** The trainer's own figures (PSNR and perplexity of a VQ-GAN, say); null where not defined (yet). */
  [figure: string]: number | null;
}

/**
 * A training run on the device. Each trainer owns its data and draws its batches deterministically
 * from (seed, step), so that `state()` at any step and `resume()` from it continue bit for bit.
 */
export interface Trainer<P extends TrainerProgress = TrainerProgress> {
  readonly kind: string;
  /** Optimisation steps done so far (each one update of the weights, over `accumulate` micro-batches). */
  readonly steps: number;
  /** Micro-batches summed into each optimisation step (1: none). */
  readonly accumulate: number;
  /**
   * Record and submit one optimisation step; nothing is read back. Returns the step's loss on the
   * device, overwritten by the next step (copy it to keep it). The first call compiles the step.
   */
  step(): Promise<Tensor>;
  /** The whole training state (weights, optimiser, EMA, random key, step, config) as safetensors bytes. */
  state(): Promise<Uint8Array>;
  /**
   * Continue from bytes written by `state()` of a trainer with the same configuration. All or nothing:
   * every part is checked before any is written, so a failed resume leaves the trainer as it was.
   */
  resume(bytes: Uint8Array): void;
  /** The last step's figures (throws before the first step). */
  progress(): Promise<P>;
}

/** Checks an `accumulate` setting: a whole number of micro-batches >= 1. */
export function checkAccumulate(where: string, n: unknown): number {
  if (!(typeof n === 'number' && Number.isSafeInteger(n) && n >= 1)) throw new ShapeError(where, `accumulate = ${JSON.stringify(n)} must be an integer >= 1 (micro-batches per optimisation step)`);
  return n;
}
