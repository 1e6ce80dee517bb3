// Engine models out to diffusers and back: an engine model built with each fixture's config exports to
// the key names and shapes diffusers' own state dict has (the fixture's keys.txt) and to a config.json
// that agrees with diffusers' on every key both have; a round trip (export, import) gives identical
// outputs; scheduler configs read into the engine's process and sampler options and write back.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { useDevice, SEED } from './helpers.js';
import { parseSafetensors } from '../src/io/safetensors.js';
import { Init } from '../src/nn/module.js';
import { UNet, UNetConfig } from '../src/models/unet.js';
import { VQGAN } from '../src/models/vqgan.js';
import { ENGINE_KEY, unet2DConditionConfig, unet2DConfig, vqModelConfig } from '../src/pipelines/diffusers/config.js';
import { exportDiffusers, LABEL_CONTEXT_FILE } from '../src/pipelines/diffusers/export.js';
import { loadDiffusersFiles } from '../src/pipelines/diffusers/model.js';
import { exportSchedulerConfig, parsePythonJson, readSchedulerConfig } from '../src/pipelines/diffusers/scheduler.js';
import { exportCheckpoint } from '../src/pipelines/diffusers/convert.js';
import { readCheckpointFile } from '../src/io/checkpoint-file.js';
import { makeProcess } from '../src/diffusion/process.js';
import { mulberry32 } from '../src/data/rng.js';
import type { Device } from '../src/graph/device.js';
import type { Tensor } from '../src/graph/tensor.js';

const dev = useDevice();
const FIX = join(import.meta.dirname, 'fixtures', 'diffusers');
const ROOT = join(import.meta.dirname, '..');

const fixtureConfig = (dir: string) => JSON.parse(readFileSync(join(FIX, dir, 'config.json'), 'utf8')) as Record<string, unknown>;
const keysTxt = (dir: string) => readFileSync(join(FIX, dir, 'keys.txt'), 'utf8').trim().split('\n').sort();
const text = (b: Uint8Array) => new TextDecoder().decode(b);

function keysOf(safetensors: Uint8Array): string[] {
  return [...parseSafetensors(safetensors).tensors].map(([k, t]) => `${k} [${t.shape.join(', ')}]`).sort();
}

function randn(d: Device, shape: number[], seed: number): Tensor {
  const r = mulberry32(seed);
  return d.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r())), shape);
}

