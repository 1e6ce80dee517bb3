import { describe, expect, it } from 'vitest';
import { useDevice, randn, SEED, expectClose } from './helpers.js';
import { grad, ops, Tensor, Device } from '../src/index.js';
import { Init, Module } from '../src/nn/module.js';
import { Conv2d, GroupNorm, Linear, Dropout, withRandom } from '../src/nn/layers.js';
import { SpatialSelfAttention } from '../src/nn/blocks.js';
import { ParameterSet } from '../src/nn/params.js';
import { Adam, AdamW, AdamOptions } from '../src/optim/adam.js';
import { EMA } from '../src/optim/ema.js';
import { AdamConfig } from '../kernels/optim.js';
import { adamRef } from './reference/optim.js';
import { UNet } from '../src/models/unet.js';
import { encodeCheckpoint, decodeCheckpoint, loadCheckpoint } from '../src/io/checkpoint.js';
import { mulberry32 } from '../src/data/rng.js';
import { saveCheckpointFile, readCheckpointFile } from '../src/io/checkpoint-file.js';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dev = useDevice();

/**
 * Wraps the device's object-creating calls and the queue's submit so a test can count them: calls of
 * each kind, the bytes of every buffer created, and the command buffers per submit.
 */
function recordGpu(gpu: GPUDevice) {
  const counts = { createBuffer: 0, createBindGroup: 0, createComputePipeline: 0, createShaderModule: 0 };
  const buffers: { size: number; buffer: GPUBuffer }[] = [];
  const submits: number[] = [];
  const restore: (() => void)[] = [];
  const patch = <T extends object>(obj: T, k: string, hook: (args: unknown[], result: unknown) => void) => {
    const o = obj as unknown as Record<string, (...a: unknown[]) => unknown>;
    const orig = o[k]!;
    o[k] = (...a: unknown[]) => {
      const r = orig.apply(obj, a);
      hook(a, r);
      return r;
    };
    restore.push(() => (o[k] = orig));
  };
  for (const k of Object.keys(counts) as (keyof typeof counts)[]) {
    patch(gpu, k, (a, r) => {
      counts[k]++;
      if (k === 'createBuffer') buffers.push({ size: (a[0] as GPUBufferDescriptor).size, buffer: r as GPUBuffer });
    });
  }
  patch(gpu.queue, 'submit', (a) => submits.push((a[0] as GPUCommandBuffer[]).length));
  return { counts, buffers, submits, restore: () => restore.splice(0).reverse().forEach((f) => f()) };
}

