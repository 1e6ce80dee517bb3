import { Tensor } from '../graph/tensor.js';
import * as ops from '../graph/ops/index.js';
import { Module, ModuleList, Init } from './module.js';
import { Conv2d, Dropout, GroupNorm, LayerNorm, Linear } from './layers.js';
import { ShapeError, fmtShape } from '../runtime/errors.js';

/** [B, L, H·d] -> [B, H, L, d] */
function splitHeads(x: Tensor, heads: number): Tensor {
  const [b, l, c] = x.shape as [number, number, number];
  return ops.permute(x.reshape([b, l, heads, c / heads]), [0, 2, 1, 3]);
}
/** [B, H, L, d] -> [B, L, H·d] */
function mergeHeads(x: Tensor): Tensor {
  const [b, h, l, d] = x.shape as [number, number, number, number];
  return ops.permute(x, [0, 2, 1, 3]).reshape([b, l, h * d]);
}

export interface AttentionConfig {
  heads: number;
  dimHead: number;
  /** Channels of the context for cross-attention (default: self-attention over queryDim). */
  contextDim?: number;
  /** Biases on to_q, to_k, to_v (diffusers: true in UNet2DModel's blocks, false in transformers). */
  qkvBias?: boolean;
}

/** Multi-head attention as diffusers' `Attention`: to_q, to_k, to_v, to_out.0; self or cross. */
export class Attention extends Module {
  readonly to_q: Linear;
  readonly to_k: Linear;
  readonly to_v: Linear;
  readonly to_out: ModuleList<Linear>;
  constructor(init: Init, readonly queryDim: number, readonly cfg: AttentionConfig) {
    super();
    const inner = cfg.heads * cfg.dimHead;
    const bias = cfg.qkvBias ?? false;
    this.to_q = this.child('to_q', new Linear(init, queryDim, inner, { bias }));
    this.to_k = this.child('to_k', new Linear(init, cfg.contextDim ?? queryDim, inner, { bias }));
    this.to_v = this.child('to_v', new Linear(init, cfg.contextDim ?? queryDim, inner, { bias }));
    this.to_out = this.child('to_out', new ModuleList<Linear>());
    this.to_out.push(new Linear(init, inner, queryDim));
  }
  /** x [B, L, queryDim], context [B, Lk, contextDim] (default x) -> [B, L, queryDim] */
  forward(x: Tensor, context?: Tensor): Tensor {
    const ctx = context ?? x;
    const h = this.cfg.heads;
    const q = splitHeads(this.to_q.forward(x), h);
    const k = splitHeads(this.to_k.forward(ctx), h);
    const v = splitHeads(this.to_v.forward(ctx), h);
    const o = ops.attention(q, k, v, { scale: 1 / Math.sqrt(this.cfg.dimHead) });
    return this.to_out.items[0]!.forward(mergeHeads(o));
  }
}

/** NCHW -> [B, H·W, C] and back. */
export function toTokens(x: Tensor): Tensor {
  const [b, c, hh, ww] = x.shape as [number, number, number, number];
  return ops.permute(x.reshape([b, c, hh * ww]), [0, 2, 1]);
}
export function fromTokens(x: Tensor, h: number, w: number): Tensor {
  const [b, , c] = x.shape as [number, number, number];
  return ops.permute(x, [0, 2, 1]).reshape([b, c, h, w]);
}

/**
 * Self-attention over the pixels of a feature map with a residual connection (diffusers' Attention
 * with group_norm and residual_connection, as in UNet2DModel's AttnDownBlock2D; the non-local block of
 * VQ-GAN).
 */
