// Latent diffusion end to end, browser-safe (bytes and arrays in, no files): a dataset encoded to the
// scaled latents a latent model trains on, with the LatentInfo its checkpoint records; scaled latents
// decoded to images; a first stage's round trip (the floor under a latent model's samples); a diffusion
// model loaded from bytes together with its VQ-GAN; sampling that returns decoded images. The Node
// side (the VQ-GAN found beside a checkpoint file, the latents cached in a run folder) is latent-node.ts.
import type { Device } from '../graph/device.js';
import type { VQGAN } from '../models/vqgan.js';
import type { UNet } from '../models/unet.js';
import { encodeDataset, decodeLatents, loadVQGAN } from '../models/vqgan-latents.js';
import { decodeCheckpoint, type CheckpointData } from '../io/checkpoint.js';
import type { NoiseProcess } from '../diffusion/process.js';
import type { SamplerOptions } from '../diffusion/samplers/index.js';
import { generate, type GenerateOptions } from '../diffusion/generate.js';
import { modelFromCheckpoint, samplerDefaults, type DiffusionCheckpointConfig, type ImageDataset, type LatentInfo } from '../diffusion/train.js';

export type Shape4 = [number, number, number, number];

/** Scaled latents [N, D, h, w] to images [N, C, H, W] in about [-1, 1]. */
export type LatentDecoder = (z: Float32Array, shape: Shape4) => Promise<{ images: Float32Array; shape: Shape4 }>;

/** Images per compiled encode or decode step (the value the CLI always used, so its outputs stay as they were). */
const BATCH = 32;

/** LDM's scale factor for a set of latents: 1/std over all their values, so the diffusion model sees unit-variance data. */
export function latentScale(latents: Float32Array): number {
  let m = 0, m2 = 0;
  for (const v of latents) {
    m += v;
    m2 += v * v;
  }
  m /= latents.length;
  return 1 / Math.sqrt(Math.max(m2 / latents.length - m * m, 1e-12));
}

/**
 * A dataset's latents (as encodeDataset returns them, unscaled) as the latent model's training set:
 * scaled by latentScale, with the dataset's labels and classes, and the LatentInfo its checkpoint
 * records: the scale, and the largest |value| of the scaled latents (latent models clip x̂0 to it).
 * `vqgan` is how the checkpoint will name its VQ-GAN (the CLI: a path relative to the run folder).
 */
export function scaledLatentDataset(raw: { latents: Float32Array; shape: readonly number[] }, ds: ImageDataset, vqgan: string): { data: ImageDataset; info: LatentInfo } {
  const scale = latentScale(raw.latents);
  const scaled = raw.latents.map((v) => v * scale);
  const range = scaled.reduce((r, v) => Math.max(r, Math.abs(v)), 0);
  const info: LatentInfo = {
    vqgan, scale, range,
    latentShape: raw.shape.slice(1) as [number, number, number], imageShape: ds.shape.slice(1) as [number, number, number],
  };
  return { data: { images: scaled, labels: ds.labels, shape: [...raw.shape] as Shape4, classes: ds.classes }, info };
}

/** A dataset as a latent model's training set, and the decoder for that model's samples. */
export interface LatentDataset {
  data: ImageDataset;
  info: LatentInfo;
  decode: LatentDecoder;
}

/**
 * Encodes a dataset with a VQ-GAN (use the weights it decodes with: loadVQGAN takes the EMA) and scales
 * it (see scaledLatentDataset); `vqgan` names the VQ-GAN in the LatentInfo.
 */
export async function encodeLatentDataset(vq: VQGAN, ds: ImageDataset, vqgan: string): Promise<LatentDataset> {
  const raw = await encodeDataset(vq, ds.images, ds.shape, BATCH);
  const { data, info } = scaledLatentDataset(raw, ds, vqgan);
  return { data, info, decode: latentDecoder(vq, info.scale) };
}

/** Latents (scaled by `scale`) to images with a VQ-GAN: unscale, quantise to the nearest codes, decode. */
export function latentDecoder(vq: VQGAN, scale: number): LatentDecoder {
  return async (z, shape) => {
    const r = await decodeLatents(vq, z.map((v) => v / scale), shape, BATCH);
    return { images: r.images, shape: r.shape as Shape4 };
  };
}

/** A latent model's first stage: its VQ-GAN, the decoder for its samples, and the round trip. */
export interface FirstStage {
  vqgan: VQGAN;
  /** Scaled latents to images. */
  decode: LatentDecoder;
  /**
   * Images encoded, quantised and decoded: what the first stage alone keeps of an image, the ceiling
   * on what the latent model's samples can show.
   */
  roundTrip(images: Float32Array, shape: readonly number[]): Promise<Float32Array>;
}

/** A latent model whose VQ-GAN does not fit it (other latent channels, factor or image channels). */
export class FirstStageMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FirstStageMismatchError';
  }
}

