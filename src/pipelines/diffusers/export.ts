// An engine model as a diffusers model folder: config.json, diffusion_pytorch_model.safetensors in
// diffusers' key names (the engine's own), and scheduler_config.json from the noise process, as bytes
// (Node's writeDiffusersFolder puts them on disk). Browser-safe.
import { UNet } from '../../models/unet.js';
import { VQGAN } from '../../models/vqgan.js';
import type { ProcessConfig } from '../../diffusion/process.js';
import type { SamplerOptions } from '../../diffusion/samplers/index.js';
import { serializeSafetensors, SafeTensorInput } from '../../io/safetensors.js';
import { DiffusersClassName, DiffusersConfigError, ENGINE_KEY, exportUNetConfig, exportVQConfig } from './config.js';
import { exportSchedulerConfig } from './scheduler.js';

/**
 * The learned label-to-context table of an engine 'cross' model (labels become cross-attention
 * tokens). UNet2DConditionModel has no place for it (its context comes from a text encoder), so it
 * is written beside the model in this file, which diffusers does not read and the engine's import does.
 */
export const LABEL_CONTEXT_FILE = 'label_context.safetensors';

export interface DiffusersFolder {
  className: DiffusersClassName;
  /** File name → bytes. */
  files: Map<string, Uint8Array>;
  /** What diffusers will do differently from the engine, and files not written (with why). */
  warnings: string[];
}

export interface ExportOptions {
  /** The noise process, for scheduler_config.json (UNets; discrete DDPM chains only). */
  process?: Required<ProcessConfig> | null;
  /** The sampler whose scheduler to write (default ddim) and its options (clipping, grid). */
  sampler?: string;
  samplerOptions?: SamplerOptions;
  /** Stored under config.json's private key for the engine's own import: class names, latent info. */
  extra?: Record<string, unknown>;
  /** VQModel's scaling_factor (diffusers records it; the model never applies it). */
  scalingFactor?: number;
}

const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v, null, 2) + '\n');

/** The files of a diffusers model folder for an engine UNet or VQ-GAN. */
export async function exportDiffusers(module: UNet | VQGAN, opts: ExportOptions = {}): Promise<DiffusersFolder> {
  const files = new Map<string, Uint8Array>();
  const engine = { model: module.config, ...(opts.extra ?? {}) };
  const exported = module instanceof UNet ? exportUNetConfig(module.config, engine) : exportVQConfig(module.config, engine, opts.scalingFactor);
  const warnings = [...exported.warnings];
  const weights = new Map<string, SafeTensorInput>();
  let labelContext: SafeTensorInput | null = null;
  for (const [name, t] of module.namedParameters()) {
    const data = (await t.read()) as Float32Array;
    if (module instanceof UNet && module.config.conditioning === 'cross' && name === 'class_embedding.weight') labelContext = { shape: [...t.shape], data };
    else weights.set(name, { shape: [...t.shape], data });
  }
  files.set('config.json', json(exported.config));
  // diffusers' save_pretrained marks its safetensors so; loaders do not need it.
  files.set('diffusion_pytorch_model.safetensors', serializeSafetensors(weights, { format: 'pt' }));
  if (labelContext) {
    const c = (module as UNet).config;
    files.set(LABEL_CONTEXT_FILE, serializeSafetensors({ weight: labelContext }, { tokens: String(c.contextTokens), cross_attention_dim: String(c.crossAttentionDim), null_class: String(c.nullClass ? c.numClasses : -1) }));
    warnings.push(`the label-to-context table is in ${LABEL_CONTEXT_FILE}: diffusers' UNet2DConditionModel takes encoder_hidden_states, so feed it rows of that table (reshaped to [B, ${c.contextTokens}, ${c.crossAttentionDim}]) where a pipeline would feed a text encoder's output`);
  }
  if (module instanceof UNet && opts.process) {
    try {
      files.set('scheduler_config.json', json(exportSchedulerConfig(opts.process, opts.sampler ?? 'ddim', opts.samplerOptions)));
    } catch (e) {
      if (!(e instanceof DiffusersConfigError)) throw e;
      warnings.push(e.message);
    }
  }
  return { className: exported.className, files, warnings };
}

/** The private key of a config.json the engine wrote, if any. */
export function engineInfo(config: Record<string, unknown>): Record<string, unknown> | null {
  const v = config[ENGINE_KEY];
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}
