import { Tensor } from '../graph/tensor.js';
import * as ops from '../graph/ops/index.js';
import { Init, Module, ModuleList } from '../nn/module.js';
import { Conv2d, Embedding, GroupNorm } from '../nn/layers.js';
import { Downsample, ResBlock, SpatialSelfAttention, SpatialTransformer, TimestepEmbedding, Timesteps, Upsample } from '../nn/blocks.js';
import { ShapeError, assertKnownKeys, fmtShape } from '../runtime/errors.js';

/**
 * A U-Net as in DDPM / improved DDPM / LDM, configured by a plain object. Parameter names follow
 * diffusers' UNet2DModel (conditioning 'none' or 'class') and UNet2DConditionModel ('cross').
 */
export interface UNetConfig {
  /** Image side in pixels (square) and channels in and out. */
  sampleSize: number;
  inChannels: number;
  outChannels: number;
  /** Channels of each level: base channels times the channel multipliers, e.g. [32, 64, 64]. */
  blockOutChannels: number[];
  /** Residual blocks per level on the way down (one more on the way up, as in diffusers). */
  layersPerBlock: number;
  /** Resolutions (in pixels) whose levels get attention; the middle has it unless midAttention is false. */
  attentionResolutions: number[];
  /**
   * Attention heads (channels are split between them): one number for every block, or one per level
   * (the middle block takes the last), as diffusers' UNet2DConditionModel reads attention_head_dim.
   */
  attentionHeads: number | number[];
  /**
   * Channels per head instead (diffusers' UNet2DModel reads attention_head_dim so): each block then has
   * channels / attentionHeadDim heads, and attentionHeads is not used. null: attentionHeads decides.
   */
  attentionHeadDim: number | null;
  /** Self-attention (or a transformer) in the middle block (diffusers' add_attention). */
  midAttention: boolean;
  normGroups: number;
  /**
   * eps of the group norms of the residual blocks, the self-attention blocks and conv_norm_out
   * (diffusers' norm_eps; DDPM's checkpoints use 1e-6). A transformer's input norm keeps 1e-6 and its
   * layer norms 1e-5 whatever this is, as in diffusers.
   */
  normEps: number;
  /**
   * The downsampling convs' padding: 1, symmetric; 0, one zero row and column at the bottom and right
   * (diffusers' downsample_padding 0, which DDPM's checkpoints use).
   */
  downsamplePadding: 0 | 1;
  /** Timestep embedding: [cos, sin] when true, else [sin, cos]; frequencies exp(-ln(1e4)·i/(half − freqShift)). */
  flipSinToCos: boolean;
  freqShift: number;
  /**
   * The GELU of the transformers' GEGLU: 'none', exact (diffusers'); 'tanh', the approximation. A
   * checkpoint that does not record it was made with 'tanh' (see unetConfigFromCheckpoint).
   */
  geluApproximate: 'none' | 'tanh';
  /** Transformers' proj_in/proj_out: linear layers (true) or 1x1 convolutions (diffusers' use_linear_projection). */
  useLinearProjection: boolean;
  /** Transformer blocks in each transformer (diffusers' transformer_layers_per_block). */
  transformerDepth: number;
  dropout: number;
  /**
   * 'none'; 'class': a learned class embedding added to the time embedding; 'cross': class labels
   * become a learned context of `contextTokens` tokens attended to by cross-attention; 'context':
   * cross-attention to a context [B, L, crossAttentionDim] given with each call (diffusers'
   * encoder_hidden_states, e.g. a text encoder's output). With nullClass, label `numClasses` is the
   * null class of classifier-free guidance.
   */
  conditioning: 'none' | 'class' | 'cross' | 'context';
  numClasses: number;
  /** The class table has a row for the null class (label numClasses); models from diffusers have none. */
  nullClass: boolean;
  crossAttentionDim: number;
  contextTokens: number;
}

