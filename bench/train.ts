// Training-step benchmark: one compiled step (forward, MSE loss, backward, Adam) of a small U-Net-like
// stack, side by side with the same architecture and the same initial weights in tfjs's WebGPU backend
// on the same adapter. The two must give the same loss on the same batch before anything is timed.
// Run alone: node scripts/run.mjs bench/train.ts [--batch 8] [--size 16] [--channels 32] [--steps 3]
// [--rounds 3] [--json FILE]; `npm run bench` runs it after the kernel benchmarks.
import { writeFileSync } from 'node:fs';
import { grad, ops, Device, Tensor } from '../src/index.js';
import { Init, Module } from '../src/nn/module.js';
import { Conv2d, GroupNorm } from '../src/nn/layers.js';
import { Downsample, ResBlock, SpatialSelfAttention, Upsample } from '../src/nn/blocks.js';
import { ParameterSet } from '../src/nn/params.js';
import { Adam } from '../src/optim/adam.js';
import { TF, benchDevice, flag, loadTf, nchwToNhwc, randn } from './common.js';

type TfTensor = import('@tensorflow/tfjs-core').Tensor;

export interface TrainingConfig {
  batch: number;
  /** Image side; attention runs at size/2. */
  size: number;
  channels: number;
  inChannels: number;
  groups: number;
  heads: number;
  lr: number;
  /** Steps per timed round, and rounds (each engine alternately; the median round counts). */
  steps: number;
  rounds: number;
}

export const TRAINING_DEFAULTS: TrainingConfig = { batch: 8, size: 16, channels: 32, inChannels: 3, groups: 8, heads: 2, lr: 1e-3, steps: 3, rounds: 3 };

export interface EngineTiming {
  msPerStep: number;
  stepsPerSecond: number;
  /** Peak device bytes of the step, and how the figure is made up. */
  peakBytes: number | null;
  memory: Record<string, number>;
}

export interface TrainingResult {
  architecture: string;
  config: TrainingConfig;
  parameters: number;
  /** Loss on the same batch before any update, and after 1 and 2 Adam updates (informational). */
  losses: { ours: number[]; tfjs: number[] | null };
  ours: EngineTiming;
  tfjs: EngineTiming | null;
  /** tfjs ms per step / ours: how many times more steps per second the engine does. */
  speedup: number | null;
}

const ARCH = 'conv_in 3x3, GN+SiLU, ResBlock (GN+SiLU, conv, GN+SiLU, conv, +x), Downsample (3x3 stride 2), self-attention at half resolution (GN, multi-head, +x), Upsample (nearest 2x, 3x3), GN+SiLU, conv_out 3x3';

/** The stack, with the engine's modules (diffusers names). */
class Stack extends Module {
  readonly conv_in: Conv2d;
  readonly norm_in: GroupNorm;
  readonly res: ResBlock;
  readonly down: Downsample;
  readonly attn: SpatialSelfAttention;
  readonly up: Upsample;
  readonly norm_out: GroupNorm;
  readonly conv_out: Conv2d;
  constructor(init: Init, c: TrainingConfig) {
    super();
    const ch = c.channels;
    this.conv_in = this.child('conv_in', new Conv2d(init, c.inChannels, ch, 3, { padding: 1 }));
    this.norm_in = this.child('norm_in', new GroupNorm(init, c.groups, ch));
    this.res = this.child('res', new ResBlock(init, ch, ch, { groups: c.groups }));
    this.down = this.child('down', new Downsample(init, ch));
    this.attn = this.child('attn', new SpatialSelfAttention(init, ch, { heads: c.heads, groups: c.groups }));
    this.up = this.child('up', new Upsample(init, ch));
    this.norm_out = this.child('norm_out', new GroupNorm(init, c.groups, ch));
    this.conv_out = this.child('conv_out', new Conv2d(init, ch, c.inChannels, 3, { padding: 1 }));
  }
  forward(x: Tensor): Tensor {
    let h = this.norm_in.forward(this.conv_in.forward(x), { silu: true });
    h = this.res.forward(h);
    h = this.attn.forward(this.down.forward(h));
    h = this.up.forward(h);
    return this.conv_out.forward(this.norm_out.forward(h, { silu: true }));
  }
}

/**
 * The same stack in tfjs, NHWC (its WebGPU backend's native layout), from the engine's weights.
 * Group norm is composed from tfjs ops (moments over H, W and the channels of a group).
 */
