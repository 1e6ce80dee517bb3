// `wgd train-vqgan`: trains the first stage of latent diffusion into a run folder (vqgan.safetensors,
// log.jsonl, reconstructions), and the latent helpers the diffusion commands use.
import { existsSync, mkdirSync, appendFileSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import type { Device } from '../graph/device.js';
import { Init } from '../nn/module.js';
import { VQGAN, VQGANConfig } from '../models/vqgan.js';
import { VQGANTrainer } from '../models/vqgan-trainer.js';
import { createLPIPS } from '../models/lpips.js';
import { encodeDataset, decodeLatents, loadVQGAN } from '../models/vqgan-latents.js';
import { readCheckpointFile } from '../io/checkpoint-file.js';
import { readSafetensorsFile, writeFileAtomic } from '../io/file.js';
import { serializeSafetensors } from '../io/safetensors.js';
import { gridPng, viewScale } from '../data/png.js';
import { linePlotPng } from '../data/plot.js';
import { mixSeed, mulberry32 } from '../data/rng.js';
import type { ImageDataset, LatentInfo } from '../diffusion/train.js';
import { loadDataset, DatasetSpec } from './datasets.js';
import { Progress, StepWindow } from './progress.js';
import { checkFolder, checkOutputs, removeFiles } from './outputs.js';
import { keepLog, writeRunConfig, type OptionValues, type ResumeRecord } from './resume.js';
import type { StopRequest } from './stop.js';

export interface VQGANCommand {
  data: DatasetSpec;
  model: Partial<VQGANConfig>;
  steps: number;
  batch: number;
  lr: number;
  discStart: number;
  discWeight: number;
  emaDecay: number;
  seed: number;
  out: string;
  resume: boolean;
  checkpointEvery: number;
  /** safetensors files with VGG16 and LPIPS weights: the perceptual loss is used only when given. */
  lpips?: string[];
  /**
   * A VQ-GAN file whose decoder to fine-tune: its weights (the EMA where it keeps one) and its
   * architecture replace `model`; the encoder and codebook stay frozen, so latents made with it stay valid.
   */
  finetuneDecoder?: string;
  /** Replace an earlier run's files in `out` (without it, an existing run is refused). */
  force?: boolean;
  /** The options as given, recorded in config.json for --resume; a resume's entry for its `resumes`. */
  options?: OptionValues;
  resumed?: ResumeRecord;
  /** Set by a signal: the loop stops after its current step, with a checkpoint. */
  stop?: StopRequest;
}

type Shape4 = [number, number, number, number];

/** Where the run goes, checked before any work (main calls this before making the device); returns the run's files. */
export function checkVQGANOutputs(cmd: VQGANCommand): string[] {
  const path = join(cmd.out, 'vqgan.safetensors');
  checkFolder('--out', cmd.out);
  if (existsSync(path) && !cmd.resume && !cmd.force) throw new Error(`${path} exists: pass --resume to continue that run, --force to replace it, or choose another --out`);
  if (cmd.resume && !existsSync(path)) throw new Error(`--resume: ${cmd.out} has no vqgan.safetensors to continue from; drop --resume to start a new run there`);
  const files = ['vqgan.safetensors', 'config.json', 'log.jsonl', 'l1.png', 'reconstructions.png'].map((f) => join(cmd.out, f));
  const dataFolder = existsSync(cmd.data.name) && !['letters', 'colors'].includes(cmd.data.name) ? cmd.data.name : undefined;
  checkOutputs({ files, inputs: [dataFolder, cmd.finetuneDecoder, ...(cmd.lpips ?? [])], force: Boolean(cmd.force), own: cmd.resume });
  return files;
}

export async function trainVQGANCommand(dev: Device, cmd: VQGANCommand): Promise<{ psnr: number; path: string; stopped?: string }> {
  const path = join(cmd.out, 'vqgan.safetensors');
  const files = checkVQGANOutputs(cmd);
  const ds = loadDataset(cmd.data);
  const [n, c, h, w] = ds.shape;
  const lpips = cmd.lpips?.length ? createLPIPS(dev, await Promise.all(cmd.lpips.map(async (f) => (await readSafetensorsFile(f)).tensors))) : null;
  const fresh = async () => {
    const vqgan = cmd.finetuneDecoder
      ? loadVQGAN(dev, await readCheckpointFile(cmd.finetuneDecoder)).train()
      : new VQGAN(new Init(dev, cmd.seed), { ...cmd.model, inChannels: c, outChannels: c });
    if (vqgan.config.inChannels !== c) throw new Error(`--finetune-decoder: ${cmd.finetuneDecoder} takes ${vqgan.config.inChannels}-channel images, the data has ${c}`);
    return VQGANTrainer.create(dev, vqgan, {
      batchSize: cmd.batch, height: h, width: w, lr: cmd.lr, discLr: cmd.lr, betas: [0.5, 0.9], discStart: cmd.discStart,
      discWeight: cmd.discWeight, emaDecay: cmd.emaDecay, seed: cmd.seed, discriminator: { channels: 32, layers: 2, normGroups: 8 },
      train: cmd.finetuneDecoder ? 'decoder' : 'all',
    }, { lpips });
  };
  const trainer = cmd.resume && existsSync(path) ? await VQGANTrainer.fromCheckpoint(dev, await readCheckpointFile(path), { lpips }) : await fresh();
  const vq = trainer.vqgan;
  if (!cmd.resume) removeFiles(files); // --force: the old run's files go once the new one is known to start
  mkdirSync(cmd.out, { recursive: true });
  await writeRunConfig(join(cmd.out, 'config.json'), { kind: 'vqgan', vqgan: vq.config, trainer: trainer.options, data: cmd.data, factor: vq.factor, parameters: vq.parameterCount, lpips: Boolean(lpips), finetunedFrom: cmd.finetuneDecoder ?? null }, cmd, trainer.steps);
  const per = c * h * w;
  const batchAt = (s: number) => {
    // Images from a seeded shuffle per epoch, as the diffusion trainer draws them: resumes exactly.
    const x = new Float32Array(cmd.batch * per);
    for (let i = 0; i < cmd.batch; i++) {
      const p = s * cmd.batch + i;
      const r = mulberry32(mixSeed(cmd.seed, Math.floor(p / n)));
      const order = Array.from({ length: n }, (_, k) => k);
      for (let k = n - 1; k > 0; k--) {
        const j = Math.floor(r() * (k + 1));
        [order[k], order[j]] = [order[j]!, order[k]!];
      }
      x.set(ds.images.subarray(order[p % n]! * per, (order[p % n]! + 1) * per), i * per);
    }
    return x;
  };
  const logPath = join(cmd.out, 'log.jsonl');
  // A resumed run redoes the steps after its checkpoint: their old log lines go.
  if (cmd.resume) await writeFileAtomic(logPath, keepLog(logPath, trainer.steps));
  const bar = new Progress(cmd.steps, 'train-vqgan', process.stderr, trainer.steps);
  const history: [number, number][] = [];
  let psnr = NaN;
  let last = {};
  const window = new StepWindow(dev);
  let saved = trainer.steps;
  while (trainer.steps < cmd.steps && !cmd.stop?.signal) {
    trainer.step(batchAt(trainer.steps));
    const s = trainer.steps;
    bar.update(await window.submitted(s), last);
    if (s % Math.min(25, cmd.checkpointEvery) === 0 || s === cmd.steps) {
      const st = await trainer.stats();
      psnr = st.psnr;
      history.push([s, st.l1]);
      appendFileSync(logPath, JSON.stringify({ ...st, time: new Date().toISOString() }) + '\n');
      last = { L1: st.l1, PSNR: st.psnr, perplexity: st.perplexity, ...(st.lambda !== null ? { lambda: st.lambda, D: st.dLoss! } : {}) };
      bar.update(s, last, true);
    }
    if (s % cmd.checkpointEvery === 0 || s === cmd.steps) {
      await writeFileAtomic(path, await trainer.checkpoint());
      saved = s;
      await writeFileAtomic(join(cmd.out, 'l1.png'), linePlotPng(history.map((x) => x[1]), { x: history.map((x) => x[0]), logY: true, smooth: 5 }));
      await writeReconstructions(trainer, ds, join(cmd.out, 'reconstructions.png'));
    }
  }
  bar.finish(trainer.steps, { PSNR: psnr });
  if (cmd.stop?.signal) {
    if (saved !== trainer.steps || !existsSync(path)) await writeFileAtomic(path, await trainer.checkpoint());
    console.error(`wgd: stopped by ${cmd.stop.signal} after step ${trainer.steps} of ${cmd.steps}; checkpoint ${path}. Continue with: wgd train-vqgan --out ${cmd.out} --resume`);
    return { psnr, path, stopped: cmd.stop.signal };
  }
  return { psnr, path };
}

/** Originals (odd rows) above their reconstructions (even rows), 8 images, with the EMA weights when kept. */
async function writeReconstructions(trainer: VQGANTrainer, ds: ImageDataset, file: string): Promise<void> {
  const [, c, h, w] = ds.shape;
  const k = Math.min(8, ds.shape[0]);
  const x = ds.images.subarray(0, k * c * h * w);
  if (trainer.ema) trainer.useEMA();
  try {
    const { latents, shape } = await encodeDataset(trainer.vqgan, x, [k, c, h, w], k);
    const { images } = await decodeLatents(trainer.vqgan, latents, shape, k);
    const both = new Float32Array(2 * x.length);
    both.set(x);
    both.set(images, x.length);
    await writeFileAtomic(file, gridPng(both, [2 * k, c, h, w], { cols: k, scale: viewScale(h) }));
  } finally {
    if (trainer.ema) trainer.useTrained();
  }
}

/** Where a latent model's VQ-GAN lives: as recorded (absolute, or relative to the checkpoint's folder). */
export function resolveVQGANPath(recorded: string, checkpoint: string): string {
  if (isAbsolute(recorded) && existsSync(recorded)) return recorded;
  for (const base of [dirname(checkpoint), process.cwd()]) {
    const p = resolve(base, recorded);
    if (existsSync(p)) return p;
  }
  // Shipped models: the two files copied into one folder keep only the VQ-GAN's file name.
  const beside = join(dirname(checkpoint), basename(recorded));
  if (existsSync(beside)) return beside;
  throw new Error(`the VQ-GAN of this latent model (${recorded}) was not found next to ${checkpoint} or in ${process.cwd()}; pass --vqgan PATH`);
}

/**
 * The dataset as scaled latents for a diffusion model, encoded once with the VQ-GAN's EMA weights and
 * cached in the run folder (reused while the VQ-GAN file and the data spec are unchanged).
 */
export async function latentDataset(dev: Device, vqganPath: string, ds: ImageDataset & { spec?: DatasetSpec }, out: string): Promise<{ data: ImageDataset; info: LatentInfo; decode: (z: Float32Array, shape: Shape4) => Promise<{ images: Float32Array; shape: Shape4 }> }> {
  const vq = loadVQGAN(dev, await readCheckpointFile(vqganPath));
  const cache = join(out, 'latents.safetensors');
  const stamp = JSON.stringify({ vqgan: resolve(vqganPath), mtime: statSync(vqganPath).mtimeMs, data: ds.spec ?? null, n: ds.shape[0] });
  let latents: Float32Array;
  let shape: number[];
  const cached = existsSync(cache) ? await readSafetensorsFile(cache).catch(() => null) : null;
  if (cached && cached.metadata.stamp === stamp && cached.tensors.get('latents')?.data instanceof Float32Array) {
    const t = cached.tensors.get('latents')!;
    latents = t.data as Float32Array;
    shape = [...t.shape];
  } else {
    ({ latents, shape } = await encodeDataset(vq, ds.images, ds.shape, 32));
    mkdirSync(out, { recursive: true });
    await writeFileAtomic(cache, serializeSafetensors(new Map([['latents', { shape, data: latents }]]), { stamp }));
  }
  let m = 0, m2 = 0;
  for (const v of latents) {
    m += v;
    m2 += v * v;
  }
  m /= latents.length;
  const scale = 1 / Math.sqrt(Math.max(m2 / latents.length - m * m, 1e-12));
  const scaled = latents.map((v) => v * scale);
  const range = scaled.reduce((r, v) => Math.max(r, Math.abs(v)), 0);
  const info: LatentInfo = {
    vqgan: relative(out, vqganPath), scale, range,
    latentShape: shape.slice(1) as [number, number, number], imageShape: ds.shape.slice(1) as [number, number, number],
  };
  return { data: { images: scaled, labels: ds.labels, shape: shape as Shape4, classes: ds.classes }, info, decode: latentDecoder(vq, scale) };
}

/** Latents (scaled) to images with a VQ-GAN: unscale, quantise, decode. */
export function latentDecoder(vq: VQGAN, scale: number) {
  return async (z: Float32Array, shape: Shape4): Promise<{ images: Float32Array; shape: Shape4 }> => {
    const r = await decodeLatents(vq, z.map((v) => v / scale), shape, 32);
    return { images: r.images, shape: r.shape as Shape4 };
  };
}

/** The decoder for a latent diffusion checkpoint's samples, or undefined for a pixel-space model. */
export async function decoderFor(dev: Device, checkpoint: string, config: { latent?: LatentInfo }, override?: string) {
  return (await firstStageFor(dev, checkpoint, config, override))?.decode;
}

/**
 * A latent checkpoint's VQ-GAN as `decode` (scaled latents to images) and `roundTrip` (images encoded,
 * quantised and decoded: what the first stage alone keeps of an image, the ceiling on what the latent
 * model's samples can show); undefined for a pixel-space model.
 */
export async function firstStageFor(dev: Device, checkpoint: string, config: { latent?: LatentInfo }, override?: string) {
  if (!config.latent) return undefined;
  const path = override ?? resolveVQGANPath(config.latent.vqgan, checkpoint);
  const vq = loadVQGAN(dev, await readCheckpointFile(path));
  const roundTrip = async (images: Float32Array, shape: readonly number[]): Promise<Float32Array> => {
    const { latents, shape: zShape } = await encodeDataset(vq, images, shape, 32);
    return (await decodeLatents(vq, latents, zShape, 32)).images;
  };
  return { decode: latentDecoder(vq, config.latent.scale), roundTrip, path };
}
