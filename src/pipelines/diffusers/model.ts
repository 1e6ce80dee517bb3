// A diffusers model folder (config.json + safetensors) as an engine model with diffusers' call
// signatures. Browser-safe: the files come as bytes, Blobs or byte sources; Node's loadDiffusers
// (./node.ts) opens a folder.
import type { Device } from '../../graph/device.js';
import { Tensor, noGrad } from '../../graph/tensor.js';
import * as ops from '../../graph/ops/index.js';
import { UNet, UNetConfig, unetConfigFromCheckpoint } from '../../models/unet.js';
import { VQGAN, VQGANConfig, resolveVQGANConfig } from '../../models/vqgan.js';
import { ShapeError, fmtShape } from '../../runtime/errors.js';
import { ByteSource, blobSource, bytesSource } from '../../io/safetensors-stream.js';
import { parseSafetensors, SafeTensor } from '../../io/safetensors.js';
import { DiffusersClassName, DiffusersConfigError, ENGINE_KEY, diffusersClass, exportUNetConfig, exportVQConfig, unet2DConditionConfig, unet2DConfig, vqModelConfig } from './config.js';
import { LoadProgress, LoadReport, UnfilledInit, loadWeights } from './weights.js';

/** The inputs of a UNet's forward, named as diffusers names them. */
export interface DiffusersUNetInputs {
  /** [B, C, H, W]. */
  sample: Tensor;
  /** [B] or [1] (broadcast), f32: integer timesteps may be given as floats, as diffusers casts them. */
  timestep: Tensor;
  /** [B]: i32, or f32 holding integers. UNet2DModel with num_class_embeds only. */
  class_labels?: Tensor | null;
  /** [B, L, cross_attention_dim]. UNet2DConditionModel only. */
  encoder_hidden_states?: Tensor | null;
}

/**
 * A loaded diffusers model: `forward` for the UNets (diffusers' `.sample`), `encode`, `quantize` and
 * `decode` for VQModel. `module` is the engine model itself (a UNet or a VQGAN), for sampling,
 * fine-tuning or export.
 */
export class DiffusersModel {
  constructor(
    readonly dev: Device,
    readonly className: DiffusersClassName,
    /** config.json as read. */
    readonly config: Record<string, unknown>,
    readonly module: UNet | VQGAN,
    /** What loading read. */
    readonly report: LoadReport,
  ) {}

  get unet(): UNet {
    if (!(this.module instanceof UNet)) throw new ShapeError('DiffusersModel', `this is a ${this.className}; a UNet method was called`);
    return this.module;
  }

  get vq(): VQGAN {
    if (!(this.module instanceof VQGAN)) throw new ShapeError('DiffusersModel', `this is a ${this.className}: use forward({ sample, timestep, ... }); encode, quantize and decode are VQModel's`);
    return this.module;
  }

  /** The UNet's output for a batch (diffusers' `model(sample, timestep, ...).sample`). */
  forward(inputs: DiffusersUNetInputs): Tensor {
    return noGrad(() => this.unetForward(inputs));
  }

  /**
   * The output of each top-level block of the forward pass, by diffusers' module names (as forward
   * hooks see them; conv_norm_out before its SiLU), with 'out' for the output: where a port first
   * differs from a reference is where to look.
   */
  intermediates(inputs: DiffusersUNetInputs | { sample: Tensor }): Map<string, Tensor> {
    return noGrad(() => {
      const blocks = new Map<string, Tensor>();
      if (this.module instanceof UNet) blocks.set('out', this.unetForward(inputs as DiffusersUNetInputs, blocks));
      else this.vqIntermediates(inputs.sample, blocks);
      return blocks;
    });
  }

