// `wgd sample`: images from a checkpoint as a PNG grid (a row per label), optionally with a strip of
// the intermediate x̂0 of the first sample of each row.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Device } from '../graph/device.js';
import { parseLabel, readSnapshots } from '../diffusion/generate.js';
import type { GuidanceVariants } from '../diffusion/denoiser.js';
import { SamplerOptions } from '../diffusion/samplers/index.js';
import { gridPng, viewScale } from '../data/png.js';
import { Progress } from './progress.js';
import { samplerDefaults } from '../diffusion/train.js';
import { firstStageFor, loadDiffusionModelFile } from '../pipelines/latent-node.js';
import { sampleImages, type DiffusionModel } from '../pipelines/latent.js';
import { withVQGANFlag } from './vqgan.js';
import { readSafetensorsFile, writeFileAtomic } from '../io/file.js';
import { checkExtension, checkOutputs } from './outputs.js';
import { ProcessFlags, isFolder, loadFolderForSampling } from './diffusers.js';

export interface SampleCommand {
  checkpoint: string;
  sampler: string;
  steps: number;
  guidance: number;
  /** Variants of guidance (rescale, parallel weight, interval); omitted: plain guidance. */
  guidanceVariants?: GuidanceVariants;
  /** Class names or indices; 'all' for every class. Empty for an unconditional model. */
  labels: string[];
  /** Images per label (or in all, when unconditional). */
  count: number;
  seed: number;
  out: string;
  /** Also write OUT-strip.png: x̂0 every few steps. */
  strip: boolean;
  samplerOptions?: SamplerOptions;
  /** Latent models: the VQ-GAN to decode with, when not where the checkpoint says. */
  vqgan?: string;
  /** Replace `out` (and the strip) if they exist. */
  force?: boolean;
  /**
   * A diffusers folder as --ckpt: its scheduler's sampler applies unless --sampler was given, and its
   * process comes from the scheduler config (or these flags); a model without a null class samples
   * at guidance 1 unless --guidance was given.
   */
  samplerGiven?: boolean;
  guidanceGiven?: boolean;
  processFlags?: ProcessFlags;
  /** Start from this x_T (a .safetensors with tensor 'xT' [N, ...], as wgd invert writes) instead of noise. */
  start?: string;
  /** --label was given (with --start, the file's labels apply otherwise). */
  labelGiven?: boolean;
}

/**
 * The x_T of --start: tensor 'xT' [N, ...] of the model's sample shape (latents for a latent model),
 * and the labels its metadata records (wgd invert's), if any.
 */
async function readStart(path: string, model: DiffusionModel): Promise<{ xT: Float32Array; shape: number[]; labels: number[] | null }> {
  let st;
  try {
    st = await readSafetensorsFile(path);
  } catch (e) {
    throw new Error(`--start ${path}: ${(e as Error).message}`);
  }
  const t = st.tensors.get('xT');
  if (!t || !(t.data instanceof Float32Array) || t.shape.length < 2) throw new Error(`--start ${path}: no float32 tensor 'xT' [N, C, H, W] (wgd invert writes one)`);
  const c = model.net.config;
  const want = [c.inChannels, c.sampleSize, c.sampleSize];
  if (t.shape.length !== 4 || t.shape.slice(1).some((d, i) => d !== want[i])) {
    throw new Error(`--start ${path}: x_T is [${t.shape.join(', ')}]; this model samples [N, ${want.join(', ')}]`);
  }
  let labels: number[] | null = null;
  try {
    const l = JSON.parse(st.metadata.labels ?? 'null') as unknown;
    if (Array.isArray(l) && l.every((v) => Number.isInteger(v))) labels = l as number[];
  } catch {
    /* no labels recorded */
  }
  return { xT: t.data, shape: [...t.shape], labels };
}

/**
 * The model behind --ckpt, ready to sample: a checkpoint file (a latent model with its VQ-GAN, found
 * where its header says unless `vqgan` is given) or a diffusers folder (its process from its scheduler
 * config or the flags). `sampler` is the one the model names (a folder's scheduler, a checkpoint
 * imported from diffusers), `folder` what a folder turned out to hold, for the log.
 */
export async function loadSamplingModel(dev: Device, checkpoint: string, opts: { vqgan?: string; processFlags?: ProcessFlags } = {}): Promise<{ model: DiffusionModel; sampler?: string; folder?: string }> {
  if (isFolder(checkpoint)) {
    const f = await loadFolderForSampling(dev, checkpoint, opts.processFlags);
    const firstStage = await firstStageFor(dev, checkpoint, f.config, opts.vqgan);
    const model: DiffusionModel = {
      net: f.net, process: f.process, config: f.config, classes: f.config.classes ?? [],
      samplerDefaults: { ...samplerDefaults(f.config), ...f.scheduler?.samplerOptions },
      firstStage, decode: firstStage?.decode ?? (async (images, shape) => ({ images, shape })),
    };
    return { model, sampler: f.scheduler?.sampler, folder: `${f.model.className}, process from ${f.from}` };
  }
  // A latent model comes with its VQ-GAN (loaded now: a missing one is found out before sampling).
  const model = await withVQGANFlag(loadDiffusionModelFile(dev, checkpoint, { vqgan: opts.vqgan }));
  return { model, sampler: model.config.sampler?.name };
}

/** The strip's file beside the grid: OUT-strip.png. */
const stripPath = (out: string) => out.replace(/\.png$/i, '') + '-strip.png';