describe('optimizers', () => {
  for (const kind of ['adam', 'adamw'] as const) {
    it(`${kind} with warm-up, cosine decay, weight decay and clipping matches float64 over 5 steps`, async () => {
      const d = dev();
      const shapes = [[3, 4], [5], [2, 2, 3]];
      const init = shapes.map((s) => Float64Array.from(Float32Array.from(randn(s.reduce((a, b) => a * b, 1)))));
      const params = new ParameterSet(shapes.map((s, i) => [`p${i}`, d.tensor(Float32Array.from(init[i]!), s, { requiresGrad: true })]));
      const opts: AdamOptions = { lr: 0.05, weightDecay: 0.1, maxGradNorm: 1.5, warmupSteps: 2, schedule: 'cosine', totalSteps: 6, minLr: 0.005 };
      const opt = kind === 'adam' ? new Adam(params, opts) : new AdamW(params, opts);
      // The reference sees the hyper-parameters the GPU sees: rounded to f32.
      const cfg: AdamConfig = { ...opt.config };
      for (const k of ['lr', 'beta1', 'beta2', 'eps', 'weightDecay', 'maxGradNorm', 'minLr'] as const) cfg[k] = Math.fround(cfg[k]);
      const ref = init.map((p) => p.slice());
      const m = init.map((p) => new Float64Array(p.length));
      const v = init.map((p) => new Float64Array(p.length));
      for (let step = 1; step <= 5; step++) {
        const gs = shapes.map((s) => Float64Array.from(Float32Array.from(randn(s.reduce((a, b) => a * b, 1)).map((x) => x * 2))));
        opt.step(gs.map((g, i) => d.tensor(Float32Array.from(g), shapes[i]!)));
        // The reference clips by the norm over all parameters: run it on the concatenation.
        const flat = (xs: Float64Array[]) => Float64Array.from(xs.flatMap((x) => Array.from(x)));
        const P = flat(ref), G = flat(gs), M = flat(m), V = flat(v);
        const norm = adamRef(cfg, step, P, G, M, V);
        let at = 0;
        ref.forEach((r, i) => {
          r.set(P.subarray(at, at + r.length));
          m[i]!.set(M.subarray(at, at + r.length));
          v[i]!.set(V.subarray(at, at + r.length));
          at += r.length;
        });
        const s = await opt.stats();
        expect(s.step).toBe(step);
        // The norm is a sum of 29 squares in f32: 1e-6 relative.
        expect(Math.abs(s.gradNorm - norm)).toBeLessThan(1e-6 * norm);
      }
      // f32 moments and updates over 5 steps: each step moves a parameter by at most ~lr = 0.05 with
      // relative error ~1e-6 (pow, sqrt, division in f32): 1e-6 absolute on values of order 1.
      const got = await params.read();
      ref.forEach((r, i) => expectClose(`${kind} parameter ${i}`, got.get(`p${i}`)!, r, 2e-6, 1e-6));
    });
  }

  it('learning rate: linear warm-up, then constant, linear or cosine decay to minLr, as closed forms', async () => {
    const d = dev();
    const lr = 0.1, minLr = 0.01, W = 3, T = 9;
    // Update s (1-based) during warm-up uses lr·s/W; afterwards p = (s - W)/(T - W), clamped to 1.
    const closed = {
      constant: (_p: number) => lr,
      linear: (p: number) => minLr + (lr - minLr) * (1 - p),
      cosine: (p: number) => minLr + ((lr - minLr) * (1 + Math.cos(Math.PI * p))) / 2,
    };
    for (const schedule of ['constant', 'linear', 'cosine'] as const) {
      const params = new ParameterSet([['p', d.tensor(Float32Array.from(randn(6)), [6], { requiresGrad: true })]]);
      const opt = new Adam(params, { lr, minLr, warmupSteps: W, totalSteps: T, schedule });
      for (let s = 1; s <= T + 2; s++) {
        opt.step([d.tensor(Float32Array.from(randn(6)), [6])]);
        const want = s < W ? (lr * s) / W : closed[schedule](Math.min(1, (s - W) / (T - W)));
        // One f32 cosine and a few f32 products: 1e-6 relative.
        const got = (await opt.stats()).lr;
        expect(Math.abs(got - want), `${schedule} at update ${s}: ${got} vs ${want}`).toBeLessThan(1e-6 * want);
      }
    }
  });

  it('one update is the same four optimizer dispatches (norm, norm, fused Adam, step count) for 3 or 30 parameters', async () => {
    const d = dev();
    const rt = d.rt;
    for (const n of [3, 30]) {
      const params = new ParameterSet(Array.from({ length: n }, (_, i) => [`p${i}`, d.tensor(Float32Array.from(randn(i + 2)), [i + 2], { requiresGrad: true })] as [string, Tensor]));
      const opt = new AdamW(params, { maxGradNorm: 1 });
      const grads = params.tensors.map((t) => d.tensor(Float32Array.from(randn(t.size)), t.shape));
      const seen: string[] = [];
      const orig = rt.dispatch;
      rt.dispatch = function (kernel, entry, args) {
        seen.push(`${kernel.name}:${entry}`);
        return orig.call(this, kernel, entry, args);
      };
      try {
        opt.step(grads);
      } finally {
        rt.dispatch = orig;
      }
      // The gradients are gathered into the flat buffer by copies (elided in a compiled step).
      expect(seen.filter((k) => k.startsWith('optim:'))).toEqual(['optim:norm_partial', 'optim:norm_final', 'optim:adam', 'optim:finish']);
      expect(seen.length).toBe(4 + n);
    }
  });

  for (const warmup of [false, true]) {
    it(`EMA follows ema = d·ema + (1-d)·θ over several updates, in float64 (${warmup ? 'd = min(decay, (1+t)/(10+t))' : 'fixed d'})`, async () => {
      const d = dev();
      const shapes = [[4, 3], [7]];
      const init = shapes.map((sh) => Float32Array.from(randn(sh[0]! * (sh[1] ?? 1))));
      const set = new ParameterSet(shapes.map((sh, i) => [`p${i}`, d.tensor(Float32Array.from(init[i]!), sh, { requiresGrad: true })]));
      const decay = 0.9;
      const ema = new EMA(set, decay, { warmup });
      const ref = init.map((x) => Float64Array.from(x));
      for (let k = 0; k < 4; k++) {
        const theta = shapes.map((sh) => Float32Array.from(randn(sh[0]! * (sh[1] ?? 1))));
        set.write(new Map(theta.map((t, i) => [`p${i}`, { shape: shapes[i]!, data: t }])));
        ema.update();
        // Written out here from diffusers' EMAModel.get_decay (no warm-up power): min(decay, (1 + t)/(10 + t)).
        // The kernel computes it in f32 from f32 inputs.
        const dk = Math.fround(warmup ? Math.min(Math.fround(decay), Math.fround(Math.fround(1 + k) / Math.fround(10 + k))) : decay);
        ref.forEach((r, i) => r.forEach((v, j) => (r[j] = dk * v + (1 - dk) * theta[i]![j]!)));
      }
      expect(Array.from(await ema.count.rt.read(ema.count))).toEqual([4]);
      const got = await set.read(ema.flat);
      // Four f32 multiply-adds of values of order 1: 1e-6.
      ref.forEach((r, i) => expectClose(`EMA p${i}`, got.get(`p${i}`)!, r, 1e-6, 1e-6));
    });
  }
});

