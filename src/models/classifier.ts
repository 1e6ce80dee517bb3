// A small convolutional image classifier, trained by the engine: it labels generated samples (is this
// the letter that was asked for?) and its penultimate layer is the default feature extractor for
// Fréchet distance and nearest-neighbour retrieval.
import type { Device } from '../graph/device.js';
import { Tensor, grad } from '../graph/tensor.js';
import * as ops from '../graph/ops/index.js';
import { Init, Module } from '../nn/module.js';
import { Conv2d, GroupNorm, Linear } from '../nn/layers.js';
import { ParameterSet } from '../nn/params.js';
import { AdamW } from '../optim/adam.js';
import { GradientSum, addTo } from '../optim/accumulate.js';
import { Trainer, TrainerProgress, checkAccumulate } from '../optim/trainer.js';
import type { CompiledStep } from '../graph/compile.js';
import { CheckpointData, decodeCheckpoint, encodeCheckpoint, loadCheckpoint } from '../io/checkpoint.js';
import { ShapeError, assertKnownKeys, fmtShape } from '../runtime/errors.js';
import { mixSeed, mulberry32, gaussian } from '../data/rng.js';

export interface ClassifierConfig {
  inChannels: number;
  sampleSize: number;
  numClasses: number;
  /** Channels of the three conv stages. */
  channels: [number, number, number];
}

/** conv-GN-SiLU at full, half and quarter resolution, global mean pool (the features), linear head. */
export class Classifier extends Module {
  readonly conv1: Conv2d;
  readonly norm1: GroupNorm;
  readonly conv2: Conv2d;
  readonly norm2: GroupNorm;
  readonly conv3: Conv2d;
  readonly norm3: GroupNorm;
  readonly head: Linear;
  constructor(init: Init, readonly config: ClassifierConfig) {
    super();
    assertKnownKeys('Classifier', config, ['inChannels', 'sampleSize', 'numClasses', 'channels']);
    const isInt = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 1;
    if (!Array.isArray(config.channels) || config.channels.length !== 3 || !config.channels.every(isInt)) throw new ShapeError('Classifier', `channels = ${String(JSON.stringify(config.channels)).slice(0, 200)}: expected three integers >= 1`);
    for (const f of ['inChannels', 'sampleSize'] as const) if (!isInt(config[f])) throw new ShapeError('Classifier', `${f} = ${String(JSON.stringify(config[f])).slice(0, 200)}: expected an integer >= 1`);
    const [c1, c2, c3] = config.channels;
    if (!(Number.isSafeInteger(config.numClasses) && config.numClasses >= 2)) throw new ShapeError('Classifier', `numClasses = ${config.numClasses}: needs at least 2`);
    this.conv1 = this.child('conv1', new Conv2d(init, config.inChannels, c1, 3, { padding: 1 }));
    this.norm1 = this.child('norm1', new GroupNorm(init, 8, c1));
    this.conv2 = this.child('conv2', new Conv2d(init, c1, c2, 3, { stride: 2, padding: 1 }));
    this.norm2 = this.child('norm2', new GroupNorm(init, 8, c2));
    this.conv3 = this.child('conv3', new Conv2d(init, c2, c3, 3, { stride: 2, padding: 1 }));
    this.norm3 = this.child('norm3', new GroupNorm(init, 8, c3));
    this.head = this.child('head', new Linear(init, c3, config.numClasses));
  }
  /** Penultimate features [B, channels[2]]. */
  features(x: Tensor): Tensor {
    const { inChannels: c, sampleSize: s } = this.config;
    if (x.shape.length !== 4 || x.shape[1] !== c || x.shape[2] !== s || x.shape[3] !== s) throw new ShapeError('Classifier', `x has shape ${fmtShape(x.shape)}, expected [B, ${c}, ${s}, ${s}]`);
    let h = this.norm1.forward(this.conv1.forward(x), { silu: true });
    h = this.norm2.forward(this.conv2.forward(h), { silu: true });
    h = this.norm3.forward(this.conv3.forward(h), { silu: true });
    return ops.mean(h, [2, 3]);
  }
  /** Logits [B, numClasses]. */
  forward(x: Tensor): Tensor {
    return this.head.forward(this.features(x));
  }
}

/** Mean cross-entropy of logits [B, K] against one-hot targets [B, K]. */
export function crossEntropy(logits: Tensor, onehot: Tensor): Tensor {
  // log softmax = x - log Σ exp(x); logits of this small head stay far from exp's f32 range.
  const logZ = ops.log(ops.sum(ops.exp(logits), [1], { keepDims: true }));
  return ops.scale(ops.mean(ops.sum(ops.mul(onehot, ops.sub(logits, logZ)), 1)), -1);
}

