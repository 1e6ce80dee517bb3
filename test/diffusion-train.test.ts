// The diffusion trainer and the CLI around it: exact resume, classifier-free-guidance label dropout,
// the x_t the step forms, and clear errors for bad options.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, mkdirSync, readFileSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useDevice, SEED } from './helpers.js';
import { ops } from '../src/index.js';
import { Init } from '../src/nn/module.js';
import { UNet } from '../src/models/unet.js';
import { makeProcess } from '../src/diffusion/process.js';
import { DiffusionTrainer, ImageDataset, modelFromCheckpoint, samplerDefaults } from '../src/diffusion/train.js';
import { decodeCheckpoint } from '../src/io/checkpoint.js';
import { mulberry32 } from '../src/data/rng.js';
import { main } from '../src/cli/main.js';
import { resolveVQGANPath } from '../src/pipelines/latent-node.js';
import { Progress, StepWindow } from '../src/cli/progress.js';
import { decodePng } from '../src/data/png.js';

const dev = useDevice();

/** Labelled random 8x8 images: class k is a bright k-th row on a dark background, plus noise. */
function toyData(n: number, classes = 3): ImageDataset {
  const r = mulberry32(SEED);
  const images = new Float32Array(n * 64), labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = i % classes;
    for (let p = 0; p < 64; p++) images[i * 64 + p] = (Math.floor(p / 8) === 2 * labels[i]! ? 0.8 : -0.8) + 0.1 * (r() - 0.5);
  }
  return { images, labels, shape: [n, 1, 8, 8], classes: ['a', 'b', 'c'].slice(0, classes) };
}

const TINY = { sampleSize: 8, inChannels: 1, outChannels: 1, blockOutChannels: [8, 16], normGroups: 4, attentionHeads: 2, attentionResolutions: [4], conditioning: 'class' as const, numClasses: 3 };

describe('diffusion trainer', () => {
  it('resumed from a checkpoint, training continues bit for bit (weights, EMA, Adam, key, data order)', async () => {
    const d = dev();
    const data = toyData(10);
    const make = (seed: number) => new DiffusionTrainer(d, new UNet(new Init(d, seed), TINY), makeProcess('ddpm'), data, { batch: 4, lr: 1e-3, steps: 6, seed: 3, guidanceDropout: 0.3 });
    const a = make(1);
    const losses: number[] = [];
    let saved: Uint8Array | null = null;
    for (let i = 0; i < 6; i++) {
      if (i === 3) saved = await a.state();
      losses.push(await (await a.step()).item());
    }
    const b = make(99); // other initial weights: everything must come from the checkpoint
    b.resume(decodeCheckpoint(saved!));
    expect(b.steps).toBe(3);
    for (let i = 3; i < 6; i++) expect(await (await b.step()).item()).toBe(losses[i]);
    const [pa, pb] = await Promise.all([a.params.read(a.ema.flat), b.params.read(b.ema.flat)]);
    for (const n of a.params.names) expect(Array.from(pb.get(n)!)).toEqual(Array.from(pa.get(n)!));
  });

  it('batches: an epoch visits every image once; labels become the null class with probability p; levels come from the process', () => {
    const d = dev();
    const data = toyData(12);
    const t = new DiffusionTrainer(d, new UNet(new Init(d, 0), TINY), makeProcess('ddpm'), data, { batch: 4, lr: 1e-3, steps: 1, seed: 5, guidanceDropout: 0.25 });
    // Three steps of 4 cover the 12 images once: every image's bytes appear exactly once.
    const seen = new Map<string, number>();
    for (let s = 0; s < 3; s++) {
      const b = t.batchAt(s);
      for (let i = 0; i < 4; i++) {
        const key = Array.from(b.x0.subarray(i * 64, i * 64 + 8)).join();
        seen.set(key, (seen.get(key) ?? 0) + 1);
      }
    }
    expect(seen.size).toBe(12);
    // Null labels over 2000 draws: p = 0.25, standard error 0.0097; 5 of them.
    let nulls = 0, total = 0;
    for (let s = 0; s < 500; s++) {
      const b = t.batchAt(s);
      for (const l of b.labels!) {
        total++;
        if (l === 3) nulls++;
        else expect(l).toBeLessThan(3);
      }
      // DDPM levels: a² + b² = 1, time an integer in [0, 999].
      for (let i = 0; i < 4; i++) {
        expect(Math.abs(b.lv[i]! ** 2 + b.lv[4 + i]! ** 2 - 1)).toBeLessThan(1e-6);
        expect(Number.isInteger(b.lv[8 + i]!) && b.lv[8 + i]! >= 0 && b.lv[8 + i]! < 1000).toBe(true);
      }
    }
    expect(Math.abs(nulls / total - 0.25)).toBeLessThan(5 * 0.0097);
  });

  it('data that does not fit the model is refused with both shapes', () => {
    const d = dev();
    const net = new UNet(new Init(d, 0), TINY);
    const data = { ...toyData(4), shape: [4, 3, 8, 8] as [number, number, number, number], images: new Float32Array(4 * 192) };
    expect(() => new DiffusionTrainer(d, net, makeProcess('ddpm'), data, { batch: 2, lr: 1e-3, steps: 1 })).toThrow(/data is \[4, 3, 8, 8\] but the model takes \[B, 1, 8, 8\]/);
  });
});