/** A small conv net: conv, group norm + SiLU, strided conv, spatial attention, pooling, linear. */
class ToyNet extends Module {
  readonly conv1: Conv2d;
  readonly norm: GroupNorm;
  readonly conv2: Conv2d;
  readonly attn: SpatialSelfAttention;
  readonly drop: Dropout;
  readonly head: Linear;
  constructor(init: Init, dropout = 0) {
    super();
    this.conv1 = this.child('conv1', new Conv2d(init, 1, 8, 3, { padding: 1 }));
    this.norm = this.child('norm', new GroupNorm(init, 4, 8));
    this.conv2 = this.child('conv2', new Conv2d(init, 8, 8, 3, { stride: 2, padding: 1 }));
    this.attn = this.child('attn', new SpatialSelfAttention(init, 8, { heads: 2, groups: 4 }));
    this.drop = this.child('drop', new Dropout(dropout));
    this.head = this.child('head', new Linear(init, 8, 4));
  }
  forward(x: Tensor): Tensor {
    const h = this.attn.forward(this.conv2.forward(this.norm.forward(this.conv1.forward(x), { silu: true })));
    return this.head.forward(this.drop.forward(ops.mean(h, [2, 3])));
  }
}

/** Four classes of 8x8 images: horizontal bar, vertical bar, diagonal, centred square; noisy. */
function toyBatch(seed: number, b: number): { x: Float32Array; onehot: Float32Array } {
  const r = mulberry32(seed);
  const x = new Float32Array(b * 64), onehot = new Float32Array(b * 4);
  for (let i = 0; i < b; i++) {
    const c = i % 4, p = 1 + Math.floor(r() * 6);
    onehot[i * 4 + c] = 1;
    for (let y = 0; y < 8; y++) for (let xx = 0; xx < 8; xx++) {
      const on = c === 0 ? y === p : c === 1 ? xx === p : c === 2 ? xx === y : Math.max(Math.abs(xx - 3.5), Math.abs(y - 3.5)) < 2;
      x[i * 64 + y * 8 + xx] = (on ? 1 : -1) + 0.3 * (r() - 0.5);
    }
  }
  return { x, onehot };
}

function crossEntropy(logits: Tensor, onehot: Tensor): Tensor {
  return ops.scale(ops.mean(ops.sum(ops.mul(onehot, ops.log(ops.softmax(logits, 1))), 1)), -1);
}

async function toyStep(d: Device, seed: number, opts: { dropout?: number; lr?: number } = {}) {
  const net = new ToyNet(new Init(d, seed), opts.dropout ?? 0);
  const params = new ParameterSet(net.namedParameters());
  const opt = new Adam(params, { lr: opts.lr ?? 1e-2 });
  const key = d.randomKey(seed + 1);
  const B = 16;
  const fn = (x: Tensor, onehot: Tensor) => {
    // Input noise and dropout come from the key; the key advances every step.
    const noisy = ops.add(x, ops.scale(ops.randn(x.shape, key, 7), 0.1));
    const loss = withRandom(key, () => crossEntropy(net.forward(noisy), onehot));
    opt.step(grad(loss, params.tensors));
    ops.advanceKey(key);
    return { loss };
  };
  return { net, params, opt, key, B, fn, specs: [{ shape: [B, 1, 8, 8] }, { shape: [B, 4] }] };
}

