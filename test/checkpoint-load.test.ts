// Loading checkpoints is all or nothing and checks before it builds: a failed load leaves its target
// exactly as it was, a file is checked against its config's model before that model takes device
// memory, and a config key the code does not know is an error rather than a silent default.
import { describe, expect, it } from 'vitest';
import { useDevice, SEED } from './helpers.js';
import { Init } from '../src/nn/module.js';
import { UNet } from '../src/models/unet.js';
import { makeProcess } from '../src/diffusion/process.js';
import { DiffusionTrainer, ImageDataset, modelFromCheckpoint } from '../src/diffusion/train.js';
import { CheckpointData, decodeCheckpoint, loadCheckpoint } from '../src/io/checkpoint.js';
import { serializeSafetensors } from '../src/io/safetensors.js';
import { mulberry32 } from '../src/data/rng.js';

const dev = useDevice();

const TINY = { sampleSize: 8, inChannels: 1, outChannels: 1, blockOutChannels: [8, 16], normGroups: 4, attentionHeads: 2, attentionResolutions: [4], conditioning: 'class' as const, numClasses: 3 };

function toyData(n: number): ImageDataset {
  const r = mulberry32(SEED);
  const images = Float32Array.from({ length: n * 64 }, () => r() * 2 - 1);
  const labels = Int32Array.from({ length: n }, (_, i) => i % 3);
  return { images, labels, shape: [n, 1, 8, 8], classes: ['a', 'b', 'c'] };
}

const trainer = (seed: number) => new DiffusionTrainer(dev(), new UNet(new Init(dev(), seed), TINY), makeProcess('ddpm'), toyData(6), { batch: 2, lr: 1e-3, steps: 4, seed });

/** Every piece of a trainer's state, read back as raw bits. */
async function state(t: DiffusionTrainer): Promise<number[][]> {
  const bits = (a: Float32Array | Int32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
  const rt = t.params.rt;
  return Promise.all([t.params.flat, t.ema.flat, t.opt.m, t.opt.v, t.opt.state, t.ema.count, t.key.data].map(async (a) => bits(await rt.read(a))));
}

function withTensor(ck: CheckpointData, name: string, t: { shape: number[]; data: Float32Array | Int32Array } | null): CheckpointData {
  const tensors = new Map(ck.tensors);
  if (t) tensors.set(name, { dtype: t.data instanceof Float32Array ? 'F32' : 'I32', ...t });
  else tensors.delete(name);
  return { tensors, config: ck.config };
}

describe('checkpoint loading', () => {
  it('a load that fails on any part (optimizer state, random key, an EMA or Adam tensor) leaves the target exactly as it was', async () => {
    const a = trainer(1);
    await a.runStep(); // Adam moments, EMA count and key away from their initial values
    const ck = decodeCheckpoint(await a.encode());
    const b = trainer(2);
    await b.runStep();
    const before = await state(b);
    const first = b.params.names[0]!;
    const bad: [string, CheckpointData][] = [
      ['optimizer.state', withTensor(ck, 'optimizer.state', { shape: [3], data: new Float32Array(3) })],
      ['rng.key', withTensor(ck, 'rng.key', { shape: [2], data: new Float32Array(2) })],
      ['ema', withTensor(ck, `ema.${b.params.names.at(-1)}`, { shape: [2], data: new Float32Array(2) })],
      ['optimizer.v', withTensor(ck, `optimizer.v.${first}`, null)],
    ];
    for (const [what, c] of bad) {
      expect(() => loadCheckpoint(c, { params: b.params, ema: b.ema, optimizer: b.opt, key: b.key }), what).toThrow(/load: /);
      expect(await state(b), `after a failed load (${what}) the state must be unchanged`).toEqual(before);
    }
    // The intact checkpoint loads (and so the comparison above was against a state that does change).
    loadCheckpoint(ck, { params: b.params, ema: b.ema, optimizer: b.opt, key: b.key });
    expect(await state(b)).toEqual(await state(a));
  });

  it('modelFromCheckpoint checks the file against its config before building: a tensor-less file with a large config fails at once, using no device memory', () => {
    const rt = dev().rt;
    // About 60M parameters (240 MB) if it were built.
    const model = { ...TINY, sampleSize: 32, blockOutChannels: [256, 512, 512, 1024], layersPerBlock: 2, normGroups: 32, attentionHeads: 8, attentionResolutions: [4] };
    const config = { kind: 'diffusion', model, process: { kind: 'ddpm' } };
    const ck = decodeCheckpoint(serializeSafetensors({}, { config: JSON.stringify(config) }));
    const live = rt.stats.liveBytes;
    const t0 = performance.now();
    expect(() => modelFromCheckpoint(dev(), ck)).toThrow(/checkpoint has no tensor 'conv_in.weight' \(expected \[256, 1, 3, 3\]\)/);
    const ms = performance.now() - t0;
    expect(rt.stats.liveBytes).toBe(live);
    // Building the model would take seconds on SwiftShader; a check of names and shapes, a small fraction.
    expect(ms).toBeLessThan(1000);
  });

  it('a wrong dtype or shape is named before the model is built', async () => {
    const a = trainer(1);
    const ck = decodeCheckpoint(await a.encode());
    const live = dev().rt.stats.liveBytes;
    expect(() => modelFromCheckpoint(dev(), withTensor(ck, 'ema.conv_out.bias', { shape: [1], data: new Int32Array(1) }))).toThrow(/tensor 'conv_out.bias' is I32, expected a float type/);
    expect(() => modelFromCheckpoint(dev(), withTensor(ck, 'ema.conv_out.bias', { shape: [2], data: new Float32Array(2) }))).toThrow(/parameter 'conv_out.bias' has shape \[1\] in the model but \[2\]/);
    expect(dev().rt.stats.liveBytes).toBe(live);
  });

  it('an unknown key in a checkpoint\'s model or process config is an error, not a silent default', async () => {
    const a = trainer(1);
    const ck = decodeCheckpoint(await a.encode());
    const cfg = ck.config as { model: Record<string, unknown>; process: Record<string, unknown> };
    // A one-letter typo: attentionHead would otherwise fall back to the default of 4 heads.
    const { attentionHeads, ...rest } = cfg.model;
    const typo = { ...ck, config: { ...cfg, model: { ...rest, attentionHead: attentionHeads } } };
    expect(() => modelFromCheckpoint(dev(), typo)).toThrow(/UNet: config has unknown key 'attentionHead'; known keys: .*attentionHeads/);
    const badProcess = { ...ck, config: { ...cfg, process: { ...cfg.process, betaEnds: 0.03 } } };
    expect(() => modelFromCheckpoint(dev(), badProcess)).toThrow(/process: config has unknown keys? 'betaEnds'/);
    // Types are checked too, before anything is sized from them.
    const badType = { ...ck, config: { ...cfg, model: { ...cfg.model, blockOutChannels: '8,16' } } };
    expect(() => modelFromCheckpoint(dev(), badType)).toThrow(/config.blockOutChannels = "8,16": must be a list of integers >= 1/);
  });
});
