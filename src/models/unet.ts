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
  /** Resolutions (in pixels) whose levels get attention; the middle always has it. */
  attentionResolutions: number[];
  /** Attention heads (channels are split between them). */
  attentionHeads: number;
  normGroups: number;
  dropout: number;
  /**
   * 'none'; 'class': a learned class embedding added to the time embedding; 'cross': class labels
   * become a learned context of `contextTokens` tokens attended to by cross-attention. Label
   * `numClasses` is the null class of classifier-free guidance.
   */
  conditioning: 'none' | 'class' | 'cross';
  numClasses: number;
  crossAttentionDim: number;
  contextTokens: number;
}

export const UNET_DEFAULTS: UNetConfig = {
  sampleSize: 16, inChannels: 1, outChannels: 1, blockOutChannels: [32, 64], layersPerBlock: 1,
  attentionResolutions: [8], attentionHeads: 4, normGroups: 8, dropout: 0, conditioning: 'none',
  numClasses: 0, crossAttentionDim: 64, contextTokens: 4,
};

/** Fill in defaults and check that the configuration can be built; the error names the field. */
export function resolveUNetConfig(c: Partial<UNetConfig>): UNetConfig {
  assertKnownKeys('UNet', c, Object.keys(UNET_DEFAULTS));
  const cfg = { ...UNET_DEFAULTS, ...c };
  const bad = (field: string, why: string) => new ShapeError('UNet', `config.${field} = ${String(JSON.stringify((cfg as unknown as Record<string, unknown>)[field])).slice(0, 200)}: ${why}`);
  // Configs come from files too: types are checked before anything is sized from them.
  const isInt = (v: unknown, min: number) => typeof v === 'number' && Number.isSafeInteger(v) && v >= min;
  for (const f of ['sampleSize', 'inChannels', 'outChannels', 'layersPerBlock', 'attentionHeads', 'normGroups', 'crossAttentionDim', 'contextTokens'] as const) {
    if (!isInt(cfg[f], 1)) throw bad(f, 'must be an integer >= 1');
  }
  if (!isInt(cfg.numClasses, 0)) throw bad('numClasses', 'must be an integer >= 0');
  if (!(typeof cfg.dropout === 'number' && cfg.dropout >= 0 && cfg.dropout < 1)) throw bad('dropout', 'must be a number in [0, 1)');
  if (!Array.isArray(cfg.blockOutChannels) || !cfg.blockOutChannels.every((v) => isInt(v, 1))) throw bad('blockOutChannels', 'must be a list of integers >= 1');
  if (!Array.isArray(cfg.attentionResolutions) || !cfg.attentionResolutions.every((v) => isInt(v, 1))) throw bad('attentionResolutions', 'must be a list of integers >= 1');
  if (!cfg.blockOutChannels.length) throw bad('blockOutChannels', 'needs at least one level');
  for (const ch of cfg.blockOutChannels) {
    if (ch % cfg.normGroups !== 0) throw bad('normGroups', `must divide every level's channels (${cfg.blockOutChannels.join(', ')})`);
    if (ch % cfg.attentionHeads !== 0) throw bad('attentionHeads', `must divide every level's channels (${cfg.blockOutChannels.join(', ')})`);
  }
  if (cfg.sampleSize % 2 ** (cfg.blockOutChannels.length - 1) !== 0) throw bad('sampleSize', `must be divisible by 2^${cfg.blockOutChannels.length - 1} for ${cfg.blockOutChannels.length} levels`);
  if (!['none', 'class', 'cross'].includes(cfg.conditioning)) throw bad('conditioning', "allowed values: 'none', 'class', 'cross'");
  if (cfg.conditioning !== 'none' && !(cfg.numClasses >= 1)) throw bad('numClasses', 'class conditioning needs at least one class');
  return cfg;
}

class DownBlock extends Module {
  readonly resnets = this.child('resnets', new ModuleList<ResBlock>());
  readonly attentions = new ModuleList<SpatialSelfAttention | SpatialTransformer>();
  readonly downsamplers = new ModuleList<Downsample>();
  constructor(init: Init, cfg: UNetConfig, inCh: number, outCh: number, temb: number, attn: boolean, last: boolean) {
    super();
    if (attn) this.child('attentions', this.attentions);
    for (let j = 0; j < cfg.layersPerBlock; j++) {
      this.resnets.push(new ResBlock(init, j === 0 ? inCh : outCh, outCh, { tembChannels: temb, groups: cfg.normGroups, dropout: cfg.dropout }));
      if (attn) this.attentions.push(makeAttention(init, cfg, outCh));
    }
    if (!last) this.child('downsamplers', this.downsamplers).push(new Downsample(init, outCh));
  }
}

class UpBlock extends Module {
  readonly resnets = this.child('resnets', new ModuleList<ResBlock>());
  readonly attentions = new ModuleList<SpatialSelfAttention | SpatialTransformer>();
  readonly upsamplers = new ModuleList<Upsample>();
  constructor(init: Init, cfg: UNetConfig, prevCh: number, outCh: number, skipChs: number[], temb: number, attn: boolean, last: boolean) {
    super();
    if (attn) this.child('attentions', this.attentions);
    skipChs.forEach((skip, j) => {
      this.resnets.push(new ResBlock(init, (j === 0 ? prevCh : outCh) + skip, outCh, { tembChannels: temb, groups: cfg.normGroups, dropout: cfg.dropout }));
      if (attn) this.attentions.push(makeAttention(init, cfg, outCh));
    });
    if (!last) this.child('upsamplers', this.upsamplers).push(new Upsample(init, outCh));
  }
}