/**
 * The first stage of a latent model (its checkpoint's `latent` record) from its VQ-GAN, checked to fit:
 * the VQ-GAN's latents must have the model's channels, and its factor and image channels must turn the
 * model's latent shape into the image shape it was trained on. `where` names the VQ-GAN in errors.
 */
export function firstStage(vq: VQGAN, latent: LatentInfo, where = 'the VQ-GAN'): FirstStage {
  const [d, h, w] = latent.latentShape;
  const [c, H, W] = latent.imageShape;
  const got = `latents of ${vq.config.embedDim} channels, factor ${vq.factor}, ${vq.config.outChannels}-channel images`;
  if (vq.config.embedDim !== d || vq.config.outChannels !== c || h * vq.factor !== H || w * vq.factor !== W) {
    throw new FirstStageMismatchError(`${where} does not fit this latent model: it makes ${got}; the model was trained on latents [${d}, ${h}, ${w}] of images [${c}, ${H}, ${W}]`);
  }
  return {
    vqgan: vq,
    decode: latentDecoder(vq, latent.scale),
    roundTrip: async (images, shape) => {
      const { latents, shape: zShape } = await encodeDataset(vq, images, shape, BATCH);
      return (await decodeLatents(vq, latents, zShape, BATCH)).images;
    },
  };
}

/** A latent model given without its VQ-GAN: `recorded` is where its checkpoint says the VQ-GAN was. */
export class MissingVQGANError extends Error {
  constructor(readonly recorded: string, where: string) {
    super(`${where} is a latent diffusion model: its samples are latents that the VQ-GAN it was trained with decodes (its header names '${recorded}'); give that VQ-GAN too`);
    this.name = 'MissingVQGANError';
  }
}

/** A diffusion model ready to sample: pixel-space, or latent with its first stage. */
export interface DiffusionModel {
  net: UNet;
  process: NoiseProcess;
  config: DiffusionCheckpointConfig;
  /** Class names ([] for an unconditional model). */
  classes: readonly string[];
  /** The model's sampler defaults (see samplerDefaults). */
  samplerDefaults: SamplerOptions;
  /** Latent models: the VQ-GAN that decodes their samples; undefined for pixel-space models. */
  firstStage?: FirstStage;
  /** Samples (or x̂0 snapshots) to images: the first stage's decoder, or the samples as they are. */
  decode: LatentDecoder;
}

const asCheckpoint = (x: Uint8Array | CheckpointData, where: string): CheckpointData => (x instanceof Uint8Array ? decodeCheckpoint(x, where) : x);

/**
 * A diffusion checkpoint (bytes or decoded) ready to sample, with the VQ-GAN checkpoint that decodes a
 * latent model's samples: required for a latent model (MissingVQGANError names the file its header
 * records), refused for a pixel-space one. The weights are the EMA where the checkpoints keep one.
 * `where` and `vqganWhere` name the two in errors.
 */
export function loadDiffusionModel(
  dev: Device, model: Uint8Array | CheckpointData, vqgan?: Uint8Array | CheckpointData | null, opts: { where?: string; vqganWhere?: string } = {},
): DiffusionModel {
  const where = opts.where ?? 'this checkpoint';
  const ck = asCheckpoint(model, where);
  // A VQ-GAN missing or extra is said before any model is built on the device.
  const c = ck.config as { kind?: unknown; latent?: LatentInfo };
  if (c.kind === 'diffusion' && c.latent && !vqgan) throw new MissingVQGANError(c.latent.vqgan, where);
  if (c.kind === 'diffusion' && !c.latent && vqgan) throw new FirstStageMismatchError(`${where} is a pixel-space diffusion model: it takes no VQ-GAN`);
  const { net, process, config } = modelFromCheckpoint(dev, ck);
  const base = { net, process, config, classes: config.classes ?? [], samplerDefaults: samplerDefaults(config) };
  if (!config.latent) return { ...base, decode: async (images, shape) => ({ images, shape }) };
  const vqWhere = opts.vqganWhere ?? 'the VQ-GAN';
  const stage = firstStage(loadVQGAN(dev, asCheckpoint(vqgan!, vqWhere)), config.latent, vqWhere);
  return { ...base, firstStage: stage, decode: stage.decode };
}

/**
 * Samples a batch with generate() and decodes it: `images` and `shape` are images in about [-1, 1]
 * (a latent model's decoded by its first stage), `samples` what the sampler returned (its latents for a
 * latent model). The sampler options default to the model's (see samplerDefaults).
 */
export async function sampleImages(dev: Device, m: DiffusionModel, opts: GenerateOptions) {
  const r = await generate(dev, m.net, m.process, { ...opts, samplerOptions: { ...m.samplerDefaults, ...opts.samplerOptions } });
  const { images, shape } = await m.decode(r.images, r.shape);
  return { ...r, images, shape, samples: { values: r.images, shape: r.shape } };
}