/** The outputs, checked before anything is loaded or sampled (main calls this before making the device). */
export function checkSampleOutputs(cmd: SampleCommand): void {
  checkExtension('--out', cmd.out, '.png');
  checkOutputs({ files: [cmd.out, ...(cmd.strip ? [stripPath(cmd.out)] : [])], inputs: [cmd.checkpoint, cmd.vqgan, cmd.start], force: Boolean(cmd.force) });
}

export async function sampleCommand(dev: Device, cmd: SampleCommand): Promise<{ out: string; strip?: string; images: Float32Array; shape: [number, number, number, number]; labels: number[] | null; seconds: number }> {
  checkSampleOutputs(cmd);
  let guidance = cmd.guidance;
  const loaded = await loadSamplingModel(dev, cmd.checkpoint, { vqgan: cmd.vqgan, processFlags: cmd.processFlags });
  const model = loaded.model;
  // A diffusers folder's scheduler, or a checkpoint imported from diffusers, names its sampler (its options are in samplerDefaults).
  const sampler = loaded.sampler && !cmd.samplerGiven ? loaded.sampler : cmd.sampler;
  if (loaded.folder) console.log(`${cmd.checkpoint}: ${loaded.folder}; sampler ${sampler}`);
  const { net, classes } = model;
  // A class model without a null class cannot be guided: it samples at guidance 1 unless told otherwise.
  if (!net.config.nullClass && net.config.conditioning !== 'none' && !cmd.guidanceGiven) guidance = 1;
  let labels: number[] | null = null;
  let count = cmd.count;
  const start = cmd.start ? await readStart(cmd.start, model) : undefined;
  if (start) {
    // One image per row of x_T: the labels given (one for all, or one per row), else the file's own.
    const n = start.shape[0]!;
    count = n;
    if (net.config.conditioning !== 'none') {
      const given = cmd.labelGiven ? cmd.labels.map((l) => parseLabel(l, classes)) : start.labels;
      if (!given) throw new Error(`--label: ${cmd.start} records no labels and ${cmd.checkpoint} is class-conditional; give one for all, or one per image`);
      if (given.length !== 1 && given.length !== n) throw new Error(`--label: ${given.length} labels for the ${n} images of ${cmd.start}; give one for all, or one per image`);
      labels = given.length === 1 ? new Array<number>(n).fill(given[0]!) : given;
    } else if (cmd.labelGiven) {
      throw new Error(`--label: ${cmd.checkpoint} is an unconditional model and takes no labels`);
    }
  } else if (net.config.conditioning !== 'none') {
    const names = cmd.labels.length === 0 || cmd.labels.includes('all') ? classes.map((_, i) => String(i)) : cmd.labels;
    labels = names.map((l) => parseLabel(l, classes)).flatMap((l) => Array<number>(cmd.count).fill(l));
  } else if (cmd.labels.length) {
    throw new Error(`--label: ${cmd.checkpoint} is an unconditional model and takes no labels`);
  }
  const t0 = performance.now();
  const bar = new Progress(cmd.steps, `sample ${sampler}`);
  const every = cmd.strip ? Math.max(1, Math.round(cmd.steps / 10)) : 0;
  // Sampled, then (a latent model) decoded by its VQ-GAN: the time is to the images, decode included.
  const r = await sampleImages(dev, model, {
    sampler, steps: cmd.steps, labels, count, guidance, ...cmd.guidanceVariants, seed: cmd.seed, xT: start?.xT,
    samplerOptions: cmd.samplerOptions, snapshotEvery: every, onStep: (i, n) => bar.update(Math.round(((i + 1) * cmd.steps) / n)),
  });
  bar.finish(cmd.steps);
  const seconds = (performance.now() - t0) / 1000;
  const { images, shape } = r;
  mkdirSync(dirname(cmd.out) || '.', { recursive: true });
  const cols = start ? Math.min(8, shape[0]) : labels ? cmd.count : Math.ceil(Math.sqrt(shape[0]));
  await writeFileAtomic(cmd.out, gridPng(images, shape, { cols, scale: viewScale(shape[2]) }));
  let strip: string | undefined;
  if (cmd.strip && r.snapshots.length) {
    // Rows: the first sample of each label (or the first 8), columns: snapshots in time order.
    const B = shape[0];
    const firsts = labels && !start ? labels.map((_, i) => i).filter((i) => i % cmd.count === 0) : Array.from({ length: Math.min(8, B) }, (_, i) => i);
    let snaps = await readSnapshots(r.snapshots);
    let sshape: [number, number, number, number] = [r.snapshots.length * r.samples.shape[0], ...(r.samples.shape.slice(1) as [number, number, number])];
    if (model.firstStage) ({ images: snaps, shape: sshape } = await model.decode(snaps, sshape));
    const per = sshape[1] * sshape[2] * sshape[3];
    const S = r.snapshots.length;
    const tiles = new Float32Array(firsts.length * S * per);
    firsts.forEach((b, row) => {
      for (let k = 0; k < S; k++) tiles.set(snaps.subarray((k * B + b) * per, (k * B + b + 1) * per), (row * S + k) * per);
    });
    strip = stripPath(cmd.out);
    await writeFileAtomic(strip, gridPng(tiles, [firsts.length * S, sshape[1], sshape[2], sshape[3]], { cols: S, scale: viewScale(sshape[2]) }));
  }
  return { out: cmd.out, strip, images, shape, labels, seconds };
}
