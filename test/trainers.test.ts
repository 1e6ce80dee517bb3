// The trainers behind one interface (step, state, resume, progress), and gradient accumulation in each:
// N micro-batches of B give the update of one batch of N·B (within float32 rounding), and a run with
// accumulation resumes bit for bit.
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useDevice, expectClose, SEED } from './helpers.js';
import type { Device } from '../src/graph/device.js';
import { Init } from '../src/nn/module.js';
import type { ParameterSet } from '../src/nn/params.js';
import type { DeviceArray } from '../src/runtime/runtime.js';
import type { Trainer } from '../src/optim/trainer.js';
import { UNet } from '../src/models/unet.js';
import { VQGAN, VQGANConfig } from '../src/models/vqgan.js';
import { VQGANTrainer } from '../src/models/vqgan-trainer.js';
import { ClassifierTrainer } from '../src/models/classifier.js';
import { makeProcess } from '../src/diffusion/process.js';
import { DiffusionTrainer, ImageDataset } from '../src/diffusion/train.js';
import { parseSafetensors, serializeSafetensors } from '../src/io/safetensors.js';
import { decodeCheckpoint } from '../src/io/checkpoint.js';
import { main, UsageError } from '../src/cli/main.js';
import { CLASSIFIER_FILES } from '../src/cli/classifier.js';
import { mulberry32 } from '../src/data/rng.js';
import { makeColorsDataset } from '../src/data/colors.js';

const dev = useDevice();

/** Labelled 8x8 images: class k is a bright row 2k on a dark background, plus noise. */
function toyData(n: number): ImageDataset {
  const r = mulberry32(SEED + 7);
  const images = new Float32Array(n * 64), labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = i % 3;
    for (let p = 0; p < 64; p++) images[i * 64 + p] = (Math.floor(p / 8) === 2 * labels[i]! ? 0.8 : -0.8) + 0.3 * (r() - 0.5);
  }
  return { images, labels, shape: [n, 1, 8, 8], classes: ['a', 'b', 'c'] };
}

const TINY_UNET = { sampleSize: 8, inChannels: 1, outChannels: 1, blockOutChannels: [8, 16], normGroups: 4, attentionHeads: 2, attentionResolutions: [4], conditioning: 'class' as const, numClasses: 3 };
const TINY_VQ: Partial<VQGANConfig> = { blockOutChannels: [4, 8], normGroups: 2, latentChannels: 3, numEmbeddings: 16, codebookUpdate: 'ema', restartAfter: 1 };
const VQ_DISC = { channels: 4, layers: 1, normGroups: 2 };

const diffusion = (d: Device, batch: number, accumulate: number) =>
  new DiffusionTrainer(d, new UNet(new Init(d, SEED), TINY_UNET), makeProcess('ddpm'), toyData(10), { batch, accumulate, lr: 1e-3, steps: 8, seed: 3, guidanceDropout: 0.3 });
const vqgan = (d: Device, batch: number, accumulate: number) =>
  VQGANTrainer.create(d, new VQGAN(new Init(d, SEED), TINY_VQ), { batchSize: batch, accumulate, height: 8, width: 8, discStart: 1, emaDecay: 0.9, seed: 5, discriminator: VQ_DISC }, { data: makeColorsDataset({ n: 6, size: 8, seed: 2 }) });
const classifier = (d: Device, batch: number, accumulate: number) =>
  new ClassifierTrainer(d, { ...toyData(10), labels: toyData(10).labels! }, { steps: 8, batch, accumulate, lr: 2e-3, seed: 4, noise: 0.1, channels: [8, 8, 8] });

const MAKERS: Record<string, (d: Device, batch: number, accumulate: number) => Trainer | Promise<Trainer>> = { diffusion, vqgan, classifier };

/** Every tensor of a state, as bytes, by name. */
function tensorBytes(bytes: Uint8Array): Map<string, Buffer> {
  const { tensors } = parseSafetensors(bytes);
  return new Map([...tensors].map(([n, t]) => [n, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)]));
}