describe('export to diffusers: what diffusers would load strictly', () => {
  for (const [dir, build] of [
    ['unet2d-class', (d: Device) => new UNet(new Init(d, SEED), unet2DConfig(fixtureConfig('unet2d-class')))],
    ['unet2d-cond-cross', (d: Device) => new UNet(new Init(d, SEED), unet2DConditionConfig(fixtureConfig('unet2d-cond-cross')))],
    ['vqmodel', (d: Device) => new VQGAN(new Init(d, SEED), vqModelConfig(fixtureConfig('vqmodel')).config)],
  ] as const) {
    it(`${dir}: an engine model of the fixture's config exports keys.txt's keys and shapes, and a config.json that agrees with diffusers' own`, async () => {
      const folder = await exportDiffusers(build(dev()));
      expect(keysOf(folder.files.get('diffusion_pytorch_model.safetensors')!)).toEqual(keysTxt(dir));
      const mine = JSON.parse(text(folder.files.get('config.json')!)) as Record<string, unknown>;
      const theirs = fixtureConfig(dir);
      // Every key both configs have holds the same value (diffusers' defaults fill the rest alike);
      // the keys that differ are listed, with why they may.
      const mayDiffer = new Set(['_diffusers_version', 'sample_size' /* VQModel: unused by the forward pass */]);
      const differ = Object.keys(theirs).filter((k) => k in mine && !mayDiffer.has(k) && JSON.stringify(mine[k]) !== JSON.stringify(theirs[k]));
      expect(differ, JSON.stringify(differ.map((k) => [k, mine[k], theirs[k]]))).toEqual([]);
      // The keys diffusers' config has and ours leaves out must be at their class defaults in the fixture.
      const missing = Object.keys(theirs).filter((k) => !(k in mine));
      const defaults: Record<string, unknown> = { attn_norm_num_groups: null, num_train_timesteps: null, addition_embed_type: null, addition_embed_type_num_heads: 64, addition_time_embed_dim: null, attention_type: 'default', class_embeddings_concat: false, cross_attention_norm: null, encoder_hid_dim: null, encoder_hid_dim_type: null, mid_block_only_cross_attention: null, num_attention_heads: null, projection_class_embeddings_input_dim: null, resnet_out_scale_factor: 1.0, resnet_skip_time_act: false, reverse_transformer_layers_per_block: null, time_cond_proj_dim: null, time_embedding_act_fn: null, timestep_post_act: null };
      for (const k of missing) expect(theirs[k], `${k} is left to diffusers' default`).toEqual(defaults[k]);
    });
  }

  it("the engine's own models: tanh-GELU transformers export with a warning; a 'cross' model's label table goes beside the UNet", async () => {
    const d = dev();
    const cfg: Partial<UNetConfig> = { sampleSize: 8, inChannels: 2, outChannels: 2, blockOutChannels: [8, 16], normGroups: 4, attentionHeads: 2, attentionResolutions: [4], conditioning: 'cross', numClasses: 3, crossAttentionDim: 8, contextTokens: 2, geluApproximate: 'tanh' };
    const folder = await exportDiffusers(new UNet(new Init(d, SEED), cfg));
    expect(folder.className).toBe('UNet2DConditionModel');
    expect(folder.warnings.join('\n')).toMatch(/tanh GELU, which diffusers' transformers do not offer/);
    expect(folder.warnings.join('\n')).toMatch(/label-to-context table is in label_context\.safetensors/);
    expect(keysOf(folder.files.get('diffusion_pytorch_model.safetensors')!).some((k) => k.startsWith('class_embedding'))).toBe(false);
    expect(keysOf(folder.files.get(LABEL_CONTEXT_FILE)!)).toEqual(['weight [4, 16]']);
    // UNet2DModel has one head size: a model with a fixed head count at levels of different widths cannot go.
    await expect(exportDiffusers(new UNet(new Init(d, SEED), { ...cfg, conditioning: 'class', attentionResolutions: [8, 4] }))).rejects.toThrow(/UNet2DModel takes one head size for every attention block; this model's blocks have head sizes 4, 8/);
  });
});

describe('round trip: export, import, identical outputs', () => {
  const base: Partial<UNetConfig> = { sampleSize: 8, inChannels: 2, outChannels: 2, blockOutChannels: [8, 16], normGroups: 4, attentionHeads: 2, attentionResolutions: [4], crossAttentionDim: 8, contextTokens: 2 };
  const cases: [string, Partial<UNetConfig>][] = [
    ['class labels (UNet2DModel, null class kept)', { conditioning: 'class', numClasses: 3 }],
    ['unconditional, head size 4, pad 0, eps 1e-6, [sin, cos] (UNet2DModel)', { conditioning: 'none', attentionHeadDim: 4, downsamplePadding: 0, normEps: 1e-6, flipSinToCos: false, freqShift: 1, attentionResolutions: [8, 4] }],
    ['labels as cross-attention tokens, tanh GELU (UNet2DConditionModel + label table)', { conditioning: 'cross', numClasses: 3, geluApproximate: 'tanh' }],
    ['a context per call, conv projections, 2 transformer layers (UNet2DConditionModel)', { conditioning: 'context', useLinearProjection: false, transformerDepth: 2, attentionHeads: [2, 4] }],
  ];
  for (const [name, change] of cases) {
    it(name, async () => {
      const d = dev();
      const net = new UNet(new Init(d, SEED), { ...base, ...change }).eval();
      const folder = await exportDiffusers(net, { process: makeProcess('ddpm').config });
      const m = await loadDiffusersFiles(d, { config: folder.files.get('config.json')!, weights: folder.files.get('diffusion_pytorch_model.safetensors')!, labelContext: folder.files.get(LABEL_CONTEXT_FILE) });
      expect(m.unet.config).toEqual(net.config);
      const x = randn(d, [3, 2, 8, 8], SEED + 1);
      const t = d.tensor([3, 500, 999], [3]);
      const ctx = net.config.conditioning === 'context' ? randn(d, [3, 5, 8], SEED + 2) : null;
      const labels = net.config.conditioning === 'class' || net.config.conditioning === 'cross' ? d.tensor(Int32Array.from([0, 2, 3]), [3]) : null;
      const want = await net.forward(x, t, labels, ctx).read();
      expect(Array.from(await m.unet.forward(x, t, labels, ctx).read())).toEqual(Array.from(want));
      // As diffusers would save it again (its config without the engine's private key): the network
      // is read from diffusers' keys alone, and computes the same, but for the tanh GELU diffusers lacks.
      const theirs = JSON.parse(text(folder.files.get('config.json')!)) as Record<string, unknown>;
      delete theirs[ENGINE_KEY];
      const plain = await loadDiffusersFiles(d, { config: theirs, weights: folder.files.get('diffusion_pytorch_model.safetensors')!, labelContext: folder.files.get(LABEL_CONTEXT_FILE) });
      const again = Array.from(await plain.unet.forward(x, t, labels, ctx).read());
      if (net.config.geluApproximate === 'tanh') expect(again).not.toEqual(Array.from(want));
      else expect(again).toEqual(Array.from(want));
    });
  }

  it('VQ-GAN (VQModel): encode, quantize and decode identical', async () => {
    const d = dev();
    const vq = new VQGAN(new Init(d, SEED), { blockOutChannels: [8, 16], normGroups: 4, numEmbeddings: 16, embedDim: 3, latentChannels: 3 }).eval();
    const folder = await exportDiffusers(vq);
    const m = await loadDiffusersFiles(d, { config: folder.files.get('config.json')!, weights: folder.files.get('diffusion_pytorch_model.safetensors')! });
    const x = randn(d, [2, 3, 8, 8], SEED + 3);
    expect(Array.from(await m.encode(x).read())).toEqual(Array.from(await vq.encode(x).read()));
    expect(Array.from(await m.decode(vq.encode(x)).read())).toEqual(Array.from(await vq.decode(vq.encode(x)).read()));
  });

  it('the shipped letters model: its folder keeps class names and the null class, and samples identically', async () => {
    const d = dev();
    const ck = await readCheckpointFile(join(ROOT, 'examples', 'checkpoints', 'letters', 'letters.safetensors'));
    const folder = await exportCheckpoint(d, ck);
    expect(folder.className).toBe('UNet2DModel');
    const own = (JSON.parse(text(folder.files.get('config.json')!)) as Record<string, { classes: string[] }>)[ENGINE_KEY]!;
    expect(own.classes.join('')).toBe('ABCDEFGHIJKLMNOPQRSTUVWXYZ');
    const sched = JSON.parse(text(folder.files.get('scheduler_config.json')!)) as Record<string, unknown>;
    // DDIM (the CLI's default), the chain, clipping to [-1, 1] as pixel models sample, the engine's trailing grid.
    expect(sched).toMatchObject({ _class_name: 'DDIMScheduler', num_train_timesteps: 1000, beta_start: 0.0001, beta_end: 0.02, beta_schedule: 'linear', prediction_type: 'epsilon', clip_sample: true, timestep_spacing: 'trailing', set_alpha_to_one: true });
    const m = await loadDiffusersFiles(d, { config: folder.files.get('config.json')!, weights: folder.files.get('diffusion_pytorch_model.safetensors')! });
    expect(m.unet.config).toMatchObject({ conditioning: 'class', numClasses: 26, nullClass: true });
    const { modelFromCheckpoint } = await import('../src/diffusion/train.js');
    const { net } = modelFromCheckpoint(d, ck);
    const x = randn(d, [2, 1, 16, 16], SEED + 4);
    const t = d.tensor([10, 900], [2]);
    const labels = d.tensor(Int32Array.from([0, 26]), [2]); // a letter and the null class
    expect(Array.from(await m.unet.forward(x, t, labels).read())).toEqual(Array.from(await net.forward(x, t, labels).read()));
  });
});

describe('diffusers scheduler configs', () => {
  const sd = { _class_name: 'PNDMScheduler', _diffusers_version: '0.6.0', beta_end: 0.012, beta_schedule: 'scaled_linear', beta_start: 0.00085, num_train_timesteps: 1000, set_alpha_to_one: false, skip_prk_steps: true, steps_offset: 1, trained_betas: null, clip_sample: false };

  it("Stable Diffusion's PNDM config: PLMS on the scaled-linear chain, leading + offset 1, ᾱ_0 at the end", () => {
    const { clip_sample: _, ...pndm } = sd;
    const s = readSchedulerConfig(pndm);
    expect(s).toMatchObject({ sampler: 'plms', process: { kind: 'ddpm', betaSchedule: 'scaled_linear', betaStart: 0.00085, betaEnd: 0.012, timesteps: 1000, predictionType: 'epsilon' }, samplerOptions: { timestepSpacing: 'leading', stepsOffset: 1, setAlphaToOne: false } });
    // scaled_linear: β linear in √β; β_0 = 0.00085 and β_999 = 0.012.
    const p = makeProcess(s.process) as import('../src/diffusion/process.js').DiscreteVP;
    expect(p.betas[0]).toBeCloseTo(0.00085, 12);
    expect(p.betas[999]).toBeCloseTo(0.012, 12);
    expect(Math.sqrt(p.betas[500]!) - Math.sqrt(p.betas[499]!)).toBeCloseTo((Math.sqrt(0.012) - Math.sqrt(0.00085)) / 999, 12);
  });

  it('each class with its defaults and options: DDPM, DDIM, Euler, Heun, DPM-Solver++', () => {
    expect(readSchedulerConfig({ _class_name: 'DDPMScheduler', variance_type: 'fixed_large', prediction_type: 'v_prediction' })).toMatchObject({ sampler: 'ddpm', process: { predictionType: 'v_prediction', betaSchedule: 'linear' }, samplerOptions: { varianceType: 'large', clipSample: true, clipRange: 1, timestepSpacing: 'leading' } });
    expect(readSchedulerConfig({ _class_name: 'DDIMScheduler', beta_schedule: 'squaredcos_cap_v2', thresholding: true, dynamic_thresholding_ratio: 0.99, sample_max_value: 2, timestep_spacing: 'trailing', prediction_type: 'sample' })).toMatchObject({ sampler: 'ddim', process: { betaSchedule: 'cosine', predictionType: 'sample' }, samplerOptions: { thresholdRatio: 0.99, thresholdMax: 2, clipRange: 1, timestepSpacing: 'trailing', setAlphaToOne: true, eta: 0 } });
    expect(readSchedulerConfig({ _class_name: 'EulerDiscreteScheduler', use_karras_sigmas: true, sigma_min: 0.03, timestep_spacing: 'leading', steps_offset: 1 })).toMatchObject({ sampler: 'euler', samplerOptions: { karras: true, sigmaMin: 0.03, timestepSpacing: 'leading', stepsOffset: 1 } });
    expect(readSchedulerConfig({ _class_name: 'HeunDiscreteScheduler' })).toMatchObject({ sampler: 'heun', samplerOptions: { karras: false, clipSample: false, timestepSpacing: 'linspace' } });
    // diffusers writes lambda_min_clipped as Python's -Infinity, which is not JSON.
    const dpm = parsePythonJson('{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity, "use_karras_sigmas": true, "solver_order": 2, "algorithm_type": "dpmsolver++"}', 'dpm');
    expect(readSchedulerConfig(dpm)).toMatchObject({ sampler: 'dpm++2m', samplerOptions: { karras: true, timestepSpacing: 'linspace' } });
  });

  it('what the engine cannot honour is refused by name', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ _class_name: 'LMSDiscreteScheduler' }, /_class_name "LMSDiscreteScheduler" is not supported; supported: DDPMScheduler, DDIMScheduler, PNDMScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler, DPMSolverMultistepScheduler/],
      [{ ...sd, skip_prk_steps: false }, /'skip_prk_steps' = false: PNDM's Runge-Kutta warm-up is not supported/],
      [{ _class_name: 'DDPMScheduler', variance_type: 'learned_range' }, /'variance_type' = "learned_range"/],
      [{ _class_name: 'DDIMScheduler', rescale_betas_zero_snr: true }, /'rescale_betas_zero_snr' = true: zero-terminal-SNR rescaling is not supported/],
      [{ _class_name: 'DDIMScheduler', beta_schedule: 'sigmoid' }, /'beta_schedule' = "sigmoid": supported: linear, scaled_linear, squaredcos_cap_v2/],
      [{ _class_name: 'DDIMScheduler', trained_betas: [0.1, 0.2] }, /'trained_betas' = \[0\.1,0\.2\]: explicit betas are not supported/],
      [{ _class_name: 'DPMSolverMultistepScheduler', solver_order: 3 }, /'solver_order' = 3: only the second-order multistep solver \(2M\) is supported/],
      [{ _class_name: 'DPMSolverMultistepScheduler', algorithm_type: 'sde-dpmsolver++' }, /'algorithm_type' = "sde-dpmsolver\+\+"/],
      [{ _class_name: 'EulerDiscreteScheduler', interpolation_type: 'log_linear' }, /'interpolation_type' = "log_linear"/],
      [{ _class_name: 'DDIMScheduler', prediction_type: 'flow' }, /'prediction_type' = "flow"/],
      [{ _class_name: 'DDIMScheduler', an_option_from_the_future: 1 }, /'an_option_from_the_future' = 1: not a DDIMScheduler option/],
    ];
    for (const [cfg, msg] of cases) expect(() => readSchedulerConfig(cfg), JSON.stringify(cfg)).toThrow(msg);
  });

  it('writing and reading back gives the same process and sampler options, for every sampler with a scheduler', () => {
    const process = makeProcess({ kind: 'ddpm', betaSchedule: 'cosine', timesteps: 500, predictionType: 'v_prediction' }).config;
    for (const [sampler, o] of [['ddpm', { varianceType: 'large', clipSample: true, clipRange: 2 }], ['ddim', { thresholdRatio: 0.995, thresholdMax: 3 }], ['plms', {}], ['euler', { karras: true }], ['heun', { karras: false }], ['dpm++2m', { karras: true }]] as const) {
      const back = readSchedulerConfig(exportSchedulerConfig(process, sampler, o));
      expect(back.sampler).toBe(sampler);
      expect(makeProcess(back.process).config).toEqual(process);
      expect(back.samplerOptions).toMatchObject(o);
    }
    expect(() => exportSchedulerConfig(makeProcess('ve-sde').config)).toThrow(/diffusers' schedulers run discrete DDPM chains; this model's process is 've-sde'/);
  });
});