  private unetForward(inputs: DiffusersUNetInputs, blocks?: Map<string, Tensor>): Tensor {
    const net = this.unet;
    const cfg = net.config;
    const x = inputs.sample;
    const b = x.shape[0]!;
    let t = inputs.timestep;
    if (t.dtype !== 'f32') throw new ShapeError('forward', `timestep is ${t.dtype}; give an f32 tensor (integer timesteps as floats, as diffusers casts them)`);
    if (t.size === 1 && b > 1) t = ops.add(this.dev.zeros([b]), t.reshape([1]));
    else if (t.shape.length !== 1 || t.shape[0] !== b) throw new ShapeError('forward', `timestep has shape ${fmtShape(t.shape)}, expected [${b}] or one value`);
    else t = t.reshape([b]);
    const tp = net.time_proj.forward(t);
    blocks?.set('time_proj', tp);
    let temb = net.time_embedding.forward(tp);
    blocks?.set('time_embedding', temb);
    let context: Tensor | null = null;
    if (cfg.conditioning === 'class') {
      const labels = inputs.class_labels;
      if (!labels || labels.shape.length !== 1 || labels.shape[0] !== b) {
        throw new ShapeError('forward', `this UNet2DModel has num_class_embeds = ${cfg.numClasses}: give class_labels [${b}]; got ${labels ? fmtShape(labels.shape) : 'none'}`);
      }
      const e = classEmbedding(this.dev, net, labels);
      blocks?.set('class_embedding', e);
      temb = ops.add(temb, e);
    } else if (inputs.class_labels) {
      throw new ShapeError('forward', 'class_labels given, but this model has no class embedding (num_class_embeds is null)');
    }
    if (cfg.conditioning === 'context') {
      const ctx = inputs.encoder_hidden_states;
      if (!ctx || ctx.shape.length !== 3 || ctx.shape[0] !== b || ctx.shape[2] !== cfg.crossAttentionDim) {
        throw new ShapeError('forward', `a UNet2DConditionModel needs encoder_hidden_states [${b}, L, ${cfg.crossAttentionDim}]; got ${ctx ? fmtShape(ctx.shape) : 'none'}`);
      }
      context = ctx;
    } else if (inputs.encoder_hidden_states) {
      throw new ShapeError('forward', 'encoder_hidden_states given, but a UNet2DModel has no cross-attention');
    }
    if (x.shape.length !== 4 || x.shape[1] !== cfg.inChannels || x.shape[2] !== cfg.sampleSize || x.shape[3] !== cfg.sampleSize) {
      throw new ShapeError('forward', `sample has shape ${fmtShape(x.shape)}, expected [B, ${cfg.inChannels}, ${cfg.sampleSize}, ${cfg.sampleSize}]`);
    }
    return net.trunk(x, temb, context, blocks);
  }

  /** VQModel: the latents before quantisation (diffusers' `encode(x).latents`, after quant_conv). */
  encode(sample: Tensor): Tensor {
    return noGrad(() => this.vq.encode(sample));
  }

  /** VQModel: nearest codes (straight-through value) and their indices [B·h·w] in (b, h, w) order, as diffusers returns them. */
  quantize(latents: Tensor): { quantized: Tensor; indices: Tensor } {
    return noGrad(() => {
      const q = this.vq.quantize(latents);
      return { quantized: q.zq, indices: q.indices.reshape([q.indices.size]) };
    });
  }

  /** VQModel: images from latents, quantised first as diffusers' `decode` does by default. */
  decode(latents: Tensor): Tensor {
    return noGrad(() => this.vq.decode(latents));
  }

  private vqIntermediates(x: Tensor, blocks: Map<string, Tensor>): void {
    const vq = this.vq;
    const enc = vq.encoder;
    let h = enc.conv_in.forward(x);
    blocks.set('encoder.conv_in', h);
    enc.down_blocks.items.forEach((blk, i) => blocks.set(`encoder.down_blocks.${i}`, (h = blk.forward(h))));
    blocks.set('encoder.mid_block', (h = enc.mid_block.forward(h)));
    blocks.set('encoder.conv_norm_out', enc.conv_norm_out.forward(h));
    blocks.set('encoder.conv_out', (h = enc.conv_out.forward(enc.conv_norm_out.forward(h, { silu: true }))));
    const z = vq.quant_conv.forward(h);
    blocks.set('quant_conv', z);
    const q = vq.quantize(z);
    blocks.set('quantized', q.zq);
    blocks.set('indices', q.indices.reshape([q.indices.size]));
    const dec = vq.decoder;
    blocks.set('post_quant_conv', (h = vq.post_quant_conv.forward(q.zq)));
    blocks.set('decoder.conv_in', (h = dec.conv_in.forward(h)));
    blocks.set('decoder.mid_block', (h = dec.mid_block.forward(h)));
    dec.up_blocks.items.forEach((blk, i) => blocks.set(`decoder.up_blocks.${i}`, (h = blk.forward(h))));
    blocks.set('decoder.conv_norm_out', dec.conv_norm_out.forward(h));
    blocks.set('out', dec.conv_out.forward(dec.conv_norm_out.forward(h, { silu: true })));
  }
}

