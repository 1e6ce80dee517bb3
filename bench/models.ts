// Model benchmarks on the shipped checkpoints: DDIM-50 sampling throughput of the letters model
// (images per second, and how much of each step the host spends encoding and submitting it), VQ-GAN
// encode and decode, and latent-diffusion sampling including the decode. A checkpoint that is not
// there is skipped with a note.
import { existsSync } from 'node:fs';
import type { Device } from '../src/index.js';
import { readCheckpointFile } from '../src/io/checkpoint-file.js';
import { samplerDefaults } from '../src/diffusion/train.js';
import { generate } from '../src/diffusion/generate.js';
import { encodeDataset, decodeLatents, loadVQGAN } from '../src/models/vqgan-latents.js';
import { makeColorsDataset } from '../src/data/colors.js';
import { loadDiffusionModelFile } from '../src/pipelines/latent-node.js';
import { GpuTimer } from '../src/runtime/gpu-timer.js';

export const LETTERS = 'examples/checkpoints/letters/letters.safetensors';
export const VQGAN = 'examples/checkpoints/colors/vqgan.safetensors';
export const LATENT = 'examples/checkpoints/colors/latent.safetensors';

export interface SamplingResult {
  model: string;
  sampler: string;
  steps: number;
  batch: number;
  guidance: number;
  imagesPerSecond: number;
  msPerStep: number;
  /** Host time (encoding and submitting) per step, and its share of the step's wall time. */
  hostMsPerStep: number;
  hostShare: number;
  /** GPU time of the steps' passes (timestamp queries) per step, and as a share of the wall time; null without timestamp queries */
  gpuMsPerStep: number | null;
  gpuBusyShare: number | null;
  /** GPU dispatches per step (the compiled step's, after fusion): what the host records each step */
  dispatchesPerStep: number;
  /** Latent models: seconds spent decoding the batch. */
  decodeSeconds?: number;
}

export interface CodecResult {
  model: string;
  batch: number;
  imageShape: number[];
  encodeImagesPerSecond: number;
  decodeImagesPerSecond: number;
}

export interface ModelsResult {
  sampling: SamplingResult[];
  vqgan: CodecResult | null;
  skipped: string[];
}

async function sampling(dev: Device, path: string, batch: number, steps: number, runs: number): Promise<SamplingResult> {
  // A latent model with its VQ-GAN (found where its header says); the decode is timed apart from the sampling.
  const { net, process: noise, config, firstStage } = await loadDiffusionModelFile(dev, path);
  const decode = firstStage?.decode;
  const labels = config.classes.length ? Array.from({ length: batch }, (_, i) => i % config.classes.length) : null;
  const opts = { sampler: 'ddim', steps, labels, count: batch, guidance: 2, seed: 0, samplerOptions: samplerDefaults(config) };
  await generate(dev, net, noise, { ...opts, steps: 2 }); // compile and warm up
  // The median of `runs` timed runs (by wall time): on a fast GPU one 50-step run lasts a fraction of
  // a second and moves with clocks and the host.
  // Each step's compute pass is also timed on the GPU where the adapter has timestamp queries.
  const timed: { r: Awaited<ReturnType<typeof generate>>; wall: number; gpuMs: number | null }[] = [];
  for (let i = 0; i < runs; i++) {
    const timer = (dev.rt.timer = GpuTimer.create(dev.rt.device, steps));
    const t0 = performance.now();
    const r = await generate(dev, net, noise, opts);
    const wall = performance.now() - t0;
    dev.rt.timer = null;
    const gpu = timer ? await timer.read() : null;
    timer?.destroy();
    timed.push({ r, wall, gpuMs: gpu && gpu.passes === r.steps ? gpu.ms : null });
  }
  timed.sort((x, y) => x.wall - y.wall);
  const { r, wall, gpuMs } = timed[Math.floor(timed.length / 2)]!;
  let decodeSeconds: number | undefined;
  if (decode) {
    const t1 = performance.now();
    await decode(r.images, r.shape);
    decodeSeconds = (performance.now() - t1) / 1000;
  }
  const total = wall + (decodeSeconds ?? 0) * 1000;
  return {
    model: path, sampler: 'ddim', steps, batch, guidance: 2, imagesPerSecond: batch / (total / 1000), msPerStep: wall / r.steps,
    hostMsPerStep: r.hostMs / r.steps, hostShare: r.hostMs / wall,
    gpuMsPerStep: gpuMs === null ? null : gpuMs / r.steps, gpuBusyShare: gpuMs === null ? null : gpuMs / wall, dispatchesPerStep: r.dispatches / r.steps, decodeSeconds,
  };
}

