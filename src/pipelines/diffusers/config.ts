// diffusers model configs (config.json) to the engine's model configs and back. Every key of the
// three classes is either mapped, accepted because it cannot change the forward pass in float32, or
// refused by name with the reason; a key this loader does not know is refused unless it is null.
import { UNetConfig, resolveUNetConfig } from '../../models/unet.js';
import { VQGANConfig, resolveVQGANConfig } from '../../models/vqgan.js';

export type DiffusersClassName = 'UNet2DModel' | 'UNet2DConditionModel' | 'VQModel';
export const DIFFUSERS_CLASSES: readonly DiffusersClassName[] = ['UNet2DModel', 'UNet2DConditionModel', 'VQModel'];

/** The diffusers version whose classes and defaults this mapping follows. */
export const DIFFUSERS_VERSION = '0.27.2';

/** What the engine stores in a config.json it writes, under a private key diffusers drops on load. */
export const ENGINE_KEY = '_webgpu_diffusion';

export class DiffusersConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DiffusersConfigError';
  }
}

type Json = Record<string, unknown>;

/** A key's rule: the engine value it sets, or a refusal (a string: why). */
type Rule = (value: unknown, all: Json) => void | string;

/** Reads a config by rules, refusing what it cannot honour; `where` names the file for messages. */
class Reader {
  constructor(readonly cfg: Json, readonly cls: string, readonly where: string) {}

  fail(key: string, why: string): never {
    throw new DiffusersConfigError(`${this.where}: ${this.cls} config '${key}' = ${JSON.stringify(this.cfg[key])}: ${why}`);
  }

  has(key: string): boolean {
    return this.cfg[key] !== undefined;
  }

  get(key: string, def: unknown): unknown {
    return this.cfg[key] === undefined ? def : this.cfg[key];
  }

  int(key: string, def?: number, min = 1): number {
    const v = this.get(key, def);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) this.fail(key, `expected an integer >= ${min}`);
    return v;
  }

  num(key: string, def: number): number {
    const v = this.get(key, def);
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(key, 'expected a number');
    return v;
  }

  bool(key: string, def: boolean): boolean {
    const v = this.get(key, def);
    if (typeof v !== 'boolean') this.fail(key, 'expected true or false');
    return v;
  }

  ints(key: string): number[] {
    const v = this.cfg[key];
    if (!Array.isArray(v) || !v.length || !v.every((x) => Number.isInteger(x) && x >= 1)) this.fail(key, 'expected a list of positive integers');
    return v as number[];
  }

  strings(key: string): string[] {
    const v = this.cfg[key];
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) this.fail(key, 'expected a list of block type names');
    return v as string[];
  }

  /** Only `allowed` (diffusers' default first) is supported; `why` says what the others would do. */
  only(key: string, allowed: readonly unknown[], why: string): void {
    const v = this.get(key, allowed[0]);
    if (!allowed.some((a) => JSON.stringify(a) === JSON.stringify(v))) this.fail(key, `${why}; supported: ${allowed.map((a) => JSON.stringify(a)).join(', ')}`);
  }

  /** Refuse any key not in `known` unless it is null. */
  unknown(known: Iterable<string>): void {
    const k = new Set(known);
    for (const key of Object.keys(this.cfg)) {
      if (key.startsWith('_') || k.has(key) || this.cfg[key] === null) continue;
      this.fail(key, `not a ${this.cls} option of diffusers ${DIFFUSERS_VERSION} that this loader knows; refused rather than ignored`);
    }
  }
}

function sampleSize(r: Reader): number {
  const v = r.get('sample_size', null);
  if (Array.isArray(v) && v.length === 2 && v[0] === v[1] && Number.isInteger(v[0])) return v[0] as number;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 1) return v;
  return r.fail('sample_size', 'the engine needs the (square) image size: an integer, or [n, n]');
}

