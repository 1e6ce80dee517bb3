// `wgd train`: trains a diffusion model into a run folder (config.json, log.jsonl, checkpoint,
// sample grids, loss plot), with a progress bar; resumes exactly from the folder's checkpoint.
import { existsSync, mkdirSync, writeFileSync, appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Device } from '../graph/device.js';
import { Tensor, noGrad } from '../graph/tensor.js';
import * as ops from '../graph/ops/index.js';
import { Init } from '../nn/module.js';
import { UNet, UNetConfig, resolveUNetConfig, unetConfigFromCheckpoint } from '../models/unet.js';
import { makeProcess, ProcessConfig, ProcessKind } from '../diffusion/process.js';
import { DiffusionTrainer, LatentInfo, TrainOptions, samplerDefaults } from '../diffusion/train.js';
import { generate } from '../diffusion/generate.js';
import { samplersFor } from '../diffusion/samplers/index.js';
import { readCheckpointFile } from '../io/checkpoint-file.js';
import { writeFileAtomic } from '../io/file.js';
import { gridPng, viewScale } from '../data/png.js';
import { linePlotPng } from '../data/plot.js';
import { loadDataset, DatasetSpec } from './datasets.js';
import { presetConfig } from './models.js';
import { Progress, StepWindow } from './progress.js';
import { latentDataset } from './vqgan.js';

export interface TrainCommand {
  data: DatasetSpec;
  model: string;
  /** Overrides of the preset, e.g. { blockOutChannels: [32, 64] } or a conditioning. */
  modelConfig?: Partial<UNetConfig>;
  conditioning?: UNetConfig['conditioning'];
  process: ProcessKind;
  processConfig?: Partial<ProcessConfig>;
  train: TrainOptions;
  out: string;
  resume: boolean;
  /** Checkpoint, log and grid every so many steps. */
  checkpointEvery: number;
  sampleEvery: number;
  sampleSteps: number;
  /** Extra fields for the checkpoint header (latent runs record their VQ-GAN here). */
  extraConfig?: Record<string, unknown>;
  /** Train on the latents of this VQ-GAN checkpoint (latent diffusion); samples are decoded with it. */
  latent?: string;
}

/** Up to 8 classes spread over the label range, a row of 4 samples each; or 16 unlabelled samples. */
function gridLabels(classes: readonly string[]): number[] | null {
  if (!classes.length) return null;
  const k = Math.min(8, classes.length);
  const picks = Array.from({ length: k }, (_, i) => Math.floor((i * classes.length) / k));
  return picks.flatMap((c) => [c, c, c, c]);
}

