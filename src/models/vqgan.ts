import { Tensor } from '../graph/tensor.js';
import * as ops from '../graph/ops/index.js';
import { Init, Module, ModuleList } from '../nn/module.js';
import { Conv2d, GroupNorm } from '../nn/layers.js';
import { Downsample, ResBlock, SpatialSelfAttention, Upsample } from '../nn/blocks.js';
import { ShapeError, assertKnownKeys, fmtShape } from '../runtime/errors.js';
import { MAX_CODE_DIM } from '../../kernels/codebook.js';
import { QuantizeResult, VectorQuantizer } from './quantizer.js';

/**
 * A VQ-GAN autoencoder (Esser et al., 2021; the first stage of LDM), configured by a plain object.
 * Parameter names follow diffusers' VQModel, so its safetensors load by name.
 */
export interface VQGANConfig {
  /** Image channels in and out. */
  inChannels: number;
  outChannels: number;
  /**
   * Channels of each resolution level (base channels times the channel multipliers). L levels
   * downsample L − 1 times: f = 2^(L−1), so 3 levels give f = 4 and 4 levels f = 8.
   */
  blockOutChannels: number[];
  /** Optional check: the downsampling factor the levels must give (4 or 8 for LDM's first stages). */
  downsampleFactor?: number;
  /** Residual blocks per level in the encoder (the decoder has one more, as in diffusers). */
  layersPerBlock: number;
  /** Channels of the encoder's output and the decoder's input (diffusers' latent_channels). */
  latentChannels: number;
  /** Codebook: K codes of length D (vq_embed_dim; quant_conv maps latentChannels to D). */
  numEmbeddings: number;
  embedDim: number;
  normGroups: number;
  /** The non-local (self-attention) block in the middle of encoder and decoder, at the lowest resolution. */
  midAttention: boolean;
  /** Commitment weight β. */
  beta: number;
  /** Codebook learning: 'gradient' (codebook loss) or 'ema' (moving averages, decay and Laplace ε). */
  codebookUpdate: 'gradient' | 'ema';
  emaDecay: number;
  emaEpsilon: number;
  /** Restart codes unused for this many steps from random encoder outputs; 0: off. */
  restartAfter: number;
}

export const VQGAN_DEFAULTS: VQGANConfig = {
  inChannels: 3, outChannels: 3, blockOutChannels: [32, 64, 64], layersPerBlock: 1, latentChannels: 4,
  numEmbeddings: 1024, embedDim: 4, normGroups: 8, midAttention: true, beta: 0.25,
  codebookUpdate: 'gradient', emaDecay: 0.99, emaEpsilon: 1e-5, restartAfter: 0,
};

const FACTORS = [1, 2, 4, 8, 16];