/** Attention per level from the down block types; the up block types must mirror them. */
function attentionLevels(r: Reader, down: readonly [string, string], up: readonly [string, string]): boolean[] {
  const downs = r.strings('down_block_types');
  const ups = r.strings('up_block_types');
  const levels = downs.map((t) => {
    if (t === down[0]) return false;
    if (t === down[1]) return true;
    return r.fail('down_block_types', `block type '${t}' is not supported; supported: ${down.join(', ')}`);
  });
  if (ups.length !== downs.length) r.fail('up_block_types', `has ${ups.length} blocks for ${downs.length} down blocks`);
  ups.forEach((t, i) => {
    if (t !== up[0] && t !== up[1]) r.fail('up_block_types', `block type '${t}' is not supported; supported: ${up.join(', ')}`);
    if ((t === up[1]) !== levels[downs.length - 1 - i]) r.fail('up_block_types', `up block ${i} must mirror down block ${downs.length - 1 - i} (${downs[downs.length - 1 - i]}): the engine gives a level attention on both sides or neither`);
  });
  return levels;
}

/** Resolutions of the levels that have attention, in the engine's terms. */
function attentionResolutions(size: number, levels: boolean[]): number[] {
  return levels.flatMap((a, i) => (a ? [size / 2 ** i] : []));
}

const COMMON_UNET_KEYS = ['sample_size', 'in_channels', 'out_channels', 'center_input_sample', 'time_embedding_type', 'flip_sin_to_cos', 'freq_shift', 'down_block_types', 'up_block_types', 'block_out_channels', 'layers_per_block', 'mid_block_scale_factor', 'downsample_padding', 'dropout', 'act_fn', 'attention_head_dim', 'norm_num_groups', 'norm_eps', 'resnet_time_scale_shift', 'class_embed_type', 'num_class_embeds'];

function commonUNet(r: Reader): Partial<UNetConfig> {
  r.only('act_fn', ['silu'], 'the engine\'s blocks use SiLU');
  r.only('center_input_sample', [false], 'the engine does not rescale inputs to 2x - 1');
  r.only('time_embedding_type', ['positional'], "only sinusoidal timestep embeddings ('fourier' and 'learned' are not supported)");
  r.only('resnet_time_scale_shift', ['default'], "'scale_shift' (FiLM from the time embedding) is not supported");
  r.only('mid_block_scale_factor', [1, 1.0], 'residual blocks that divide their output are not supported');
  r.only('class_embed_type', [null], "only a plain nn.Embedding class table (class_embed_type null with num_class_embeds) is supported");
  const pad = r.get('downsample_padding', 1);
  if (pad !== 0 && pad !== 1) r.fail('downsample_padding', 'supported: 0 (asymmetric pad) and 1');
  const layers = r.get('layers_per_block', 2);
  if (!Number.isInteger(layers) || (layers as number) < 1) r.fail('layers_per_block', 'expected one integer >= 1 (a list per block is not supported)');
  const channels = r.ints('block_out_channels');
  const groups = r.int('norm_num_groups', 32);
  const dropout = r.num('dropout', 0);
  return {
    sampleSize: sampleSize(r),
    inChannels: r.int('in_channels', 3),
    outChannels: r.int('out_channels', 3),
    blockOutChannels: channels,
    layersPerBlock: layers as number,
    normGroups: groups,
    normEps: r.num('norm_eps', 1e-5),
    downsamplePadding: pad as 0 | 1,
    flipSinToCos: r.bool('flip_sin_to_cos', true),
    freqShift: r.num('freq_shift', 0),
    dropout,
  };
}