function tfStack(tf: TF, c: TrainingConfig, weights: Map<string, Float32Array>, shapes: Map<string, readonly number[]>) {
  const vars = new Map<string, import('@tensorflow/tfjs-core').Variable>();
  for (const [name, w] of weights) {
    const shape = shapes.get(name)!;
    // Conv weights OIHW -> HWIO; linear weights stay [out, in] (multiplied transposed).
    const t = shape.length === 4 ? tf.transpose(tf.tensor4d(w, shape as [number, number, number, number]), [2, 3, 1, 0]) : tf.tensor(w, shape as number[]);
    vars.set(name, tf.variable(t, true, name));
    t.dispose();
  }
  const v = (n: string) => {
    const x = vars.get(n);
    if (!x) throw new Error(`tfjs stack: no weight '${n}'`);
    return x;
  };
  const conv = (x: TfTensor, p: string, stride = 1) => {
    const pad = (v(`${p}.weight`).shape[0]! - 1) / 2;
    // Explicit padding as PyTorch's: 'same' would pad a stride-2 conv only at the bottom and right.
    return tf.add(tf.conv2d(x as import('@tensorflow/tfjs-core').Tensor4D, v(`${p}.weight`) as import('@tensorflow/tfjs-core').Tensor4D, stride, [[0, 0], [pad, pad], [pad, pad], [0, 0]]), v(`${p}.bias`));
  };
  const gn = (x: TfTensor, p: string, silu: boolean) => {
    const [b, h, w, ch] = x.shape as [number, number, number, number];
    const g = c.groups;
    const xg = tf.reshape(x, [b, h, w, g, ch / g]);
    const { mean, variance } = tf.moments(xg, [1, 2, 4], true);
    const xn = tf.reshape(tf.div(tf.sub(xg, mean), tf.sqrt(tf.add(variance, 1e-5))), [b, h, w, ch]);
    const y = tf.add(tf.mul(xn, v(`${p}.weight`)), v(`${p}.bias`));
    return silu ? tf.mul(y, tf.sigmoid(y)) : y;
  };
  const linear = (x: TfTensor, p: string) => tf.add(tf.matMul(x, v(`${p}.weight`), false, true), v(`${p}.bias`));
  const attention = (x: TfTensor) => {
    const [b, h, w, ch] = x.shape as [number, number, number, number];
    const L = h * w, H = c.heads, d = ch / H;
    const t = tf.reshape(gn(x, 'attn.group_norm', false), [b * L, ch]);
    const heads = (y: TfTensor) => tf.reshape(tf.transpose(tf.reshape(y, [b, L, H, d]), [0, 2, 1, 3]), [b * H, L, d]);
    const q = heads(linear(t, 'attn.to_q')), k = heads(linear(t, 'attn.to_k')), vv = heads(linear(t, 'attn.to_v'));
    const p = tf.softmax(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(d)));
    const o = tf.reshape(tf.transpose(tf.reshape(tf.matMul(p, vv), [b, H, L, d]), [0, 2, 1, 3]), [b * L, ch]);
    return tf.add(x, tf.reshape(linear(o, 'attn.to_out.0'), [b, h, w, ch]));
  };
  const forward = (x: TfTensor) => {
    let h = gn(conv(x, 'conv_in'), 'norm_in', true);
    const r = conv(gn(conv(gn(h, 'res.norm1', true), 'res.conv1'), 'res.norm2', true), 'res.conv2');
    h = tf.add(h, r);
    h = attention(conv(h, 'down.conv', 2));
    const [, hh, ww] = h.shape as [number, number, number, number];
    h = conv(tf.image.resizeNearestNeighbor(h as import('@tensorflow/tfjs-core').Tensor4D, [2 * hh, 2 * ww]), 'up.conv');
    return conv(gn(h, 'norm_out', true), 'conv_out');
  };
  return { vars: [...vars.values()], forward };
}

