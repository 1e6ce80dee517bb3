// `wgd train`: trains a diffusion model into a run folder (config.json, log.jsonl, checkpoint,
// sample grids, loss plot), with a progress bar; resumes exactly from the folder's checkpoint, and
// stops cleanly (a checkpoint, then how to resume) when asked by a signal.
import { existsSync, mkdirSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Device } from '../graph/device.js';
import { Tensor, noGrad } from '../graph/tensor.js';
import * as ops from '../graph/ops/index.js';
import { Init, parameterShapes } from '../nn/module.js';
import { UNet, UNetConfig, resolveUNetConfig, unetConfigFromCheckpoint } from '../models/unet.js';
import { makeProcess, ProcessConfig, ProcessKind } from '../diffusion/process.js';
import { DiffusionTrainer, LatentInfo, TrainOptions, samplerDefaults } from '../diffusion/train.js';
import { generate } from '../diffusion/generate.js';
import { samplersFor } from '../diffusion/samplers/index.js';
import { readCheckpointFile } from '../io/checkpoint-file.js';
import { checkCheckpointTensors } from '../io/checkpoint.js';
import { writeFileAtomic } from '../io/file.js';
import { gridPng, viewScale } from '../data/png.js';
import { linePlotPng } from '../data/plot.js';
import { loadDataset, DatasetSpec } from './datasets.js';
import { presetConfig } from './models.js';
import { runTraining } from './loop.js';
import { latentDataset } from '../pipelines/latent-node.js';
import { checkFolder, checkOutputs, filesMatching, removeFiles } from './outputs.js';
import { keepLog, writeRunConfig, type OptionValues, type ResumeRecord } from './resume.js';
import type { StopRequest } from './stop.js';

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
  /** Replace an earlier run's files in `out` (without it, an existing run is refused). */
  force?: boolean;
  /** The command's options as given, recorded in config.json so that --resume can use them. */
  options?: OptionValues;
  /** A resume: recorded as an entry of config.json's `resumes` (its `from` step filled in here). */
  resumed?: ResumeRecord;
  /** Set by a signal: the loop stops after its current step, with a checkpoint. */
  stop?: StopRequest;
}

/** The files of a run folder that a new run writes. */
function runFiles(out: string): string[] {
  return ['config.json', 'log.jsonl', 'checkpoint.safetensors', 'loss.png'].map((f) => join(out, f)).concat(filesMatching(join(out, 'samples'), /^step-\d+\.png$/));
}

/** Up to 8 classes spread over the label range, a row of 4 samples each; or 16 unlabelled samples. */
function gridLabels(classes: readonly string[]): number[] | null {
  if (!classes.length) return null;
  const k = Math.min(8, classes.length);
  const picks = Array.from({ length: k }, (_, i) => Math.floor((i * classes.length) / k));
  return picks.flatMap((c) => [c, c, c, c]);
}

/**
 * Where the run goes, checked before any work (main calls this before making the device); returns the
 * run's files. (latents.safetensors, a latent run's cache, is not among them: it is reused when it fits.)
 */
export function checkTrainOutputs(cmd: TrainCommand): string[] {
  const ckPath = join(cmd.out, 'checkpoint.safetensors');
  checkFolder('--out', cmd.out);
  if (existsSync(ckPath) && !cmd.resume && !cmd.force) throw new Error(`${ckPath} exists: pass --resume to continue that run, --force to replace it, or choose another --out`);
  if (cmd.resume && !existsSync(ckPath)) throw new Error(`--resume: ${cmd.out} has no checkpoint.safetensors to continue from; drop --resume to start a new run there`);
  const dataFolder = existsSync(cmd.data.name) && !['letters', 'colors'].includes(cmd.data.name) ? cmd.data.name : undefined;
  const files = runFiles(cmd.out);
  checkOutputs({ files, inputs: [dataFolder, cmd.latent], force: Boolean(cmd.force), own: cmd.resume });
  return files;
}