export async function trainCommand(dev: Device, cmd: TrainCommand): Promise<{ finalLoss: number; out: string }> {
  const ckPath = join(cmd.out, 'checkpoint.safetensors');
  mkdirSync(join(cmd.out, 'samples'), { recursive: true });
  if (existsSync(ckPath) && !cmd.resume) throw new Error(`${ckPath} exists: pass --resume to continue that run, or choose another --out`);
  const images = loadDataset(cmd.data);
  // Latent diffusion: the same loop on the VQ-GAN's latents (encoded once, cached in the run folder).
  const latent = cmd.latent ? await latentDataset(dev, cmd.latent, images, cmd.out) : null;
  const ds = latent?.data ?? images;
  const [, channels, size] = ds.shape;

  let modelCfg: UNetConfig;
  let processCfg: ProcessConfig;
  const ck = cmd.resume && existsSync(ckPath) ? await readCheckpointFile(ckPath) : null;
  if (ck) {
    const c = ck.config as { model?: UNetConfig; process?: ProcessConfig; kind?: string };
    if (c.kind !== 'diffusion' || !c.model || !c.process) throw new Error(`${ckPath} is not a diffusion checkpoint`);
    modelCfg = unetConfigFromCheckpoint(c.model);
    processCfg = c.process;
  } else {
    // Class labels join through cross-attention in latent models (as LDM's class-conditional ones), else the time embedding.
    const conditioning = cmd.conditioning ?? (ds.labels ? (latent ? 'cross' : 'class') : 'none');
    modelCfg = resolveUNetConfig({ ...presetConfig(cmd.model, size, channels, conditioning, ds.classes.length), ...cmd.modelConfig });
    processCfg = { ...cmd.processConfig, kind: cmd.process };
  }
  const noise = makeProcess(processCfg);
  const net = new UNet(new Init(dev, cmd.train.seed ?? 0), modelCfg);
  const trainer = new DiffusionTrainer(dev, net, noise, ds, cmd.train);
  if (ck) trainer.resume(ck);
  const extra = { data: { ...cmd.data }, ...(latent ? { latent: latent.info } : {}), ...(cmd.extraConfig ?? {}) };
  writeFileSync(join(cmd.out, 'config.json'), JSON.stringify({ ...trainer.checkpointConfig(extra), step: undefined, parameters: net.parameterCount, command: process0() }, null, 2));

  const logPath = join(cmd.out, 'log.jsonl');
  const history = readLoss(logPath, trainer.step);
  const total = trainer.opts.steps;
  const bar = new Progress(total, 'train', process.stderr, trainer.step);
  let acc: Tensor | null = null;
  let accN = 0;
  // Until the first readback the bar shows the loss the log last recorded (a resumed run) or a dash.
  let lastLoss = history.at(-1)?.[1] ?? NaN;
  const t0 = performance.now();
  const startStep = trainer.step;
  const logEvery = Math.max(1, Math.min(50, cmd.checkpointEvery));
  const window = new StepWindow(dev);
  let lr = NaN;
  while (trainer.step < total) {
    const loss = await trainer.runStep();
    // Losses are summed on the device; the host reads the sum once per log interval.
    acc = noGrad(() => (acc ? ops.add(acc, loss) : ops.affine(loss, 1, 0)));
    accN++;
    const s = trainer.step;
    bar.update(await window.submitted(s), { loss: lastLoss, lr });
    if (s % logEvery === 0 || s === total) {
      lastLoss = (await acc.item()) / accN;
      acc = null;
      accN = 0;
      const sps = (s - startStep) / ((performance.now() - t0) / 1000);
      lr = (await trainer.opt.stats()).lr;
      history.push([s, lastLoss]);
      appendFileSync(logPath, JSON.stringify({ step: s, loss: lastLoss, lr, stepsPerSecond: sps, time: new Date().toISOString() }) + '\n');
      bar.update(s, { loss: lastLoss, lr }, true);
    }
    if (s % cmd.checkpointEvery === 0 || s === total) {
      await writeFileAtomic(ckPath, await trainer.encode(extra));
      await writeFileAtomic(join(cmd.out, 'loss.png'), linePlotPng(history.map((h) => h[1]), { x: history.map((h) => h[0]), logY: true, smooth: 10 }));
    }
    if (s % cmd.sampleEvery === 0 || s === total) await sampleGrid(dev, trainer, cmd, s, latent ?? undefined);
  }
  bar.finish(trainer.step, { loss: lastLoss });
  return { finalLoss: lastLoss, out: cmd.out };
}

/** The command line that started this run, for the run's config.json. */
function process0(): string {
  return (globalThis as { process?: { argv: string[] } }).process?.argv.slice(2).join(' ') ?? '';
}

function readLoss(path: string, upTo: number): [number, number][] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { step: number; loss: number })
    .filter((r) => r.step <= upTo && Number.isFinite(r.loss))
    .map((r) => [r.step, r.loss]);
}

type Decode = (z: Float32Array, shape: [number, number, number, number]) => Promise<{ images: Float32Array; shape: [number, number, number, number] }>;

async function sampleGrid(dev: Device, trainer: DiffusionTrainer, cmd: TrainCommand, step: number, latent?: { decode: Decode; info: LatentInfo }): Promise<void> {
  const decode = latent?.decode;
  const net = trainer.emaModel();
  const labels = gridLabels(trainer.data.classes);
  const sampler = samplersFor(trainer.process).includes('ddim') ? 'ddim' : samplersFor(trainer.process)[0]!;
  const r = await generate(dev, net, trainer.process, { sampler, steps: cmd.sampleSteps, labels, count: 16, guidance: labels ? 2 : 1, seed: 1, samplerOptions: samplerDefaults({ latent: latent?.info }) });
  const { images, shape } = decode ? await decode(r.images, r.shape) : r;
  await writeFileAtomic(join(cmd.out, 'samples', `step-${String(step).padStart(6, '0')}.png`), gridPng(images, shape, { cols: 4, scale: viewScale(shape[2]) }));
}