/** A UNet2DModel config.json as an engine UNet config. */
export function unet2DConfig(cfg: Json, where = 'config.json'): UNetConfig {
  const r = new Reader(cfg, 'UNet2DModel', where);
  r.unknown([...COMMON_UNET_KEYS, 'downsample_type', 'upsample_type', 'attn_norm_num_groups', 'add_attention', 'num_train_timesteps']);
  const c = commonUNet(r);
  r.only('downsample_type', ['conv'], "only conv downsampling ('resnet' blocks are not supported)");
  r.only('upsample_type', ['conv'], "only conv upsampling ('resnet' blocks are not supported)");
  const attnGroups = r.get('attn_norm_num_groups', null);
  if (attnGroups !== null && attnGroups !== c.normGroups) r.fail('attn_norm_num_groups', `the mid block's attention uses norm_num_groups (${c.normGroups}) in the engine`);
  const levels = attentionLevels(r, ['DownBlock2D', 'AttnDownBlock2D'], ['UpBlock2D', 'AttnUpBlock2D']);
  const headDim = r.get('attention_head_dim', 8);
  if (headDim !== null && !(Number.isInteger(headDim) && (headDim as number) >= 1)) r.fail('attention_head_dim', 'expected an integer (channels per head) or null (one head)');
  const classes = r.get('num_class_embeds', null);
  if (classes !== null) r.int('num_class_embeds');
  // num_train_timesteps only sizes 'fourier'/'learned' time embeddings, refused above: nothing to do.
  return resolveUNetConfig({
    ...c,
    attentionResolutions: attentionResolutions(c.sampleSize!, levels),
    // UNet2DModel: attention_head_dim is the size of a head; null means one head per block.
    attentionHeadDim: headDim as number | null,
    attentionHeads: 1,
    midAttention: r.bool('add_attention', true),
    conditioning: classes === null ? 'none' : 'class',
    numClasses: (classes as number | null) ?? 0,
    nullClass: false,
  });
}

const ONLY_DEFAULT_CONDITION_KEYS: [string, unknown, string][] = [
  ['addition_embed_type', null, 'added embeddings (text_time, image, ...) are not supported'],
  ['addition_time_embed_dim', null, 'added time embeddings are not supported'],
  ['attention_type', 'default', 'only plain transformer attention ("gated" and others are not supported)'],
  ['class_embeddings_concat', false, 'class embeddings concatenated to the time embedding are not supported'],
  ['conv_in_kernel', 3, 'conv_in is 3x3 in the engine'],
  ['conv_out_kernel', 3, 'conv_out is 3x3 in the engine'],
  ['cross_attention_norm', null, 'a norm on the context is not supported'],
  ['dual_cross_attention', false, 'dual cross-attention is not supported'],
  ['encoder_hid_dim', null, 'a projection of the context is not supported'],
  ['encoder_hid_dim_type', null, 'a projection of the context is not supported'],
  ['mid_block_only_cross_attention', null, 'only plain UNetMidBlock2DCrossAttn middles are supported'],
  ['mid_block_type', 'UNetMidBlock2DCrossAttn', 'only UNetMidBlock2DCrossAttn middles are supported'],
  ['num_attention_heads', null, 'diffusers itself refuses it (heads come from attention_head_dim)'],
  ['only_cross_attention', false, 'transformers without self-attention are not supported'],
  ['projection_class_embeddings_input_dim', null, 'projected class embeddings are not supported'],
  ['resnet_out_scale_factor', 1, 'residual blocks that divide their output are not supported'],
  ['resnet_skip_time_act', false, 'residual blocks without the SiLU on the time embedding are not supported'],
  ['reverse_transformer_layers_per_block', null, 'asymmetric transformer depths are not supported'],
  ['time_cond_proj_dim', null, 'a timestep condition projection is not supported'],
  ['time_embedding_act_fn', null, 'an activation after the time embedding is not supported'],
  ['timestep_post_act', null, 'an activation after the time MLP is not supported'],
  ['num_class_embeds', null, 'class labels in a UNet2DConditionModel are not supported (the engine conditions such a model on its context)'],
];