export async function trainCommand(dev: Device, cmd: TrainCommand): Promise<{ finalLoss: number; out: string; stopped?: string }> {
  const ckPath = join(cmd.out, 'checkpoint.safetensors');
  const files = checkTrainOutputs(cmd);
  const images = loadDataset(cmd.data);
  // Latent diffusion: the same loop on the VQ-GAN's latents (encoded once, cached in the run folder).
  const latent = cmd.latent ? await latentDataset(dev, cmd.latent, images, cmd.out) : null;
  const ds = latent?.data ?? images;
  const [, channels, size] = ds.shape;

  let modelCfg: UNetConfig;
  let processCfg: ProcessConfig;
  const ck = cmd.resume ? await readCheckpointFile(ckPath) : null;
  if (ck) {
    const c = ck.config as { model?: UNetConfig; process?: ProcessConfig; kind?: string };
    if (c.kind !== 'diffusion' || !c.model || !c.process) throw new Error(`${ckPath} is not a diffusion checkpoint`);
    modelCfg = unetConfigFromCheckpoint(c.model);
    processCfg = c.process;
    // The file is checked against its model before the model is built (see parameterShapes).
    checkCheckpointTensors(ck, parameterShapes(dev, (init) => new UNet(init, modelCfg)), ckPath);
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
  trainer.header = { data: { ...cmd.data }, ...(latent ? { latent: latent.info } : {}), ...(cmd.extraConfig ?? {}) };
  // The old run's files go only now that the new run is known to start (--force).
  if (!cmd.resume) removeFiles(files);
  mkdirSync(cmd.out, { recursive: true });
  await writeRunConfig(join(cmd.out, 'config.json'), { ...trainer.checkpointConfig(), step: undefined, parameters: net.parameterCount }, cmd, trainer.steps);

  const logPath = join(cmd.out, 'log.jsonl');
  const history = readLoss(logPath, trainer.steps);
  // A resumed run redoes the steps after its checkpoint: their old log lines go.
  if (cmd.resume) await writeFileAtomic(logPath, keepLog(logPath, trainer.steps));
  const total = trainer.opts.steps;
  let acc: Tensor | null = null;
  let accN = 0;
  // Until the first readback the bar shows the loss the log last recorded (a resumed run) or a dash.
  let lastLoss = history.at(-1)?.[1] ?? NaN;
  const t0 = performance.now();
  const startStep = trainer.steps;
  const { stopped } = await runTraining(dev, trainer, {
    command: 'train', out: cmd.out, checkpoint: ckPath, total, stop: cmd.stop,
    logEvery: Math.max(1, Math.min(50, cmd.checkpointEvery)), checkpointEvery: cmd.checkpointEvery,
    bar: { loss: lastLoss, lr: NaN },
    // Losses are summed on the device; the host reads the sum once per log interval.
    onStep: (loss) => {
      acc = noGrad(() => (acc ? ops.add(acc, loss) : ops.affine(loss, 1, 0)));
      accN++;
    },
    log: async (s) => {
      lastLoss = (await acc!.item()) / accN;
      acc = null;
      accN = 0;
      const sps = (s - startStep) / ((performance.now() - t0) / 1000);
      const lr = (await trainer.opt.stats()).lr;
      history.push([s, lastLoss]);
      appendFileSync(logPath, JSON.stringify({ step: s, loss: lastLoss, lr, stepsPerSecond: sps, time: new Date().toISOString() }) + '\n');
      return { loss: lastLoss, lr };
    },
    afterCheckpoint: () => writeFileAtomic(join(cmd.out, 'loss.png'), linePlotPng(history.map((h) => h[1]), { x: history.map((h) => h[0]), logY: true, smooth: 10 })),
    afterStep: async (s) => {
      if (s % cmd.sampleEvery === 0 || s === total) await sampleGrid(dev, trainer, cmd, s, latent ?? undefined);
    },
    finish: () => ({ loss: lastLoss }),
  });
  return { finalLoss: lastLoss, out: cmd.out, ...(stopped ? { stopped } : {}) };
}

function readLoss(path: string, upTo: number): [number, number][] {
  if (!existsSync(path)) return [];
  return keepLog(path, upTo)
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
  mkdirSync(join(cmd.out, 'samples'), { recursive: true }); // made when first needed: a failed run leaves no empty folder
  await writeFileAtomic(join(cmd.out, 'samples', `step-${String(step).padStart(6, '0')}.png`), gridPng(images, shape, { cols: 4, scale: viewScale(shape[2]) }));
}