describe('training', () => {
  it('a small conv net (conv, group norm, SiLU, attention, linear) learns a toy task: loss < 0.15 within 150 steps', async () => {
    const d = dev();
    const t = await toyStep(d, SEED);
    const step = await d.compile(t.fn, t.specs);
    let loss = Infinity;
    for (let i = 0; i < 150; i++) {
      const b = toyBatch(SEED + i, t.B);
      step.run(b.x, b.onehot);
      if (i % 10 === 9 || i === 149) loss = await step.outputs.loss.item();
    }
    // Chance is ln 4 = 1.39; the classes are separable, so a working training loop gets far below it.
    expect(loss).toBeLessThan(0.15);
  });

  it('a whole training step (noise, dropout, forward, loss, backward, Adam, EMA, key advance) replays as one command buffer and creates no GPU object in 20 runs', async () => {
    const d = dev();
    const t = await toyStep(d, SEED, { dropout: 0.2 });
    const ema = new EMA(t.params, 0.99);
    const step = await d.compile((x: Tensor, y: Tensor) => {
      const out = t.fn(x, y);
      ema.update();
      return out;
    }, t.specs);
    const batches = Array.from({ length: 20 }, (_, i) => toyBatch(SEED + i, t.B));
    step.run(batches[0]!.x, batches[0]!.onehot);
    await d.sync();
    const rec = recordGpu(d.gpu);
    try {
      for (const b of batches) step.run(b.x, b.onehot);
      await d.sync();
    } finally {
      rec.restore();
    }
    expect(rec.counts).toEqual({ createBuffer: 0, createBindGroup: 0, createComputePipeline: 0, createShaderModule: 0 });
    // One submit of one command buffer per replay (the inputs go by queue.writeBuffer, no submit).
    expect(rec.submits).toEqual(new Array(20).fill(1));
    expect(Number.isFinite(await step.outputs.loss.item())).toBe(true);
    expect((await t.opt.stats()).step).toBe(21);
    expect(Array.from(await t.key.read())).toEqual([(SEED + 1) | 0, 21]);
  });

  it('the eager path and the compiled step give the same losses', async () => {
    const d = dev();
    const eager = await toyStep(d, SEED);
    const compiled = await toyStep(d, SEED);
    const step = await d.compile(compiled.fn, compiled.specs);
    for (let i = 0; i < 4; i++) {
      const b = toyBatch(SEED + i, eager.B);
      const le = await eager.fn(d.tensor(b.x, [eager.B, 1, 8, 8]), d.tensor(b.onehot, [eager.B, 4])).loss.item();
      const lc = await step.run(b.x, b.onehot).loss.item();
      // Same kernels; fused elementwise chains may contract a·b+c into an FMA: 1e-5 relative.
      expect(Math.abs(le - lc)).toBeLessThan(1e-5 * Math.abs(le) + 1e-6);
    }
  });

  it('training resumed from a checkpoint file (written through a temporary file and a rename) continues bit for bit (weights, EMA, Adam state, random key)', async () => {
    const d = dev();
    const dir = await mkdtemp(join(tmpdir(), 'wgd-ckpt-'));
    const path = join(dir, 'step3.safetensors');
    const a = await toyStep(d, SEED, { dropout: 0.2 });
    const emaA = new EMA(a.params, 0.9);
    const stepA = await d.compile((x: Tensor, y: Tensor) => {
      const out = a.fn(x, y);
      emaA.update();
      return out;
    }, a.specs);
    const losses: number[] = [];
    for (let i = 0; i < 6; i++) {
      if (i === 3) await saveCheckpointFile(path, { params: a.params, ema: emaA, optimizer: a.opt, key: a.key, config: { step: i } });
      const b = toyBatch(SEED + i, a.B);
      losses.push(await stepA.run(b.x, b.onehot).loss.item());
    }
    // A fresh model from another seed, loaded from the checkpoint taken before step 3.
    const c = await toyStep(d, SEED + 99, { dropout: 0.2 });
    const emaC = new EMA(c.params, 0.9);
    expect(await readdir(dir)).toEqual(['step3.safetensors']); // the temporary file was renamed away
    const ck = await readCheckpointFile(path);
    await rm(dir, { recursive: true, force: true });
    expect(ck.config).toEqual({ step: 3 });
    loadCheckpoint(ck, { params: c.params, ema: emaC, optimizer: c.opt, key: c.key });
    const stepC = await d.compile((x: Tensor, y: Tensor) => {
      const out = c.fn(x, y);
      emaC.update();
      return out;
    }, c.specs);
    for (let i = 3; i < 6; i++) {
      const b = toyBatch(SEED + i, c.B);
      expect(await stepC.run(b.x, b.onehot).loss.item()).toBe(losses[i]);
    }
    const [pa, pc, ea, ec] = await Promise.all([a.params.read(), c.params.read(), a.params.read(emaA.flat), c.params.read(emaC.flat)]);
    for (const n of a.params.names) {
      expect(Array.from(pc.get(n)!)).toEqual(Array.from(pa.get(n)!));
      expect(Array.from(ec.get(n)!)).toEqual(Array.from(ea.get(n)!));
    }
  });

  it('loads F16 and BF16 weights from a safetensors file, upcast exactly', async () => {
    const d = dev();
    const lin = new Linear(new Init(d, SEED), 5, 4);
    const params = new ParameterSet(lin.namedParameters());
    const r = mulberry32(SEED);
    // Random finite bit patterns: F16 with exponent field 0..30 (subnormals included), BF16 with
    // exponent field 1..254. The expected values are decoded here from the bit layouts.
    const f16 = Array.from({ length: 20 }, () => ((r() < 0.5 ? 0x8000 : 0) | (Math.floor(r() * 31) << 10) | Math.floor(r() * 1024)));
    const bf16 = Array.from({ length: 4 }, () => ((r() < 0.5 ? 0x8000 : 0) | ((1 + Math.floor(r() * 254)) << 7) | Math.floor(r() * 128)));
    const halfValue = (h: number) => {
      const sign = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, f = h & 1023;
      return sign * (e === 0 ? f * 2 ** -24 : (1 + f / 1024) * 2 ** (e - 15));
    };
    const brainValue = (h: number) => {
      const sign = h & 0x8000 ? -1 : 1, e = (h >> 7) & 255, f = h & 127;
      return sign * (1 + f / 128) * 2 ** (e - 127);
    };
    const le16 = (ws: number[]) => ws.flatMap((w) => [w & 0xff, w >> 8]);
    const header = JSON.stringify({
      __metadata__: { config: JSON.stringify({ model: 'linear' }) },
      weight: { dtype: 'F16', shape: [4, 5], data_offsets: [0, 40] },
      bias: { dtype: 'BF16', shape: [4], data_offsets: [40, 48] },
    });
    const hb = new TextEncoder().encode(header);
    const file = new Uint8Array([...new Uint8Array(new BigUint64Array([BigInt(hb.length)]).buffer), ...hb, ...le16(f16), ...le16(bf16)]);
    const dir = await mkdtemp(join(tmpdir(), 'wgd-half-'));
    const path = join(dir, 'half.safetensors');
    await writeFile(path, file);
    const ck = await readCheckpointFile(path);
    await rm(dir, { recursive: true, force: true });
    expect(ck.config).toEqual({ model: 'linear' });
    loadCheckpoint(ck, { params });
    const got = await params.read();
    // Exact: every F16 and BF16 value is an f32 value.
    expect(Array.from(got.get('weight')!)).toEqual(f16.map(halfValue));
    expect(Array.from(got.get('bias')!)).toEqual(bf16.map(brainValue));
  });

  it('a checkpoint whose shapes do not fit names the parameter and both shapes', async () => {
    const d = dev();
    const a = await toyStep(d, SEED);
    const bytes = await encodeCheckpoint({ params: a.params });
    const other = new ParameterSet([['conv1.weight', d.zeros([8, 1, 5, 5], { requiresGrad: true })]]);
    expect(() => loadCheckpoint(decodeCheckpoint(bytes), { params: other })).toThrow(/conv1\.weight.*\[8, 1, 5, 5\].*\[8, 1, 3, 3\]/);
    const missing = new ParameterSet([['nope.weight', d.zeros([2], { requiresGrad: true })]]);
    expect(() => loadCheckpoint(decodeCheckpoint(bytes), { params: missing })).toThrow(/no tensor 'nope\.weight'/);
  });
});

