// Training a denoiser: one compiled step draws the noise on the device, forms x_t = a·x0 + b·ε,
// predicts ε, takes the gradient of the ε-MSE and updates the weights (AdamW) and their EMA. The host
// only writes the batch, the levels and the labels, all derived from (seed, step) so that a run
// resumed from a checkpoint continues exactly.
import type { Device } from '../graph/device.js';
import type { CompiledStep } from '../graph/compile.js';
import { Tensor, grad, noGrad } from '../graph/tensor.js';
import * as ops from '../graph/ops/index.js';
import { withRandom } from '../nn/layers.js';
import { ParameterSet } from '../nn/params.js';
import { AdamW } from '../optim/adam.js';
import { EMA } from '../optim/ema.js';
import { UNet, UNetConfig, unetConfigFromCheckpoint } from '../models/unet.js';
import { Init, parameterShapes } from '../nn/module.js';
import { encodeCheckpoint, loadCheckpoint, checkCheckpointTensors, CheckpointData } from '../io/checkpoint.js';
import { NoiseProcess, ProcessConfig, makeProcess } from './process.js';
import { networkEps, networkOutput, perSample } from './denoiser.js';
import type { SamplerOptions } from './samplers/index.js';
import { mixSeed, mulberry32 } from '../data/rng.js';
import { ShapeError, fmtShape } from '../runtime/errors.js';

/** Images with optional class labels, NCHW in [-1, 1]. */
export interface ImageDataset {
  images: Float32Array;
  labels: Int32Array | null;
  shape: readonly [number, number, number, number];
  /** Class names (labels index them); empty when unlabelled. */
  classes: readonly string[];
}

export interface TrainOptions {
  batch: number;
  lr: number;
  /** Planned length of the run (for the learning-rate schedule). */
  steps: number;
  warmupSteps?: number;
  schedule?: 'constant' | 'cosine';
  weightDecay?: number;
  maxGradNorm?: number;
  emaDecay?: number;
  /** Probability of replacing a label by the null class (classifier-free guidance). */
  guidanceDropout?: number;
  /** Mirror a random half of each batch left-right. */
  hflip?: boolean;
  seed?: number;
}

/** What a checkpoint's header holds to rebuild the run. */
export interface DiffusionCheckpointConfig {
  kind: 'diffusion';
  model: UNetConfig;
  process: Required<ProcessConfig>;
  train: TrainOptions;
  step: number;
  classes: readonly string[];
  data?: Record<string, unknown>;
  /** A latent model: the VQ-GAN checkpoint whose latents it was trained on. */
  latent?: LatentInfo;
  /**
   * The sampler to use by default and its options, where the model brings them (a model imported
   * from diffusers: its scheduler's class, grid and clipping).
   */
  sampler?: { name: string; options: SamplerOptions };
}

/** The latent description stored in a latent diffusion checkpoint's header. */
export interface LatentInfo {
  /** The VQ-GAN checkpoint, relative to the diffusion run folder. */
  vqgan: string;
  /** Latents are multiplied by this before diffusion (1 / their standard deviation, as LDM's scale_factor). */
  scale: number;
  /** Latent shape of one image [D, h, w] and the image shape [C, H, W]. */
  latentShape: [number, number, number];
  imageShape: [number, number, number];
  /**
   * The largest |value| of the scaled training latents: samplers clip x̂0 to ±range, as pixel models
   * clip to ±1 (absent in checkpoints written before it was recorded: then no clipping).
   */
  range?: number;
}

const TRAIN_DEFAULTS = { warmupSteps: 0, schedule: 'constant' as const, weightDecay: 0, maxGradNorm: 1, emaDecay: 0.999, guidanceDropout: 0.1, hflip: false, seed: 0 };

export class DiffusionTrainer {
  readonly params: ParameterSet;
  readonly opt: AdamW;
  readonly ema: EMA;
  readonly key: Tensor;
  readonly opts: Required<TrainOptions>;
  /** Steps done so far. */
  step = 0;
  private compiled: CompiledStep<{ loss: Tensor }> | null = null;
  private perm: { epoch: number; order: Uint32Array } | null = null;