/**
 * Class embedding rows for labels [B]: i32 labels gather; f32 labels (integers as floats, as the
 * fixtures store them) select by a one-hot product, which is exact: each output is 1·w plus zeros.
 */
function classEmbedding(dev: Device, net: UNet, labels: Tensor): Tensor {
  const table = net.class_embedding!;
  if (labels.dtype === 'i32') return table.forward(labels);
  const n = table.count;
  const rows = dev.tensor(Float32Array.from({ length: n }, (_, i) => i), [1, n]);
  // 1 where |label - i| < 0.5, else 0.
  const hot = ops.step(ops.affine(ops.abs(ops.sub(labels.reshape([labels.shape[0]!, 1]), rows)), -1, 0.5));
  return ops.matmul(hot, table.weight);
}

/** One file's bytes: in memory, a Blob or File (read slice by slice), or any byte source. */
export type WeightInput = Uint8Array | Blob | ByteSource;

export interface DiffusersFiles {
  /** config.json: its text, bytes, or the parsed object. */
  config: string | Uint8Array | Record<string, unknown>;
  /**
   * diffusion_pytorch_model.safetensors; or the shards of a sharded model, as a list or by file name
   * (with `index`, their names are checked against it).
   */
  weights: WeightInput | WeightInput[] | Record<string, WeightInput>;
  /** diffusion_pytorch_model.safetensors.index.json of a sharded model. */
  index?: string | Uint8Array | Record<string, unknown>;
  /**
   * label_context.safetensors, which the engine writes beside a UNet2DConditionModel exported from a
   * model conditioned on class labels through cross-attention: with it the model takes labels again.
   */
  labelContext?: Uint8Array;
  /** Called after each tensor is written, with the bytes read so far and in all. */
  onProgress?: (p: LoadProgress) => void;
  /** For messages: where the files come from. */
  where?: string;
}