/** A UNet2DConditionModel config.json as an engine UNet config ('context' conditioning). */
export function unet2DConditionConfig(cfg: Json, where = 'config.json'): UNetConfig {
  const r = new Reader(cfg, 'UNet2DConditionModel', where);
  r.unknown([
    ...COMMON_UNET_KEYS, ...ONLY_DEFAULT_CONDITION_KEYS.map(([k]) => k), 'addition_embed_type_num_heads', 'cross_attention_dim',
    'transformer_layers_per_block', 'upcast_attention', 'use_linear_projection', 'time_embedding_dim',
  ]);
  for (const [key, def, why] of ONLY_DEFAULT_CONDITION_KEYS) r.only(key, key === 'resnet_out_scale_factor' ? [1, 1.0] : key === 'mid_block_only_cross_attention' ? [null, false] : [def], why);
  const c = commonUNet(r);
  const levels = attentionLevels(r, ['DownBlock2D', 'CrossAttnDownBlock2D'], ['UpBlock2D', 'CrossAttnUpBlock2D']);
  const temb = r.get('time_embedding_dim', null);
  if (temb !== null && temb !== 4 * c.blockOutChannels![0]!) r.fail('time_embedding_dim', `the engine's time embedding has 4 x block_out_channels[0] = ${4 * c.blockOutChannels![0]!} channels`);
  const ctx = r.get('cross_attention_dim', 1280);
  if (!(Number.isInteger(ctx) && (ctx as number) >= 1)) r.fail('cross_attention_dim', 'expected one integer (a list per block is not supported)');
  let depth = r.get('transformer_layers_per_block', 1);
  if (Array.isArray(depth)) {
    const ds = depth as unknown[];
    if (!ds.length || !ds.every((d) => d === ds[0])) r.fail('transformer_layers_per_block', 'only the same depth for every block is supported');
    depth = ds[0];
  }
  if (!(Number.isInteger(depth) && (depth as number) >= 1)) r.fail('transformer_layers_per_block', 'expected an integer >= 1');
  // UNet2DConditionModel: attention_head_dim is the number of heads (one number, or one per down block).
  const heads = r.get('attention_head_dim', 8);
  let attentionHeads: number | number[];
  if (Number.isInteger(heads) && (heads as number) >= 1) attentionHeads = heads as number;
  else if (Array.isArray(heads) && heads.length === c.blockOutChannels!.length && heads.every((h) => Number.isInteger(h) && h >= 1)) attentionHeads = heads as number[];
  else return r.fail('attention_head_dim', `expected the number of heads: one integer, or one per block (${c.blockOutChannels!.length})`);
  // upcast_attention computes q·k in float32: the engine always does. addition_embed_type_num_heads only
  // matters with addition_embed_type, refused above unless null.
  r.bool('upcast_attention', false);
  return resolveUNetConfig({
    ...c,
    attentionResolutions: attentionResolutions(c.sampleSize!, levels),
    attentionHeads,
    attentionHeadDim: null,
    midAttention: true,
    conditioning: 'context',
    crossAttentionDim: ctx as number,
    useLinearProjection: r.bool('use_linear_projection', false),
    transformerDepth: depth as number,
    geluApproximate: 'none',
    numClasses: 0,
    nullClass: false,
  });
}

/** A VQModel config.json as an engine VQ-GAN config, and the scaling factor it records. */
export function vqModelConfig(cfg: Json, where = 'config.json'): { config: VQGANConfig; scalingFactor: number } {
  const r = new Reader(cfg, 'VQModel', where);
  r.unknown(['in_channels', 'out_channels', 'down_block_types', 'up_block_types', 'block_out_channels', 'layers_per_block', 'act_fn', 'latent_channels', 'sample_size', 'num_vq_embeddings', 'norm_num_groups', 'vq_embed_dim', 'scaling_factor', 'norm_type', 'mid_block_add_attention', 'lookup_from_codebook', 'force_upcast']);
  r.only('act_fn', ['silu'], "the engine's blocks use SiLU");
  r.only('norm_type', ['group'], "'spatial' (MoVQ's spatially conditioned norm) is not supported");
  const channels = r.ints('block_out_channels');
  const downs = r.strings('down_block_types');
  const ups = r.strings('up_block_types');
  if (downs.length !== channels.length || downs.some((t) => t !== 'DownEncoderBlock2D')) r.fail('down_block_types', `expected one 'DownEncoderBlock2D' per level (${channels.length})`);
  if (ups.length !== channels.length || ups.some((t) => t !== 'UpDecoderBlock2D')) r.fail('up_block_types', `expected one 'UpDecoderBlock2D' per level (${channels.length})`);
  const latent = r.int('latent_channels', 3);
  const dim = r.get('vq_embed_dim', null);
  if (dim !== null) r.int('vq_embed_dim');
  // force_upcast runs the VAE in float32 under float16 pipelines: the engine is float32 throughout.
  // lookup_from_codebook only changes decode(..., force_not_quantize=True), which the engine does not offer.
  r.bool('force_upcast', true);
  r.bool('lookup_from_codebook', false);
  const config = resolveVQGANConfig({
    inChannels: r.int('in_channels', 3),
    outChannels: r.int('out_channels', 3),
    blockOutChannels: channels,
    layersPerBlock: r.int('layers_per_block', 1),
    latentChannels: latent,
    numEmbeddings: r.int('num_vq_embeddings', 256, 2),
    embedDim: (dim as number | null) ?? latent,
    normGroups: r.int('norm_num_groups', 32),
    midAttention: r.bool('mid_block_add_attention', true),
    beta: 0.25,
    codebookUpdate: 'gradient',
    restartAfter: 0,
  });
  return { config, scalingFactor: r.num('scaling_factor', 0.18215) };
}

