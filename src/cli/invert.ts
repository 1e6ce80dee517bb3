// `wgd invert`: DDIM inversion of PNG images with a diffusion model. Each image goes to the x_T that
// DDIM sampling with the same steps takes back to it; that sampling is then run, and the command
// writes OUT.png (a row per image: original | x_T | reconstruction), OUT.json (per image the
// reconstruction's MSE and PSNR, x_T's mean, std and Kolmogorov–Smirnov distance to N(0, 1)) and
// OUT.safetensors (x_T, to start a later sampling from).
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Device } from '../graph/device.js';
import { decodePng, gridPng, viewScale } from '../data/png.js';
import { concatFloat32, parseLabel } from '../diffusion/generate.js';
import { checkInvertible } from '../diffusion/invert.js';
import type { SamplerOptions } from '../diffusion/samplers/index.js';
import { invertImages, modelImageShape, reconstructImages } from '../pipelines/invert.js';
import { ksDistanceToNormal, meanStd, mse, psnr } from '../metrics/distribution.js';
import { serializeSafetensors } from '../io/safetensors.js';
import { writeFileAtomic } from '../io/file.js';
import { checkExtension, checkOutputs } from './outputs.js';
import { Progress } from './progress.js';
import { loadSamplingModel } from './sample.js';
import type { ProcessFlags } from './diffusers.js';

export interface InvertCommand {
  checkpoint: string;
  /** PNG files, or one folder of them. */
  images: string[];
  steps: number;
  /** Class names or indices: one for every image, or one per image; empty for an unconditional model. */
  labels: string[];
  guidance: number;
  /** The DDIM grid of both directions (timestepSpacing, stepsOffset); the model's own by default. */
  samplerOptions?: SamplerOptions;
  out: string;
  vqgan?: string;
  force?: boolean;
  processFlags?: ProcessFlags;
}

/** Images per inversion (and reconstruction) batch. */
const BATCH = 16;
/** x_T is shown mapped from [-XT_RANGE, XT_RANGE] to black..white. */
const XT_RANGE = 3;

const beside = (out: string, ext: string) => out.replace(/\.png$/i, '') + ext;

/** The PNG files --image names: the files themselves, or one folder's PNGs sorted by name. */
export function imageFiles(images: readonly string[]): string[] {
  if (images.length === 0) throw new Error('--image: give PNG files (comma-separated) or a folder of them');
  if (images.length === 1 && existsSync(images[0]!) && statSync(images[0]!).isDirectory()) {
    const dir = images[0]!;
    const files = readdirSync(dir).filter((n) => n.toLowerCase().endsWith('.png')).sort().map((n) => join(dir, n));
    if (!files.length) throw new Error(`--image ${dir}: the folder holds no PNG images`);
    return files;
  }
  for (const f of images) {
    if (!existsSync(f)) throw new Error(`--image ${f}: no such file`);
    if (statSync(f).isDirectory()) throw new Error(`--image ${f} is a folder: give one folder alone, or PNG files`);
  }
  return [...images];
}

/** The outputs (OUT.png, OUT.json, OUT.safetensors), checked before anything is loaded; returns them. */
export function checkInvertOutputs(cmd: InvertCommand): { png: string; json: string; xT: string } {
  checkExtension('--out', cmd.out, '.png');
  const files = { png: cmd.out, json: beside(cmd.out, '.json'), xT: beside(cmd.out, '.safetensors') };
  checkOutputs({ files: Object.values(files), inputs: [cmd.checkpoint, cmd.vqgan, ...cmd.images], force: Boolean(cmd.force) });
  return files;
}

const CHANNEL_NAMES: Record<number, string> = { 1: 'grey', 2: 'grey and alpha', 3: 'RGB', 4: 'RGBA' };
const channelName = (c: number | undefined): string => CHANNEL_NAMES[c ?? 0] ?? `${c} channels`;