describe('one Trainer interface', () => {
  for (const [kind, make] of Object.entries(MAKERS)) {
    it(`${kind}: with accumulate 2, a trainer resumed from state() continues bit for bit; a failed resume changes nothing`, async () => {
      const d = dev();
      const a = await make(d, 2, 2);
      expect(a.kind).toBe(kind);
      expect(a.accumulate).toBe(2);
      await expect(a.progress()).rejects.toThrow(/no step has run yet/);
      await a.step();
      const saved = await a.state();
      const losses: number[] = [];
      for (let i = 0; i < 2; i++) {
        await a.step();
        const p = await a.progress();
        expect(p.step).toBe(i + 2);
        expect(Number.isFinite(p.loss) && Number.isFinite(p.lr)).toBe(true);
        losses.push(p.loss);
      }
      const b = await make(d, 2, 2);
      const before = await b.state();
      // One of the Adam moments cut short: the weights come first in the file and would be written
      // first, but nothing may be, since a later part does not fit.
      const { tensors, metadata } = parseSafetensors(saved);
      const broken = new Map([...tensors].map(([n, t]) => [n, n === [...tensors.keys()].filter((k) => k.startsWith('optimizer.v.')).pop() ? { ...t, shape: [1], data: t.data.slice(0, 1) } : t]));
      expect(() => b.resume(serializeSafetensors(broken, metadata))).toThrow(/shape/);
      expect(b.steps).toBe(0);
      expect(Buffer.from(await b.state()).equals(Buffer.from(before))).toBe(true);
      // Bytes that are no checkpoint, and a checkpoint of another kind, are refused too.
      expect(() => b.resume(new Uint8Array(0))).toThrow();
      const other = kind === 'classifier' ? 'diffusion' : 'classifier';
      expect(() => b.resume(serializeSafetensors(new Map(), { config: JSON.stringify({ kind: other, step: 1 }) }))).toThrow(new RegExp(`a '${other}' one`));

      b.resume(saved);
      expect(b.steps).toBe(1);
      for (let i = 0; i < 2; i++) {
        await b.step();
        expect((await b.progress()).loss).toBe(losses[i]);
      }
      // Weights, optimiser, EMA, key, codebook statistics: every bit, and the same header.
      const [sa, sb] = [await a.state(), await b.state()];
      const [ta, tb] = [tensorBytes(sa), tensorBytes(sb)];
      expect([...tb.keys()].sort()).toEqual([...ta.keys()].sort());
      for (const [n, t] of ta) expect(tb.get(n)!.equals(t), n).toBe(true);
      expect(parseSafetensors(sb).metadata).toEqual(parseSafetensors(sa).metadata);
    }, 300_000);
  }
});

/**
 * Gradients of one update (left in an Adam's flat buffer), accumulated vs the large batch's. The two
 * sum the same per-image terms in another grouping (each micro-batch's mean weighed 1/N, then the N
 * sums added), so they differ by float32 rounding of sums over a batch and its positions: 1e-5 of
 * each tensor's largest entry, plus 1e-6 of the largest entry of all, for tensors whose gradient is
 * zero up to rounding (a bias before a group norm, attention's key bias), where rounding is all there is.
 */
async function expectSameGradients(what: string, params: ParameterSet, got: DeviceArray, want: DeviceArray): Promise<void> {
  const [g, w] = await Promise.all([params.read(got), params.read(want)]);
  const top = Math.max(...[...w.values()].map((v) => Math.max(...v.map(Math.abs))));
  expect(top).toBeGreaterThan(0);
  for (const [n, v] of w) expectClose(`${what} ${n}`, g.get(n)!, v, 1e-6 * top + 1e-5 * Math.max(...v.map(Math.abs)), 1e-5);
}

/** Scalars of a step (losses over the batch, PSNR, λ): sums in another order, 1e-5 relative. */
function expectSameFigure(what: string, got: number | null, want: number | null): void {
  if (want === null) expect(got, what).toBeNull();
  else expectClose(what, [got!], [want], 1e-7, 1e-5);
}