export const UNET_DEFAULTS: UNetConfig = {
  sampleSize: 16, inChannels: 1, outChannels: 1, blockOutChannels: [32, 64], layersPerBlock: 1,
  attentionResolutions: [8], attentionHeads: 4, attentionHeadDim: null, midAttention: true, normGroups: 8, normEps: 1e-5,
  downsamplePadding: 1, flipSinToCos: true, freqShift: 0, geluApproximate: 'none', useLinearProjection: true, transformerDepth: 1,
  dropout: 0, conditioning: 'none', numClasses: 0, nullClass: true, crossAttentionDim: 64, contextTokens: 4,
};

/**
 * What a stored config leaves out means what the engine did before the field existed: checkpoints
 * written before geluApproximate was recorded used the tanh GELU, so they keep it and sample bit for
 * bit as they did. Use this, not resolveUNetConfig, on configs read from files.
 */
export function unetConfigFromCheckpoint(saved: Partial<UNetConfig>): UNetConfig {
  return resolveUNetConfig({ geluApproximate: 'tanh', ...saved });
}

/** The heads of an attention block with `ch` channels at level `level` (the middle: the last level). */
export function headsAt(cfg: UNetConfig, level: number, ch: number): number {
  if (cfg.attentionHeadDim !== null) return ch / cfg.attentionHeadDim;
  return Array.isArray(cfg.attentionHeads) ? cfg.attentionHeads[level]! : cfg.attentionHeads;
}

/** Fill in defaults and check that the configuration can be built; the error names the field. */
export function resolveUNetConfig(c: Partial<UNetConfig>): UNetConfig {
  assertKnownKeys('UNet', c, Object.keys(UNET_DEFAULTS));
  const cfg = { ...UNET_DEFAULTS, ...c };
  const bad = (field: string, why: string) => new ShapeError('UNet', `config.${field} = ${String(JSON.stringify((cfg as unknown as Record<string, unknown>)[field])).slice(0, 200)}: ${why}`);
  // Configs come from files too: types are checked before anything is sized from them.
  const isInt = (v: unknown, min: number) => typeof v === 'number' && Number.isSafeInteger(v) && v >= min;
  for (const f of ['sampleSize', 'inChannels', 'outChannels', 'layersPerBlock', 'normGroups', 'crossAttentionDim', 'contextTokens', 'transformerDepth'] as const) {
    if (!isInt(cfg[f], 1)) throw bad(f, 'must be an integer >= 1');
  }
  const heads = cfg.attentionHeads;
  if (!(isInt(heads, 1) || (Array.isArray(heads) && heads.every((h) => isInt(h, 1))))) throw bad('attentionHeads', 'must be an integer >= 1, or a list of them (one per level)');
  if (cfg.attentionHeadDim !== null && !isInt(cfg.attentionHeadDim, 1)) throw bad('attentionHeadDim', 'must be an integer >= 1, or null');
  if (!(typeof cfg.freqShift === 'number' && Number.isFinite(cfg.freqShift))) throw bad('freqShift', 'must be a number');
  for (const f of ['midAttention', 'flipSinToCos', 'useLinearProjection', 'nullClass'] as const) {
    if (typeof cfg[f] !== 'boolean') throw bad(f, 'allowed values: true, false');
  }
  if (!isInt(cfg.numClasses, 0)) throw bad('numClasses', 'must be an integer >= 0');
  if (!(typeof cfg.dropout === 'number' && cfg.dropout >= 0 && cfg.dropout < 1)) throw bad('dropout', 'must be a number in [0, 1)');
  if (!Array.isArray(cfg.blockOutChannels) || !cfg.blockOutChannels.every((v) => isInt(v, 1))) throw bad('blockOutChannels', 'must be a list of integers >= 1');
  if (!Array.isArray(cfg.attentionResolutions) || !cfg.attentionResolutions.every((v) => isInt(v, 1))) throw bad('attentionResolutions', 'must be a list of integers >= 1');
  if (!cfg.blockOutChannels.length) throw bad('blockOutChannels', 'needs at least one level');
  const levels = cfg.blockOutChannels.length;
  if (Array.isArray(cfg.attentionHeads) && cfg.attentionHeads.length !== levels) throw bad('attentionHeads', `a list needs one entry per level (${levels})`);
  const field = cfg.attentionHeadDim !== null ? 'attentionHeadDim' : 'attentionHeads';
  cfg.blockOutChannels.forEach((ch, i) => {
    if (ch % cfg.normGroups !== 0) throw bad('normGroups', `must divide every level's channels (${cfg.blockOutChannels.join(', ')})`);
    const heads = headsAt(cfg, i, ch);
    if (!(Number.isInteger(heads) && heads >= 1 && ch % heads === 0)) throw bad(field, `must divide every level's channels (${cfg.blockOutChannels.join(', ')})`);
  });
  if (cfg.sampleSize % 2 ** (levels - 1) !== 0) throw bad('sampleSize', `must be divisible by 2^${levels - 1} for ${levels} levels`);
  if (!['none', 'class', 'cross', 'context'].includes(cfg.conditioning)) throw bad('conditioning', "allowed values: 'none', 'class', 'cross', 'context'");
  if ((cfg.conditioning === 'class' || cfg.conditioning === 'cross') && !(cfg.numClasses >= 1)) throw bad('numClasses', 'class conditioning needs at least one class');
  if (!(typeof cfg.normEps === 'number' && cfg.normEps > 0)) throw bad('normEps', 'must be a number > 0');
  if (cfg.downsamplePadding !== 0 && cfg.downsamplePadding !== 1) throw bad('downsamplePadding', 'allowed values: 0, 1');
  if (cfg.geluApproximate !== 'none' && cfg.geluApproximate !== 'tanh') throw bad('geluApproximate', "allowed values: 'none', 'tanh'");
  return cfg;
}