/** One PNG as planar [C, H, W] values in [-1, 1], checked against the model's image shape [C, H, W]. */
function readImage(file: string, [C, H, W]: readonly number[]): Float32Array {
  let png;
  try {
    png = decodePng(new Uint8Array(readFileSync(file)));
  } catch (e) {
    throw new Error(`--image ${file}: ${(e as Error).message}`);
  }
  const { width, height, channels, data } = png;
  if (width !== W || height !== H) throw new Error(`--image ${file} is ${width}x${height}; this model takes ${W}x${H} images`);
  // An alpha channel that is opaque everywhere is no channel of the image.
  let c: number = channels;
  if (channels === 2 || channels === 4) {
    for (let i = 0; i < width * height; i++) {
      if (data[i * channels + channels - 1] !== 255) throw new Error(`--image ${file} has transparent pixels; this model takes opaque ${C}-channel (${channelName(C)}) images`);
    }
    c = channels - 1;
  }
  if (c !== C) throw new Error(`--image ${file} has ${c} channel${c > 1 ? 's' : ''} (${channelName(c)}); this model takes ${C}-channel (${channelName(C)}) images`);
  const out = new Float32Array(C * H * W);
  for (let k = 0; k < C; k++) for (let i = 0; i < H * W; i++) out[k * H * W + i] = (data[i * channels + k]! / 255) * 2 - 1;
  return out;
}

/**
 * x_T [N, D, h, w] as images [N, C, H, W] to show beside the originals: values divided by XT_RANGE
 * (so [-3, 3] spans black..white); a latent x_T enlarged to the image size (nearest), its channels
 * taken in turn for the image's.
 */
function xTView(xT: Float32Array, xShape: readonly number[], imageShape: readonly number[]): Float32Array {
  const [N, D, h, w] = xShape as [number, number, number, number];
  const [C, H, W] = imageShape as [number, number, number];
  const out = new Float32Array(N * C * H * W);
  const fy = H / h, fx = W / w;
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const src = (n * D + (c % D)) * h * w;
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) out[((n * C + c) * H + y) * W + x] = xT[src + Math.floor(y / fy) * w + Math.floor(x / fx)]! / XT_RANGE;
      }
    }
  }
  return out;
}

const round = (v: number, digits = 4) => Number(v.toFixed(digits));