  constructor(
    readonly dev: Device,
    readonly net: UNet,
    readonly process: NoiseProcess,
    readonly data: ImageDataset,
    opts: TrainOptions,
  ) {
    this.opts = { ...TRAIN_DEFAULTS, ...opts };
    const o = this.opts;
    const cfg = net.config;
    const [, c, h, w] = data.shape;
    if (c !== cfg.inChannels || h !== cfg.sampleSize || w !== cfg.sampleSize) {
      throw new ShapeError('train', `the data is ${fmtShape(data.shape)} but the model takes [B, ${cfg.inChannels}, ${cfg.sampleSize}, ${cfg.sampleSize}]`);
    }
    if (cfg.conditioning !== 'none') {
      if (!data.labels) throw new ShapeError('train', 'a class-conditional model needs labelled data');
      const max = data.labels.reduce((m, v) => Math.max(m, v), 0);
      if (max >= cfg.numClasses) throw new ShapeError('train', `labels go up to ${max} but the model has ${cfg.numClasses} classes`);
    }
    if (!Number.isInteger(o.batch) || o.batch < 1) throw new ShapeError('train', `batch = ${o.batch} must be a positive integer`);
    if (!(o.guidanceDropout >= 0 && o.guidanceDropout < 1)) throw new ShapeError('train', `guidanceDropout = ${o.guidanceDropout} must be in [0, 1)`);
    this.params = new ParameterSet(net.namedParameters());
    this.opt = new AdamW(this.params, {
      lr: o.lr, weightDecay: o.weightDecay, maxGradNorm: o.maxGradNorm, warmupSteps: o.warmupSteps,
      schedule: o.schedule, totalSteps: Math.max(o.steps, o.warmupSteps + 1), minLr: o.schedule === 'cosine' ? o.lr * 0.1 : 0,
    });
    this.ema = new EMA(this.params, o.emaDecay);
    this.key = dev.randomKey(o.seed);
  }

  get conditional(): boolean {
    return this.net.config.conditioning !== 'none';
  }

  private async compile(): Promise<CompiledStep<{ loss: Tensor }>> {
    const B = this.opts.batch;
    const [, c, h, w] = this.data.shape;
    const specs = [{ shape: [B, c, h, w] }, { shape: [3 * B] }, ...(this.conditional ? [{ shape: [B], dtype: 'i32' as const }] : [])];
    return this.dev.compile((x0: Tensor, lv: Tensor, labels?: Tensor) => {
      const rows = lv.reshape([3, B]);
      const level = { a: ops.slice(rows, 0, 1, 0).reshape([B]), b: ops.slice(rows, 1, 1, 0).reshape([B]), time: ops.slice(rows, 2, 1, 0).reshape([B]) };
      const eps = ops.randn(x0.shape, this.key, 1);
      const per = (v: Tensor) => v.reshape([B, 1, 1, 1]);
      const xt = ops.add(ops.mul(x0, per(level.a)), ops.mul(eps, per(level.b)));
      const pred = this.process.config.predictionType;
      const loss = withRandom(this.key, () => {
        if (pred === 'epsilon') return ops.mse(networkEps(this.net, xt, level, labels ?? null), eps);
        // v = α·ε − σ·x0 in the variance-preserving view of the network's input (α = a·c_in, σ = b·c_in), or x0.
        const { out, cin } = networkOutput(this.net, xt, level, labels ?? null);
        const target = pred === 'sample' ? x0 : ops.sub(ops.mul(eps, perSample(ops.mul(level.a, cin), x0)), ops.mul(x0, perSample(ops.mul(level.b, cin), x0)));
        return ops.mse(out, target);
      });
      this.opt.step(grad(loss, this.params.tensors));
      this.ema.update();
      ops.advanceKey(this.key);
      return { loss };
    }, specs);
  }

  /** The order in which epoch e visits the data. */
  private order(epoch: number): Uint32Array {
    if (this.perm?.epoch === epoch) return this.perm.order;
    const n = this.data.shape[0];
    const order = Uint32Array.from({ length: n }, (_, i) => i);
    const r = mulberry32(mixSeed(this.opts.seed, epoch));
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    this.perm = { epoch, order };
    return order;
  }

  /** The host inputs of step s: images, levels [a; b; time] and labels, all from (seed, s). */
  batchAt(s: number): { x0: Float32Array; lv: Float32Array; labels: Int32Array | null } {
    const B = this.opts.batch;
    const [n, c, h, w] = this.data.shape;
    const per = c * h * w;
    const x0 = new Float32Array(B * per);
    const lv = new Float32Array(3 * B);
    const labels = this.conditional ? new Int32Array(B) : null;
    const r = mulberry32(mixSeed(this.opts.seed ^ 0x5bd1e995, s));
    for (let i = 0; i < B; i++) {
      const p = s * B + i;
      const idx = this.order(Math.floor(p / n))[p % n]!;
      const src = this.data.images.subarray(idx * per, (idx + 1) * per);
      if (this.opts.hflip && r() < 0.5) {
        for (let row = 0; row < c * h; row++) for (let x = 0; x < w; x++) x0[i * per + row * w + x] = src[row * w + w - 1 - x]!;
      } else x0.set(src, i * per);
      const l = this.process.trainLevel(r());
      lv[i] = l.a;
      lv[B + i] = l.b;
      lv[2 * B + i] = l.time;
      if (labels) labels[i] = r() < this.opts.guidanceDropout ? this.net.config.numClasses : this.data.labels![idx]!;
    }
    return { x0, lv, labels };
  }