/** The diffusers class a config.json names, checked. */
export function diffusersClass(cfg: Json, where = 'config.json'): DiffusersClassName {
  const name = cfg._class_name;
  if (!DIFFUSERS_CLASSES.includes(name as DiffusersClassName)) {
    throw new DiffusersConfigError(`${where}: _class_name ${JSON.stringify(name)} is not supported; supported: ${DIFFUSERS_CLASSES.join(', ')}`);
  }
  return name as DiffusersClassName;
}

// ------------------------------------------------------------------------------------------- export

function blockTypes(cfg: UNetConfig, plain: string, attn: string): string[] {
  return cfg.blockOutChannels.map((_, i) => (cfg.attentionResolutions.includes(cfg.sampleSize / 2 ** i) ? attn : plain));
}

/** The heads of each level that has attention, and of the middle (the last level). */
function headsPerLevel(cfg: UNetConfig): number[] {
  return cfg.blockOutChannels.map((ch, i) => (cfg.attentionHeadDim !== null ? ch / cfg.attentionHeadDim : Array.isArray(cfg.attentionHeads) ? cfg.attentionHeads[i]! : cfg.attentionHeads));
}

export interface ExportedConfig {
  className: DiffusersClassName;
  config: Json;
  /** What diffusers will compute differently from the engine, if anything (e.g. the tanh GELU). */
  warnings: string[];
}

const header = (cls: DiffusersClassName) => ({ _class_name: cls, _diffusers_version: DIFFUSERS_VERSION });

/**
 * An engine U-Net config as the diffusers config that builds the same network: UNet2DModel for
 * conditioning 'none' and 'class', UNet2DConditionModel for 'cross' and 'context'. `extra` goes under
 * the private key ENGINE_KEY (diffusers ignores it).
 */