export async function invertCommand(dev: Device, cmd: InvertCommand) {
  const outs = checkInvertOutputs(cmd);
  const files = imageFiles(cmd.images);
  // Errors about the model name it (a VQ-GAN or classifier given as --ckpt, a process DDIM cannot run).
  const named = (e: unknown) => {
    const m = (e as Error).message;
    return m.includes(cmd.checkpoint) ? (e as Error) : new Error(`--ckpt ${cmd.checkpoint}: ${m}`);
  };
  const { model } = await loadSamplingModel(dev, cmd.checkpoint, { vqgan: cmd.vqgan, processFlags: cmd.processFlags }).catch((e) => {
    throw named(e);
  });
  try {
    checkInvertible(model.process);
  } catch (e) {
    throw named(e);
  }
  const imShape = modelImageShape(model);
  const per = imShape[0] * imShape[1] * imShape[2];
  const N = files.length;
  const images = new Float32Array(N * per);
  files.forEach((f, i) => images.set(readImage(f, imShape), i * per));

  const { net, classes } = model;
  let labels: number[] | null = null;
  if (net.config.conditioning !== 'none') {
    if (!cmd.labels.length) throw new Error(`--label: ${cmd.checkpoint} is class-conditional; give the images' class (one for all, or one per image): ${classes.join(', ')}`);
    if (cmd.labels.length !== 1 && cmd.labels.length !== N) throw new Error(`--label: ${cmd.labels.length} labels for ${N} images; give one for all, or one per image`);
    const parsed = cmd.labels.map((l) => parseLabel(l, classes));
    labels = parsed.length === 1 ? new Array<number>(N).fill(parsed[0]!) : parsed;
  } else if (cmd.labels.length) {
    throw new Error(`--label: ${cmd.checkpoint} is an unconditional model and takes no labels`);
  }

  const batches = Math.ceil(N / BATCH);
  const bar = new Progress(2 * cmd.steps * batches, 'invert ddim');
  const xTParts: Float32Array[] = [];
  const recParts: Float32Array[] = [];
  let xTShape: number[] = [];
  let invertSeconds = 0, reconstructSeconds = 0;
  for (let k = 0; k < batches; k++) {
    const lo = k * BATCH, hi = Math.min(N, lo + BATCH);
    const x = images.subarray(lo * per, hi * per);
    const ls = labels ? labels.slice(lo, hi) : null;
    const base = 2 * cmd.steps * k;
    const opts = { steps: cmd.steps, labels: ls, guidance: cmd.guidance, samplerOptions: cmd.samplerOptions };
    let t0 = performance.now();
    const inv = await invertImages(dev, model, x, [hi - lo, ...imShape], { ...opts, onStep: (i) => bar.update(base + i + 1) });
    invertSeconds += (performance.now() - t0) / 1000;
    t0 = performance.now();
    const rec = await reconstructImages(dev, model, inv.xT, { ...opts, onStep: (i) => bar.update(base + cmd.steps + i + 1) });
    reconstructSeconds += (performance.now() - t0) / 1000;
    xTParts.push(inv.xT);
    recParts.push(rec.images);
    xTShape = inv.shape.slice(1);
  }
  bar.finish(2 * cmd.steps * batches);
  const xT = concatFloat32(xTParts);
  const rec = concatFloat32(recParts);
  const zPer = xTShape.reduce((a, b) => a * b, 1);

  const rows = files.map((file, i) => {
    const e = mse(rec.subarray(i * per, (i + 1) * per), images.subarray(i * per, (i + 1) * per));
    const z = xT.subarray(i * zPer, (i + 1) * zPer);
    const { mean, std } = meanStd(z);
    return { file, label: labels ? classes[labels[i]!] ?? String(labels[i]) : null, mse: round(e, 6), psnr: round(psnr(e), 2), xT: { mean: round(mean), std: round(std), ks: round(ksDistanceToNormal(z)) } };
  });
  const all = meanStd(xT);
  const seconds = invertSeconds + reconstructSeconds;
  const summary = {
    images: N,
    mse: round(rows.reduce((s, r) => s + r.mse, 0) / N, 6),
    psnr: round(rows.reduce((s, r) => s + r.psnr, 0) / N, 2),
    xT: { mean: round(all.mean), std: round(all.std), ks: round(ksDistanceToNormal(xT)) },
    secondsPerImage: round(seconds / N, 3),
  };
  const grid = model.samplerDefaults.timestepSpacing || cmd.samplerOptions?.timestepSpacing
    ? { timestepSpacing: cmd.samplerOptions?.timestepSpacing ?? model.samplerDefaults.timestepSpacing, stepsOffset: cmd.samplerOptions?.stepsOffset ?? model.samplerDefaults.stepsOffset ?? 0 }
    : { timestepSpacing: 'trailing (the engine\'s grid)' };
  const record = {
    kind: 'ddim-inversion', checkpoint: cmd.checkpoint, steps: cmd.steps, guidance: cmd.guidance, grid,
    space: model.firstStage ? 'latent' : 'pixel', xTShape: [N, ...xTShape], reconstruction: 'DDIM (eta 0) from x_T, same steps and grid, x̂0 not clipped',
    seconds: { inversion: round(invertSeconds, 2), reconstruction: round(reconstructSeconds, 2) },
    summary, images: rows,
  };

  // A row per image: original | x_T | reconstruction.
  const tiles = new Float32Array(3 * N * per);
  const view = xTView(xT, [N, ...xTShape], imShape);
  for (let i = 0; i < N; i++) {
    tiles.set(images.subarray(i * per, (i + 1) * per), (3 * i) * per);
    tiles.set(view.subarray(i * per, (i + 1) * per), (3 * i + 1) * per);
    tiles.set(rec.subarray(i * per, (i + 1) * per), (3 * i + 2) * per);
  }
  mkdirSync(dirname(cmd.out) || '.', { recursive: true });
  await writeFileAtomic(outs.png, gridPng(tiles, [3 * N, imShape[0], imShape[1], imShape[2]], { cols: 3, scale: viewScale(imShape[1]) }));
  await writeFileAtomic(outs.json, JSON.stringify(record, null, 2) + '\n');
  const meta = { kind: 'ddim-inversion', checkpoint: cmd.checkpoint, steps: String(cmd.steps), guidance: String(cmd.guidance), labels: JSON.stringify(labels), files: JSON.stringify(files), grid: JSON.stringify(grid) };
  await writeFileAtomic(outs.xT, serializeSafetensors(new Map([['xT', { shape: [N, ...xTShape], data: xT }]]), meta));
  return { ...outs, summary, seconds };
}
