import { Tensor } from '../graph/tensor.js';
import * as ops from '../graph/ops/index.js';
import { Module, Init } from './module.js';
import { ShapeError, fmtShape } from '../runtime/errors.js';

/** y = x·Wᵀ + b, weight [out, in]; PyTorch's default init: U(±1/√in) for weight and bias. */
export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(init: Init, readonly inFeatures: number, readonly outFeatures: number, opts: { bias?: boolean } = {}) {
    super();
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = this.param('weight', init.uniform([outFeatures, inFeatures], bound));
    this.bias = opts.bias === false ? null : this.param('bias', init.uniform([outFeatures], bound));
  }
  forward(x: Tensor): Tensor {
    return ops.linear(x, this.weight, this.bias);
  }
}

export interface Conv2dConfig extends ops.Conv2dOptions {
  bias?: boolean;
}

/** 2-D convolution, weight [Cout, Cin/groups, k, k]; PyTorch's default init: U(±1/√fan_in). */
export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(init: Init, readonly inChannels: number, readonly outChannels: number, readonly kernelSize: number, readonly opts: Conv2dConfig = {}) {
    super();
    const groups = opts.groups ?? 1;
    if (inChannels % groups !== 0 || outChannels % groups !== 0) {
      throw new ShapeError('Conv2d', `in ${inChannels} and out ${outChannels} channels must both be divisible by groups ${groups}`);
    }
    const bound = 1 / Math.sqrt((inChannels / groups) * kernelSize * kernelSize);
    this.weight = this.param('weight', init.uniform([outChannels, inChannels / groups, kernelSize, kernelSize], bound));
    this.bias = opts.bias === false ? null : this.param('bias', init.uniform([outChannels], bound));
  }
  forward(x: Tensor): Tensor {
    return ops.conv2d(x, this.weight, this.bias, this.opts);
  }
}

/** Group norm with per-channel affine (weight 1, bias 0 at init), optionally fused with SiLU. */
export class GroupNorm extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(init: Init, readonly groups: number, readonly channels: number, readonly eps = 1e-5) {
    super();
    if (channels % groups !== 0) throw new ShapeError('GroupNorm', `${channels} channels cannot be split into ${groups} groups`);
    this.weight = this.param('weight', init.constant([channels], 1));
    this.bias = this.param('bias', init.constant([channels], 0));
  }
  forward(x: Tensor, opts: { silu?: boolean } = {}): Tensor {
    return ops.groupNorm(x, this.groups, this.weight, this.bias, { eps: this.eps, silu: opts.silu });
  }
}

/** Layer norm over the last axis: group norm with one group on [rows, C]. */
export class LayerNorm extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(init: Init, readonly channels: number, readonly eps = 1e-5) {
    super();
    this.weight = this.param('weight', init.constant([channels], 1));
    this.bias = this.param('bias', init.constant([channels], 0));
  }
  forward(x: Tensor): Tensor {
    const c = x.shape[x.shape.length - 1];
    if (c !== this.channels) throw new ShapeError('LayerNorm', `x has shape ${fmtShape(x.shape)}, expected [..., ${this.channels}]`);
    return ops.groupNorm(x.reshape([x.size / c, c]), 1, this.weight, this.bias, { eps: this.eps }).reshape(x.shape);
  }
}

/** A table of `count` learned vectors of `dim`; PyTorch's default init: N(0, 1). */
export class Embedding extends Module {
  readonly weight: Tensor;
  constructor(init: Init, readonly count: number, readonly dim: number) {
    super();
    this.weight = this.param('weight', init.normal([count, dim]));
  }
  forward(indices: Tensor): Tensor {
    return ops.embedding(indices, this.weight);
  }
}

let randomContext: { key: Tensor; stream: number } | null = null;

/**
 * Run a forward pass in which dropout (and anything else that draws noise in training) takes its
 * numbers from `key`, one stream per call, in call order: deterministic for a key and counter.
 */
export function withRandom<T>(key: Tensor, fn: () => T, firstStream = 1 << 20): T {
  const prev = randomContext;
  randomContext = { key, stream: firstStream };
  try {
    return fn();
  } finally {
    randomContext = prev;
  }
}

/** Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p); identity in eval. */
export class Dropout extends Module {
  constructor(readonly p: number) {
    super();
    if (!(p >= 0 && p < 1)) throw new ShapeError('Dropout', `p must be in [0, 1), got ${p}`);
  }
  forward(x: Tensor): Tensor {
    if (!this.training || this.p === 0) return x;
    if (!randomContext) throw new Error('Dropout: in training mode it needs random numbers; run the forward inside withRandom(key, () => ...) or call model.eval()');
    const u = ops.rand(x.shape, randomContext.key, randomContext.stream++);
    const keep = ops.affine(ops.step(ops.affine(u, 1, -this.p)), 1 / (1 - this.p));
    return ops.mul(x, keep);
  }
}
