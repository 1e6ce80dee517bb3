// Image generation from a trained model: rows of class-conditional samples with classifier-free
// guidance, for the CLI, the demo, the browser lab and evaluation. Browser-safe.
import type { Device } from '../graph/device.js';
import { Tensor } from '../graph/tensor.js';
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

/** Samples a batch; the images are read back as [B, C, H, W] values in about [-1, 1]. */
export async function generate(dev: Device, net: UNet, process: NoiseProcess, opts: GenerateOptions): Promise<SampleResult & { images: Float32Array; shape: [number, number, number, number] }> {
  const cfg = net.config;
  const labels = opts.labels ?? null;
  if (cfg.conditioning === 'context') throw new SamplerError('this model attends to a context (encoder_hidden_states): sample it through NetworkDenoiser with a context');
  if (cfg.conditioning !== 'none' && !labels) throw new SamplerError('this model is class-conditional: give labels');
  if (cfg.conditioning === 'none' && labels) throw new SamplerError('this model is unconditional: it takes no labels');
  if (labels) for (const l of labels) if (!(Number.isInteger(l) && l >= 0 && l < cfg.numClasses)) throw new SamplerError(`label ${l} is outside the classes 0..${cfg.numClasses - 1}`);
  const B = labels ? labels.length : (opts.count ?? 1);
  const guidance = opts.guidance ?? 1;
  for (const g of typeof guidance === 'number' ? [guidance] : guidance) if (!(g >= 0)) throw new SamplerError(`guidance = ${g} must be a number >= 0`);
  if (labels && !cfg.nullClass && (typeof guidance === 'number' ? [guidance] : guidance).some((g) => g !== 1)) {
    throw new SamplerError('this model has no null class (it was not trained for classifier-free guidance, e.g. one from diffusers): use guidance 1');
  }
  const sampler = makeSampler(opts.sampler, process, opts.samplerOptions);
  const den = new NetworkDenoiser(dev, net, B, { prediction: process.config.predictionType, labels: labels ? Int32Array.from(labels) : null, nullClass: cfg.numClasses, guidance, guidanceRescale: opts.guidanceRescale, guidanceParallel: opts.guidanceParallel, guidanceInterval: opts.guidanceInterval });
  const shape: [number, number, number, number] = [B, cfg.inChannels, cfg.sampleSize, cfg.sampleSize];
  const loop = new SamplingLoop(dev, sampler, den.denoise, shape);
  try {
    const r = await loop.run(opts.steps, { seed: opts.seed ?? 0, snapshotEvery: opts.snapshotEvery, onStep: opts.onStep, onSnapshot: opts.onSnapshot });
    const images = (await r.x.read()) as Float32Array;
    return { ...r, images, shape };
  } finally {
    loop.destroy();
  }
}

/** Reads snapshots back as one array [snapshots·B, C, H, W] (row k = the batch after snapshot k). */
export async function readSnapshots(snaps: { x0: Tensor }[]): Promise<Float32Array> {
  const parts = await Promise.all(snaps.map((s) => s.x0.read()));
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
