// `wgd sample`: images from a checkpoint as a PNG grid (a row per label), optionally with a strip of
// the intermediate x̂0 of the first sample of each row.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Device } from '../graph/device.js';
import { readCheckpointFile } from '../io/checkpoint-file.js';
import { modelFromCheckpoint, samplerDefaults } from '../diffusion/train.js';
import { generate, parseLabel, readSnapshots } from '../diffusion/generate.js';
import type { GuidanceVariants } from '../diffusion/denoiser.js';
import { SamplerOptions } from '../diffusion/samplers/index.js';
import { gridPng, viewScale } from '../data/png.js';
import { Progress } from './progress.js';
import { decoderFor } from './vqgan.js';
import { writeFileAtomic } from '../io/file.js';
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
}

/** The strip's file beside the grid: OUT-strip.png. */
const stripPath = (out: string) => out.replace(/\.png$/i, '') + '-strip.png';

/** The outputs, checked before anything is loaded or sampled (main calls this before making the device). */
export function checkSampleOutputs(cmd: SampleCommand): void {
  checkExtension('--out', cmd.out, '.png');
  checkOutputs({ files: [cmd.out, ...(cmd.strip ? [stripPath(cmd.out)] : [])], inputs: [cmd.checkpoint, cmd.vqgan], force: Boolean(cmd.force) });
}

export async function sampleCommand(dev: Device, cmd: SampleCommand): Promise<{ out: string; strip?: string; images: Float32Array; shape: [number, number, number, number]; labels: number[] | null; seconds: number }> {
  checkSampleOutputs(cmd);
  let sampler = cmd.sampler;
  let guidance = cmd.guidance;
  let schedulerOptions: SamplerOptions = {};
  let loaded;
  if (isFolder(cmd.checkpoint)) {
    const f = await loadFolderForSampling(dev, cmd.checkpoint, cmd.processFlags);
    if (f.scheduler) {
      schedulerOptions = f.scheduler.samplerOptions;
      if (!cmd.samplerGiven) sampler = f.scheduler.sampler;
    }
    if (!f.net.config.nullClass && f.net.config.conditioning !== 'none' && !cmd.guidanceGiven) guidance = 1;
    console.log(`${cmd.checkpoint}: ${f.model.className}, process from ${f.from}; sampler ${sampler}`);
    loaded = f;
  } else {
    loaded = modelFromCheckpoint(dev, await readCheckpointFile(cmd.checkpoint));
    // A checkpoint imported from diffusers names its scheduler's sampler (its options are in samplerDefaults).
    if (loaded.config.sampler && !cmd.samplerGiven) sampler = loaded.config.sampler.name;
    if (!loaded.net.config.nullClass && loaded.net.config.conditioning !== 'none' && !cmd.guidanceGiven) guidance = 1;
  }
  const { net, process: noise, config } = loaded;
  const classes = config.classes ?? [];
  const decode = await decoderFor(dev, cmd.checkpoint, config, cmd.vqgan);
  let labels: number[] | null = null;
  if (net.config.conditioning !== 'none') {
    const names = cmd.labels.length === 0 || cmd.labels.includes('all') ? classes.map((_, i) => String(i)) : cmd.labels;
    labels = names.map((l) => parseLabel(l, classes)).flatMap((l) => Array<number>(cmd.count).fill(l));
  } else if (cmd.labels.length) {
    throw new Error(`--label: ${cmd.checkpoint} is an unconditional model and takes no labels`);
  }
  const t0 = performance.now();
  const bar = new Progress(cmd.steps, `sample ${sampler}`);
  const every = cmd.strip ? Math.max(1, Math.round(cmd.steps / 10)) : 0;
  const r = await generate(dev, net, noise, {
    sampler, steps: cmd.steps, labels, count: cmd.count, guidance, ...cmd.guidanceVariants, seed: cmd.seed,
    samplerOptions: { ...samplerDefaults(config), ...schedulerOptions, ...cmd.samplerOptions }, snapshotEvery: every, onStep: (i, n) => bar.update(Math.round(((i + 1) * cmd.steps) / n)),
  });
  bar.finish(cmd.steps);
  const seconds = (performance.now() - t0) / 1000;
  const { images, shape } = decode ? await decode(r.images, r.shape) : r;
  mkdirSync(dirname(cmd.out) || '.', { recursive: true });
  await writeFileAtomic(cmd.out, gridPng(images, shape, { cols: labels ? cmd.count : Math.ceil(Math.sqrt(shape[0])), scale: viewScale(shape[2]) }));
  let strip: string | undefined;
  if (cmd.strip && r.snapshots.length) {
    // Rows: the first sample of each label (or the first 8), columns: snapshots in time order.
    const B = shape[0];
    const firsts = labels ? labels.map((_, i) => i).filter((i) => i % cmd.count === 0) : Array.from({ length: Math.min(8, B) }, (_, i) => i);
    let snaps = await readSnapshots(r.snapshots);
    let sshape: [number, number, number, number] = [r.snapshots.length * r.shape[0], ...(r.shape.slice(1) as [number, number, number])];
    if (decode) ({ images: snaps, shape: sshape } = await decode(snaps, sshape));
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
