// `wgd train-vqgan`: trains the first stage of latent diffusion into a run folder (vqgan.safetensors,
// log.jsonl, reconstructions). The latent pipeline the diffusion commands use is src/pipelines/latent*.ts.
import { existsSync, mkdirSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Device } from '../graph/device.js';
import { Init } from '../nn/module.js';
import { VQGAN, VQGANConfig } from '../models/vqgan.js';
import { VQGANTrainer } from '../models/vqgan-trainer.js';
import { createLPIPS } from '../models/lpips.js';
import { encodeDataset, decodeLatents, loadVQGAN } from '../models/vqgan-latents.js';
import { readCheckpointFile } from '../io/checkpoint-file.js';
import { readSafetensorsFile, writeFileAtomic } from '../io/file.js';
import { gridPng, viewScale } from '../data/png.js';
import { linePlotPng } from '../data/plot.js';
import type { ImageDataset } from '../diffusion/train.js';
import { VQGANNotFoundError } from '../pipelines/latent-node.js';
import { loadDataset, DatasetSpec } from './datasets.js';
import { runTraining } from './loop.js';
import { checkFolder, checkOutputs, removeFiles } from './outputs.js';
import { keepLog, writeRunConfig, type OptionValues, type ResumeRecord } from './resume.js';
import type { StopRequest } from './stop.js';

export interface VQGANCommand {
  data: DatasetSpec;
  model: Partial<VQGANConfig>;
  steps: number;
  batch: number;
  /** Micro-batches per optimisation step (gradient accumulation; default 1). */
  accumulate?: number;
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
  const [, c, h, w] = ds.shape;
  const lpips = cmd.lpips?.length ? createLPIPS(dev, await Promise.all(cmd.lpips.map(async (f) => (await readSafetensorsFile(f)).tensors))) : null;
  const data = { images: ds.images, shape: ds.shape };
  const fresh = async () => {
    const vqgan = cmd.finetuneDecoder
      ? loadVQGAN(dev, await readCheckpointFile(cmd.finetuneDecoder)).train()
      : new VQGAN(new Init(dev, cmd.seed), { ...cmd.model, inChannels: c, outChannels: c });
    if (vqgan.config.inChannels !== c) throw new Error(`--finetune-decoder: ${cmd.finetuneDecoder} takes ${vqgan.config.inChannels}-channel images, the data has ${c}`);
    return VQGANTrainer.create(dev, vqgan, {
      batchSize: cmd.batch, height: h, width: w, lr: cmd.lr, discLr: cmd.lr, betas: [0.5, 0.9], discStart: cmd.discStart,
      discWeight: cmd.discWeight, emaDecay: cmd.emaDecay, seed: cmd.seed, discriminator: { channels: 32, layers: 2, normGroups: 8 },
      train: cmd.finetuneDecoder ? 'decoder' : 'all', accumulate: cmd.accumulate ?? 1,
    }, { lpips, data });
  };
  const trainer = cmd.resume && existsSync(path) ? await VQGANTrainer.fromCheckpoint(dev, await readCheckpointFile(path), { lpips, data }) : await fresh();
  const vq = trainer.vqgan;
  if (!cmd.resume) removeFiles(files); // --force: the old run's files go once the new one is known to start
  mkdirSync(cmd.out, { recursive: true });
  await writeRunConfig(join(cmd.out, 'config.json'), { kind: 'vqgan', vqgan: vq.config, trainer: trainer.options, data: cmd.data, factor: vq.factor, parameters: vq.parameterCount, lpips: Boolean(lpips), finetunedFrom: cmd.finetuneDecoder ?? null }, cmd, trainer.steps);
  const logPath = join(cmd.out, 'log.jsonl');
  // A resumed run redoes the steps after its checkpoint: their old log lines go.
  if (cmd.resume) await writeFileAtomic(logPath, keepLog(logPath, trainer.steps));
  const history: [number, number][] = [];
  let psnr = NaN;
  const { stopped } = await runTraining(dev, trainer, {
    command: 'train-vqgan', out: cmd.out, checkpoint: path, total: cmd.steps, stop: cmd.stop,
    logEvery: Math.min(25, cmd.checkpointEvery), checkpointEvery: cmd.checkpointEvery,
    log: async (s) => {
      const st = await trainer.progress();
      psnr = st.psnr;
      history.push([s, st.l1]);
      appendFileSync(logPath, JSON.stringify({ ...st, time: new Date().toISOString() }) + '\n');
      return { L1: st.l1, PSNR: st.psnr, perplexity: st.perplexity, ...(st.lambda !== null ? { lambda: st.lambda, D: st.dLoss! } : {}) };
    },
    afterCheckpoint: async () => {
      await writeFileAtomic(join(cmd.out, 'l1.png'), linePlotPng(history.map((x) => x[1]), { x: history.map((x) => x[0]), logY: true, smooth: 5 }));
      await writeReconstructions(trainer, ds, join(cmd.out, 'reconstructions.png'));
    },
    finish: () => ({ PSNR: psnr }),
  });
  return { psnr, path, ...(stopped ? { stopped } : {}) };
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

/** A latent model's VQ-GAN not found (see resolveVQGANPath): the library's error, with the flag that gives it. */
export async function withVQGANFlag<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    if (e instanceof VQGANNotFoundError) throw new Error(`${e.searched}; pass --vqgan PATH`);
    throw e;
  }
}