class DownBlock extends Module {
  readonly resnets = this.child('resnets', new ModuleList<ResBlock>());
  readonly attentions = new ModuleList<SpatialSelfAttention | SpatialTransformer>();
  readonly downsamplers = new ModuleList<Downsample>();
  constructor(init: Init, cfg: UNetConfig, level: number, inCh: number, outCh: number, temb: number, attn: boolean, last: boolean) {
    super();
    if (attn) this.child('attentions', this.attentions);
    for (let j = 0; j < cfg.layersPerBlock; j++) {
      this.resnets.push(resBlock(init, cfg, j === 0 ? inCh : outCh, outCh, temb));
      if (attn) this.attentions.push(makeAttention(init, cfg, level, outCh));
    }
    if (!last) this.child('downsamplers', this.downsamplers).push(new Downsample(init, outCh, cfg.downsamplePadding));
  }
}

class UpBlock extends Module {
  readonly resnets = this.child('resnets', new ModuleList<ResBlock>());
  readonly attentions = new ModuleList<SpatialSelfAttention | SpatialTransformer>();
  readonly upsamplers = new ModuleList<Upsample>();
  constructor(init: Init, cfg: UNetConfig, level: number, prevCh: number, outCh: number, skipChs: number[], temb: number, attn: boolean, last: boolean) {
    super();
    if (attn) this.child('attentions', this.attentions);
    skipChs.forEach((skip, j) => {
      this.resnets.push(resBlock(init, cfg, (j === 0 ? prevCh : outCh) + skip, outCh, temb));
      if (attn) this.attentions.push(makeAttention(init, cfg, level, outCh));
    });
    if (!last) this.child('upsamplers', this.upsamplers).push(new Upsample(init, outCh));
  }
}

class MidBlock extends Module {
  readonly resnets = this.child('resnets', new ModuleList<ResBlock>());
  readonly attentions = new ModuleList<SpatialSelfAttention | SpatialTransformer>();
  constructor(init: Init, cfg: UNetConfig, ch: number, temb: number) {
    super();
    if (cfg.midAttention) this.child('attentions', this.attentions);
    this.resnets.push(resBlock(init, cfg, ch, ch, temb));
    if (cfg.midAttention) this.attentions.push(makeAttention(init, cfg, cfg.blockOutChannels.length - 1, ch));
    this.resnets.push(resBlock(init, cfg, ch, ch, temb));
  }
}

function resBlock(init: Init, cfg: UNetConfig, inCh: number, outCh: number, temb: number): ResBlock {
  return new ResBlock(init, inCh, outCh, { tembChannels: temb, groups: cfg.normGroups, eps: cfg.normEps, dropout: cfg.dropout });
}

