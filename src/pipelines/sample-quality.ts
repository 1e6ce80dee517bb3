// Sample quality against sampler and step count, as the DDIM paper's Table 1 measures it: each cell
// samples `count` images per class from the same seed, and a classifier trained by the engine reads
// them: the share recognised as the class asked for, and the Fréchet distance between the samples'
// penultimate features and those of real images. Browser-safe.
import type { Device } from '../graph/device.js';
import type { UNet } from '../models/unet.js';
import type { NoiseProcess } from '../diffusion/process.js';
import { Classifier, classify } from '../models/classifier.js';
import { generate } from '../diffusion/generate.js';
import type { SamplerOptions } from '../diffusion/samplers/index.js';
import { makeSampler } from '../diffusion/samplers/index.js';
import { frechetDistance } from '../metrics/frechet.js';
import type { GuidanceVariants } from '../diffusion/denoiser.js';

export interface QualityCell {
  sampler: string;
  steps: number;
  /** Network evaluations per sample (Heun: 2n − 1, PLMS: n + 1; doubled again by guidance's batch). */
  evaluations: number;
  guidance: number;
  samples: number;
  /** Share of samples the classifier labels as the class asked for, overall and per class index. */
  accuracy: number;
  perClass: number[];
  /** Fréchet distance between the samples' classifier features and the real images' (null without real images). */
  frechet: number | null;
  seconds: number;
  /** The samples, [samples, C, H, W] (for grids). */
  images: Float32Array;
  shape: [number, number, number, number];
}

export interface QualityOptions {
  samplers: string[];
  steps: number[];
  /** Steps that only these samplers run (e.g. 1000 for ddpm and ddim only); default: all. */
  onlyFor?: Record<number, string[]>;
  guidance: number;
  guidanceVariants?: GuidanceVariants;
  /** Samples per class. */
  count: number;
  seed: number;
  samplerOptions: SamplerOptions;
  onCell?: (cell: QualityCell) => void | Promise<void>;
}

/** Network evaluations of one run of a sampler: the steps' levels (Heun evaluates twice, PLMS's first step twice). */
export function evaluationsOf(sampler: string, process: NoiseProcess, steps: number, o: SamplerOptions = {}): number {
  return makeSampler(sampler, process, o).plan(steps).reduce((n, p) => n + p.levels.length, 0);
}

/** Every (sampler, steps) cell; `real` are the classifier's features of real images. */
export async function sampleQuality(dev: Device, net: UNet, process: NoiseProcess, clf: Classifier, real: Float32Array | null, opts: QualityOptions): Promise<QualityCell[]> {
  const K = net.config.numClasses;
  const labels = Array.from({ length: K * opts.count }, (_, i) => Math.floor(i / opts.count));
  const dim = clf.config.channels[2];
  const cells: QualityCell[] = [];
  for (const steps of opts.steps) {
    for (const sampler of opts.samplers) {
      if (opts.onlyFor?.[steps] && !opts.onlyFor[steps]!.includes(sampler)) continue;
      const t0 = performance.now();
      const r = await generate(dev, net, process, { sampler, steps, labels, guidance: opts.guidance, ...opts.guidanceVariants, seed: opts.seed, samplerOptions: opts.samplerOptions });
      const seconds = (performance.now() - t0) / 1000;
      const pred = await classify(dev, clf, r.images);
      const perClass = Array.from({ length: K }, () => 0);
      labels.forEach((l, i) => pred.labels[i] === l && perClass[l]!++);
      const cell: QualityCell = {
        sampler, steps, evaluations: evaluationsOf(sampler, process, steps, opts.samplerOptions), guidance: opts.guidance, samples: labels.length,
        accuracy: perClass.reduce((a, b) => a + b, 0) / labels.length, perClass: perClass.map((h) => h / opts.count), frechet: real ? frechetDistance(pred.features, real, dim) : null, seconds, images: r.images, shape: r.shape,
      };
      cells.push(cell);
      await opts.onCell?.(cell);
    }
  }
  return cells;
}