export interface ClassifierTrainOptions {
  /** Planned length of the run (for the learning-rate schedule: warm-up, then cosine to lr/20). */
  steps: number;
  /** Images per micro-batch; a step takes batch·accumulate images. */
  batch: number;
  lr: number;
  seed?: number;
  /** Standard deviation of Gaussian noise added to training images (robustness to sampler noise). */
  noise?: number;
  /** Micro-batches per optimisation step (gradient accumulation; default 1). */
  accumulate?: number;
  /** Channels of the three conv stages (default [32, 64, 64]). */
  channels?: [number, number, number];
}

/** Labelled images [N, C, S, S] in [-1, 1] and their class names. */
export interface ClassifierData {
  images: Float32Array;
  labels: Int32Array;
  shape: readonly [number, number, number, number];
  classes: readonly string[];
}

/** What a classifier checkpoint's header holds. */
export interface ClassifierCheckpointConfig {
  kind: 'classifier';
  model: ClassifierConfig;
  classes: readonly string[];
  train: Required<ClassifierTrainOptions>;
  step: number;
  [extra: string]: unknown;
}

/**
 * Trains a Classifier on labelled images with AdamW (warm-up, cosine decay) and cross-entropy, one
 * compiled step per optimisation step. Batches are drawn with replacement from (seed, step), noise
 * included, so a run resumed from `state()` continues bit for bit. `net` is the model being trained.
 */
export class ClassifierTrainer implements Trainer {
  readonly kind = 'classifier';
  readonly net: Classifier;
  readonly params: ParameterSet;
  readonly opt: AdamW;
  readonly opts: Required<ClassifierTrainOptions>;
  /** Optimisation steps done so far. */
  steps = 0;
  /** Extra fields of the checkpoint header that `state()` writes (the data spec, an evaluation). */
  header: Record<string, unknown> = {};
  private compiled: CompiledStep<{ loss: Tensor }> | null = null;
  private last: Tensor | null = null;

  constructor(
    readonly dev: Device,
    readonly data: ClassifierData,
    opts: ClassifierTrainOptions,
  ) {
    const o = (this.opts = { seed: 0, noise: 0, channels: [32, 64, 64], ...opts, accumulate: opts.accumulate ?? 1 });
    const [n, c, s, s2] = data.shape;
    if (s !== s2 || data.images.length !== n * c * s * s || data.labels.length !== n) throw new ShapeError('ClassifierTrainer', `the data is ${fmtShape(data.shape)} with ${data.images.length} values and ${data.labels.length} labels; expected square images [N, C, S, S] and N labels`);
    const K = data.classes.length;
    const max = data.labels.reduce((m, v) => Math.max(m, v), 0);
    if (max >= K) throw new ShapeError('ClassifierTrainer', `labels go up to ${max} but there are ${K} classes`);
    for (const f of ['steps', 'batch'] as const) if (!(Number.isSafeInteger(o[f]) && o[f] >= 1)) throw new ShapeError('ClassifierTrainer', `${f} = ${o[f]} must be an integer >= 1`);
    checkAccumulate('ClassifierTrainer', o.accumulate);
    this.net = new Classifier(new Init(dev, o.seed), { inChannels: c, sampleSize: s, numClasses: K, channels: o.channels });
    this.params = new ParameterSet(this.net.namedParameters());
    this.opt = new AdamW(this.params, { lr: o.lr, warmupSteps: Math.min(50, o.steps - 1), schedule: 'cosine', totalSteps: o.steps, minLr: o.lr * 0.05 });
  }

  get accumulate(): number {
    return this.opts.accumulate;
  }

  private compile(): Promise<CompiledStep<{ loss: Tensor }>> {
    const { batch: B, accumulate: N } = this.opts;
    const { inChannels: c, sampleSize: s, numClasses: K } = this.net.config;
    const specs = Array.from({ length: N }, () => [{ shape: [B, c, s, s] }, { shape: [B, K] }]).flat();
    return this.dev.compile((...inputs: Tensor[]) => {
      if (N === 1) {
        const loss = crossEntropy(this.net.forward(inputs[0]!), inputs[1]!);
        this.opt.step(grad(loss, this.params.tensors));
        return { loss };
      }
      // Each micro-batch's mean weighs 1/N: the sum of the gradients is the large batch's.
      const grads = new GradientSum();
      let loss: Tensor | null = null;
      for (let j = 0; j < N; j++) {
        const lj = ops.scale(crossEntropy(this.net.forward(inputs[2 * j]!), inputs[2 * j + 1]!), 1 / N);
        grads.add(grad(lj, this.params.tensors));
        loss = addTo(loss, lj);
      }
      this.opt.step(grads.value);
      return { loss: loss! };
    }, specs);
  }

