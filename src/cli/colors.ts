// `wgd eval-colors`: colour-conditioned generation measured as the colour-to-image thesis measures it:
// per-pixel distance to the asked colour (sRGB and CIE-LAB) and colour accuracy, per label and overall,
// for a sweep of guidance scales; plus Fréchet distance to the training images and nearest-neighbour
// retrieval of training images for a look at memorisation.
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Device } from '../graph/device.js';
import { readCheckpointFile } from '../io/checkpoint-file.js';
import { modelFromCheckpoint, samplerDefaults } from '../diffusion/train.js';
import { generate } from '../diffusion/generate.js';
import { GuidanceVariants, guidanceRecord } from '../diffusion/denoiser.js';
import type { SamplerOptions } from '../diffusion/samplers/index.js';
import { evalColors, formatColorTable, ColorReport, classMeanImages, solidImages, pairedDifference } from '../metrics/color.js';
import { COLOR_CLASSES, meanSrgb, COLOR_SRGB } from '../data/color-space.js';
import { frechetDistance } from '../metrics/frechet.js';
import { nearestNeighbours } from '../metrics/retrieval.js';
import { classify } from '../models/classifier.js';
import { gridPng, viewScale } from '../data/png.js';

import { loadDataset } from './datasets.js';
import { loadClassifier } from './classifier.js';
import { firstStageFor } from './vqgan.js';
import { Progress } from './progress.js';
import { writeFileAtomic } from '../io/file.js';
import { checkFolder, checkOutputs } from './outputs.js';

export interface EvalColorsCommand {
  checkpoint: string;
  guidance: number[];
  /** Variants of guidance (rescale, parallel weight, interval); omitted: plain guidance. */
  guidanceVariants?: GuidanceVariants;
  /** Images per colour and scale. */
  count: number;
  sampler: string;
  steps: number;
  seed: number;
  out: string;
  /**
   * A classifier trained on colors (wgd train-classifier --data colors): its penultimate layer gives the
   * features for Fréchet distance and retrieval. Unset: classifier.safetensors beside the checkpoint
   * when there is one; 'none' (or no such file): the images' 4x4 block colours.
   */
  classifier?: string;
  vqgan?: string;
  /** Over the model's defaults (samplerDefaults). */
  samplerOptions?: SamplerOptions;
  /** Replace the outputs in `out` if they exist. */
  force?: boolean;
}

export interface EvalColorsResult {
  guidance: number;
  report: Omit<ColorReport, 'predicted' | 'labPerImage'>;
  frechet: number;
  seconds: number;
}

/** The outputs, checked before any work (main calls this before making the device). */
export function checkEvalColorsOutputs(cmd: EvalColorsCommand): void {
  checkFolder('--out', cmd.out);
  const files = [...cmd.guidance.map((g) => join(cmd.out, `samples-s${g}.png`)), ...['sweep.png', 'nearest.png', 'metrics.json', 'table.md'].map((f) => join(cmd.out, f))];
  checkOutputs({ files, inputs: [cmd.checkpoint, cmd.vqgan, cmd.classifier === 'none' ? undefined : cmd.classifier], force: Boolean(cmd.force) });
}