describe('wgd CLI', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wgd-cli-'));
  const run = join(dir, 'run');
  const ck = join(run, 'checkpoint.safetensors');

  it('train writes a run folder: config, log, checkpoint, loss plot and a sample grid; --resume continues', async () => {
    dev(); // the CLI makes its own device; this keeps one alive for the file's other tests
    const args = ['--data', 'letters', '--size', '16', '--count', '1', '--model', 'tiny', '--batch', '4', '--steps', '2', '--warmup', '0', '--checkpoint-every', '1', '--sample-every', '2', '--sample-steps', '2', '--out', run];
    expect(await main(['train', ...args])).toBe(0);
    for (const f of ['config.json', 'log.jsonl', 'checkpoint.safetensors', 'loss.png', 'samples/step-000002.png']) expect(existsSync(join(run, f)), f).toBe(true);
    const log = readFileSync(join(run, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(log.map((l: { step: number }) => l.step)).toEqual([1, 2]);
    // The grid: 8 classes x 4 samples of 16x16 shown 4x (64 px), 2-pixel gaps.
    const png = decodePng(new Uint8Array(readFileSync(join(run, 'samples/step-000002.png'))));
    expect([png.width, png.height]).toEqual([4 * 66 + 2, 8 * 66 + 2]);
    await expect(main(['train', ...args])).rejects.toThrow(/exists: pass --resume/);
    expect(await main(['train', ...args.map((a) => (a === '2' ? '3' : a)), '--resume'])).toBe(0);
    expect(JSON.parse(readFileSync(join(run, 'log.jsonl'), 'utf8').trim().split('\n').pop()!).step).toBe(3);
  }, 600_000);

  it('export keeps the EMA weights as the weights; sample writes a grid with a row per label, and a strip of x̂0', async () => {
    const exported = join(dir, 'model.safetensors');
    expect(await main(['export', '--ckpt', ck, '--out', exported])).toBe(0);
    const full = decodeCheckpoint(new Uint8Array(readFileSync(ck)));
    const small = decodeCheckpoint(new Uint8Array(readFileSync(exported)));
    expect([...small.tensors.keys()].some((n) => /^(ema|optimizer|rng)\./.test(n))).toBe(false);
    expect(Array.from(small.tensors.get('conv_in.weight')!.data)).toEqual(Array.from(full.tensors.get('ema.conv_in.weight')!.data));
    const out = join(dir, 'grid.png');
    expect(await main(['sample', '--ckpt', exported, '--sampler', 'ddim', '--steps', '4', '--label', 'A,Z', '--count', '3', '--out', out, '--strip'])).toBe(0);
    const g = decodePng(new Uint8Array(readFileSync(out)));
    expect([g.width, g.height]).toEqual([3 * 66 + 2, 2 * 66 + 2]);
    expect(existsSync(join(dir, 'grid-strip.png'))).toBe(true);
  }, 600_000);

  it("a latent model finds its VQ-GAN where its header says, or beside it when the two were copied into one folder", () => {
    const root = mkdtempSync(join(tmpdir(), 'wgd-vqpath-'));
    mkdirSync(join(root, 'runs', 'vq'), { recursive: true });
    mkdirSync(join(root, 'runs', 'latent'));
    mkdirSync(join(root, 'shipped'));
    writeFileSync(join(root, 'runs', 'vq', 'vqgan.safetensors'), '');
    expect(resolveVQGANPath('../vq/vqgan.safetensors', join(root, 'runs', 'latent', 'checkpoint.safetensors'))).toBe(join(root, 'runs', 'vq', 'vqgan.safetensors'));
    expect(() => resolveVQGANPath('../vq/vqgan.safetensors', join(root, 'shipped', 'latent.safetensors'))).toThrow(/was not found next to .*shipped.latent\.safetensors.*; give its path$/);
    writeFileSync(join(root, 'shipped', 'vqgan.safetensors'), '');
    expect(resolveVQGANPath('../vq/vqgan.safetensors', join(root, 'shipped', 'latent.safetensors'))).toBe(join(root, 'shipped', 'vqgan.safetensors'));
  });

  it('the progress bar counts steps done: at most two steps in flight, and a line per forced update in a log', async () => {
    const d = dev();
    const window = new StepWindow(d);
    const lines: string[] = [];
    const log = { isTTY: false, write: (l: string) => lines.push(l) } as unknown as NodeJS.WriteStream;
    const bar = new Progress(5, 'train', log);
    const done: number[] = [];
    let x = d.tensor(new Float32Array([1]), [1]);
    for (let s = 1; s <= 5; s++) {
      x = ops.add(x, x);
      done.push(await window.submitted(s));
      bar.update(done.at(-1)!, { loss: 0.5 }, true);
    }
    expect(done).toEqual([0, 0, 1, 2, 3]);
    expect(await x.item()).toBe(32);
    expect(lines.at(-1)).toMatch(/^train \[#+-+\] 3\/5 loss 0\.5000 {2}[0-9.e+-]+\/s {2}ETA \S+\n$/);
    // A field not measured yet (the loss before the first readback) shows a dash, not NaN.
    bar.update(3, { loss: NaN }, true);
    expect(lines.at(-1)).toMatch(/ loss – /);
    // After a readback reports step 5, the steps known done (3) do not move the count back.
    bar.update(5, {}, true);
    bar.update(3, {}, true);
    expect(lines.at(-1)).toMatch(/ 5\/5 /);
  });

  it('pixel models clip x̂0 to [-1, 1] by default, latent models to their training latents\' range where recorded', () => {
    expect(samplerDefaults({})).toEqual({ clipSample: true });
    const latent = { vqgan: 'vqgan.safetensors', scale: 1, latentShape: [4, 4, 4] as [number, number, number], imageShape: [3, 16, 16] as [number, number, number] };
    expect(samplerDefaults({ latent })).toEqual({ clipSample: false });
    // With the training latents' range recorded, to that range.
    expect(samplerDefaults({ latent: { ...latent, range: 3.5 } })).toEqual({ clipSample: true, clipRange: 3.5 });
  });

  it('bad options name the option and its allowed values', async () => {
    await expect(main(['sample', '--ckpt', ck, '--sampler', 'k-euler'])).rejects.toThrow(/--sampler = 'k-euler' is not allowed; allowed values: ddpm, ddim, plms, langevin, euler-maruyama, pc, ode, euler, heun, dpm\+\+2m/);
    await expect(main(['sample', '--ckpt', ck, '--label', 'AA'])).rejects.toThrow(/label 'AA' is not a class of this model; allowed values: A, B, C/);
    await expect(main(['sample', '--ckpt', ck, '--label', '26'])).rejects.toThrow(/label '26' is not a class/);
    await expect(main(['sample', '--ckpt', ck, '--steps', '5000'])).rejects.toThrow(/steps = 5000 is outside the allowed range 1\.\.1000/);
    await expect(main(['sample', '--ckpt', ck, '--sampler', 'langevin'])).rejects.toThrow(/needs a noise-conditional process/);
    await expect(main(['sample', '--ckpt', ck, '--threshold', '1.5'])).rejects.toThrow(/--threshold = '1\.5': expected a number >= 0\.000001 and <= 1/);
    await expect(main(['sample', '--ckpt', ck, '--threshold-max', '3'])).rejects.toThrow(/--threshold-max needs --threshold/);
    await expect(main(['train', '--process', 'edm'])).rejects.toThrow(/--process = 'edm' is not allowed; allowed values: ddpm, ncsn, vp-sde, ve-sde/);
    await expect(main(['train', '--model', 'huge', '--out', join(dir, 'x')])).rejects.toThrow(/--model 'huge' is unknown; allowed values: tiny, small, base/);
    await expect(main(['train', '--data', 'mnist', '--out', join(dir, 'y')])).rejects.toThrow(/dataset 'mnist' is unknown; allowed values: letters, colors/);
    await expect(main(['train', '--batch', '0'])).rejects.toThrow(/--batch = '0': expected an integer >= 1/);
    await expect(main(['sample', '--ckpt', ck, '--clip', 'maybe'])).rejects.toThrow(/--clip = 'maybe' is not allowed; allowed values: auto, on, off/);
    await expect(main(['sample', '--ckpt', ck, '--guidance-rescale', '2'])).rejects.toThrow(/--guidance-rescale = '2': expected a number >= 0 and <= 1/);
    await expect(main(['sample', '--ckpt', ck, '--guidance-parallel', '1.5'])).rejects.toThrow(/--guidance-parallel = '1\.5': expected a number >= 0 and <= 1/);
    await expect(main(['eval-colors', '--ckpt', ck, '--eta', '2'])).rejects.toThrow(/--eta = '2': expected a number >= 0 and <= 1/);
    await expect(main(['sample', '--ckpt', ck, '--guidance-interval', '3,1'])).rejects.toThrow(/--guidance-interval = '3,1': expected LO,HI with 0 <= LO < HI/);
  }, 600_000);

  it('latent pipeline: train-vqgan, train --latent, eval-colors with the data and VQ-GAN reference rows and classifier features', async () => {
    dev();
    const vq = join(dir, 'vq');
    const latent = join(dir, 'latent');
    const out = join(dir, 'eval-colors');
    const data = ['--data', 'colors', '--size', '16', '--count', '12'];
    expect(await main(['train-vqgan', ...data, '--level-channels', '8,8,8', '--codebook', '16x4', '--steps', '1', '--batch', '4', '--disc-start', '100', '--checkpoint-every', '1', '--out', vq])).toBe(0);
    expect(await main(['train', ...data, '--latent', join(vq, 'vqgan.safetensors'), '--model', 'tiny', '--batch', '4', '--steps', '1', '--warmup', '0', '--checkpoint-every', '1', '--sample-every', '100', '--out', latent])).toBe(0);
    expect(await main(['eval-colors', '--ckpt', join(latent, 'checkpoint.safetensors'), '--guidance', '1,3', '--count', '1', '--steps', '2', '--out', out])).toBe(0);
    // --finetune-decoder starts from the VQ-GAN's EMA weights and keeps its encoder side as it was, so
    // the latent model's latents stay valid and it samples through the new decoder.
    const vqft = join(dir, 'vq-ft');
    // Model flags cannot change a file's model: refused by name rather than ignored.
    await expect(main(['train-vqgan', ...data, '--finetune-decoder', join(vq, 'vqgan.safetensors'), '--codebook', '32x4', '--mid-attention=no', '--steps', '1', '--batch', '4', '--out', vqft])).rejects.toThrow(/train-vqgan --finetune-decoder: the model is .*vqgan\.safetensors's own; drop --codebook, --mid-attention$/);
    expect(await main(['train-vqgan', ...data, '--finetune-decoder', join(vq, 'vqgan.safetensors'), '--steps', '2', '--batch', '4', '--disc-start', '1', '--checkpoint-every', '1', '--out', vqft])).toBe(0);
    const src = decodeCheckpoint(new Uint8Array(readFileSync(join(vq, 'vqgan.safetensors')))).tensors;
    const ft = decodeCheckpoint(new Uint8Array(readFileSync(join(vqft, 'vqgan.safetensors'))));
    expect((ft.config as { trainer: { train: string } }).trainer.train).toBe('decoder');
    const frozen = [...ft.tensors.keys()].filter((n) => /^(encoder|quant_conv)\./.test(n));
    expect(frozen.length).toBeGreaterThan(0);
    for (const n of frozen) expect(Array.from(ft.tensors.get(n)!.data), n).toEqual(Array.from((src.get(`ema.${n}`) ?? src.get(n))!.data));
    expect(Array.from(ft.tensors.get('quantize.embedding.weight')!.data)).toEqual(Array.from(src.get('quantize.embedding.weight')!.data));
    expect(Array.from(ft.tensors.get('ema.decoder.conv_out.weight')!.data)).not.toEqual(Array.from(src.get('ema.decoder.conv_out.weight')!.data));
    expect(await main(['sample', '--ckpt', join(latent, 'checkpoint.safetensors'), '--vqgan', join(vqft, 'vqgan.safetensors'), '--steps', '2', '--count', '1', '--label', 'red', '--out', join(dir, 'ft-sample.png')])).toBe(0);
    // Copied away from its VQ-GAN, the latent model says so before sampling, with the CLI's flag for it.
    // (Two levels down in a folder of its own: its header's '../vq/vqgan.safetensors' leads nowhere.)
    const alone = join(mkdtempSync(join(tmpdir(), 'wgd-alone-')), 'copied', 'alone');
    mkdirSync(alone, { recursive: true });
    writeFileSync(join(alone, 'latent.safetensors'), readFileSync(join(latent, 'checkpoint.safetensors')));
    await expect(main(['sample', '--ckpt', join(alone, 'latent.safetensors'), '--steps', '2', '--out', join(alone, 'x.png')])).rejects.toThrow(/the VQ-GAN of this latent model \(\.\.\/vq\/vqgan\.safetensors\) was not found next to .*alone.latent\.safetensors.*; pass --vqgan PATH$/);
    expect(existsSync(join(alone, 'x.png'))).toBe(false);
    // The latent model records its training latents' range, and samples are clipped to it by default.
    const cfg = decodeCheckpoint(new Uint8Array(readFileSync(join(latent, 'checkpoint.safetensors')))).config as { latent: { range: number } };
    expect(cfg.latent.range).toBeGreaterThan(0);
    const m = JSON.parse(readFileSync(join(out, 'metrics.json'), 'utf8'));
    expect(m.samplerOptions).toEqual({ clipSample: true, clipRange: cfg.latent.range });
    // The VQ-GAN the samples were decoded with is on record (here found where the header says).
    expect(m.vqgan).toBe(join(vq, 'vqgan.safetensors'));
    expect(m.results.map((r: { guidance: number }) => r.guidance)).toEqual([1, 3]);
    expect(m.results[0].report.overall.count).toBe(8);
    const [real, means, rec, pure] = m.references;
    expect([real.name, means.name, rec.name, pure.name]).toEqual(['training images', 'class-mean colours, solid', 'VQ-GAN reconstructions', 'pure colours through the VQ-GAN']);
    // One solid image per colour (12 images cover all 8 classes: the data draws them in turn), and one
    // per pure colour through the VQ-GAN (a 1-step decoder cannot draw them: were the row the pure
    // images themselves, their distance would be 0).
    expect(means.report.overall.count).toBe(8);
    expect(pure.report.perClass.map((c: { count: number }) => c.count)).toEqual(new Array(8).fill(1));
    expect(pure.report.overall.labDistance).toBeGreaterThan(1);
    // With each colour's mean as drawn, in sRGB 0..255.
    expect(pure.drawn).toHaveLength(8);
    for (const c of pure.drawn) expect(c.every((v: number) => Number.isInteger(v) && v >= 0 && v <= 255) && c.length === 3).toBe(true);
    // The dataset labels each image by the metric's own rule, so the real images score 100% unless
    // the two disagree; the reconstructions are scored like samples.
    expect(real.report.overall).toMatchObject({ count: 12, accuracy: 1 });
    expect(rec.report.overall.count).toBe(12);
    // Overall accuracy is the count-weighted mean of the per-colour ones: a whole number of the 12 images.
    const perClass = rec.report.perClass as { count: number; accuracy: number }[];
    const hits = perClass.reduce((s, c) => s + (c.count ? c.accuracy * c.count : 0), 0);
    expect(perClass.reduce((s, c) => s + c.count, 0)).toBe(12);
    expect(Math.abs(hits - Math.round(hits))).toBeLessThan(1e-9);
    expect(rec.report.overall.accuracy).toBeCloseTo(Math.round(hits) / 12, 12);
    expect(Number.isFinite(rec.frechet)).toBe(true);
    const rows = readFileSync(join(out, 'table.md'), 'utf8').trim().split('\n').map((l) => l.split('|')[1]?.trim());
    expect(rows.slice(2)).toEqual(['1', '3', '(training images)', '(class-mean colours, solid)', '(VQ-GAN reconstructions)', '(pure colours through the VQ-GAN)', undefined, 'ΔE76 change, image by image', '---', 's = 1 → 3']);
    // The change from s = 1 to 3 is the paired mean of the 8 images' differences.
    expect(m.labTrend).toHaveLength(1);
    expect(m.labTrend[0].mean).toBeCloseTo(m.results[1].report.overall.labDistance - m.results[0].report.overall.labDistance, 9);
    // The sweep: a row per colour, the two scales side by side (16x16 shown 4x, 2-pixel gaps).
    const png = decodePng(new Uint8Array(readFileSync(join(out, 'sweep.png'))));
    expect([png.width, png.height]).toEqual([2 * 66 + 2, 8 * 66 + 2]);
    // Features: without a classifier beside the checkpoint, the 4x4 block colours; with one (trained on
    // colors by wgd train-classifier), its penultimate layer, found by name; 'none' forces block colours.
    expect(m.features).toBe('4x4 block means of the pixels');
    expect(await main(['train-classifier', ...data, '--steps', '1', '--batch', '4', '--out', latent])).toBe(0);
    const evalAgain = async (extra: string[]) => {
      // (the options, made safe as one folder name: a path in them would make folders, or a name ending in .safetensors)
      const o = join(dir, `eval-colors-${extra.join('').replace(/[^a-z0-9-]/gi, '_') || 'default'}`);
      expect(await main(['eval-colors', '--ckpt', join(latent, 'checkpoint.safetensors'), '--guidance', '2', '--count', '1', '--steps', '2', '--out', o, ...extra])).toBe(0);
      return JSON.parse(readFileSync(join(o, 'metrics.json'), 'utf8'));
    };
    // Single-sampler options reach the sampler and the record, as in wgd sample.
    const withClf = await evalAgain(['--eta', '0.5']);
    expect(withClf.samplerOptions).toEqual({ clipSample: true, clipRange: cfg.latent.range, eta: 0.5 });
    expect(withClf.features).toBe(join(latent, 'classifier.safetensors'));
    expect(Number.isFinite(withClf.results[0].frechet)).toBe(true);
    expect((await evalAgain(['--classifier', 'none'])).features).toBe('4x4 block means of the pixels');
    // A classifier of other classes is refused before any sampling.
    const letters = join(dir, 'letters-classifier');
    expect(await main(['train-classifier', '--data', 'letters', '--size', '16', '--count', '2', '--steps', '1', '--batch', '4', '--out', letters])).toBe(0);
    await expect(evalAgain(['--classifier', join(letters, 'classifier.safetensors')])).rejects.toThrow(/the classifier .* was trained on classes A, B, C.*; its features need the 8 colour classes/);
  }, 600_000);

  it('a checkpoint of another architecture is refused, naming what it is', async () => {
    const d = dev();
    // A diffusion checkpoint whose header says one U-Net and whose tensors are of another.
    const bytes = readFileSync(ck);
    const c = decodeCheckpoint(new Uint8Array(bytes));
    const cfg = c.config as { model: { blockOutChannels: number[] } };
    cfg.model.blockOutChannels = [32, 64];
    expect(() => modelFromCheckpoint(d, c)).toThrow(/parameter 'conv_in.weight' has shape \[32, 1, 3, 3\] in the model but \[16, 1, 3, 3\]/);
    const other = { ...c, config: { kind: 'classifier' } };
    expect(() => modelFromCheckpoint(d, other)).toThrow(/not a diffusion model \(its config has kind 'classifier'\)/);
  });
});