/** Fill in defaults and check that the configuration can be built; errors name the field and what it allows. */
export function resolveVQGANConfig(c: Partial<VQGANConfig>): VQGANConfig {
  assertKnownKeys('VQGAN', c, [...Object.keys(VQGAN_DEFAULTS), 'downsampleFactor']);
  const cfg: VQGANConfig = { ...VQGAN_DEFAULTS, ...c };
  if (c.embedDim === undefined && c.latentChannels !== undefined) cfg.embedDim = c.latentChannels;
  const bad = (field: string, why: string) => new ShapeError('VQGAN', `config.${field} = ${JSON.stringify((cfg as unknown as Record<string, unknown>)[field])}: ${why}`);
  const posInt = (field: keyof VQGANConfig, min = 1) => {
    const v = cfg[field];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw bad(field, `must be an integer >= ${min}`);
  };
  const levels = cfg.blockOutChannels;
  if (!Array.isArray(levels) || levels.length < 1 || levels.length > FACTORS.length) {
    throw bad('blockOutChannels', `needs 1 to ${FACTORS.length} levels (f = 2^(levels-1): 3 levels for f = 4, 4 levels for f = 8)`);
  }
  for (const ch of levels) {
    if (!Number.isInteger(ch) || ch < 1) throw bad('blockOutChannels', 'every level needs a positive integer number of channels');
    if (ch % cfg.normGroups !== 0) throw bad('normGroups', `must divide every level's channels (${levels.join(', ')})`);
  }
  const f = 2 ** (levels.length - 1);
  if (cfg.downsampleFactor !== undefined) {
    if (!FACTORS.includes(cfg.downsampleFactor)) throw bad('downsampleFactor', `allowed values: ${FACTORS.join(', ')} (4 and 8 are LDM's first stages)`);
    if (cfg.downsampleFactor !== f) {
      const want = Math.log2(cfg.downsampleFactor) + 1;
      throw bad('downsampleFactor', `blockOutChannels has ${levels.length} levels, which give f = ${f}; f = ${cfg.downsampleFactor} needs ${want} levels (f = 2^(levels-1): 3 levels for f = 4, 4 for f = 8)`);
    }
  }
  posInt('inChannels');
  posInt('outChannels');
  posInt('layersPerBlock');
  posInt('latentChannels');
  posInt('numEmbeddings', 2);
  posInt('embedDim');
  posInt('normGroups');
  posInt('restartAfter', 0);
  if (cfg.embedDim > MAX_CODE_DIM) throw bad('embedDim', `codes longer than ${MAX_CODE_DIM} are not supported by codebookLookup`);
  if (!(Number.isFinite(cfg.beta) && cfg.beta >= 0)) throw bad('beta', 'must be a finite number >= 0');
  if (!['gradient', 'ema'].includes(cfg.codebookUpdate)) throw bad('codebookUpdate', "allowed values: 'gradient', 'ema'");
  if (!(cfg.emaDecay > 0 && cfg.emaDecay < 1)) throw bad('emaDecay', 'must be in (0, 1), e.g. 0.99');
  if (!(cfg.emaEpsilon > 0)) throw bad('emaEpsilon', 'must be > 0, e.g. 1e-5');
  if (typeof cfg.midAttention !== 'boolean') throw bad('midAttention', 'allowed values: true, false');
  return cfg;
}

const EPS = 1e-6; // diffusers' VQModel: resnet_eps and the norms' eps

class DownEncoderBlock extends Module {
  readonly resnets = this.child('resnets', new ModuleList<ResBlock>());
  readonly downsamplers = new ModuleList<Downsample>();
  constructor(init: Init, cfg: VQGANConfig, inCh: number, outCh: number, last: boolean) {
    super();
    for (let j = 0; j < cfg.layersPerBlock; j++) this.resnets.push(new ResBlock(init, j === 0 ? inCh : outCh, outCh, { groups: cfg.normGroups, eps: EPS }));
    // diffusers' vae.Encoder: downsample_padding 0, the asymmetric pad (taming's windows, so its weights carry over).
    if (!last) this.child('downsamplers', this.downsamplers).push(new Downsample(init, outCh, 0));
  }
  forward(h: Tensor): Tensor {
    for (const r of this.resnets.items) h = r.forward(h);
    for (const d of this.downsamplers.items) h = d.forward(h);
    return h;
  }
}

class UpDecoderBlock extends Module {
  readonly resnets = this.child('resnets', new ModuleList<ResBlock>());
  readonly upsamplers = new ModuleList<Upsample>();
  constructor(init: Init, cfg: VQGANConfig, inCh: number, outCh: number, last: boolean) {
    super();
    for (let j = 0; j <= cfg.layersPerBlock; j++) this.resnets.push(new ResBlock(init, j === 0 ? inCh : outCh, outCh, { groups: cfg.normGroups, eps: EPS }));
    if (!last) this.child('upsamplers', this.upsamplers).push(new Upsample(init, outCh));
  }
  forward(h: Tensor): Tensor {
    for (const r of this.resnets.items) h = r.forward(h);
    for (const u of this.upsamplers.items) h = u.forward(h);
    return h;
  }
}

