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
  steps: number;
  batch: number;
  lr: number;
  seed?: number;
  /** Standard deviation of Gaussian noise added to training images (robustness to sampler noise). */
  noise?: number;
  onProgress?: (step: number, loss: number) => void;
}

/** Trains a classifier on labelled images [N, C, S, S] in [-1, 1]; returns it in eval mode. */
export async function trainClassifier(
  dev: Device,
  data: { images: Float32Array; labels: Int32Array; shape: readonly [number, number, number, number] },
  numClasses: number,
  opts: ClassifierTrainOptions,
  channels: [number, number, number] = [32, 64, 64],
): Promise<Classifier> {
  const [n, c, s] = data.shape;
  const net = new Classifier(new Init(dev, opts.seed ?? 0), { inChannels: c, sampleSize: s, numClasses, channels });
  const params = new ParameterSet(net.namedParameters());
  const opt = new AdamW(params, { lr: opts.lr, warmupSteps: Math.min(50, opts.steps - 1), schedule: 'cosine', totalSteps: opts.steps, minLr: opts.lr * 0.05 });
  const B = opts.batch;
  const step = await dev.compile((x: Tensor, y: Tensor) => {
    const loss = crossEntropy(net.forward(x), y);
    opt.step(grad(loss, params.tensors));
    return { loss };
  }, [{ shape: [B, c, s, s] }, { shape: [B, numClasses] }]);
  const per = c * s * s;
  const seed = opts.seed ?? 0;
  for (let k = 0; k < opts.steps; k++) {
    const r = mulberry32(mixSeed(seed, k));
    const x = new Float32Array(B * per);
    const y = new Float32Array(B * numClasses);
    for (let i = 0; i < B; i++) {
      const idx = Math.floor(r() * n);
      for (let j = 0; j < per; j++) x[i * per + j] = data.images[idx * per + j]! + (opts.noise ?? 0) * gaussian(r);
      y[i * numClasses + data.labels[idx]!] = 1;
    }
    const out = step.run(x, y);
    if (opts.onProgress && (k % 25 === 24 || k === opts.steps - 1)) opts.onProgress(k + 1, await out.loss.item());
  }
  step.destroy();
  return net.eval();
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
