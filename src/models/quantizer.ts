import { Tensor, noGrad } from '../graph/tensor.js';
import * as ops from '../graph/ops/index.js';
import { Init, Module } from '../nn/module.js';
import { ShapeError, fmtShape } from '../runtime/errors.js';

export interface QuantizerConfig {
  /** K codes of length D. */
  numEmbeddings: number;
  embedDim: number;
  /** Weight of the commitment term, β (VQ-VAE; 0.25 in taming-transformers and diffusers). */
  beta: number;
  /**
   * 'gradient': the codebook learns from the codebook loss ‖sg[z] − e‖² through the optimizer.
   * 'ema': codes are exponential moving averages of the vectors assigned to them (VQ-VAE appendix,
   * VQ-VAE-2), and the loss keeps only the commitment term.
   */
  codebookUpdate: 'gradient' | 'ema';
  /** EMA decay γ and the Laplace smoothing ε of the cluster sizes. */
  emaDecay: number;
  emaEpsilon: number;
  /** Restart a code unused for this many steps from a random encoder output of the batch; 0: never. */
  restartAfter: number;
}

export interface QuantizeResult {
  /** [B, D, h, w]: every vector replaced by its nearest code; the gradient passes straight through to z. */
  zq: Tensor;
  /** [B, h, w] i32 code indices. */
  indices: Tensor;
  /**
   * Scalar. 'gradient': ‖sg[z] − e‖² + β‖z − sg[e]‖² (means over elements). 'ema': the same value,
   * but only the commitment term has a gradient (the codebook is not a parameter there).
   */
  loss: Tensor;
}

/**
 * Vector quantisation of z [B, D, h, w] by `codebook` [K, D] (codebookLookup): the straight-through
 * estimator for z, the codebook loss for the codebook (unless `detachCodebook`, as in EMA mode) and
 * the commitment loss β for z.
 */
export function vectorQuantize(z: Tensor, codebook: Tensor, opts: { beta: number; detachCodebook?: boolean }): QuantizeResult {
  return ops.codebookLookup(z, opts.detachCodebook ? codebook.detach() : codebook, { beta: opts.beta });
}

/** Holds the codebook as diffusers' VectorQuantizer does: `embedding.weight` [K, D]. */
class CodebookTable extends Module {
  readonly weight: Tensor;
  constructor(init: Init, k: number, d: number) {
    super();
    // As taming-transformers and diffusers: U(−1/K, 1/K).
    this.weight = this.param('weight', init.uniform([k, d], 1 / k));
  }
}

/** Statistics of one batch's code assignments (scalars on the device). */
export interface CodeUsage {
  /** exp(entropy) of the code frequencies in the batch: K when all codes are used equally, 1 for one code. */
  perplexity: Tensor;
  /** Share of the K codes chosen at least once in the batch. */
  used: Tensor;
  /** Share of the K codes chosen at least once in the last `window` steps (from the ages). */
  recent: Tensor;
}

/**
 * The VQ-GAN quantizer: a codebook [K, D] (`embedding.weight`, diffusers' name), nearest-code lookup
 * with the straight-through gradient, and codebook upkeep after each step (`update`): EMA codes and
 * dead-code restarts, both on the device, with no host round trip.
 *
 * EMA state: cluster sizes N [K] start at 1 and sums m [K, D] at the initial codes, so e = m / N holds
 * from the start and a code that is never chosen keeps its value (taming starts N at 0, where Laplace
 * smoothing turns an unused code into m / ε, far from the data).
 */
export class VectorQuantizer extends Module {
  readonly embedding: CodebookTable;
  /** [K] steps since each code was last chosen. */
  readonly age: Tensor;
  /** EMA mode: cluster sizes N [K] and sums m [K, D]. */
  readonly clusterSize: Tensor | null = null;
  readonly embedSum: Tensor | null = null;

  constructor(init: Init, readonly config: QuantizerConfig) {
    super();
    const { numEmbeddings: k, embedDim: d } = config;
    this.embedding = this.child('embedding', new CodebookTable(init, k, d));
    this.age = init.dev.zeros([k]);
    if (config.codebookUpdate === 'ema') {
      this.clusterSize = init.dev.ones([k]);
      this.embedSum = new Tensor(noGrad(() => ops.affine(this.embedding.weight, 1)).data);
    }
  }