/** diffusers' UNetMidBlock2D without a time embedding: resnet, self-attention (one head), resnet. */
class MidBlock extends Module {
  readonly resnets = this.child('resnets', new ModuleList<ResBlock>());
  readonly attentions = new ModuleList<SpatialSelfAttention>();
  constructor(init: Init, cfg: VQGANConfig, ch: number) {
    super();
    this.resnets.push(new ResBlock(init, ch, ch, { groups: cfg.normGroups, eps: EPS }));
    if (cfg.midAttention) this.child('attentions', this.attentions).push(new SpatialSelfAttention(init, ch, { heads: 1, groups: cfg.normGroups, eps: EPS }));
    this.resnets.push(new ResBlock(init, ch, ch, { groups: cfg.normGroups, eps: EPS }));
  }
  forward(h: Tensor): Tensor {
    h = this.resnets.items[0]!.forward(h);
    for (const a of this.attentions.items) h = a.forward(h);
    return this.resnets.items[1]!.forward(h);
  }
}

/** diffusers' vae.Encoder: conv_in, down_blocks, mid_block, conv_norm_out + SiLU, conv_out. */
export class Encoder extends Module {
  readonly conv_in: Conv2d;
  readonly down_blocks = new ModuleList<DownEncoderBlock>();
  readonly mid_block: MidBlock;
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;
  constructor(init: Init, cfg: VQGANConfig) {
    super();
    const ch = cfg.blockOutChannels;
    this.conv_in = this.child('conv_in', new Conv2d(init, cfg.inChannels, ch[0]!, 3, { padding: 1 }));
    this.child('down_blocks', this.down_blocks);
    ch.forEach((out, i) => this.down_blocks.push(new DownEncoderBlock(init, cfg, i === 0 ? ch[0]! : ch[i - 1]!, out, i === ch.length - 1)));
    const top = ch[ch.length - 1]!;
    this.mid_block = this.child('mid_block', new MidBlock(init, cfg, top));
    this.conv_norm_out = this.child('conv_norm_out', new GroupNorm(init, cfg.normGroups, top, EPS));
    this.conv_out = this.child('conv_out', new Conv2d(init, top, cfg.latentChannels, 3, { padding: 1 }));
  }
  forward(x: Tensor): Tensor {
    let h = this.conv_in.forward(x);
    for (const b of this.down_blocks.items) h = b.forward(h);
    h = this.mid_block.forward(h);
    return this.conv_out.forward(this.conv_norm_out.forward(h, { silu: true }));
  }
}

/** diffusers' vae.Decoder: conv_in, mid_block, up_blocks, conv_norm_out + SiLU, conv_out. */
export class Decoder extends Module {
  readonly conv_in: Conv2d;
  readonly mid_block: MidBlock;
  readonly up_blocks = new ModuleList<UpDecoderBlock>();
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;
  constructor(init: Init, cfg: VQGANConfig) {
    super();
    const rev = [...cfg.blockOutChannels].reverse();
    this.conv_in = this.child('conv_in', new Conv2d(init, cfg.latentChannels, rev[0]!, 3, { padding: 1 }));
    this.mid_block = this.child('mid_block', new MidBlock(init, cfg, rev[0]!));
    this.child('up_blocks', this.up_blocks);
    rev.forEach((out, i) => this.up_blocks.push(new UpDecoderBlock(init, cfg, i === 0 ? rev[0]! : rev[i - 1]!, out, i === rev.length - 1)));
    const base = rev[rev.length - 1]!;
    this.conv_norm_out = this.child('conv_norm_out', new GroupNorm(init, cfg.normGroups, base, EPS));
    this.conv_out = this.child('conv_out', new Conv2d(init, base, cfg.outChannels, 3, { padding: 1 }));
  }
  forward(z: Tensor): Tensor {
    let h = this.mid_block.forward(this.conv_in.forward(z));
    for (const b of this.up_blocks.items) h = b.forward(h);
    return this.conv_out.forward(this.conv_norm_out.forward(h, { silu: true }));
  }
}

