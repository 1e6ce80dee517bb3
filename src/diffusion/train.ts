// Training a denoiser: one compiled step draws the noise on the device, forms x_t = a·x0 + b·ε,
// predicts ε, takes the gradient of the ε-MSE and updates the weights (AdamW) and their EMA. The host
// only writes the batch, the levels and the labels, all derived from (seed, step) so that a run
// resumed from a checkpoint continues exactly. With `accumulate` N the step holds N micro-batches of
// `batch` images, one forward and backward each, and one update from the summed gradients: the same
// draws (images, levels, labels, noise) and, within float32 rounding, the same update as one batch of
// N·batch images (optim/accumulate.ts).
import type { Device } from '../graph/device.js';
import type { CompiledStep } from '../graph/compile.js';
import { Tensor, grad, noGrad } from '../graph/tensor.js';
import * as ops from '../graph/ops/index.js';
import { withRandom } from '../nn/layers.js';
import { ParameterSet } from '../nn/params.js';
import { AdamW } from '../optim/adam.js';
import { EMA } from '../optim/ema.js';
import { GradientSum, addTo, microBatch, microStreams } from '../optim/accumulate.js';
import { Trainer, TrainerProgress, checkAccumulate } from '../optim/trainer.js';
import { UNet, UNetConfig, unetConfigFromCheckpoint } from '../models/unet.js';
import { Init, parameterShapes } from '../nn/module.js';
import { encodeCheckpoint, loadCheckpoint, checkCheckpointTensors, decodeCheckpoint, CheckpointData } from '../io/checkpoint.js';
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
  /** Images per micro-batch; a step takes batch·accumulate images. */
  batch: number;
  /**
   * Micro-batches per optimisation step (gradient accumulation; default 1): the update is that of one
   * batch of batch·accumulate images, with one micro-batch's activations in memory at a time. Dropout
   * masks are drawn per micro-batch (so with dropout the equality to the large batch is in distribution).
   */
  accumulate?: number;
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

const TRAIN_DEFAULTS = { accumulate: 1, warmupSteps: 0, schedule: 'constant' as const, weightDecay: 0, maxGradNorm: 1, emaDecay: 0.999, guidanceDropout: 0.1, hflip: false, seed: 0 };

/** A diffusion trainer's progress record: the Trainer figures and the gradient norm before clipping. */
export interface DiffusionProgress extends TrainerProgress {
  gradNorm: number;
}

export class DiffusionTrainer implements Trainer<DiffusionProgress> {
  readonly kind = 'diffusion';
  readonly params: ParameterSet;
  readonly opt: AdamW;
  readonly ema: EMA;
  readonly key: Tensor;
  readonly opts: Required<TrainOptions>;
  /** Optimisation steps done so far. */
  steps = 0;
  /** Extra fields of the checkpoint header that `state()` writes (the data spec, a latent model's VQ-GAN). */
  header: Partial<DiffusionCheckpointConfig> = {};
  private compiled: CompiledStep<{ loss: Tensor }> | null = null;
  private last: Tensor | null = null;
  private perm: { epoch: number; order: Uint32Array } | null = null;