describe('gradient accumulation: N micro-batches of B give the update of one batch of N·B', () => {
  it('diffusion: the same images, levels, labels and noise; the same gradient and loss, step after step', async () => {
    const d = dev();
    const acc = diffusion(d, 2, 2);
    const big = diffusion(d, 4, 1);
    expect(acc.batchAt(0)).toEqual(big.batchAt(0));
    for (let s = 0; s < 2; s++) {
      // From the same state (weights, Adam, EMA, key): the large-batch trainer takes the other's.
      if (s > 0) big.resume(await acc.state());
      await Promise.all([acc.step(), big.step()]);
      const [pa, pb] = await Promise.all([acc.progress(), big.progress()]);
      expectSameFigure(`loss at step ${s}`, pa.loss, pb.loss);
      expectSameFigure(`gradient norm at step ${s}`, pa.gradNorm, pb.gradNorm);
      await expectSameGradients(`step ${s}: gradient of`, acc.params, acc.opt.grads, big.opt.grads);
    }
  }, 300_000);

  it('classifier: the same gradient and loss', async () => {
    const d = dev();
    const acc = classifier(d, 4, 2);
    const big = classifier(d, 8, 1);
    await Promise.all([acc.step(), big.step()]);
    const [pa, pb] = await Promise.all([acc.progress(), big.progress()]);
    expectSameFigure('loss', pa.loss, pb.loss);
    await expectSameGradients('gradient of', acc.params, acc.opt.grads, big.opt.grads);
  }, 300_000);

  it("VQ-GAN: the large batch's adaptive weight λ, gradients of both networks and one codebook update on all the step's vectors", async () => {
    const d = dev();
    const acc = await vqgan(d, 2, 2);
    const big = await vqgan(d, 4, 1);
    expect(acc.batchAt(1)).toEqual(big.batchAt(1));
    // Step 0 before the GAN (L1 + quantizer), step 1 with it (λ, the discriminator).
    for (let s = 0; s < 2; s++) {
      if (s > 0) big.resume(await acc.state());
      await Promise.all([acc.step(), big.step()]);
      const [pa, pb] = await Promise.all([acc.progress(), big.progress()]);
      for (const f of ['loss', 'l1', 'psnr', 'qloss', 'perplexity', 'codesUsed', 'codesRecent', 'lambda', 'gLoss', 'dLoss'] as const) expectSameFigure(`${f} at step ${s}`, pa[f], pb[f]);
      expect(pa.lambda === null).toBe(s === 0);
      await expectSameGradients(`step ${s}: gradient of`, acc.params, acc.optimizer.grads, big.optimizer.grads);
      if (s === 1) await expectSameGradients('step 1: gradient of D', acc.discParams, acc.discOptimizer.grads, big.discOptimizer.grads);
      // The EMA codebook took one update from the statistics of all four images (two updates, one
      // per micro-batch, would move it further): codes, cluster sizes and sums as the large batch's;
      // ages and restarts (every unused code restarts here, restartAfter 1) exactly.
      const [qa, qb] = [acc.vqgan.quantizer, big.vqgan.quantizer];
      for (const [n, x, y] of [['codebook', qa.codebook, qb.codebook], ['cluster sizes', qa.clusterSize!, qb.clusterSize!], ['code sums', qa.embedSum!, qb.embedSum!]] as const) {
        expectClose(`${n} after step ${s}`, await x.read(), await y.read(), 1e-7, 1e-5);
      }
      expect(Array.from(await qa.age.read())).toEqual(Array.from(await qb.age.read()));
    }
  }, 300_000);
});