export class SpatialSelfAttention extends Module {
  readonly group_norm: GroupNorm;
  readonly attn: Attention;
  constructor(init: Init, readonly channels: number, opts: { heads?: number; groups?: number; eps?: number } = {}) {
    super();
    const heads = opts.heads ?? 1;
    if (channels % heads !== 0) throw new ShapeError('SpatialSelfAttention', `${channels} channels cannot be split into ${heads} heads`);
    this.group_norm = this.child('group_norm', new GroupNorm(init, opts.groups ?? 32, channels, opts.eps ?? 1e-5));
    // diffusers keeps these layers directly on the attention module: register them flat.
    this.attn = new Attention(init, channels, { heads, dimHead: channels / heads, qkvBias: true });
    this.child('to_q', this.attn.to_q);
    this.child('to_k', this.attn.to_k);
    this.child('to_v', this.attn.to_v);
    this.child('to_out', this.attn.to_out);
  }
  forward(x: Tensor): Tensor {
    const [, , h, w] = x.shape as [number, number, number, number];
    const t = toTokens(this.group_norm.forward(x));
    return ops.add(x, fromTokens(this.attn.forward(t), h, w));
  }
}

/**
 * The GELU of a GEGLU feed-forward: 'none' is the exact form x·Φ(x) (PyTorch's default, diffusers'
 * GEGLU), 'tanh' the tanh approximation (models made before the form was configurable used it).
 */
export type GeluApproximate = 'none' | 'tanh';

/** diffusers' GEGLU: proj to twice the width, then hidden · GELU(gate) (value first, gate second). */
export class GEGLU extends Module {
  readonly proj: Linear;
  constructor(init: Init, dim: number, inner: number, readonly approximate: GeluApproximate = 'none') {
    super();
    this.proj = this.child('proj', new Linear(init, dim, inner * 2));
  }
  forward(x: Tensor): Tensor {
    const h = this.proj.forward(x);
    const c = h.shape.length - 1;
    const half = h.shape[c]! / 2;
    const gate = ops.slice(h, half, half, c);
    return ops.mul(ops.slice(h, 0, half, c), this.approximate === 'tanh' ? ops.gelu(gate) : ops.geluErf(gate));
  }
}

/** Feed-forward as diffusers' FeedForward: ff.net.0 (GEGLU), net.1 (dropout), net.2 (Linear). */
export class FeedForward extends Module {
  readonly geglu: GEGLU;
  readonly out: Linear;
  constructor(init: Init, readonly dim: number, mult = 4, approximate: GeluApproximate = 'none') {
    super();
    const net = this.child('net', new ModuleList<Module>());
    this.geglu = net.push(new GEGLU(init, dim, dim * mult, approximate)) as GEGLU;
    net.push(new Dropout(0));
    this.out = net.push(new Linear(init, dim * mult, dim)) as Linear;
  }
  forward(x: Tensor): Tensor {
    return this.out.forward(this.geglu.forward(x));
  }
}

/** One transformer block of LDM's spatial transformer: self-attention, cross-attention, feed-forward. */
export class BasicTransformerBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn1: Attention;
  readonly norm2: LayerNorm;
  readonly attn2: Attention;
  readonly norm3: LayerNorm;
  readonly ff: FeedForward;
  constructor(init: Init, dim: number, heads: number, contextDim: number, opts: { approximate?: GeluApproximate } = {}) {
    super();
    this.norm1 = this.child('norm1', new LayerNorm(init, dim));
    this.attn1 = this.child('attn1', new Attention(init, dim, { heads, dimHead: dim / heads }));
    this.norm2 = this.child('norm2', new LayerNorm(init, dim));
    this.attn2 = this.child('attn2', new Attention(init, dim, { heads, dimHead: dim / heads, contextDim }));
    this.norm3 = this.child('norm3', new LayerNorm(init, dim));
    this.ff = this.child('ff', new FeedForward(init, dim, 4, opts.approximate));
  }
  forward(x: Tensor, context: Tensor): Tensor {
    x = ops.add(x, this.attn1.forward(this.norm1.forward(x)));
    x = ops.add(x, this.attn2.forward(this.norm2.forward(x), context));
    return ops.add(x, this.ff.forward(this.norm3.forward(x)));
  }
}

export interface SpatialTransformerOptions {
  groups?: number;
  /** Transformer blocks (diffusers' transformer_layers_per_block); 1 by default. */
  depth?: number;
  /** GEGLU's GELU form; exact ('none') by default. */
  approximate?: GeluApproximate;
  /**
   * proj_in and proj_out as linear layers on the tokens (true, the default; diffusers'
   * use_linear_projection) or as 1x1 convolutions on the feature map: the same numbers, weights
   * [C, C] or [C, C, 1, 1].
   */
  linearProjection?: boolean;
}