/** Runs `n` training steps and waits for the last loss; returns wall ms per step. */
async function timeSteps(n: number, step: () => Promise<void> | void, last: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await step();
  await last();
  return (performance.now() - t0) / n;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function trainingBench(dev: Device, tf: TF | null, opts: Partial<TrainingConfig> = {}, log: (s: string) => void = console.log): Promise<TrainingResult> {
  const c: TrainingConfig = { ...TRAINING_DEFAULTS, ...opts };
  if (c.size % 2 !== 0) throw new Error(`training bench: size must be even, got ${c.size}`);
  const xShape = [c.batch, c.inChannels, c.size, c.size];
  const n = xShape.reduce((a, b) => a * b, 1);
  const x = randn(n, 101), target = randn(n, 102);

  // ---- ours
  const net = new Stack(new Init(dev, 7), c);
  const params = new ParameterSet(net.namedParameters());
  const initial = await params.read();
  const shapes = new Map(params.names.map((nm, i) => [nm, params.tensors[i]!.shape]));
  const opt = new Adam(params, { lr: c.lr, eps: 1e-8 });
  const step = await dev.compile((xx: Tensor, tt: Tensor) => {
    const loss = ops.mean(ops.square(ops.sub(net.forward(xx), tt)));
    opt.step(grad(loss, params.tensors));
    return { loss };
  }, [{ shape: xShape }, { shape: xShape }]);
  const ourLosses: number[] = [];
  for (let i = 0; i < 3; i++) ourLosses.push(await step.run(x, target).loss.item());

  // ---- tfjs, from the same initial weights
  let tfRun: { step: () => void; last: () => Promise<unknown>; losses: number[]; peakBytes: number; memory: Record<string, number>; dispose: () => void } | null = null;
  if (tf) {
    // Tensors other benchmarks left alive count in tfjs' totals: measure from here.
    const baseline = tf.memory().numBytes;
    const m = tfStack(tf, c, initial, shapes);
    const X = tf.tensor4d(nchwToNhwc(x, xShape), [c.batch, c.size, c.size, c.inChannels]);
    const T = tf.tensor4d(nchwToNhwc(target, xShape), [c.batch, c.size, c.size, c.inChannels]);
    const adam = tf.train.adam(c.lr, 0.9, 0.999, 1e-8);
    const lossFn = () => tf.mean(tf.square(tf.sub(m.forward(X), T))) as import('@tensorflow/tfjs-core').Scalar;
    let cost: TfTensor | null = null;
    const tfStep = () => {
      cost?.dispose();
      cost = adam.minimize(lossFn, true, m.vars);
    };
    const losses: number[] = [];
    for (let i = 0; i < 3; i++) {
      tfStep();
      losses.push((await cost!.data())[0]!);
    }
    // Peak tensor bytes during one step (weights, Adam's moments, the batch and the intermediates),
    // from tf.profile, less what was alive before the model was made.
    const prof = await tf.profile(() => tfStep());
    const mem = tf.memory() as { numBytes: number; numBytesInGPU?: number; numBytesAllocatedInGPU?: number };
    const peakBytes = prof.peakBytes - baseline;
    const memory: Record<string, number> = { profilePeakBytes: peakBytes, liveTensorBytesBetweenSteps: mem.numBytes - baseline };
    // The backend's buffer pool (all of tfjs in this process, other benchmarks included).
    if (mem.numBytesAllocatedInGPU !== undefined) memory.gpuPoolBytes = mem.numBytesAllocatedInGPU;
    const dispose = () => {
      cost?.dispose();
      adam.dispose();
      for (const t of [X, T, ...m.vars]) t.dispose();
    };
    tfRun = { step: tfStep, last: () => cost!.data(), losses, peakBytes, memory, dispose };
  }

  // Same batch, same weights: the losses before any update must agree. Both compute in f32 with
  // different summation orders (convs, group-norm moments, the mean): 1e-4 relative.
  if (tfRun) {
    const d = Math.abs(ourLosses[0]! - tfRun.losses[0]!) / Math.abs(tfRun.losses[0]!);
    if (!(d < 1e-4)) throw new Error(`training bench: step-0 loss ${ourLosses[0]} (ours) vs ${tfRun.losses[0]} (tfjs), relative difference ${d}; not timing different computations`);
  }

  // ---- timing: rounds alternate between the engines so that load on the machine hits both alike
  const ourMs: number[] = [];
  const tfMs: number[] = [];
  for (let r = 0; r < c.rounds; r++) {
    ourMs.push(await timeSteps(c.steps, () => void step.run(x, target), () => step.outputs.loss.item()));
    if (tfRun) tfMs.push(await timeSteps(c.steps, tfRun.step, tfRun.last));
  }

  const s = step.stats;
  const flatBytes = params.length * 4;
  const ourMemory = {
    stepPlannedBytes: s.plannedBytes,
    stepFixedBytes: s.fixedBytes,
    inputBytes: 2 * n * 4,
    // Parameters, the flat gradient buffer, Adam's m and v, and its state and norm partials.
    parameterAndOptimizerBytes: 4 * flatBytes + (opt.state.size + 64) * 4,
    unplannedStepBytes: s.unplannedBytes,
  };
  const ours: EngineTiming = {
    msPerStep: median(ourMs),
    stepsPerSecond: 1000 / median(ourMs),
    peakBytes: s.plannedBytes + s.fixedBytes + ourMemory.inputBytes + ourMemory.parameterAndOptimizerBytes,
    memory: ourMemory,
  };
  const theirs: EngineTiming | null = tfRun ? { msPerStep: median(tfMs), stepsPerSecond: 1000 / median(tfMs), peakBytes: tfRun.peakBytes, memory: tfRun.memory } : null;
  const result: TrainingResult = {
    architecture: ARCH,
    config: c,
    parameters: params.tensors.reduce((a, t) => a + t.size, 0),
    losses: { ours: ourLosses, tfjs: tfRun?.losses ?? null },
    ours,
    tfjs: theirs,
    speedup: theirs ? theirs.msPerStep / ours.msPerStep : null,
  };
  const mb = (b: number | null) => (b === null ? '-' : `${(b / 2 ** 20).toFixed(2)} MiB`);
  log(`training step: batch ${c.batch}, ${c.inChannels}x${c.size}x${c.size}, ${c.channels} channels, ${result.parameters} parameters; ${ARCH}`);
  log(`  loss before any update: ours ${ourLosses[0]!.toPrecision(7)}, tfjs ${tfRun ? tfRun.losses[0]!.toPrecision(7) : '-'}; after 1 and 2 Adam updates: ours ${ourLosses.slice(1).map((l) => l.toPrecision(6)).join(', ')}, tfjs ${tfRun ? tfRun.losses.slice(1).map((l) => l.toPrecision(6)).join(', ') : '-'}`);
  log(`  ours ${ours.msPerStep.toFixed(1)} ms/step (rounds ${ourMs.map((t) => t.toFixed(0)).join(', ')}), peak ${mb(ours.peakBytes)} (step ${mb(s.plannedBytes + s.fixedBytes)} planned, ${mb(s.unplannedBytes)} without reuse; parameters + Adam ${mb(ourMemory.parameterAndOptimizerBytes)})`);
  if (theirs) {
    log(`  tfjs ${theirs.msPerStep.toFixed(1)} ms/step (rounds ${tfMs.map((t) => t.toFixed(0)).join(', ')}), peak ${mb(theirs.peakBytes)} (tf.profile peakBytes; ${mb(theirs.memory.liveTensorBytesBetweenSteps!)} live between steps; GPU buffer pool ${mb(theirs.memory.gpuPoolBytes ?? null)})`);
    log(`  ours does ${result.speedup!.toFixed(2)}x tfjs's steps per second`);
  }
  step.destroy();
  tfRun?.dispose();
  return result;
}


/** The benchmark's options from the command line (--batch, --size, --channels, --steps, --rounds). */
export function trainingOptions(args: string[]): Partial<TrainingConfig> {
  const o: Partial<TrainingConfig> = {};
  for (const k of ['batch', 'size', 'channels', 'steps', 'rounds', 'heads', 'groups'] as const) {
    const v = flag(args, `--${k}`);
    if (v !== undefined) o[k] = Number(v);
  }
  return o;
}

// Standalone: node scripts/run.mjs bench/train.ts [options]
if (process.argv[1]?.endsWith('train.mjs')) {
  const args = process.argv.slice(2);
  const dev = await benchDevice(args);
  console.log(`adapter: ${dev.adapter.vendor} ${dev.adapter.architecture} ${dev.adapter.description}`.trim());
  const tf = await loadTf(dev);
  const r = await trainingBench(dev, tf, trainingOptions(args));
  const json = flag(args, '--json');
  if (json) {
    writeFileSync(json, JSON.stringify({ training: r }, null, 2));
    console.log(`wrote ${json}`);
  }
  dev.destroy();
  process.exit(0);
}