describe('--accumulate in the CLI', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wgd-trainers-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const classifierArgs = (out: string) => ['train-classifier', '--data', 'letters', '--size', '16', '--count', '1', '--batch', '4', '--accumulate', '2', '--steps', '6', '--checkpoint-every', '1', '--out', out];

  it('train-classifier --accumulate 2: a run stopped by SIGINT and resumed with --out RUN --resume ends bit for bit as the run never stopped', async () => {
    dev(); // the CLI makes its own devices; this keeps one alive for the file's other tests
    const whole = join(dir, 'whole');
    const stopped = join(dir, 'stopped');
    expect(await main(classifierArgs(whole))).toBe(0);
    for (const f of Object.values(CLASSIFIER_FILES)) expect(existsSync(join(whole, f)), f).toBe(true);
    // The signal comes (to the handler wgd installs) once the first checkpoint is written.
    const ck = join(stopped, CLASSIFIER_FILES.checkpoint);
    const poll = setInterval(() => {
      if (existsSync(ck)) {
        clearInterval(poll);
        process.emit('SIGINT', 'SIGINT');
      }
    }, 2);
    try {
      expect(await main(classifierArgs(stopped))).toBe(130);
    } finally {
      clearInterval(poll);
    }
    const at = (decodeCheckpoint(new Uint8Array(readFileSync(ck))).config as { step: number }).step;
    expect(at).toBeGreaterThanOrEqual(1);
    expect(at).toBeLessThan(6); // else the test proved nothing
    expect(existsSync(join(stopped, CLASSIFIER_FILES.eval))).toBe(false); // evaluated only once complete

    // The run's settings: a differing --accumulate is refused by name, as a differing --batch is.
    const refused = await main(['train-classifier', '--out', stopped, '--resume', '--accumulate', '3']).catch((e: Error) => e);
    expect(refused).toBeInstanceOf(UsageError);
    expect((refused as Error).message).toMatch(/these differ: --accumulate 3 \(the run's: 2\)\. Drop them; only --steps, --checkpoint-every may change/);
    expect(await main(['train-classifier', '--out', stopped, '--resume'])).toBe(0);
    const [a, b] = [whole, stopped].map((r) => decodeCheckpoint(new Uint8Array(readFileSync(join(r, CLASSIFIER_FILES.checkpoint)))));
    expect([...b!.tensors.keys()].sort()).toEqual([...a!.tensors.keys()].sort());
    for (const [n, t] of a!.tensors) expect(Buffer.from(b!.tensors.get(n)!.data.buffer).equals(Buffer.from(t.data.buffer)), n).toBe(true);
    expect(b!.config).toEqual(a!.config);
    expect((a!.config as { train: { accumulate: number } }).train.accumulate).toBe(2);
    expect(readFileSync(join(stopped, CLASSIFIER_FILES.eval), 'utf8')).toBe(readFileSync(join(whole, CLASSIFIER_FILES.eval), 'utf8'));
    const cfg = JSON.parse(readFileSync(join(stopped, CLASSIFIER_FILES.config), 'utf8'));
    expect(cfg.options.accumulate).toBe('2');
    expect(cfg.resumes).toHaveLength(1);
    expect(cfg.resumes[0]).toMatchObject({ from: at, changed: {} });
    const steps = readFileSync(join(stopped, CLASSIFIER_FILES.log), 'utf8').trim().split('\n').map((l) => JSON.parse(l).step);
    expect(steps).toEqual([1, 2, 3, 4, 5, 6]);
    // Without --resume or --force an existing run is refused; the classifier's files sit beside a diffusion run's.
    await expect(main(classifierArgs(whole))).rejects.toThrow(/classifier\.safetensors exists: pass --resume to continue that run, --force to replace it/);
  }, 300_000);

  it('train and train-vqgan record --accumulate and refuse another on resume; it must be an integer >= 1', async () => {
    for (const [cmd, ck] of [['train', 'checkpoint.safetensors'], ['train-vqgan', 'vqgan.safetensors']] as const) {
      const run = join(dir, `${cmd}-run`);
      mkdirSync(run);
      writeFileSync(join(run, ck), '');
      writeFileSync(join(run, 'config.json'), JSON.stringify({ options: { data: 'letters', batch: '8', accumulate: '4', steps: '10' } }));
      const e = await main([cmd, '--out', run, '--resume', '--accumulate', '2']).catch((x: Error) => x);
      expect(e).toBeInstanceOf(UsageError);
      expect((e as Error).message).toMatch(/these differ: --accumulate 2 \(the run's: 4\)/);
      for (const bad of ['0', '1.5', '-2']) {
        const u = await main([cmd, '--accumulate', bad, '--out', join(dir, 'never')]).catch((x: Error) => x);
        expect(u, `${cmd} --accumulate ${bad}`).toBeInstanceOf(UsageError);
        expect((u as Error).message).toMatch(/--accumulate/);
      }
    }
    expect(existsSync(join(dir, 'never'))).toBe(false);
  });
});