async function codec(dev: Device, path: string, batch: number): Promise<CodecResult> {
  const vq = loadVQGAN(dev, await readCheckpointFile(path));
  const ck = await readCheckpointFile(path);
  const size = (ck.config as { trainer?: { height?: number } }).trainer?.height ?? 32;
  const data = makeColorsDataset({ n: batch, size, seed: 7 });
  await encodeDataset(vq, data.images, data.shape, batch); // compile
  const t0 = performance.now();
  const { latents, shape } = await encodeDataset(vq, data.images, data.shape, batch);
  const enc = (performance.now() - t0) / 1000;
  await decodeLatents(vq, latents, shape, batch);
  const t1 = performance.now();
  await decodeLatents(vq, latents, shape, batch);
  const dec = (performance.now() - t1) / 1000;
  return { model: path, batch, imageShape: data.shape.slice(1), encodeImagesPerSecond: batch / enc, decodeImagesPerSecond: batch / dec };
}

/** `batches`: sampling batch sizes (default 16); `runs`: timed runs of each, the median reported (default 1). */
export async function modelsBench(dev: Device, opts: { batches?: number[]; steps?: number; runs?: number } = {}): Promise<ModelsResult> {
  const batches = opts.batches ?? [16], steps = opts.steps ?? 50, runs = opts.runs ?? 1;
  const out: ModelsResult = { sampling: [], vqgan: null, skipped: [] };
  for (const path of [LETTERS, LATENT]) {
    if (!existsSync(path)) {
      out.skipped.push(path);
      continue;
    }
    for (const batch of batches) {
      const r = await sampling(dev, path, batch, steps, runs);
      out.sampling.push(r);
      console.log(`sampling ${path}: DDIM-${steps}, batch ${batch}, guidance 2: ${r.imagesPerSecond.toFixed(3)} images/s, ${r.msPerStep.toFixed(r.msPerStep < 10 ? 2 : 0)} ms/step, host ${r.hostMsPerStep.toFixed(2)} ms/step (${(100 * r.hostShare).toFixed(2)}% of the step; ${r.dispatchesPerStep.toFixed(0)} dispatches/step), GPU ${r.gpuMsPerStep === null ? 'untimed (no timestamp queries)' : `${r.gpuMsPerStep.toFixed(2)} ms/step, busy ${(100 * r.gpuBusyShare!).toFixed(1)}% of the wall time`}${r.decodeSeconds !== undefined ? `, decode ${r.decodeSeconds.toFixed(2)} s` : ''}`);
    }
  }
  if (existsSync(VQGAN)) {
    out.vqgan = await codec(dev, VQGAN, 32);
    console.log(`VQ-GAN ${VQGAN}: encode ${out.vqgan.encodeImagesPerSecond.toFixed(1)} images/s, decode ${out.vqgan.decodeImagesPerSecond.toFixed(1)} images/s (batch 32, ${out.vqgan.imageShape.join('x')})`);
  } else out.skipped.push(VQGAN);
  for (const s of out.skipped) console.log(`skipped ${s}: not there (it is trained by the commands in its folder's README)`);
  return out;
}