export interface VQGANOutput extends QuantizeResult {
  /** The reconstruction [B, outChannels, H, W]. */
  xrec: Tensor;
  /** Pre-quantisation latents [B, D, H/f, W/f] (after quant_conv). */
  z: Tensor;
}

/**
 * VQ-GAN / diffusers' VQModel: encoder → quant_conv → quantize → post_quant_conv → decoder. `encode`
 * gives the pre-quantisation latents that LDM trains diffusion on; `decode` quantises them (by
 * default) and decodes.
 */
export class VQGAN extends Module {
  readonly config: VQGANConfig;
  readonly encoder: Encoder;
  readonly quant_conv: Conv2d;
  readonly quantizer: VectorQuantizer;
  readonly post_quant_conv: Conv2d;
  readonly decoder: Decoder;

  constructor(init: Init, config: Partial<VQGANConfig> = {}) {
    super();
    const cfg = (this.config = resolveVQGANConfig(config));
    this.encoder = this.child('encoder', new Encoder(init, cfg));
    this.quant_conv = this.child('quant_conv', new Conv2d(init, cfg.latentChannels, cfg.embedDim, 1));
    this.quantizer = this.child('quantize', new VectorQuantizer(init, cfg));
    this.post_quant_conv = this.child('post_quant_conv', new Conv2d(init, cfg.embedDim, cfg.latentChannels, 1));
    this.decoder = this.child('decoder', new Decoder(init, cfg));
  }

  /** Downsampling factor f = 2^(levels − 1). */
  get factor(): number {
    return 2 ** (this.config.blockOutChannels.length - 1);
  }

  /** The shape of the latents of images [B, C, H, W]: [B, D, H/f, W/f]. */
  latentShape(imageShape: readonly number[]): number[] {
    this.checkImage(imageShape);
    const f = this.factor;
    return [imageShape[0]!, this.config.embedDim, imageShape[2]! / f, imageShape[3]! / f];
  }

  /** The decoder's last layer (conv_out's weight), where taming takes the adaptive GAN weight. */
  get lastLayer(): Tensor {
    return this.decoder.conv_out.weight;
  }

  private checkImage(shape: readonly number[]): void {
    const c = this.config.inChannels;
    const f = this.factor;
    if (shape.length !== 4 || shape[1] !== c || shape[2]! % f !== 0 || shape[3]! % f !== 0 || shape[2] === 0 || shape[3] === 0) {
      throw new ShapeError('VQGAN', `images have shape ${fmtShape(shape)}, expected [B, ${c}, H, W] with H and W multiples of f = ${f} (${this.config.blockOutChannels.length} levels)`);
    }
  }

  /** Pre-quantisation latents z [B, D, H/f, W/f] of images x [B, C, H, W]. */
  encode(x: Tensor): Tensor {
    this.checkImage(x.shape);
    return this.quant_conv.forward(this.encoder.forward(x));
  }

  /** Nearest codes of z with the straight-through gradient, the indices and the quantizer loss. */
  quantize(z: Tensor): QuantizeResult {
    return this.quantizer.forward(z);
  }

  /** Images from latents [B, D, h, w]: quantised first unless `quantize: false` (z already is). */
  decode(z: Tensor, opts: { quantize?: boolean } = {}): Tensor {
    const d = this.config.embedDim;
    if (z.shape.length !== 4 || z.shape[1] !== d) throw new ShapeError('VQGAN.decode', `latents have shape ${fmtShape(z.shape)}, expected [B, ${d}, h, w]`);
    const zq = opts.quantize === false ? z : this.quantize(z).zq;
    return this.decoder.forward(this.post_quant_conv.forward(zq));
  }

  /** Encode, quantise, decode. */
  forward(x: Tensor): VQGANOutput {
    const z = this.encode(x);
    const q = this.quantize(z);
    return { ...q, z, xrec: this.decode(q.zq, { quantize: false }) };
  }
}