function json(v: string | Uint8Array | Record<string, unknown>, what: string): Record<string, unknown> {
  if (typeof v === 'object' && !(v instanceof Uint8Array)) return v;
  const text = typeof v === 'string' ? v : new TextDecoder().decode(v);
  let out: unknown;
  try {
    out = JSON.parse(text);
  } catch (e) {
    throw new DiffusersConfigError(`${what} is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof out !== 'object' || out === null || Array.isArray(out)) throw new DiffusersConfigError(`${what} is not a JSON object`);
  return out as Record<string, unknown>;
}

function toSource(w: WeightInput, name: string): ByteSource {
  if (w instanceof Uint8Array) return bytesSource(w, name);
  if (typeof Blob !== 'undefined' && w instanceof Blob) return blobSource(w, (w as { name?: string }).name ?? name);
  return w as ByteSource;
}

/**
 * The engine config the engine recorded when it wrote this folder (config.json's private key, which
 * diffusers drops when it saves), if it describes exactly the network of the diffusers keys: then
 * what diffusers cannot express comes back too (the null class of guidance, the tanh GELU of older
 * engine models, class labels as context tokens, training options).
 */
function ownConfig(config: Record<string, unknown>, className: DiffusersClassName, hasLabels: boolean): UNetConfig | VQGANConfig | null {
  const own = (config[ENGINE_KEY] as { model?: Record<string, unknown> } | undefined)?.model;
  if (!own || typeof own !== 'object') return null;
  try {
    const cfg = className === 'VQModel' ? resolveVQGANConfig(own as Partial<VQGANConfig>) : unetConfigFromCheckpoint(own as Partial<UNetConfig>);
    if (className !== 'VQModel' && ((cfg as UNetConfig).conditioning === 'cross') !== hasLabels) return null;
    const again = className === 'VQModel' ? exportVQConfig(cfg as VQGANConfig) : exportUNetConfig(cfg as UNetConfig);
    if (again.className !== className) return null;
    const same = Object.entries(again.config).every(([k, v]) => k.startsWith('_') || k === 'sample_size' && className === 'VQModel' || JSON.stringify(config[k] ?? null) === JSON.stringify(v));
    return same ? cfg : null;
  } catch {
    return null;
  }
}

/**
 * The engine model a diffusers config describes, its parameters allocated but not yet written. A
 * label-context table (label_context.safetensors, beside a UNet2DConditionModel the engine exported
 * from a model conditioned on labels through cross-attention) makes it take labels again.
 */
export function buildDiffusersModel(dev: Device, config: Record<string, unknown>, where = 'config.json', labelContext?: SafeTensor, labelNullClass = true): { className: DiffusersClassName; module: UNet | VQGAN; engineConfig: UNetConfig | VQGANConfig } {
  const className = diffusersClass(config, where);
  const init = new UnfilledInit(dev);
  const own = ownConfig(config, className, !!labelContext);
  if (className === 'VQModel') {
    const c = (own as VQGANConfig | null) ?? vqModelConfig(config, where).config;
    return { className, module: new VQGAN(init, c).eval(), engineConfig: c };
  }
  // The diffusers reading always runs: it refuses what the engine cannot build.
  let c = className === 'UNet2DModel' ? unet2DConfig(config, where) : unet2DConditionConfig(config, where);
  if (own) c = own as UNetConfig;
  else if (labelContext) {
    if (className !== 'UNet2DConditionModel') throw new DiffusersConfigError(`${where}: a label-context table goes with a UNet2DConditionModel, not a ${className}`);
    const [rows, width] = labelContext.shape as [number, number];
    const tokens = width / c.crossAttentionDim;
    const nullClass = labelNullClass;
    if (labelContext.shape.length !== 2 || !Number.isInteger(tokens) || rows < (nullClass ? 2 : 1)) {
      throw new DiffusersConfigError(`${where}: the label-context table is [${labelContext.shape.join(', ')}]; expected [classes, tokens × ${c.crossAttentionDim}]`);
    }
    c = { ...c, conditioning: 'cross', contextTokens: tokens, numClasses: rows - (nullClass ? 1 : 0), nullClass };
  }
  return { className, module: new UNet(init, c).eval(), engineConfig: c };
}

/**
 * Load a diffusers model from its files (browser and Node): the config mapped onto an engine model
 * (unsupported options refused by name), the weights streamed in tensor by tensor.
 */
export async function loadDiffusersFiles(dev: Device, files: DiffusersFiles): Promise<DiffusersModel> {
  const where = files.where ?? 'diffusers model';
  const config = json(files.config, `${where}: config.json`);
  let labels: SafeTensor | undefined;
  let nullClass = true;
  if (files.labelContext) {
    const lc = parseSafetensors(files.labelContext);
    labels = lc.tensors.get('weight');
    if (!labels) throw new DiffusersConfigError(`${where}: the label-context file has no tensor 'weight'`);
    nullClass = lc.metadata.null_class !== '-1';
  }
  const { className, module } = buildDiffusersModel(dev, config, `${where}/config.json`, labels, nullClass);
  let sources: ByteSource[];
  const w = files.weights;
  if (Array.isArray(w)) sources = w.map((x, i) => toSource(x, `shard ${i}`));
  else if (w instanceof Uint8Array || (typeof Blob !== 'undefined' && w instanceof Blob) || typeof (w as ByteSource).read === 'function') sources = [toSource(w as WeightInput, 'diffusion_pytorch_model.safetensors')];
  else sources = Object.entries(w as Record<string, WeightInput>).map(([name, x]) => toSource(x, name));
  let index: Record<string, string> | undefined;
  if (files.index) {
    const idx = json(files.index, `${where}: the safetensors index`);
    const map = idx.weight_map;
    if (typeof map !== 'object' || map === null) throw new DiffusersConfigError(`${where}: the safetensors index has no weight_map`);
    index = map as Record<string, string>;
    const shards = new Set(Object.values(index));
    for (const s of shards) if (!sources.some((src) => src.name.endsWith(s))) throw new DiffusersConfigError(`${where}: the index lists shard ${s}, which was not given`);
  }
  const report = await loadWeights(module, sources, { index, onProgress: files.onProgress, extra: labels ? new Map([['class_embedding.weight', labels]]) : undefined });
  return new DiffusersModel(dev, className, config, module, report);
}
