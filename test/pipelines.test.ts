// src/pipelines: the model presets, and latent diffusion end to end, from bytes (browser-safe:
// pipelines/latent.ts) and from files (Node: pipelines/latent-node.ts), on the shipped colours latent
// model and its VQ-GAN (a 4x4x4-latent model of 16x16 images: a few sampler steps cost little).
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { useDevice } from './helpers.js';
import { Init } from '../src/nn/module.js';
import { VQGAN } from '../src/models/vqgan.js';
import { decodeLatents, loadVQGAN } from '../src/models/vqgan-latents.js';
import { decodeCheckpoint } from '../src/io/checkpoint.js';
import { modelFromCheckpoint, samplerDefaults, type ImageDataset } from '../src/diffusion/train.js';
import { generate } from '../src/diffusion/generate.js';
import { mulberry32, gaussian } from '../src/data/rng.js';
import { makeColorsDataset } from '../src/data/colors.js';
import { MODEL_PRESETS, presetConfig } from '../src/pipelines/presets.js';
import { presetConfig as cliPresetConfig } from '../src/cli/models.js';
import { encodeLatentDataset, firstStage, loadDiffusionModel, sampleImages, scaledLatentDataset, FirstStageMismatchError, MissingVQGANError } from '../src/pipelines/latent.js';
import { latentDataset, loadDiffusionModelFile } from '../src/pipelines/latent-node.js';

const dev = useDevice();
const ROOT = join(import.meta.dirname, '..');
const LATENT = join(ROOT, 'examples', 'checkpoints', 'colors', 'latent.safetensors');
const VQ = join(ROOT, 'examples', 'checkpoints', 'colors', 'vqgan.safetensors');
const LETTERS = join(ROOT, 'examples', 'checkpoints', 'letters', 'letters.safetensors');
const bytes = (p: string) => new Uint8Array(readFileSync(p));

describe('model presets (pipelines/presets.ts)', () => {
  it('a preset names its U-Net; an unknown name is refused in the library\'s words, and in the CLI\'s with its flag', () => {
    expect(Object.keys(MODEL_PRESETS)).toEqual(['tiny', 'small', 'base']);
    // Two levels at 32 pixels: attention at the lower one, 16.
    expect(presetConfig('small', 32, 3, 'class', 8)).toEqual({
      blockOutChannels: [32, 64], layersPerBlock: 1, attentionHeads: 4, normGroups: 8,
      sampleSize: 32, inChannels: 3, outChannels: 3, attentionResolutions: [16], conditioning: 'class', numClasses: 8,
    });
    expect(presetConfig('base', 32, 1, 'none', 8)).toMatchObject({ attentionResolutions: [8], numClasses: 0 });
    expect(cliPresetConfig('small', 32, 3, 'class', 8)).toEqual(presetConfig('small', 32, 3, 'class', 8));
    expect(() => presetConfig('huge', 16, 1, 'class', 3)).toThrow(/^presetConfig: model preset 'huge' is unknown; allowed values: tiny, small, base$/);
    // Only the presets' own names: an object's inherited keys are no presets.
    expect(() => presetConfig('toString', 16, 1, 'class', 3)).toThrow(/model preset 'toString' is unknown/);
    expect(() => cliPresetConfig('huge', 16, 1, 'class', 3)).toThrow(/^--model 'huge' is unknown; allowed values: tiny, small, base$/);
  });
});