export async function evalColorsCommand(dev: Device, cmd: EvalColorsCommand): Promise<EvalColorsResult[]> {
  checkEvalColorsOutputs(cmd);
  const grid = (g: number) => join(cmd.out, `samples-s${g}.png`);
  const ck = await readCheckpointFile(cmd.checkpoint);
  const { net, process: noise, config } = modelFromCheckpoint(dev, ck);
  if (config.classes.join() !== COLOR_CLASSES.join()) {
    throw new Error(`eval-colors: ${cmd.checkpoint} was trained on classes ${config.classes.join(', ') || '(none)'}; it needs the 8 colour classes (${COLOR_CLASSES.join(', ')}) of the colors dataset`);
  }
  const firstStage = await firstStageFor(dev, cmd.checkpoint, config, cmd.vqgan);
  const decode = firstStage?.decode;
  const samplerOptions = { ...samplerDefaults(config), ...cmd.samplerOptions };
  const K = COLOR_CLASSES.length;
  const labels = Array.from({ length: K * cmd.count }, (_, i) => Math.floor(i / cmd.count));
  // Reference set: the training images (as the run's config describes them).
  const spec = config.data as { name: string; size: number; count?: number; seed?: number } | undefined;
  const train = loadDataset({ name: 'colors', size: spec?.size ?? 32, count: Math.min(spec?.count ?? 4096, 1024), seed: spec?.seed ?? 0 });
  // The classifier to take features from: the one given, else the one beside the checkpoint if any.
  const beside = join(dirname(cmd.checkpoint), 'classifier.safetensors');
  const clfPath = cmd.classifier === 'none' ? null : (cmd.classifier ?? (existsSync(beside) ? beside : null));
  const clf = clfPath ? await loadClassifier(dev, clfPath) : null;
  if (clf && clf.classes.join() !== COLOR_CLASSES.join()) {
    throw new Error(`eval-colors: the classifier ${clfPath} was trained on classes ${clf.classes.join(', ') || '(none)'}; its features need the 8 colour classes (train one with wgd train-classifier --data colors)`);
  }
  console.log(clf ? `features: the penultimate layer of ${clfPath}` : `features: 4x4 block colours (no classifier${cmd.classifier === 'none' ? '' : ` at ${beside}; give --classifier PATH from wgd train-classifier --data colors`})`);
  // Without a classifier, the features are the images' 4x4 block averages (48 numbers): full pixel
  // vectors would give a covariance far larger than the sample count.
  const featuresOf = async (x: Float32Array) => (clf ? (await classify(dev, clf.net, x)).features : blockMeans(x, train.shape[1], train.shape[2]));
  const dim = clf ? clf.net.config.channels[2] : train.shape[1] * 16;
  const trainFeatures = await featuresOf(train.images);
  mkdirSync(cmd.out, { recursive: true });
  // What the samples are measured against: the training images themselves (their labels are the
  // metric's own rule, so 100% by construction; their distances show how far real images sit from
  // the pure colours), and for a latent model the same images through the VQ-GAN alone, which bounds
  // what any latent sample can reach.
  const trainLabels = Array.from(train.labels ?? [], Number);
  const references: EvalColorsReference[] = [{ name: 'training images', report: withoutPredicted(evalColors(train.images, train.shape, trainLabels)), frechet: null }];
  // Each class collapsed to its training images' mean colour, one solid image per class: where samples
  // head as guidance concentrates them on a class (the dataset's shades scatter around the pure colour).
  const meanColours = classMeanImages(train.images, train.shape, trainLabels, K);
  const eachClass = Array.from({ length: K }, (_, k) => k); // labels of the rows with one image per class
  references.push({ name: 'class-mean colours, solid', report: withoutPredicted(evalColors(meanColours, [K, 3, 1, 1], eachClass)), frechet: null });
  if (firstStage) {
    const rec = toPixelRange(await firstStage.roundTrip(train.images, train.shape));
    references.push({ name: 'VQ-GAN reconstructions', report: withoutPredicted(evalColors(rec, train.shape, trainLabels)), frechet: frechetDistance(await featuresOf(rec), trainFeatures, dim) });
    // The pure colours themselves, one solid image each, through the VQ-GAN: how close its decoder
    // draws each label colour, about where strongly guided samples stop (not a strict bound: other
    // codes may draw a colour closer than the pure image's own).
    const pureShape: [number, number, number, number] = [K, train.shape[1], train.shape[2], train.shape[3]];
    const pure = toPixelRange(await firstStage.roundTrip(solidImages(COLOR_SRGB, pureShape[2], pureShape[3]), pureShape));
    const drawn = Array.from(meanSrgb(pure, pureShape), (v) => Math.round(255 * v));
    references.push({ name: 'pure colours through the VQ-GAN', report: withoutPredicted(evalColors(pure, pureShape, eachClass)), frechet: null, drawn: COLOR_CLASSES.map((_, k) => drawn.slice(3 * k, 3 * k + 3)) });
  }
  for (const r of references) console.log(`\n${r.name} (${r.report.overall.count} images):\n${formatColorTable(r.report)}${r.drawn ? `\ndrawn as (sRGB): ${r.drawn.map((c, k) => `${COLOR_CLASSES[k]} ${c.join(',')}`).join('; ')}` : ''}`);
  const results: EvalColorsResult[] = [];
  const perImage: Float64Array[] = [];
  const blocks: Float32Array[] = [];
  let imShape: [number, number, number, number] = [0, 0, 0, 0];
  for (const g of cmd.guidance) {
    const t0 = performance.now();
    const bar = new Progress(cmd.steps, `guidance ${g}`);
    const r = await generate(dev, net, noise, { sampler: cmd.sampler, steps: cmd.steps, labels, guidance: g, ...cmd.guidanceVariants, seed: cmd.seed, samplerOptions, onStep: (i, n) => bar.update(Math.round(((i + 1) * cmd.steps) / n)) });
    bar.finish(cmd.steps);
    const { images, shape } = decode ? await decode(r.images, r.shape) : r;
    const clipped = toPixelRange(images);
    imShape = shape;
    blocks.push(clipped);
    const report = evalColors(clipped, shape, labels);
    perImage.push(report.labPerImage);
    const feats = await featuresOf(clipped);
    const frechet = frechetDistance(feats, trainFeatures, dim);
    results.push({ guidance: g, report: withoutPredicted(report), frechet, seconds: (performance.now() - t0) / 1000 });
    await writeFileAtomic(grid(g), gridPng(clipped, shape, { cols: cmd.count, scale: viewScale(shape[2]) }));
    console.log(`\nguidance ${g}: Fréchet distance to the training images ${frechet.toFixed(3)} (${clf ? 'classifier features' : '4x4 colour layout'})\n${formatColorTable(report)}`);
  }
  // The sweep: one row per colour, the scales side by side (count columns each, in the order given).
  const [, c, h, w] = imShape;
  const per = c * h * w;
  const S = cmd.guidance.length;
  const sweep = new Float32Array(K * S * cmd.count * per);
  for (let k = 0; k < K; k++) {
    for (let s = 0; s < S; s++) {
      for (let j = 0; j < cmd.count; j++) sweep.set(blocks[s]!.subarray((k * cmd.count + j) * per, (k * cmd.count + j + 1) * per), ((k * S + s) * cmd.count + j) * per);
    }
  }
  await writeFileAtomic(join(cmd.out, 'sweep.png'), gridPng(sweep, [K * S * cmd.count, c, h, w], { cols: S * cmd.count, scale: viewScale(h) }));
  // Retrieval: for the first sample of each colour at the last scale, the 5 nearest training images.
  const last = blocks[S - 1]!;
  const queries = Array.from({ length: K }, (_, k) => k * cmd.count);
  const qFeat = await featuresOf(last);
  const qRows = new Float32Array(K * dim);
  queries.forEach((q, i) => qRows.set(qFeat.subarray(q * dim, (q + 1) * dim), i * dim));
  const nn = nearestNeighbours(qRows, trainFeatures, dim, 5);
  const tiles = new Float32Array(K * 6 * per);
  queries.forEach((q, i) => {
    tiles.set(last.subarray(q * per, (q + 1) * per), i * 6 * per);
    for (let j = 0; j < 5; j++) {
      const t = nn.index[i * 5 + j]!;
      tiles.set(train.images.subarray(t * per, (t + 1) * per), (i * 6 + 1 + j) * per);
    }
  });
  await writeFileAtomic(join(cmd.out, 'nearest.png'), gridPng(tiles, [K * 6, c, h, w], { cols: 6, scale: viewScale(h) }));
  // Every scale starts from the same noise (same seed and labels), so the change of ΔE76 from one
  // scale to the next is measured image by image: the mean paired difference and its standard error.
  const trend = results.slice(1).map((r, i) => ({ from: results[i]!.guidance, to: r.guidance, ...pairedDifference(perImage[i]!, perImage[i + 1]!) }));
  const table = [
    '| guidance | accuracy | RGB distance | CIE-LAB ΔE76 ± s.e. | Fréchet |',
    '|---|---|---|---|---|',
    ...results.map((r) => tableRow(`${r.guidance}`, r.report, r.frechet)),
    ...references.map((r) => tableRow(`(${r.name})`, r.report, r.frechet)),
    ...(trend.length ? ['', '| ΔE76 change, image by image | mean ± s.e. |', '|---|---|', ...trend.map((t) => `| s = ${t.from} → ${t.to} | ${signed(t.mean)} ± ${t.se.toFixed(2)} |`)] : []),
  ].join('\n');
  await writeFileAtomic(join(cmd.out, 'metrics.json'), JSON.stringify({ checkpoint: cmd.checkpoint, vqgan: firstStage?.path ?? null, sampler: cmd.sampler, steps: cmd.steps, ...guidanceRecord(cmd.guidanceVariants), samplerOptions, count: cmd.count, seed: cmd.seed, features: clfPath ?? '4x4 block means of the pixels', results, references, labTrend: trend }, null, 2));
  await writeFileAtomic(join(cmd.out, 'table.md'), table + '\n');
  console.log(`\n${table}\n\nwrote ${join(cmd.out, 'sweep.png')} (rows: ${COLOR_CLASSES.join(', ')}; columns: guidance ${cmd.guidance.join(', ')}, ${cmd.count} each), nearest.png, metrics.json, table.md`);
  return results;
}