/**
 * LDM's spatial transformer (diffusers' Transformer2DModel): group norm (eps 1e-6, as diffusers hard-
 * codes), proj_in, transformer blocks with cross-attention to a context [B, Lk, contextDim],
 * proj_out, residual.
 */
export class SpatialTransformer extends Module {
  readonly norm: GroupNorm;
  readonly proj_in: Linear | Conv2d;
  readonly blocks: ModuleList<BasicTransformerBlock>;
  readonly proj_out: Linear | Conv2d;
  constructor(init: Init, readonly channels: number, heads: number, contextDim: number, opts: SpatialTransformerOptions = {}) {
    super();
    if (channels % heads !== 0) throw new ShapeError('SpatialTransformer', `${channels} channels cannot be split into ${heads} heads`);
    const linear = opts.linearProjection ?? true;
    const proj = () => (linear ? new Linear(init, channels, channels) : new Conv2d(init, channels, channels, 1));
    this.norm = this.child('norm', new GroupNorm(init, opts.groups ?? 32, channels, 1e-6));
    this.proj_in = this.child('proj_in', proj());
    this.blocks = this.child('transformer_blocks', new ModuleList<BasicTransformerBlock>());
    for (let i = 0; i < (opts.depth ?? 1); i++) this.blocks.push(new BasicTransformerBlock(init, channels, heads, contextDim, { approximate: opts.approximate }));
    this.proj_out = this.child('proj_out', proj());
  }
  forward(x: Tensor, context: Tensor): Tensor {
    const [, , h, w] = x.shape as [number, number, number, number];
    const n = this.norm.forward(x);
    let t = this.proj_in instanceof Conv2d ? toTokens(this.proj_in.forward(n)) : this.proj_in.forward(toTokens(n));
    for (const b of this.blocks.items) t = b.forward(t, context);
    const out = this.proj_out instanceof Conv2d ? this.proj_out.forward(fromTokens(t, h, w)) : fromTokens(this.proj_out.forward(t), h, w);
    return ops.add(x, out);
  }
}

/**
 * diffusers' ResnetBlock2D: norm1, SiLU, conv1, + time_emb_proj(SiLU(temb)) per channel, norm2, SiLU,
 * dropout, conv2, plus the input (through a 1x1 conv_shortcut when the channel count changes).
 */
export class ResBlock extends Module {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly time_emb_proj: Linear | null;
  readonly norm2: GroupNorm;
  readonly dropout: Dropout;
  readonly conv2: Conv2d;
  readonly conv_shortcut: Conv2d | null;
  constructor(init: Init, readonly inChannels: number, readonly outChannels: number, opts: { tembChannels?: number; groups?: number; eps?: number; dropout?: number } = {}) {
    super();
    const groups = opts.groups ?? 32;
    const eps = opts.eps ?? 1e-5;
    this.norm1 = this.child('norm1', new GroupNorm(init, Math.min(groups, inChannels), inChannels, eps));
    this.conv1 = this.child('conv1', new Conv2d(init, inChannels, outChannels, 3, { padding: 1 }));
    this.time_emb_proj = opts.tembChannels ? this.child('time_emb_proj', new Linear(init, opts.tembChannels, outChannels)) : null;
    this.norm2 = this.child('norm2', new GroupNorm(init, Math.min(groups, outChannels), outChannels, eps));
    this.dropout = this.child('dropout', new Dropout(opts.dropout ?? 0));
    this.conv2 = this.child('conv2', new Conv2d(init, outChannels, outChannels, 3, { padding: 1 }));
    this.conv_shortcut = inChannels !== outChannels ? this.child('conv_shortcut', new Conv2d(init, inChannels, outChannels, 1)) : null;
  }
  forward(x: Tensor, temb?: Tensor | null): Tensor {
    let h = this.conv1.forward(this.norm1.forward(x, { silu: true }));
    if (this.time_emb_proj) {
      if (!temb) throw new ShapeError('ResBlock', `this block takes a time embedding; got none for x ${fmtShape(x.shape)}`);
      const t = this.time_emb_proj.forward(ops.silu(temb));
      h = ops.add(h, t.reshape([t.shape[0]!, this.outChannels, 1, 1]));
    }
    h = this.conv2.forward(this.dropout.forward(this.norm2.forward(h, { silu: true })));
    return ops.add(this.conv_shortcut ? this.conv_shortcut.forward(x) : x, h);
  }
}

