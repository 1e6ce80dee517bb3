// diffusers model folders on the command line: `wgd sample --ckpt DIR` (the model and the scheduler
// beside it), `wgd import DIR --out FILE.safetensors`, `wgd export --format diffusers --ckpt FILE DIR`.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Device } from '../graph/device.js';
import { makeProcess, NoiseProcess, ProcessConfig } from '../diffusion/process.js';
import type { DiffusionCheckpointConfig } from '../diffusion/train.js';
import type { SamplerOptions } from '../diffusion/samplers/index.js';
import { UNet } from '../models/unet.js';
import { readCheckpointFile } from '../io/checkpoint-file.js';
import { writeFileAtomic } from '../io/file.js';
import { loadDiffusers, readSchedulerBeside, writeDiffusersFolder } from '../pipelines/diffusers/node.js';
import { parsePythonJson, readSchedulerConfig, SchedulerSetup } from '../pipelines/diffusers/scheduler.js';
import { exportCheckpoint, importedCheckpoint } from '../pipelines/diffusers/convert.js';
import { ENGINE_KEY } from '../pipelines/diffusers/config.js';
import type { DiffusersModel } from '../pipelines/diffusers/model.js';
import { checkExtension, checkOutputs } from './outputs.js';
import { Progress } from './progress.js';

/** Loads a folder with a bar in MiB read (the total is known once the headers are read). */
async function loadWithBar(dev: Device, dir: string, label: string): Promise<DiffusersModel> {
  let bar: Progress | null = null;
  const mib = (b: number) => Math.round(b / 2 ** 20);
  const model = await loadDiffusers(dev, dir, { onProgress: (p) => (bar ??= new Progress(mib(p.total), `${label} (MiB)`)).update(mib(p.done)) });
  (bar as Progress | null)?.finish(mib(model.report.bytes));
  return model;
}

/** A folder given where a checkpoint file may be: a diffusers model folder (or a pipeline folder with a unet/). */
export function isFolder(path: string): boolean {
  return existsSync(path) && statSync(path).isDirectory();
}

/** The model folder of a path: itself, or the unet/ of a pipeline folder (model_index.json beside a unet/). */
export function modelFolder(dir: string): string {
  if (!existsSync(join(dir, 'config.json')) && existsSync(join(dir, 'model_index.json')) && existsSync(join(dir, 'unet', 'config.json'))) return join(dir, 'unet');
  return dir;
}

/**
 * The noise process of a diffusers folder where no scheduler config says it: the flags, over
 * diffusers' DDPMScheduler defaults (1000 steps, linear from 1e-4 to 0.02, epsilon).
 */
export interface ProcessFlags {
  scheduler?: string;
  predictionType?: ProcessConfig['predictionType'];
  betaSchedule?: ProcessConfig['betaSchedule'];
  betaStart?: number;
  betaEnd?: number;
  trainTimesteps?: number;
}

export interface LoadedFolder {
  model: DiffusersModel;
  net: UNet;
  process: NoiseProcess;
  config: DiffusionCheckpointConfig;
  /** The scheduler's sampler and options, when a scheduler config was found. */
  scheduler: SchedulerSetup | null;
  /** Where the process came from, for messages. */
  from: string;
}