export interface EvalColorsReference {
  name: string;
  report: Omit<ColorReport, 'predicted' | 'labPerImage'>;
  frechet: number | null;
  /** Each class's mean colour as drawn (sRGB 0..255), for the pure colours through the VQ-GAN. */
  drawn?: number[][];
}

/** Decoded images clamped to the pixel range [-1, 1] before they are measured. */
const toPixelRange = (x: Float32Array): Float32Array => x.map((v) => Math.max(-1, Math.min(1, v)));

function withoutPredicted(r: ColorReport): Omit<ColorReport, 'predicted' | 'labPerImage'> {
  const { predicted: _p, labPerImage: _l, ...rest } = r;
  void _p;
  void _l;
  return rest;
}

function tableRow(name: string, r: Pick<ColorReport, 'overall'>, frechet: number | null): string {
  const o = r.overall;
  const lab = `${o.labDistance.toFixed(2)}${Number.isFinite(o.labDistanceSE) ? ` ± ${o.labDistanceSE.toFixed(2)}` : ''}`;
  return `| ${name} | ${(100 * o.accuracy).toFixed(1)}% | ${o.rgbDistance.toFixed(1)} | ${lab} | ${frechet === null ? '–' : frechet.toFixed(3)} |`;
}

const signed = (v: number) => `${v >= 0 ? '+' : '−'}${Math.abs(v).toFixed(2)}`;


/** Each image [C, S, S] as the means of its 4x4 grid of blocks per channel: [C·16] features. */
function blockMeans(images: Float32Array, c: number, s: number): Float32Array {
  const per = c * s * s;
  const n = images.length / per;
  const out = new Float32Array(n * c * 16);
  const b = s / 4;
  for (let i = 0; i < n; i++) {
    for (let ch = 0; ch < c; ch++) {
      for (let y = 0; y < s; y++) {
        for (let x = 0; x < s; x++) out[((i * c + ch) * 4 + Math.floor(y / b)) * 4 + Math.floor(x / b)]! += images[i * per + (ch * s + y) * s + x]! / (b * b);
      }
    }
  }
  return out;
}