/** Transformers when the model attends to a context, self-attention blocks otherwise. */
function usesContext(cfg: UNetConfig): boolean {
  return cfg.conditioning === 'cross' || cfg.conditioning === 'context';
}

function makeAttention(init: Init, cfg: UNetConfig, level: number, ch: number): SpatialSelfAttention | SpatialTransformer {
  const heads = headsAt(cfg, level, ch);
  return usesContext(cfg)
    ? new SpatialTransformer(init, ch, heads, cfg.crossAttentionDim, { groups: cfg.normGroups, depth: cfg.transformerDepth, approximate: cfg.geluApproximate, linearProjection: cfg.useLinearProjection })
    : new SpatialSelfAttention(init, ch, { heads, groups: cfg.normGroups, eps: cfg.normEps });
}

function runAttention(a: SpatialSelfAttention | SpatialTransformer, h: Tensor, context: Tensor | null): Tensor {
  return a instanceof SpatialTransformer ? a.forward(h, context!) : a.forward(h);
}

export class UNet extends Module {
  readonly config: UNetConfig;
  readonly conv_in: Conv2d;
  readonly time_proj: Timesteps;
  readonly time_embedding: TimestepEmbedding;
  readonly class_embedding: Embedding | null = null;
  readonly down_blocks = new ModuleList<DownBlock>();
  readonly mid_block: MidBlock;
  readonly up_blocks = new ModuleList<UpBlock>();
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  constructor(init: Init, config: Partial<UNetConfig>) {
    super();
    const cfg = (this.config = resolveUNetConfig(config));
    const ch = cfg.blockOutChannels;
    const temb = ch[0]! * 4;
    this.conv_in = this.child('conv_in', new Conv2d(init, cfg.inChannels, ch[0]!, 3, { padding: 1 }));
    this.time_proj = this.child('time_proj', new Timesteps(init, ch[0]!, { flipSinToCos: cfg.flipSinToCos, freqShift: cfg.freqShift }));
    this.time_embedding = this.child('time_embedding', new TimestepEmbedding(init, ch[0]!, temb));
    const rows = cfg.numClasses + (cfg.nullClass ? 1 : 0);
    if (cfg.conditioning === 'class') this.class_embedding = this.child('class_embedding', new Embedding(init, rows, temb));
    if (cfg.conditioning === 'cross') {
      this.class_embedding = this.child('class_embedding', new Embedding(init, rows, cfg.contextTokens * cfg.crossAttentionDim));
    }
    this.child('down_blocks', this.down_blocks);
    const skips = [ch[0]!];
    let res = cfg.sampleSize;
    ch.forEach((out, i) => {
      const last = i === ch.length - 1;
      this.down_blocks.push(new DownBlock(init, cfg, i, i === 0 ? ch[0]! : ch[i - 1]!, out, temb, cfg.attentionResolutions.includes(res), last));
      for (let j = 0; j < cfg.layersPerBlock; j++) skips.push(out);
      if (!last) {
        skips.push(out);
        res /= 2;
      }
    });
    this.mid_block = this.child('mid_block', new MidBlock(init, cfg, ch[ch.length - 1]!, temb));
    this.child('up_blocks', this.up_blocks);
    const rev = [...ch].reverse();
    let prev = rev[0]!;
    rev.forEach((out, i) => {
      const last = i === rev.length - 1;
      const mine = skips.splice(skips.length - (cfg.layersPerBlock + 1), cfg.layersPerBlock + 1).reverse();
      this.up_blocks.push(new UpBlock(init, cfg, ch.length - 1 - i, prev, out, mine, temb, cfg.attentionResolutions.includes(res), last));
      prev = out;
      if (!last) res *= 2;
    });
    this.conv_norm_out = this.child('conv_norm_out', new GroupNorm(init, cfg.normGroups, ch[0]!, cfg.normEps));
    this.conv_out = this.child('conv_out', new Conv2d(init, ch[0]!, cfg.outChannels, 3, { padding: 1 }));
  }

