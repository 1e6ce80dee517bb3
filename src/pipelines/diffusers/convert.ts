// Between the engine's checkpoints and diffusers model folders: a diffusion or VQ-GAN checkpoint as
// a folder's files, and a loaded diffusers model (with its scheduler) as an engine checkpoint that
// `wgd sample` and the library's loaders read. Browser-safe.
import type { Device } from '../../graph/device.js';
import type { CheckpointData } from '../../io/checkpoint.js';
import { serializeSafetensors, SafeTensorInput } from '../../io/safetensors.js';
import { modelFromCheckpoint, samplerDefaults, DiffusionCheckpointConfig } from '../../diffusion/train.js';
import { makeProcess, ProcessConfig } from '../../diffusion/process.js';
import { loadVQGAN } from '../../models/vqgan-latents.js';
import { UNet } from '../../models/unet.js';
import type { SamplerOptions } from '../../diffusion/samplers/index.js';
import { DiffusersConfigError, ENGINE_KEY } from './config.js';
import { DiffusersFolder, exportDiffusers } from './export.js';
import type { DiffusersModel } from './model.js';
import { SchedulerSetup } from './scheduler.js';

/**
 * The diffusers folder of an engine checkpoint: a diffusion model's EMA weights (or weights) with its
 * process as scheduler_config.json and its sampler defaults (x̂0 clipping), or a VQ-GAN's.
 */
export async function exportCheckpoint(dev: Device, ck: CheckpointData, opts: { sampler?: string; samplerOptions?: SamplerOptions; source?: string } = {}): Promise<DiffusersFolder> {
  const kind = (ck.config as { kind?: unknown }).kind;
  if (kind === 'diffusion') {
    const { net, process, config } = modelFromCheckpoint(dev, ck);
    const extra: Record<string, unknown> = { kind: 'diffusion', classes: config.classes ?? [], process: process.config, ...(config.latent ? { latent: config.latent } : {}), ...(opts.source ? { exportedFrom: opts.source } : {}) };
    return exportDiffusers(net, { process: process.config, sampler: opts.sampler, samplerOptions: { ...samplerDefaults(config), ...opts.samplerOptions }, extra });
  }
  if (kind === 'vqgan') {
    const vq = loadVQGAN(dev, ck);
    return exportDiffusers(vq, { extra: { kind: 'vqgan', ...(opts.source ? { exportedFrom: opts.source } : {}) } });
  }
  throw new DiffusersConfigError(`export: a checkpoint of kind '${String(kind)}' has no diffusers form; allowed kinds: diffusion (a UNet), vqgan (a VQModel)`);
}

/** An engine checkpoint (safetensors bytes) of a loaded diffusers model: `wgd import`. */
export async function importedCheckpoint(m: DiffusersModel, scheduler: SchedulerSetup | null, opts: { source?: string; process?: ProcessConfig } = {}): Promise<{ bytes: Uint8Array; config: Record<string, unknown> }> {
  const tensors = new Map<string, SafeTensorInput>();
  for (const [name, t] of m.module.namedParameters()) tensors.set(name, { shape: [...t.shape], data: (await t.read()) as Float32Array });
  const own = (m.config[ENGINE_KEY] ?? {}) as { classes?: string[]; latent?: unknown };
  const imported = { from: opts.source ?? 'diffusers', className: m.className, scheduler: scheduler?.className ?? null };
  let config: Record<string, unknown>;
  if (m.module instanceof UNet) {
    const process = makeProcess(opts.process ?? scheduler?.process ?? { kind: 'ddpm' }).config;
    const cfg = m.module.config;
    const classes = Array.isArray(own.classes) && own.classes.length === cfg.numClasses ? own.classes : Array.from({ length: cfg.conditioning === 'class' || cfg.conditioning === 'cross' ? cfg.numClasses : 0 }, (_, i) => String(i));
    const c: Partial<DiffusionCheckpointConfig> & Record<string, unknown> = {
      kind: 'diffusion', model: cfg, process, step: 0, classes, imported,
      ...(own.latent ? { latent: own.latent as DiffusionCheckpointConfig['latent'] } : {}),
      ...(scheduler ? { sampler: { name: scheduler.sampler, options: scheduler.samplerOptions } } : {}),
    };
    config = c;
  } else {
    config = { kind: 'vqgan', vqgan: m.module.config, imported };
  }
  return { bytes: serializeSafetensors(tensors, { format: 'webgpu-diffusion', config: JSON.stringify(config) }), config };
}