/** A diffusers UNet folder ready to sample: the model, its process from the scheduler config (or flags), and class names. */
export async function loadFolderForSampling(dev: Device, path: string, flags: ProcessFlags = {}): Promise<LoadedFolder> {
  const dir = modelFolder(path);
  let scheduler: SchedulerSetup | null;
  let from: string;
  if (flags.scheduler) {
    scheduler = readSchedulerConfig(parsePythonJson(readFileSync(flags.scheduler, 'utf8'), flags.scheduler), flags.scheduler);
    from = flags.scheduler;
  } else {
    scheduler = readSchedulerBeside(dir);
    from = scheduler ? `the ${scheduler.className} beside ${dir}` : 'flags (no scheduler_config.json beside the model)';
  }
  const model = await loadWithBar(dev, dir, `load ${dir}`);
  if (!(model.module instanceof UNet)) throw new Error(`${dir} is a ${model.className}; wgd sample samples UNets (a VQModel decodes a latent model's samples)`);
  const net = model.module;
  const given = Object.fromEntries(Object.entries({ predictionType: flags.predictionType, betaSchedule: flags.betaSchedule, betaStart: flags.betaStart, betaEnd: flags.betaEnd, timesteps: flags.trainTimesteps }).filter(([, v]) => v !== undefined));
  const process = makeProcess({ ...(scheduler?.process ?? { kind: 'ddpm' }), ...given, kind: 'ddpm' });
  const own = (model.config[ENGINE_KEY] ?? {}) as { classes?: string[]; latent?: DiffusionCheckpointConfig['latent'] };
  const c = net.config;
  const nClasses = c.conditioning === 'class' || c.conditioning === 'cross' ? c.numClasses : 0;
  const classes = Array.isArray(own.classes) && own.classes.length === nClasses ? own.classes : Array.from({ length: nClasses }, (_, i) => String(i));
  const config = { kind: 'diffusion', model: c, process: process.config, train: {} as never, step: 0, classes, ...(own.latent ? { latent: own.latent } : {}) } as DiffusionCheckpointConfig;
  return { model, net, process, config, scheduler, from };
}

/** `wgd import`: a diffusers folder as an engine checkpoint (the scheduler's process and sampler in its header). */
export async function importCommand(dev: Device, cmd: { dir: string; out: string; force?: boolean } & ProcessFlags): Promise<{ out: string; className: string; tensors: number; scheduler: string | null; renamed: number }> {
  checkExtension('--out', cmd.out, '.safetensors');
  checkOutputs({ files: [cmd.out], inputs: [cmd.dir], force: Boolean(cmd.force) });
  const dir = modelFolder(cmd.dir);
  const scheduler = cmd.scheduler ? readSchedulerConfig(parsePythonJson(readFileSync(cmd.scheduler, 'utf8'), cmd.scheduler), cmd.scheduler) : readSchedulerBeside(dir);
  const model = await loadWithBar(dev, dir, `import ${dir}`);
  const given = Object.fromEntries(Object.entries({ predictionType: cmd.predictionType, betaSchedule: cmd.betaSchedule, betaStart: cmd.betaStart, betaEnd: cmd.betaEnd, timesteps: cmd.trainTimesteps }).filter(([, v]) => v !== undefined));
  const process = model.module instanceof UNet ? { ...(scheduler?.process ?? { kind: 'ddpm' as const }), ...given, kind: 'ddpm' as const } : undefined;
  const { bytes } = await importedCheckpoint(model, scheduler, { source: cmd.dir, process });
  await writeFileAtomic(cmd.out, bytes);
  return { out: cmd.out, className: model.className, tensors: model.report.tensors, scheduler: scheduler?.className ?? null, renamed: model.report.renamed };
}

/** `wgd export --format diffusers`: an engine checkpoint as a diffusers model folder. */
export async function exportDiffusersCommand(dev: Device, cmd: { ckpt: string; dir: string; sampler?: string; samplerOptions?: SamplerOptions; force?: boolean }): Promise<{ dir: string; className: string; files: string[]; warnings: string[] }> {
  if (existsSync(cmd.dir) && !statSync(cmd.dir).isDirectory()) throw new Error(`${cmd.dir} is a file; --format diffusers writes a folder`);
  const names = ['config.json', 'diffusion_pytorch_model.safetensors', 'scheduler_config.json', 'label_context.safetensors'];
  checkOutputs({ files: names.map((n) => join(cmd.dir, n)), inputs: [cmd.ckpt], force: Boolean(cmd.force) });
  const ck = await readCheckpointFile(cmd.ckpt);
  const folder = await exportCheckpoint(dev, ck, { sampler: cmd.sampler, samplerOptions: cmd.samplerOptions, source: cmd.ckpt });
  const files = await writeDiffusersFolder(cmd.dir, folder);
  return { dir: cmd.dir, className: folder.className, files, warnings: folder.warnings };
}