  /** The codebook [K, D]. */
  get codebook(): Tensor {
    return this.embedding.weight;
  }

  get ema(): boolean {
    return this.config.codebookUpdate === 'ema';
  }

  forward(z: Tensor): QuantizeResult {
    const d = this.config.embedDim;
    if (z.shape.length !== 4 || z.shape[1] !== d) throw new ShapeError('VectorQuantizer', `z has shape ${fmtShape(z.shape)}, expected [B, ${d}, h, w]`);
    return vectorQuantize(z, this.codebook, { beta: this.config.beta, detachCodebook: this.ema });
  }

  /**
   * Codebook upkeep after a step, recorded like an optimizer update (call it after the gradients are
   * taken): counts of each code, the EMA update of the codes (EMA mode), ages and restarts of codes
   * unused for `restartAfter` steps from vectors of z (drawn with `key`, stream 0x5eed). Returns the
   * counts [K]. The loss's gradient does not depend on any of it.
   */
  update(z: Tensor, indices: Tensor, key: Tensor | null): Tensor {
    return noGrad(() => {
      const zd = z.detach();
      return this.updateFromStats(ops.codebookStats(indices, zd, this.config.numEmbeddings), zd, key);
    });
  }

  /**
   * `update` from statistics taken elsewhere (codebookStats of several micro-batches, summed): counts
   * [K] and sums [K, D] of the vectors z [N, D, h, w] they were taken over (restarts draw from z).
   */
  updateFromStats(stats: { counts: Tensor; sums: Tensor }, z: Tensor, key: Tensor | null): Tensor {
    const cfg = this.config;
    const k = cfg.numEmbeddings;
    return noGrad(() => {
      const zd = z.detach();
      const { counts, sums } = stats;
      if (this.ema) {
        const g = cfg.emaDecay;
        const n = ops.add(ops.scale(this.clusterSize!, g), ops.scale(counts, 1 - g));
        const m = ops.add(ops.scale(this.embedSum!, g), ops.scale(sums, 1 - g));
        // Laplace smoothing: N' = (N + ε) / (ΣN + Kε) · ΣN.
        const total = ops.sum(n).reshape([1]);
        const smoothed = ops.mul(ops.div(ops.affine(n, 1, cfg.emaEpsilon), ops.affine(total, 1, k * cfg.emaEpsilon)), total);
        const codes = ops.div(m, smoothed.reshape([k, 1]));
        ops.assign(this.clusterSize!, n);
        ops.assign(this.embedSum!, m);
        ops.assign(this.codebook, codes);
      }
      if (cfg.restartAfter > 0 && !key) throw new Error('VectorQuantizer.update: restartAfter > 0 needs a random key (dev.randomKey(seed))');
      const u = key ? ops.rand([k], key, 0x5eed) : ops.affine(counts, 0, 0.5);
      const ema = this.ema ? { cluster: this.clusterSize!, sum: this.embedSum! } : null;
      ops.restartCodes({ codebook: this.codebook, age: this.age, ema }, counts, u, zd, cfg.restartAfter);
      return counts;
    });
  }

  /** Perplexity and usage from counts [K] of a batch of `vectors` code choices (ages as of the last update). */
  usage(counts: Tensor, vectors: number, window = Math.max(this.config.restartAfter, 1)): CodeUsage {
    return noGrad(() => {
      const p = ops.scale(counts, 1 / vectors);
      const entropy = ops.neg(ops.sum(ops.mul(p, ops.log(ops.affine(p, 1, 1e-10)))));
      return {
        perplexity: ops.exp(entropy),
        used: ops.mean(ops.step(ops.affine(counts, 1, -0.5))),
        recent: ops.mean(ops.step(ops.affine(this.age, -1, window - 0.5))),
      };
    });
  }

  /** Device state that is not a parameter, by checkpoint name (taming's EMA quantizer names its buffers so). */
  stateTensors(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [[`${prefix}code_age`, this.age]];
    if (this.clusterSize) out.push([`${prefix}embedding.cluster_size`, this.clusterSize], [`${prefix}embedding.embed_avg`, this.embedSum!]);
    return out;
  }
}