  /** Step s's images (noise added) and one-hot targets, batch·accumulate of them, from (seed, s). */
  batchAt(k: number): { x: Float32Array; y: Float32Array } {
    const B = this.opts.batch * this.opts.accumulate;
    const [n, c, s] = this.data.shape;
    const K = this.net.config.numClasses;
    const per = c * s * s;
    const r = mulberry32(mixSeed(this.opts.seed, k));
    const x = new Float32Array(B * per);
    const y = new Float32Array(B * K);
    for (let i = 0; i < B; i++) {
      const idx = Math.floor(r() * n);
      for (let j = 0; j < per; j++) x[i * per + j] = this.data.images[idx * per + j]! + this.opts.noise * gaussian(r);
      y[i * K + this.data.labels[idx]!] = 1;
    }
    return { x, y };
  }

  /** Record and submit one optimisation step (does not wait); returns its loss tensor, overwritten by the next step. */
  async step(): Promise<Tensor> {
    this.compiled ??= await this.compile();
    const { x, y } = this.batchAt(this.steps);
    const N = this.opts.accumulate;
    const mx = x.length / N, my = y.length / N;
    this.last = this.compiled.run(...Array.from({ length: N }, (_, j) => [x.subarray(j * mx, (j + 1) * mx), y.subarray(j * my, (j + 1) * my)]).flat()).loss;
    this.steps++;
    return this.last;
  }

  /** The last step's loss and learning rate, and the gradient norm before clipping, read back. */
  async progress(): Promise<TrainerProgress & { gradNorm: number }> {
    if (!this.last) throw new Error('ClassifierTrainer.progress: no step has run yet');
    const [loss, s] = await Promise.all([this.last.item(), this.opt.stats()]);
    return { step: this.steps, loss, lr: s.lr, gradNorm: s.gradNorm };
  }

  checkpointConfig(): ClassifierCheckpointConfig {
    return { kind: 'classifier', model: this.net.config, classes: this.data.classes, train: this.opts, step: this.steps, ...this.header };
  }

  /** Weights, AdamW state and step as safetensors (the weights under their own names, as the CLI's classifier loader reads them). */
  state(): Promise<Uint8Array> {
    return encodeCheckpoint({ params: this.params, optimizer: this.opt, config: this.checkpointConfig() });
  }

  /** Continue from `state()` of this run: weights, AdamW state and step (all or nothing). */
  resume(data: Uint8Array | CheckpointData): void {
    const ck = data instanceof Uint8Array ? decodeCheckpoint(data) : data;
    const c = ck.config as Partial<ClassifierCheckpointConfig>;
    if (c.kind !== undefined && c.kind !== 'classifier') throw new ShapeError('resume', `this checkpoint is a '${String(c.kind)}' one, not a classifier's`);
    const step = c.step ?? 0;
    if (!(typeof step === 'number' && Number.isSafeInteger(step) && step >= 0)) throw new ShapeError('resume', `the checkpoint's step = ${JSON.stringify(step)} is not a step count`);
    loadCheckpoint(ck, { params: this.params, optimizer: this.opt });
    this.steps = step;
  }

  /** Free the compiled step; the trained `net` stays usable. */
  dispose(): void {
    this.compiled?.destroy();
    this.compiled = null;
    this.last = null;
  }
}

/** Predicted classes, probabilities of the predicted class and penultimate features, in batches. */
export async function classify(dev: Device, net: Classifier, images: Float32Array, batch = 64): Promise<{ labels: Int32Array; confidence: Float32Array; features: Float32Array }> {
  const { inChannels: c, sampleSize: s, numClasses: K, channels } = net.config;
  const per = c * s * s;
  const n = images.length / per;
  if (!Number.isInteger(n)) throw new ShapeError('classify', `${images.length} values are not whole images of [${c}, ${s}, ${s}]`);
  const F = channels[2];
  const labels = new Int32Array(n), confidence = new Float32Array(n), features = new Float32Array(n * F);
  const B = Math.min(batch, n);
  const step = await dev.compile((x: Tensor) => {
    const f = net.features(x);
    return { f, p: ops.softmax(net.head.forward(f), 1) };
  }, [{ shape: [B, c, s, s] }]);
  for (let at = 0; at < n; at += B) {
    const x = new Float32Array(B * per);
    const m = Math.min(B, n - at);
    x.set(images.subarray(at * per, (at + m) * per));
    const out = step.run(x);
    const [p, f] = (await Promise.all([out.p.read(), out.f.read()])) as Float32Array[];
    for (let i = 0; i < m; i++) {
      let best = 0;
      for (let k = 1; k < K; k++) if (p![i * K + k]! > p![i * K + best]!) best = k;
      labels[at + i] = best;
      confidence[at + i] = p![i * K + best]!;
    }
    features.set(f!.subarray(0, m * F), at * F);
  }
  step.destroy();
  return { labels, confidence, features };
}