/**
 * diffusers' Downsample2D with a conv: 3x3, stride 2, padding 1; or with padding 0 (DDPM's and the VAE's
 * downsample_padding = 0), one zero row and column at the bottom and right, then the conv unpadded.
 */
export class Downsample extends Module {
  readonly conv: Conv2d;
  constructor(init: Init, channels: number, readonly padding: 0 | 1 = 1) {
    super();
    this.conv = this.child('conv', new Conv2d(init, channels, channels, 3, { stride: 2, padding }));
  }
  forward(x: Tensor): Tensor {
    return this.conv.forward(this.padding === 0 ? padBottomRight(x) : x);
  }
}

/** x [N, C, H, W] with one zero column on the right and one zero row at the bottom: [N, C, H+1, W+1]. */
export function padBottomRight(x: Tensor): Tensor {
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const zeros = (shape: number[]) => {
    const a = x.rt.alloc(shape, 'f32', 'pad');
    x.rt.fillValue(a, 0);
    return new Tensor(a);
  };
  const right = ops.concat([x, zeros([n, c, h, 1])], 3);
  return ops.concat([right, zeros([n, c, 1, w + 1])], 2);
}

/** diffusers' Upsample2D: nearest 2x, then a 3x3 conv. */
export class Upsample extends Module {
  readonly conv: Conv2d;
  constructor(init: Init, channels: number) {
    super();
    this.conv = this.child('conv', new Conv2d(init, channels, channels, 3, { padding: 1 }));
  }
  forward(x: Tensor): Tensor {
    return this.conv.forward(ops.upsample2x(x));
  }
}

/**
 * Sinusoidal embedding of (possibly fractional) timesteps t [B] -> [B, dim], as diffusers'
 * get_timestep_embedding: frequencies exp(-ln(maxPeriod)·i/(half - shift)), [cos, sin] when
 * flipSinToCos (UNet2DModel's default), else [sin, cos].
 */
export class Timesteps extends Module {
  private readonly freqs: Tensor;
  constructor(init: Init, readonly dim: number, readonly opts: { flipSinToCos?: boolean; freqShift?: number; maxPeriod?: number } = {}) {
    super();
    if (dim % 2 !== 0) throw new ShapeError('Timesteps', `dim must be even, got ${dim}`);
    const half = dim / 2;
    const shift = opts.freqShift ?? 0;
    const f = new Float32Array(half).map((_, i) => Math.exp((-Math.log(opts.maxPeriod ?? 10000) * i) / (half - shift)));
    this.freqs = init.dev.tensor(f, [1, half]);
  }
  forward(t: Tensor): Tensor {
    if (t.shape.length !== 1) throw new ShapeError('Timesteps', `t has shape ${fmtShape(t.shape)}, expected [B]`);
    const arg = ops.mul(t.reshape([t.shape[0]!, 1]), this.freqs);
    const [s, c] = [ops.sin(arg), ops.cos(arg)];
    return ops.concat(this.opts.flipSinToCos === false ? [s, c] : [c, s], 1);
  }
}

/** diffusers' TimestepEmbedding: linear_1, SiLU, linear_2. */
export class TimestepEmbedding extends Module {
  readonly linear_1: Linear;
  readonly linear_2: Linear;
  constructor(init: Init, inDim: number, dim: number) {
    super();
    this.linear_1 = this.child('linear_1', new Linear(init, inDim, dim));
    this.linear_2 = this.child('linear_2', new Linear(init, dim, dim));
  }
  forward(x: Tensor): Tensor {
    return this.linear_2.forward(ops.silu(this.linear_1.forward(x)));
  }
}