  constructor(
    readonly dev: Device,
    readonly net: UNet,
    readonly process: NoiseProcess,
    readonly data: ImageDataset,
    opts: TrainOptions,
  ) {
    this.opts = { ...TRAIN_DEFAULTS, ...opts, accumulate: opts.accumulate ?? 1 };
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
    checkAccumulate('train', o.accumulate);
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

  get accumulate(): number {
    return this.opts.accumulate;
  }

  /**
   * The step: inputs (images, levels, labels) per micro-batch; the noise of the whole step is drawn at
   * once and sliced, so that micro-batch j gets the large batch's noise for its images.
   */
  private async compile(): Promise<CompiledStep<{ loss: Tensor }>> {
    const B = this.opts.batch;
    const N = this.opts.accumulate;
    const [, c, h, w] = this.data.shape;
    const specs = [{ shape: [B, c, h, w] }, { shape: [3 * B] }, ...(this.conditional ? [{ shape: [B], dtype: 'i32' as const }] : [])];
    const per = this.conditional ? 3 : 2;
    const micro = (x0: Tensor, lv: Tensor, labels: Tensor | null, noise: () => Tensor, streams?: number) => {
      const rows = lv.reshape([3, B]);
      const level = { a: ops.slice(rows, 0, 1, 0).reshape([B]), b: ops.slice(rows, 1, 1, 0).reshape([B]), time: ops.slice(rows, 2, 1, 0).reshape([B]) };
      const eps = noise();
      const item = (v: Tensor) => v.reshape([B, 1, 1, 1]);
      const xt = ops.add(ops.mul(x0, item(level.a)), ops.mul(eps, item(level.b)));
      const pred = this.process.config.predictionType;
      return withRandom(this.key, () => {
        if (pred === 'epsilon') return ops.mse(networkEps(this.net, xt, level, labels), eps);
        // v = α·ε − σ·x0 in the variance-preserving view of the network's input (α = a·c_in, σ = b·c_in), or x0.
        const { out, cin } = networkOutput(this.net, xt, level, labels);
        const target = pred === 'sample' ? x0 : ops.sub(ops.mul(eps, perSample(ops.mul(level.a, cin), x0)), ops.mul(x0, perSample(ops.mul(level.b, cin), x0)));
        return ops.mse(out, target);
      }, streams);
    };
    return this.dev.compile((...inputs: Tensor[]) => {
      let loss: Tensor;
      if (N === 1) {
        const [x0, lv, labels] = inputs as [Tensor, Tensor, Tensor?];
        loss = micro(x0, lv, labels ?? null, () => ops.randn(x0.shape, this.key, 1));
        this.opt.step(grad(loss, this.params.tensors));
      } else {
        const eps = ops.randn([N * B, c, h, w], this.key, 1);
        const grads = new GradientSum();
        let sum: Tensor | null = null;
        for (let j = 0; j < N; j++) {
          const [x0, lv, labels] = inputs.slice(j * per, (j + 1) * per) as [Tensor, Tensor, Tensor?];
          // The mean over N·B images: each micro-batch's mean weighs 1/N.
          const lj = ops.scale(micro(x0, lv, labels ?? null, () => microBatch(eps, j, B), microStreams(j)), 1 / N);
          grads.add(grad(lj, this.params.tensors));
          sum = addTo(sum, lj);
        }
        loss = sum!;
        this.opt.step(grads.value);
      }
      this.ema.update();
      ops.advanceKey(this.key);
      return { loss };
    }, Array.from({ length: N }, () => specs).flat());
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

  /**
   * The host inputs of step s: images, levels [a; b; time] and labels of its batch·accumulate images,
   * all from (seed, s); micro-batch j takes images [j·batch, (j + 1)·batch).
   */
  batchAt(s: number): { x0: Float32Array; lv: Float32Array; labels: Int32Array | null } {
    const B = this.opts.batch * this.opts.accumulate;
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

  /** Step s's inputs as the compiled step takes them: (images, levels, labels) per micro-batch. */
  private inputsAt(s: number): (Float32Array | Int32Array)[] {
    const b = this.batchAt(s);
    const N = this.opts.accumulate;
    if (N === 1) return b.labels ? [b.x0, b.lv, b.labels] : [b.x0, b.lv];
    const B = this.opts.batch;
    const per = b.x0.length / (N * B);
    const out: (Float32Array | Int32Array)[] = [];
    for (let j = 0; j < N; j++) {
      const lv = new Float32Array(3 * B);
      for (let r = 0; r < 3; r++) lv.set(b.lv.subarray(r * N * B + j * B, r * N * B + (j + 1) * B), r * B);
      out.push(b.x0.subarray(j * B * per, (j + 1) * B * per), lv);
      if (b.labels) out.push(b.labels.subarray(j * B, (j + 1) * B));
    }
    return out;
  }

  /** Record and submit one optimisation step (does not wait); returns its loss tensor, overwritten by the next step. */
  async step(): Promise<Tensor> {
    this.compiled ??= await this.compile();
    this.last = this.compiled.run(...this.inputsAt(this.steps)).loss;
    this.steps++;
    return this.last;
  }

  /** The last step's loss, learning rate and gradient norm, read back. */
  async progress(): Promise<DiffusionProgress> {
    if (!this.last) throw new Error('DiffusionTrainer.progress: no step has run yet');
    const [loss, s] = await Promise.all([this.last.item(), this.opt.stats()]);
    return { step: this.steps, loss, lr: s.lr, gradNorm: s.gradNorm };
  }

  checkpointConfig(extra: Partial<DiffusionCheckpointConfig> = {}): DiffusionCheckpointConfig {
    return { kind: 'diffusion', model: this.net.config, process: this.process.config, train: this.opts, step: this.steps, classes: this.data.classes, ...this.header, ...extra };
  }

  /** The whole training state as safetensors bytes (the header with `header`'s fields). */
  state(): Promise<Uint8Array> {
    return encodeCheckpoint({ params: this.params, ema: this.ema, optimizer: this.opt, key: this.key, config: this.checkpointConfig() as unknown as Record<string, unknown> });
  }

  /** Continue from a checkpoint of this run: weights, EMA, Adam state, key and step (all or nothing). */
  resume(data: Uint8Array | CheckpointData): void {
    const ck = data instanceof Uint8Array ? decodeCheckpoint(data) : data;
    const c = ck.config as unknown as DiffusionCheckpointConfig;
    if (c.kind !== undefined && c.kind !== 'diffusion') throw new ShapeError('resume', `this checkpoint is a '${String(c.kind)}' one, not a diffusion model's`);
    const step = c.step ?? 0;
    if (!(Number.isSafeInteger(step) && step >= 0)) throw new ShapeError('resume', `the checkpoint's step = ${JSON.stringify(step)} is not a step count`);
    loadCheckpoint(ck, { params: this.params, ema: this.ema, optimizer: this.opt, key: this.key });
    this.steps = step;
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