class MidBlock extends Module {
  readonly resnets = this.child('resnets', new ModuleList<ResBlock>());
  readonly attentions = this.child('attentions', new ModuleList<SpatialSelfAttention | SpatialTransformer>());
  constructor(init: Init, cfg: UNetConfig, ch: number, temb: number) {
    super();
    this.resnets.push(new ResBlock(init, ch, ch, { tembChannels: temb, groups: cfg.normGroups, dropout: cfg.dropout }));
    this.attentions.push(makeAttention(init, cfg, ch));
    this.resnets.push(new ResBlock(init, ch, ch, { tembChannels: temb, groups: cfg.normGroups, dropout: cfg.dropout }));
  }
}

function makeAttention(init: Init, cfg: UNetConfig, ch: number): SpatialSelfAttention | SpatialTransformer {
  return cfg.conditioning === 'cross'
    ? new SpatialTransformer(init, ch, cfg.attentionHeads, cfg.crossAttentionDim, { groups: cfg.normGroups })
    : new SpatialSelfAttention(init, ch, { heads: cfg.attentionHeads, groups: cfg.normGroups });
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
    this.time_proj = this.child('time_proj', new Timesteps(init, ch[0]!));
    this.time_embedding = this.child('time_embedding', new TimestepEmbedding(init, ch[0]!, temb));
    if (cfg.conditioning === 'class') this.class_embedding = this.child('class_embedding', new Embedding(init, cfg.numClasses + 1, temb));
    if (cfg.conditioning === 'cross') {
      this.class_embedding = this.child('class_embedding', new Embedding(init, cfg.numClasses + 1, cfg.contextTokens * cfg.crossAttentionDim));
    }
    this.child('down_blocks', this.down_blocks);
    const skips = [ch[0]!];
    let res = cfg.sampleSize;
    ch.forEach((out, i) => {
      const last = i === ch.length - 1;
      this.down_blocks.push(new DownBlock(init, cfg, i === 0 ? ch[0]! : ch[i - 1]!, out, temb, cfg.attentionResolutions.includes(res), last));
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
      this.up_blocks.push(new UpBlock(init, cfg, prev, out, mine, temb, cfg.attentionResolutions.includes(res), last));
      prev = out;
      if (!last) res *= 2;
    });
    this.conv_norm_out = this.child('conv_norm_out', new GroupNorm(init, cfg.normGroups, ch[0]!));
    this.conv_out = this.child('conv_out', new Conv2d(init, ch[0]!, cfg.outChannels, 3, { padding: 1 }));
  }

  /**
   * The network's output (e.g. the predicted noise) for x [B, inChannels, S, S] at timesteps t [B]
   * (f32, any real value), with class labels [B] (i32; `numClasses` = null class) when conditioned.
   */
  forward(x: Tensor, t: Tensor, labels?: Tensor | null): Tensor {
    const cfg = this.config;
    const [b, c, hh, ww] = x.shape as [number, number, number, number];
    if (x.shape.length !== 4 || c !== cfg.inChannels || hh !== cfg.sampleSize || ww !== cfg.sampleSize) {
      throw new ShapeError('UNet', `x has shape ${fmtShape(x.shape)}, expected [B, ${cfg.inChannels}, ${cfg.sampleSize}, ${cfg.sampleSize}]`);
    }
    if (t.shape.length !== 1 || t.shape[0] !== b || t.dtype !== 'f32') throw new ShapeError('UNet', `t has shape ${fmtShape(t.shape)} (${t.dtype}), expected f32 [${b}]`);
    let temb = this.time_embedding.forward(this.time_proj.forward(t));
    let context: Tensor | null = null;
    if (cfg.conditioning !== 'none') {
      if (!labels || labels.dtype !== 'i32' || labels.shape.length !== 1 || labels.shape[0] !== b) {
        throw new ShapeError('UNet', `a class-conditional model needs labels, an i32 tensor [${b}]; got ${labels ? `${labels.dtype} ${fmtShape(labels.shape)}` : 'none'}`);
      }
      const e = this.class_embedding!.forward(labels);
      if (cfg.conditioning === 'class') temb = ops.add(temb, e);
      else context = e.reshape([b, cfg.contextTokens, cfg.crossAttentionDim]);
    }
    let h = this.conv_in.forward(x);
    const skips = [h];
    for (const blk of this.down_blocks.items) {
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
    }
    const mid = this.mid_block;
    h = mid.resnets.items[0]!.forward(h, temb);
    h = runAttention(mid.attentions.items[0]!, h, context);
    h = mid.resnets.items[1]!.forward(h, temb);
    for (const blk of this.up_blocks.items) {
      blk.resnets.items.forEach((r, j) => {
        h = r.forward(ops.concat([h, skips.pop()!], 1), temb);
        const a = blk.attentions.items[j];
        if (a) h = runAttention(a, h, context);
      });
      for (const u of blk.upsamplers.items) h = u.forward(h);
    }
    return this.conv_out.forward(this.conv_norm_out.forward(h, { silu: true }));
  }
}