  /** Run one training step (does not wait); returns the step's loss tensor, overwritten by the next step. */
  async runStep(): Promise<Tensor> {
    this.compiled ??= await this.compile();
    const b = this.batchAt(this.step);
    const out = b.labels ? this.compiled.run(b.x0, b.lv, b.labels) : this.compiled.run(b.x0, b.lv);
    this.step++;
    return out.loss;
  }

  checkpointConfig(extra: Partial<DiffusionCheckpointConfig> = {}): DiffusionCheckpointConfig {
    return { kind: 'diffusion', model: this.net.config, process: this.process.config, train: this.opts, step: this.step, classes: this.data.classes, ...extra };
  }

  /** The whole training state as safetensors bytes. */
  encode(extra: Partial<DiffusionCheckpointConfig> = {}): Promise<Uint8Array> {
    return encodeCheckpoint({ params: this.params, ema: this.ema, optimizer: this.opt, key: this.key, config: this.checkpointConfig(extra) as unknown as Record<string, unknown> });
  }

  /** Continue from a checkpoint of this run: weights, EMA, Adam state, key and step. */
  resume(ck: CheckpointData): void {
    const c = ck.config as unknown as DiffusionCheckpointConfig;
    loadCheckpoint(ck, { params: this.params, ema: this.ema, optimizer: this.opt, key: this.key });
    this.step = c.step ?? 0;
  }

  private sampling: { net: UNet; params: ParameterSet } | null = null;

  /** The sampling model: a copy of the network (made once) holding the current EMA weights. */
  emaModel(): UNet {
    if (!this.sampling) {
      const net = new UNet(new Init(this.dev, 0), this.net.config).eval();
      this.sampling = { net, params: new ParameterSet(net.namedParameters()) };
    }
    noGrad(() => this.sampling!.params.copyFrom(this.ema.flat));
    return this.sampling.net;
  }
}

/** A UNet and its process from a diffusion checkpoint's config; weights (EMA when present) loaded. */
/**
 * Sampler defaults for a model: pixel-space models clip x̂0 to the data's range [-1, 1] at every step
 * (as Ho et al. 2020's sampler and diffusers' clip_sample do): at the noisiest levels x̂0 = (x - b·ε̂)/a
 * divides a small error in ε̂ by a ≈ 0.006, and unclipped that error is carried to the end. Latent
 * models clip to the range of their training latents where the checkpoint records it: at large
 * guidance scales x̂0 otherwise leaves the latents' range and the VQ-GAN decodes it to other colours.
 * A model that brings its own sampler options (one imported from diffusers) has them on top.
 */
export function samplerDefaults(config: { latent?: LatentInfo; sampler?: { options?: SamplerOptions } }): SamplerOptions {
  const own = config.sampler?.options ?? {};
  if (!config.latent) return { clipSample: true, ...own };
  const range = config.latent.range;
  return { ...(range && range > 0 ? { clipSample: true, clipRange: range } : { clipSample: false }), ...own };
}

export function modelFromCheckpoint(dev: Device, ck: CheckpointData, opts: { ema?: boolean } = {}): { net: UNet; process: NoiseProcess; config: DiffusionCheckpointConfig } {
  const config = ck.config as unknown as DiffusionCheckpointConfig;
  if (config.kind !== 'diffusion' || !config.model || !config.process) {
    throw new ShapeError('load', `this checkpoint is not a diffusion model (its config has kind '${String((ck.config as { kind?: unknown }).kind)}'); expected kind 'diffusion' with model and process`);
  }
  // The file is checked against the model its config describes before that model is built: a file
  // without the weights must not cost the device a model's worth of memory and initialisation first.
  // A config without geluApproximate was written with the tanh GELU (unetConfigFromCheckpoint).
  const modelConfig = unetConfigFromCheckpoint(config.model);
  const shapes = parameterShapes(dev, (init) => new UNet(init, modelConfig));
  const first = shapes.keys().next().value as string;
  const useEma = (opts.ema ?? true) && ck.tensors.has(`ema.${first}`);
  const prefix = useEma ? 'ema.' : '';
  checkCheckpointTensors(ck, shapes, useEma ? 'checkpoint (EMA weights)' : 'checkpoint', (n) => ck.tensors.get(prefix + n));
  const process = makeProcess(config.process);
  const net = new UNet(new Init(dev, 0), modelConfig).eval();
  const params = new ParameterSet(net.namedParameters());
  const values = new Map<string, { shape: readonly number[]; data: Float32Array }>();
  for (const n of params.names) {
    const t = ck.tensors.get(prefix + n);
    if (t && t.data instanceof Float32Array) values.set(n, { shape: t.shape, data: t.data });
  }
  params.write(values, params.flat, useEma ? 'checkpoint (EMA weights)' : 'checkpoint');
  return { net, process, config };
}