describe('compiled U-Net training step', () => {
  it('equals the eager path: loss and every parameter gradient (skip connections, attention, class embedding)', async () => {
    const d = dev();
    const cfg = { sampleSize: 8, blockOutChannels: [8, 16], normGroups: 4, attentionHeads: 2, attentionResolutions: [4], conditioning: 'class' as const, numClasses: 3 };
    const make = () => {
      const net = new UNet(new Init(d, SEED), cfg);
      const params = new ParameterSet(net.namedParameters());
      return { net, params, opt: new Adam(params) };
    };
    const eager = make(), compiled = make();
    const B = 2;
    const fn = (m: ReturnType<typeof make>) => (x: Tensor, t: Tensor, y: Tensor, n: Tensor) => {
      const loss = ops.mean(ops.square(ops.sub(m.net.forward(x, t, y), n)));
      m.opt.step(grad(loss, m.params.tensors));
      return { loss };
    };
    const step = await d.compile(fn(compiled), [{ shape: [B, 1, 8, 8] }, { shape: [B] }, { shape: [B], dtype: 'i32' }, { shape: [B, 1, 8, 8] }]);
    const x = Float32Array.from(randn(B * 64)), n = Float32Array.from(randn(B * 64));
    const t = Float32Array.from([Math.floor(Math.random() * 1000), Math.floor(Math.random() * 1000)]), y = Int32Array.from([1, 3]);
    const le = await fn(eager)(d.tensor(x, [B, 1, 8, 8]), d.tensor(t, [B]), d.tensor(y, [B]), d.tensor(n, [B, 1, 8, 8])).loss.item();
    const lc = await step.run(x, t, y, n).loss.item();
    // Same kernels in the same order; fused elementwise chains may contract a·b+c into an FMA.
    expect(Math.abs(le - lc)).toBeLessThan(1e-5 * Math.abs(le));
    const [ge, gc] = await Promise.all([d.rt.read(eager.opt.grads), d.rt.read(compiled.opt.grads)]);
    const gmax = Array.from(ge).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    // The same FMA contractions, carried through the backward pass: 1e-4 relative, 1e-5·max|g| absolute.
    expectClose('U-Net gradients, compiled vs eager', gc, ge, 1e-5 * gmax, 1e-4);
  });

  it('plans at most half the memory of one buffer per intermediate, and memory stays flat over 200 steps', async () => {
    const d = dev();
    const net = new UNet(new Init(d, SEED), { sampleSize: 8, blockOutChannels: [8, 16], normGroups: 4, attentionHeads: 2, attentionResolutions: [4], conditioning: 'class', numClasses: 3 });
    const params = new ParameterSet(net.namedParameters());
    const opt = new Adam(params);
    const B = 2;
    await d.sync();
    const rec = recordGpu(d.gpu);
    const step = await d.compile((x: Tensor, t: Tensor, y: Tensor, n: Tensor) => {
      const loss = ops.mean(ops.square(ops.sub(net.forward(x, t, y), n)));
      opt.step(grad(loss, params.tensors));
      return { loss };
    }, [{ shape: [B, 1, 8, 8] }, { shape: [B] }, { shape: [B], dtype: 'i32' }, { shape: [B, 1, 8, 8] }]);
    rec.restore();
    const s = step.stats;
    expect(s.plannedBytes).toBeLessThanOrEqual(0.5 * s.unplannedBytes);
    // The reported figures are what compiling really allocated: every buffer created while compiling
    // is an input, a planned slot, a constant or the uniform buffer, and their sizes add up.
    const inputBuffers = new Set(step.inputs.map((x) => x.data.buffer));
    const inputBytes = rec.buffers.filter((b) => inputBuffers.has(b.buffer)).reduce((a, b) => a + b.size, 0);
    const created = rec.buffers.reduce((a, b) => a + b.size, 0);
    expect(created - inputBytes).toBe(s.plannedBytes + s.fixedBytes);
    const x = Float32Array.from(randn(B * 64)), n = Float32Array.from(randn(B * 64));
    const t = Float32Array.from([10, 500]), y = Int32Array.from([0, 3]);
    step.run(x, t, y, n);
    await step.outputs.loss.item();
    const before = { ...d.rt.stats };
    for (let i = 0; i < 200; i++) {
      step.run(x, t, y, n);
      if (i % 50 === 49) expect(Number.isFinite(await step.outputs.loss.item())).toBe(true);
    }
    expect(d.rt.stats.buffersCreated).toBe(before.buffersCreated);
    expect(d.rt.stats.pipelinesCreated).toBe(before.pipelinesCreated);
    // Nor does the loop hold on to pooled memory: live bytes do not grow. (They may shrink, and pooled
    // bytes grow by as much, when earlier tests' tensors are garbage-collected meanwhile.)
    expect(d.rt.stats.liveBytes).toBeLessThanOrEqual(before.liveBytes);
    expect(d.rt.stats.liveBytes + d.rt.stats.pooledBytes).toBe(before.liveBytes + before.pooledBytes);
  }, 600_000); // 200 steps: about 40 s alone on 2 cores, past the default 120 s when they are shared
});
