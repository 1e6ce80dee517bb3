// Image generation from a trained model: rows of class-conditional samples with classifier-free
// guidance, for the CLI, the demo, the browser lab and evaluation. Browser-safe.
import type { Device } from '../graph/device.js';
import { Tensor } from '../graph/tensor.js';
import { ShapeError, fmtShape } from '../runtime/errors.js';
import type { UNet } from '../models/unet.js';
import type { NoiseProcess } from './process.js';
import { NetworkDenoiser, GuidanceVariants } from './denoiser.js';
import { SamplingLoop, SampleResult, SampleRunOptions } from './sample.js';
import { makeSampler, SamplerOptions } from './samplers/index.js';
import { SamplerError } from './samplers/types.js';

/** What to sample, and how; the guidance variants as GuidedDenoiserOptions documents them. */
export interface GenerateOptions extends GuidanceVariants {
  sampler: string;
  steps: number;
  /** Class of each image (omit for an unconditional model). */
  labels?: readonly number[] | null;
  /** Number of images when unlabelled. */
  count?: number;
  /** One scale, or one per image. */
  guidance?: number | readonly number[];
  seed?: number;
  samplerOptions?: SamplerOptions;
  snapshotEvery?: number;
  onStep?: (i: number, n: number) => void;
  /** Awaited with each snapshot as it is taken (see SampleRunOptions.onSnapshot), for a live view. */
  onSnapshot?: SampleRunOptions['onSnapshot'];
  /**
   * Start from this x_T instead of drawing it: [B, C, H, W] values (or a device tensor), e.g. what
   * invertDDIM returned. With a deterministic sampler (DDIM, eta 0) the seed then plays no part.
   */
  xT?: Float32Array | Tensor;
}

/** Turns a label given by name or index into an index; errors name the allowed values. */
export function parseLabel(label: string | number, classes: readonly string[]): number {
  if (!classes.length) throw new SamplerError(`label '${label}': this model is unconditional and takes no labels`);
  const s = String(label);
  const byName = classes.indexOf(s);
  if (byName >= 0) return byName;
  const byIndex = /^\d+$/.test(s) ? Number(s) : NaN;
  if (byIndex >= 0 && byIndex < classes.length) return byIndex;
  throw new SamplerError(`label '${label}' is not a class of this model; allowed values: ${classes.join(', ')} (or 0..${classes.length - 1})`);
}

/** Who a batch is for and how it is guided: what generate and DDIM inversion take of the network's conditioning. */
export interface ConditioningOptions extends GuidanceVariants {
  /** Class of each image (omit for an unconditional model). */
  labels?: readonly number[] | null;
  /** One scale, or one per image. */
  guidance?: number | readonly number[];
}

/**
 * The network as a denoiser for a batch of `batch` images, after the checks generate makes of its
 * labels and guidance (errors name the allowed values). Shared by sampling and DDIM inversion, so the
 * two evaluate the same ε̂.
 */
export function conditionedDenoiser(dev: Device, net: UNet, process: NoiseProcess, batch: number, opts: ConditioningOptions): NetworkDenoiser {
  const cfg = net.config;
  const labels = opts.labels ?? null;
  if (cfg.conditioning === 'context') throw new SamplerError('this model attends to a context (encoder_hidden_states): sample it through NetworkDenoiser with a context');
  if (cfg.conditioning !== 'none' && !labels) throw new SamplerError('this model is class-conditional: give labels');
  if (cfg.conditioning === 'none' && labels) throw new SamplerError('this model is unconditional: it takes no labels');
  if (labels) for (const l of labels) if (!(Number.isInteger(l) && l >= 0 && l < cfg.numClasses)) throw new SamplerError(`label ${l} is outside the classes 0..${cfg.numClasses - 1}`);
  const guidance = opts.guidance ?? 1;
  for (const g of typeof guidance === 'number' ? [guidance] : guidance) if (!(g >= 0)) throw new SamplerError(`guidance = ${g} must be a number >= 0`);
  if (labels && !cfg.nullClass && (typeof guidance === 'number' ? [guidance] : guidance).some((g) => g !== 1)) {
    throw new SamplerError('this model has no null class (it was not trained for classifier-free guidance, e.g. one from diffusers): use guidance 1');
  }
  return new NetworkDenoiser(dev, net, batch, { prediction: process.config.predictionType, labels: labels ? Int32Array.from(labels) : null, nullClass: cfg.numClasses, guidance, guidanceRescale: opts.guidanceRescale, guidanceParallel: opts.guidanceParallel, guidanceInterval: opts.guidanceInterval });
}

/**
 * x_T given as host values [B, C, H, W] (or a device tensor) as the tensor the sampling loop starts
 * from; `what` names it in errors.
 */
export function startTensor(dev: Device, xT: Float32Array | Tensor, shape: readonly number[], what = 'xT'): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  if (xT instanceof Tensor) {
    if (xT.shape.length !== shape.length || xT.shape.some((d, i) => d !== shape[i])) throw new ShapeError('sample', `${what} has shape ${fmtShape(xT.shape)}, expected ${fmtShape(shape)}`);
    return xT;
  }
  if (xT.length !== n) throw new ShapeError('sample', `${what} has ${xT.length} values, expected ${fmtShape(shape)} (${n})`);
  return dev.tensor(xT, shape);
}

/** Samples a batch; the images are read back as [B, C, H, W] values in about [-1, 1]. */
export async function generate(dev: Device, net: UNet, process: NoiseProcess, opts: GenerateOptions): Promise<SampleResult & { images: Float32Array; shape: [number, number, number, number] }> {
  const cfg = net.config;
  const labels = opts.labels ?? null;
  const per = cfg.inChannels * cfg.sampleSize * cfg.sampleSize;
  // The batch: one image per label, else `count`, else as many as a given x_T holds.
  const B = labels ? labels.length : (opts.count ?? (opts.xT ? (opts.xT instanceof Tensor ? opts.xT.shape[0]! : Math.max(1, Math.floor(opts.xT.length / per))) : 1));
  const den = conditionedDenoiser(dev, net, process, B, opts);
  const sampler = makeSampler(opts.sampler, process, opts.samplerOptions);
  const shape: [number, number, number, number] = [B, cfg.inChannels, cfg.sampleSize, cfg.sampleSize];
  const xT = opts.xT ? startTensor(dev, opts.xT, shape) : undefined;
  const loop = new SamplingLoop(dev, sampler, den.denoise, shape);
  try {
    const r = await loop.run(opts.steps, { seed: opts.seed ?? 0, xT, snapshotEvery: opts.snapshotEvery, onStep: opts.onStep, onSnapshot: opts.onSnapshot });
    const images = (await r.x.read()) as Float32Array;
    return { ...r, images, shape };
  } finally {
    loop.destroy();
  }
}

/** Reads snapshots back as one array [snapshots·B, C, H, W] (row k = the batch after snapshot k). */
export async function readSnapshots(snaps: { x0: Tensor }[]): Promise<Float32Array> {
  return concatFloat32(await Promise.all(snaps.map((s) => s.x0.read())));
}

/** Host arrays end to end, as float32 in one new array. */
export function concatFloat32(parts: readonly ArrayLike<number>[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