describe('latent pipeline (pipelines/latent.ts, latent-node.ts)', () => {
  it('scales latents to unit variance and records the scale, the scaled range and the shapes', () => {
    const r = mulberry32(11);
    const shape = [5, 4, 2, 3];
    const raw = Float32Array.from({ length: 5 * 4 * 2 * 3 }, () => 0.3 + 2.5 * gaussian(r));
    const ds: ImageDataset = { images: new Float32Array(5 * 3 * 8 * 12), labels: Int32Array.from([0, 1, 2, 0, 1]), shape: [5, 3, 8, 12], classes: ['a', 'b', 'c'] };
    const { data, info } = scaledLatentDataset({ latents: raw, shape }, ds, 'vq.safetensors');
    // Float64 reference: the population standard deviation, two-pass.
    const mean = raw.reduce((a, v) => a + v, 0) / raw.length;
    const std = Math.sqrt(raw.reduce((a, v) => a + (v - mean) ** 2, 0) / raw.length);
    // 1e-9 relative: the one-pass E[x²] - E[x]² in float64 over 120 values loses far less than that.
    expect(Math.abs(info.scale * std - 1)).toBeLessThan(1e-9);
    expect(Array.from(data.images)).toEqual(Array.from(raw, (v) => Math.fround(v * info.scale)));
    expect(info.range).toBe(Math.max(...Array.from(data.images, Math.abs)));
    expect(info).toMatchObject({ vqgan: 'vq.safetensors', latentShape: [4, 2, 3], imageShape: [3, 8, 12] });
    expect([data.shape, data.labels, data.classes]).toEqual([shape, ds.labels, ds.classes]);
  });

  it('loads the shipped latent model with its VQ-GAN from bytes and samples decoded images: bit for bit what generate and decodeLatents give by hand', async () => {
    const d = dev();
    const m = loadDiffusionModel(d, bytes(LATENT), bytes(VQ), { where: 'latent.safetensors' });
    expect(m.firstStage).toBeDefined();
    expect(m.classes).toHaveLength(8);
    const opts = { sampler: 'ddim', steps: 3, labels: [0, 3, 5], guidance: 2, seed: 5 };
    const r = await sampleImages(d, m, opts);
    expect(r.samples.shape).toEqual([3, 4, 4, 4]);
    expect(r.shape).toEqual([3, 3, 16, 16]);
    // By hand, as the CLI did before the pipeline: the model, its sampler defaults, generate, then the
    // VQ-GAN's EMA weights decoding the unscaled latents. Same device, kernels and order: equal floats.
    const ck = decodeCheckpoint(bytes(LATENT));
    const { net, process, config } = modelFromCheckpoint(d, ck);
    const g = await generate(d, net, process, { ...opts, samplerOptions: samplerDefaults(config) });
    expect(Array.from(r.samples.values)).toEqual(Array.from(g.images));
    const vq = loadVQGAN(d, decodeCheckpoint(bytes(VQ)));
    const hand = await decodeLatents(vq, g.images.map((v) => v / config.latent!.scale), g.shape, 32);
    expect(Array.from(r.images)).toEqual(Array.from(hand.images));
    // Images, not blank: each varies over its pixels (colour images on textured backgrounds) and stays near [-1, 1].
    const per = 3 * 16 * 16;
    for (let i = 0; i < 3; i++) {
      const x = r.images.subarray(i * per, (i + 1) * per);
      const mu = x.reduce((a, v) => a + v, 0) / per;
      expect(Math.sqrt(x.reduce((a, v) => a + (v - mu) ** 2, 0) / per)).toBeGreaterThan(0.02);
      expect(x.every((v) => Number.isFinite(v) && Math.abs(v) < 1.5)).toBe(true);
    }
    // The first stage's round trip keeps the shape of what it is given.
    const rt = await m.firstStage!.roundTrip(r.images, r.shape);
    expect(rt.length).toBe(r.images.length);
  }, 300_000);

  it('says what is missing or wrong: a latent model without its VQ-GAN, a VQ-GAN that does not fit, a pixel model given one', () => {
    const d = dev();
    const err = (() => {
      try {
        loadDiffusionModel(d, bytes(LATENT), null, { where: 'latent.safetensors' });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(MissingVQGANError);
    expect((err as MissingVQGANError).recorded).toBe('../colors-vqgan/vqgan.safetensors');
    expect((err as Error).message).toMatch(/^latent\.safetensors is a latent diffusion model: .*\(its header names '\.\.\/colors-vqgan\/vqgan\.safetensors'\); give that VQ-GAN too$/);
    const latent = (decodeCheckpoint(bytes(LATENT)).config as { latent: Parameters<typeof firstStage>[1] }).latent;
    const small = new VQGAN(new Init(d, 1), { blockOutChannels: [4, 4], normGroups: 2, numEmbeddings: 16, latentChannels: 2, embedDim: 2 });
    expect(() => firstStage(small, latent, 'small.safetensors')).toThrow(FirstStageMismatchError);
    expect(() => firstStage(small, latent, 'small.safetensors')).toThrow(/^small\.safetensors does not fit this latent model: it makes latents of 2 channels, factor 2, 3-channel images; the model was trained on latents \[4, 4, 4\] of images \[3, 16, 16\]$/);
    expect(() => loadDiffusionModel(d, bytes(LETTERS), bytes(VQ), { where: 'letters.safetensors' })).toThrow(/^letters\.safetensors is a pixel-space diffusion model: it takes no VQ-GAN$/);
    // A VQ-GAN is no diffusion model.
    expect(() => loadDiffusionModel(d, bytes(VQ))).toThrow(/not a diffusion model \(its config has kind 'vqgan'\)/);
  });

  it('from files: the VQ-GAN found beside the model; latentDataset encodes as encodeLatentDataset does, names the VQ-GAN from the run folder and reuses its cache', async () => {
    const d = dev();
    const m = await loadDiffusionModelFile(d, LATENT);
    expect(m.vqganPath).toBe(VQ);
    const pixel = await loadDiffusionModelFile(d, LETTERS, { vqgan: VQ }); // --vqgan is not used for a pixel model
    expect([pixel.firstStage, pixel.vqganPath]).toEqual([undefined, undefined]);

    const colors = makeColorsDataset({ n: 6, size: 16, seed: 3 });
    const ds = { images: colors.images, labels: colors.labels, shape: colors.shape, classes: colors.classes };
    const out = mkdtempSync(join(tmpdir(), 'wgd-latents-'));
    const a = await latentDataset(d, VQ, { ...ds, spec: { name: 'colors', count: 6, seed: 3 } }, out);
    const cache = join(out, 'latents.safetensors');
    const written = statSync(cache).mtimeMs;
    const b = await encodeLatentDataset(loadVQGAN(d, decodeCheckpoint(bytes(VQ))), ds, 'vqgan.safetensors');
    expect(Array.from(a.data.images)).toEqual(Array.from(b.data.images));
    expect(a.info).toEqual({ ...b.info, vqgan: relative(out, VQ) });
    // The same VQ-GAN file and data: read from the cache, not encoded and written again.
    const again = await latentDataset(d, VQ, { ...ds, spec: { name: 'colors', count: 6, seed: 3 } }, out);
    expect(statSync(cache).mtimeMs).toBe(written);
    expect(Array.from(again.data.images)).toEqual(Array.from(a.data.images));
    // Other data (the spec differs): encoded again.
    await latentDataset(d, VQ, { ...ds, spec: { name: 'colors', count: 6, seed: 4 } }, out);
    expect(statSync(cache).mtimeMs).not.toBe(written);
    // The decoder turns the training latents back into images of the data's shape.
    const dec = await a.decode(a.data.images.subarray(0, 2 * 64), [2, 4, 4, 4]);
    expect(dec.shape).toEqual([2, 3, 16, 16]);
  }, 300_000);
});