  /**
   * The network's output (e.g. the predicted noise) for x [B, inChannels, S, S] at timesteps t [B]
   * (f32, any real value), with class labels [B] (i32; `numClasses` = null class) when class-
   * conditioned, or a context [B, L, crossAttentionDim] when conditioning is 'context'.
   */
  forward(x: Tensor, t: Tensor, labels?: Tensor | null, ctx?: Tensor | null): Tensor {
    const cfg = this.config;
    const [b, c, hh, ww] = x.shape as [number, number, number, number];
    if (x.shape.length !== 4 || c !== cfg.inChannels || hh !== cfg.sampleSize || ww !== cfg.sampleSize) {
      throw new ShapeError('UNet', `x has shape ${fmtShape(x.shape)}, expected [B, ${cfg.inChannels}, ${cfg.sampleSize}, ${cfg.sampleSize}]`);
    }
    if (t.shape.length !== 1 || t.shape[0] !== b || t.dtype !== 'f32') throw new ShapeError('UNet', `t has shape ${fmtShape(t.shape)} (${t.dtype}), expected f32 [${b}]`);
    let temb = this.time_embedding.forward(this.time_proj.forward(t));
    let context: Tensor | null = null;
    if (cfg.conditioning === 'context') {
      if (!ctx || ctx.dtype !== 'f32' || ctx.shape.length !== 3 || ctx.shape[0] !== b || ctx.shape[2] !== cfg.crossAttentionDim) {
        throw new ShapeError('UNet', `this model attends to a context: give an f32 tensor [${b}, L, ${cfg.crossAttentionDim}]; got ${ctx ? `${ctx.dtype} ${fmtShape(ctx.shape)}` : 'none'}`);
      }
      context = ctx;
    } else if (cfg.conditioning !== 'none') {
      if (!labels || labels.dtype !== 'i32' || labels.shape.length !== 1 || labels.shape[0] !== b) {
        throw new ShapeError('UNet', `a class-conditional model needs labels, an i32 tensor [${b}]; got ${labels ? `${labels.dtype} ${fmtShape(labels.shape)}` : 'none'}`);
      }
      const e = this.class_embedding!.forward(labels);
      if (cfg.conditioning === 'class') temb = ops.add(temb, e);
      else context = e.reshape([b, cfg.contextTokens, cfg.crossAttentionDim]);
    }
    return this.trunk(x, temb, context);
  }

  /**
   * The network from the time embedding on. With `blocks`, the output of each top-level block is put
   * there under diffusers' module name (conv_in, down_blocks.i, mid_block, up_blocks.i, and
   * conv_norm_out before its SiLU), to find where a port first differs from a reference.
   */
  trunk(x: Tensor, temb: Tensor, context: Tensor | null, blocks?: Map<string, Tensor>): Tensor {
    let h = this.conv_in.forward(x);
    blocks?.set('conv_in', h);
    const skips = [h];
    this.down_blocks.items.forEach((blk, i) => {
      blk.resnets.items.forEach((r, j) => {
        h = r.forward(h, temb);
        const a = blk.attentions.items[j];
        if (a) h = runAttention(a, h, context);
        skips.push(h);
      });
      for (const d of blk.downsamplers.items) {
        h = d.forward(h);
        skips.push(h);
      }
      blocks?.set(`down_blocks.${i}`, h);
    });
    const mid = this.mid_block;
    h = mid.resnets.items[0]!.forward(h, temb);
    for (const a of mid.attentions.items) h = runAttention(a, h, context);
    h = mid.resnets.items[1]!.forward(h, temb);
    blocks?.set('mid_block', h);
    this.up_blocks.items.forEach((blk, i) => {
      blk.resnets.items.forEach((r, j) => {
        h = r.forward(ops.concat([h, skips.pop()!], 1), temb);
        const a = blk.attentions.items[j];
        if (a) h = runAttention(a, h, context);
      });
      for (const u of blk.upsamplers.items) h = u.forward(h);
      blocks?.set(`up_blocks.${i}`, h);
    });
    blocks?.set('conv_norm_out', this.conv_norm_out.forward(h));
    return this.conv_out.forward(this.conv_norm_out.forward(h, { silu: true }));
  }
}
