// Latent diffusion with files (Node): the VQ-GAN found where a latent checkpoint says (or beside it),
// the dataset's latents cached in a run folder, and a diffusion model loaded from its file with its
// VQ-GAN. The browser-safe part is latent.ts.
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import type { Device } from '../graph/device.js';
import { encodeDataset, loadVQGAN } from '../models/vqgan-latents.js';
import { readCheckpointFile } from '../io/checkpoint-file.js';
import { readSafetensorsFile, writeFileAtomic } from '../io/file.js';
import { serializeSafetensors } from '../io/safetensors.js';
import type { ImageDataset, LatentInfo } from '../diffusion/train.js';
import { firstStage, latentDecoder, loadDiffusionModel, scaledLatentDataset, type DiffusionModel, type FirstStage, type LatentDataset } from './latent.js';

/** A latent model's VQ-GAN not found where its header says, nor beside the model. */
export class VQGANNotFoundError extends Error {
  /** Where it was looked for, without the advice (the CLI adds its flag's). */
  readonly searched: string;
  constructor(readonly recorded: string, readonly checkpoint: string) {
    const searched = `the VQ-GAN of this latent model (${recorded}) was not found next to ${checkpoint} or in ${process.cwd()}`;
    super(`${searched}; give its path`);
    this.searched = searched;
    this.name = 'VQGANNotFoundError';
  }
}

/** Where a latent model's VQ-GAN lives: as recorded (absolute, or relative to the checkpoint's folder or the working folder). */
export function resolveVQGANPath(recorded: string, checkpoint: string): string {
  if (isAbsolute(recorded) && existsSync(recorded)) return recorded;
  for (const base of [dirname(checkpoint), process.cwd()]) {
    const p = resolve(base, recorded);
    if (existsSync(p)) return p;
  }
  // Shipped models: the two files copied into one folder keep only the VQ-GAN's file name.
  const beside = join(dirname(checkpoint), basename(recorded));
  if (existsSync(beside)) return beside;
  throw new VQGANNotFoundError(recorded, checkpoint);
}

/**
 * The dataset as scaled latents for a diffusion model (see scaledLatentDataset), encoded once with the
 * VQ-GAN's EMA weights and cached in `out`/latents.safetensors: reused while the VQ-GAN file (path and
 * modification time) and the data (`spec`, any JSON, and the image count) are unchanged. The LatentInfo
 * names the VQ-GAN relative to `out`.
 */
export async function latentDataset(dev: Device, vqganPath: string, ds: ImageDataset & { spec?: unknown }, out: string): Promise<LatentDataset> {
  const vq = loadVQGAN(dev, await readCheckpointFile(vqganPath));
  const cache = join(out, 'latents.safetensors');
  const stamp = JSON.stringify({ vqgan: resolve(vqganPath), mtime: statSync(vqganPath).mtimeMs, data: ds.spec ?? null, n: ds.shape[0] });
  let raw: { latents: Float32Array; shape: number[] };
  const cached = existsSync(cache) ? await readSafetensorsFile(cache).catch(() => null) : null;
  const t = cached?.metadata.stamp === stamp ? cached.tensors.get('latents') : undefined;
  if (t && t.data instanceof Float32Array) {
    raw = { latents: t.data, shape: [...t.shape] };
  } else {
    raw = await encodeDataset(vq, ds.images, ds.shape, 32);
    mkdirSync(out, { recursive: true });
    await writeFileAtomic(cache, serializeSafetensors(new Map([['latents', { shape: raw.shape, data: raw.latents }]]), { stamp }));
  }
  const { data, info } = scaledLatentDataset(raw, ds, relative(out, vqganPath));
  return { data, info, decode: latentDecoder(vq, info.scale) };
}

/**
 * A latent checkpoint file's first stage, with the VQ-GAN file it came from: `override` when given,
 * else the one its header records (see resolveVQGANPath); undefined for a pixel-space model.
 */
export async function firstStageFor(dev: Device, checkpoint: string, config: { latent?: LatentInfo }, override?: string): Promise<(FirstStage & { path: string }) | undefined> {
  if (!config.latent) return undefined;
  const path = override ?? resolveVQGANPath(config.latent.vqgan, checkpoint);
  return { ...firstStage(loadVQGAN(dev, await readCheckpointFile(path)), config.latent, path), path };
}

/** The decoder for a latent checkpoint file's samples (see firstStageFor), or undefined for a pixel-space model. */
export async function decoderFor(dev: Device, checkpoint: string, config: { latent?: LatentInfo }, override?: string) {
  return (await firstStageFor(dev, checkpoint, config, override))?.decode;
}

/**
 * A diffusion checkpoint file ready to sample (see loadDiffusionModel), a latent model with its VQ-GAN:
 * `vqgan` when given, else the file its header records; `vqgan` is not used for a pixel-space model.
 * Returns the VQ-GAN's path too.
 */
export async function loadDiffusionModelFile(dev: Device, checkpoint: string, opts: { vqgan?: string } = {}): Promise<DiffusionModel & { vqganPath?: string }> {
  const ck = await readCheckpointFile(checkpoint);
  const latent = (ck.config as { latent?: LatentInfo }).latent;
  if (!latent) return loadDiffusionModel(dev, ck, null, { where: checkpoint });
  const vqganPath = opts.vqgan ?? resolveVQGANPath(latent.vqgan, checkpoint);
  return { ...loadDiffusionModel(dev, ck, await readCheckpointFile(vqganPath), { where: checkpoint, vqganWhere: vqganPath }), vqganPath };
}