export function exportUNetConfig(cfg: UNetConfig, extra: Json = {}): ExportedConfig {
  const warnings: string[] = [];
  const fail = (why: string): never => {
    throw new DiffusersConfigError(`export: ${why}`);
  };
  const levels = cfg.blockOutChannels.map((_, i) => cfg.attentionResolutions.includes(cfg.sampleSize / 2 ** i));
  const heads = headsPerLevel(cfg);
  const common = {
    sample_size: cfg.sampleSize, in_channels: cfg.inChannels, out_channels: cfg.outChannels, center_input_sample: false,
    time_embedding_type: 'positional', flip_sin_to_cos: cfg.flipSinToCos, freq_shift: cfg.freqShift,
    block_out_channels: [...cfg.blockOutChannels], layers_per_block: cfg.layersPerBlock, mid_block_scale_factor: 1,
    downsample_padding: cfg.downsamplePadding, dropout: cfg.dropout, act_fn: 'silu', norm_num_groups: cfg.normGroups,
    norm_eps: cfg.normEps, resnet_time_scale_shift: 'default',
  };
  if (cfg.conditioning === 'none' || cfg.conditioning === 'class') {
    // UNet2DModel gives every attention block channels / attention_head_dim heads: one head size must fit all.
    const attnLevels = heads.map((h, i) => ({ h, ch: cfg.blockOutChannels[i]!, used: levels[i] || (i === levels.length - 1 && cfg.midAttention) }));
    const dims = [...new Set(attnLevels.filter((l) => l.used).map((l) => l.ch / l.h))];
    if (dims.length > 1) fail(`UNet2DModel takes one head size for every attention block; this model's blocks have head sizes ${dims.join(', ')} (set attentionHeadDim to train one that exports)`);
    return {
      className: 'UNet2DModel',
      warnings,
      config: {
        ...header('UNet2DModel'), ...common,
        down_block_types: blockTypes(cfg, 'DownBlock2D', 'AttnDownBlock2D'),
        up_block_types: blockTypes(cfg, 'UpBlock2D', 'AttnUpBlock2D').reverse(),
        attention_head_dim: dims[0] ?? cfg.blockOutChannels.at(-1)!,
        attn_norm_num_groups: null, add_attention: cfg.midAttention, class_embed_type: null,
        num_class_embeds: cfg.conditioning === 'class' ? cfg.numClasses + (cfg.nullClass ? 1 : 0) : null,
        num_train_timesteps: null, downsample_type: 'conv', upsample_type: 'conv',
        [ENGINE_KEY]: extra,
      },
    };
  }
  if (!cfg.midAttention) fail("UNet2DConditionModel's middle block always has a transformer; this model has midAttention false");
  if (cfg.geluApproximate === 'tanh') {
    warnings.push("this model's GEGLU uses the tanh GELU, which diffusers' transformers do not offer: diffusers will run the exact (erf) form, whose values differ by up to 4.7e-4, so its outputs will differ slightly from the engine's");
  }
  return {
    className: 'UNet2DConditionModel',
    warnings,
    config: {
      ...header('UNet2DConditionModel'), ...common,
      down_block_types: blockTypes(cfg, 'DownBlock2D', 'CrossAttnDownBlock2D'),
      up_block_types: blockTypes(cfg, 'UpBlock2D', 'CrossAttnUpBlock2D').reverse(),
      mid_block_type: 'UNetMidBlock2DCrossAttn',
      // UNet2DConditionModel reads attention_head_dim as the number of heads.
      attention_head_dim: heads.every((h) => h === heads[0]) ? heads[0] : heads,
      cross_attention_dim: cfg.crossAttentionDim,
      transformer_layers_per_block: cfg.transformerDepth,
      use_linear_projection: cfg.useLinearProjection,
      upcast_attention: false, only_cross_attention: false, dual_cross_attention: false, class_embed_type: null,
      num_class_embeds: null, addition_embed_type: null, time_embedding_dim: null, conv_in_kernel: 3, conv_out_kernel: 3,
      [ENGINE_KEY]: extra,
    },
  };
}

/** An engine VQ-GAN config as a diffusers VQModel config. */
export function exportVQConfig(cfg: VQGANConfig, extra: Json = {}, scalingFactor = 0.18215): ExportedConfig {
  return {
    className: 'VQModel',
    warnings: [],
    config: {
      ...header('VQModel'),
      in_channels: cfg.inChannels, out_channels: cfg.outChannels,
      down_block_types: cfg.blockOutChannels.map(() => 'DownEncoderBlock2D'),
      up_block_types: cfg.blockOutChannels.map(() => 'UpDecoderBlock2D'),
      block_out_channels: [...cfg.blockOutChannels], layers_per_block: cfg.layersPerBlock, act_fn: 'silu',
      latent_channels: cfg.latentChannels, sample_size: 32, num_vq_embeddings: cfg.numEmbeddings,
      norm_num_groups: cfg.normGroups, vq_embed_dim: cfg.embedDim, scaling_factor: scalingFactor, norm_type: 'group',
      mid_block_add_attention: cfg.midAttention, lookup_from_codebook: false, force_upcast: false,
      [ENGINE_KEY]: extra,
    },
  };
}
