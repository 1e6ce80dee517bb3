// The `wgd` command line: train, sample, info. Each subcommand's options are listed by `wgd help`.
import { parseArgs } from 'node:util';
import { createDevice, Device } from '../graph/device.js';
import { ADAPTER_MODES, AdapterMode } from '../runtime/device.js';
import { PROCESS_KINDS, ProcessKind } from '../diffusion/process.js';
import { SAMPLER_NAMES, SamplerOptions } from '../diffusion/samplers/index.js';
import { GuidanceVariants, parseGuidanceInterval } from '../diffusion/denoiser.js';
import { trainCommand } from './train.js';
import { sampleCommand } from './sample.js';
import { MODEL_PRESETS } from './models.js';
import { trainClassifierCommand, evalSamplesCommand } from './classifier.js';
import { trainVQGANCommand } from './vqgan.js';
import { evalColorsCommand } from './colors.js';
import { exportCommand } from './export.js';

type Spec = Record<string, { type: 'string' | 'boolean'; default?: string | boolean; help: string }>;

/** Options shared by the sampling commands (sample, eval-colors, eval-samples). */
const GUIDANCE_VARIANTS: Spec = {
  'guidance-rescale': { type: 'string', default: '0', help: 'guidance rescale phi in [0, 1] (Lin et al. 2024): guided eps scaled to the conditional one\'s std; 0: plain guidance' },
  'guidance-parallel': { type: 'string', default: '1', help: "weight eta in [0, 1] of the guidance update's part along the conditional x0 (adaptive projected guidance, Sadat et al. 2025); 1: plain guidance, 0: drop it" },
  'guidance-interval': { type: 'string', help: "LO,HI: guide only at noise levels sigma = b/a in (LO, HI] (Kynkäänniemi et al. 2024); sigma is in the data's units, so EDM2's 0.28,5.42 (latents of std 0.5) is 0.56,10.84 for this engine's unit-std latents; default: every level" },
};
const CLIP: Spec = {
  clip: { type: 'string', default: 'auto', help: 'ddpm/ddim/plms: clip x̂0 at every step: on, off, or auto (pixel models: to [-1, 1]; latent models: to their training latents\' range where the checkpoint records it)' },
  'clip-range': { type: 'string', help: 'with --clip on: clip x̂0 to [-R, R] (default 1, the pixel range; latents need their own)' },
  threshold: { type: 'string', help: 'ddpm/ddim/plms: dynamic thresholding instead of the clip (Imagen): per sample, s = this quantile of |x̂0| (e.g. 0.995), at least R; x̂0 clipped to ±s and scaled by R/s' },
  'threshold-max': { type: 'string', help: 'with --threshold: the largest s (diffusers\' sample_max_value); unbounded by default' },
};
/** Options of single samplers, shared by the commands that take one sampler (sample, eval-colors). */
const SAMPLER_PARAMS: Spec = {
  eta: { type: 'string', help: 'ddim: 0 deterministic .. 1 DDPM-like' },
  snr: { type: 'string', help: 'pc: signal-to-noise ratio of the corrector' },
  'step-size': { type: 'string', help: 'langevin: ε' },
};

const TRAIN: Spec = {
  data: { type: 'string', default: 'letters', help: "dataset: letters, colors, or a folder of PNGs" },
  size: { type: 'string', default: '16', help: 'image side in pixels (letters: 16 or 32)' },
  count: { type: 'string', help: 'letters: variants per glyph (default 8); colors: images (default 4096)' },
  labels: { type: 'boolean', default: false, help: 'folder datasets: classes from sub-folders' },
  channels: { type: 'string', default: '3', help: 'folder datasets: 1 (grey) or 3 (RGB)' },
  model: { type: 'string', default: 'small', help: `model size: ${Object.keys(MODEL_PRESETS).join(', ')}` },
  'level-channels': { type: 'string', help: 'override the channels of each level, e.g. 32,64' },
  cond: { type: 'string', help: 'conditioning: none, class (added to the time embedding), cross (cross-attention); default class when labelled' },
  process: { type: 'string', default: 'ddpm', help: `noise process: ${PROCESS_KINDS.join(', ')}` },
  schedule: { type: 'string', default: 'linear', help: 'ddpm beta schedule: linear or cosine' },
  steps: { type: 'string', default: '2000', help: 'training steps' },
  batch: { type: 'string', default: '32', help: 'batch size' },
  lr: { type: 'string', default: '1e-3', help: 'learning rate (AdamW)' },
  warmup: { type: 'string', default: '100', help: 'learning-rate warm-up steps' },
  'lr-schedule': { type: 'string', default: 'cosine', help: 'constant or cosine (to lr/10)' },
  'guidance-dropout': { type: 'string', default: '0.1', help: 'probability of the null label (classifier-free guidance)' },
  ema: { type: 'string', default: '0.995', help: 'EMA decay of the weights used for sampling' },
  dropout: { type: 'string', default: '0', help: 'dropout in the residual blocks' },
  hflip: { type: 'boolean', default: false, help: 'random horizontal flips' },
  seed: { type: 'string', default: '0', help: 'seed of initialisation, batches and noise' },
  out: { type: 'string', default: 'runs/train', help: 'run folder' },
  resume: { type: 'boolean', default: false, help: "continue from the run folder's checkpoint" },
  'checkpoint-every': { type: 'string', default: '250', help: 'steps between checkpoints (and log lines)' },
  'sample-every': { type: 'string', default: '500', help: 'steps between sample grids' },
  'sample-steps': { type: 'string', default: '25', help: 'DDIM steps for the grids' },
  latent: { type: 'string', help: 'VQ-GAN checkpoint: train a latent diffusion model on its latents' },
};

const VQGAN_TRAIN: Spec = {
  data: { type: 'string', default: 'colors', help: 'dataset: colors, letters, or a folder of PNGs' },
  size: { type: 'string', default: '32', help: 'image side in pixels' },
  count: { type: 'string', help: 'colors: images (default 4096); letters: variants per glyph' },
  channels: { type: 'string', default: '3', help: 'folder datasets: 1 (grey) or 3 (RGB)' },
  'level-channels': { type: 'string', default: '32,64,64', help: 'channels per level; 3 levels give f = 4, 4 levels f = 8' },
  codebook: { type: 'string', default: '1024x4', help: 'codebook size K x D' },
  beta: { type: 'string', default: '0.25', help: 'commitment weight' },
  'codebook-update': { type: 'string', default: 'ema', help: 'ema or gradient' },
  'restart-after': { type: 'string', default: '100', help: 're-initialise codes unused for this many steps (0: never)' },
  'mid-attention': { type: 'string', default: 'yes', help: 'non-local block at the lowest resolution: yes or no' },
  steps: { type: 'string', default: '2000', help: 'training steps' },
  batch: { type: 'string', default: '8', help: 'batch size' },
  lr: { type: 'string', default: '2e-4', help: 'learning rate (Adam, betas 0.5, 0.9)' },
  'disc-start': { type: 'string', default: '1000', help: 'step at which the patch discriminator and GAN loss start' },
  'disc-weight': { type: 'string', default: '0.8', help: 'scale of the adaptive GAN weight' },
  ema: { type: 'string', default: '0.99', help: 'EMA decay of the weights used for encoding and decoding (0: off)' },
  lpips: { type: 'string', help: 'comma-separated safetensors with VGG16 and LPIPS weights (perceptual loss; off when absent)' },
  seed: { type: 'string', default: '0', help: 'seed' },
  out: { type: 'string', default: 'runs/vqgan', help: 'run folder' },
  resume: { type: 'boolean', default: false, help: "continue from the run folder's checkpoint" },
  'checkpoint-every': { type: 'string', default: '100', help: 'steps between checkpoints and reconstruction grids' },
  'finetune-decoder': { type: 'string', help: "VQ-GAN file: train only its decoder from its weights, encoder and codebook frozen (its latent models stay valid); the model is the file's, so the model flags above are refused" },
};

const EVAL_COLORS: Spec = {
  ckpt: { type: 'string', help: 'diffusion checkpoint trained on colors (pixel or latent)' },
  guidance: { type: 'string', default: '1,2,5,15', help: 'comma-separated guidance scales' },
  ...GUIDANCE_VARIANTS,
  count: { type: 'string', default: '8', help: 'images per colour and scale' },
  sampler: { type: 'string', default: 'ddim', help: `sampler: ${SAMPLER_NAMES.join(', ')}` },
  steps: { type: 'string', default: '50', help: 'sampler steps' },
  seed: { type: 'string', default: '0', help: 'seed' },
  ...CLIP,
  ...SAMPLER_PARAMS,
  classifier: { type: 'string', help: "classifier trained on colors (wgd train-classifier --data colors): its penultimate layer's features for Fréchet distance and retrieval; default: classifier.safetensors beside --ckpt if there is one, else 4x4 block colours ('none' forces those)" },
  vqgan: { type: 'string', help: "latent models: the VQ-GAN, if not where the checkpoint's header says" },
  out: { type: 'string', default: 'runs/eval-colors', help: 'output folder' },
};

const SAMPLE: Spec = {
  ckpt: { type: 'string', help: 'checkpoint (.safetensors) written by wgd train' },
  sampler: { type: 'string', default: 'ddim', help: `sampler: ${SAMPLER_NAMES.join(', ')}` },
  steps: { type: 'string', default: '50', help: 'sampler steps (langevin: steps per noise level)' },
  guidance: { type: 'string', default: '2', help: 'classifier-free guidance scale s (1: conditional only)' },
  ...GUIDANCE_VARIANTS,
  label: { type: 'string', default: 'all', help: "class names or indices, comma-separated, or 'all'" },
  count: { type: 'string', default: '8', help: 'images per label' },
  seed: { type: 'string', default: '0', help: 'seed of the noise' },
  ...CLIP,
  ...SAMPLER_PARAMS,
  out: { type: 'string', default: 'samples.png', help: 'output PNG grid' },
  vqgan: { type: 'string', help: "latent models: the VQ-GAN, if not where the checkpoint's header says" },
  strip: { type: 'boolean', default: false, help: 'also write OUT-strip.png with x̂0 every steps/10 steps' },
};

const CLASSIFIER: Spec = {
  data: { type: 'string', default: 'letters', help: 'dataset: letters or colors' },
  size: { type: 'string', default: '16', help: 'image side in pixels' },
  count: { type: 'string', help: 'letters: variants per glyph (default 8); colors: images (default 4096)' },
  steps: { type: 'string', default: '800', help: 'training steps' },
  batch: { type: 'string', default: '64', help: 'batch size' },
  lr: { type: 'string', default: '2e-3', help: 'learning rate' },
  seed: { type: 'string', default: '0', help: 'seed' },
  out: { type: 'string', default: 'runs/classifier', help: 'output folder (classifier.safetensors, eval.json)' },
};

const EVAL_SAMPLES: Spec = {
  ckpt: { type: 'string', help: 'diffusion checkpoint' },
  classifier: { type: 'string', help: 'classifier checkpoint from wgd train-classifier' },
  samplers: { type: 'string', default: 'ddim', help: 'comma-separated samplers' },
  guidance: { type: 'string', default: '1,2,5', help: 'comma-separated guidance scales' },
  ...GUIDANCE_VARIANTS,
  steps: { type: 'string', default: '50', help: 'sampler steps' },
  count: { type: 'string', default: '4', help: 'samples per class' },
  seed: { type: 'string', default: '0', help: 'seed' },
  out: { type: 'string', default: 'runs/eval', help: 'output folder (eval.json and grids)' },
};

const EXPORT: Spec = {
  ckpt: { type: 'string', help: 'training checkpoint (diffusion, VQ-GAN or classifier)' },
  out: { type: 'string', help: 'output .safetensors: EMA weights and config only' },
};

const COMMANDS: Record<string, { spec: Spec; help: string }> = {
  train: { spec: TRAIN, help: 'train a diffusion model into a run folder' },
  sample: { spec: SAMPLE, help: 'sample a PNG grid from a checkpoint' },
  'train-vqgan': { spec: VQGAN_TRAIN, help: 'train a VQ-GAN (the first stage of latent diffusion)' },
  'eval-colors': { spec: EVAL_COLORS, help: 'colour accuracy and distances over a guidance sweep, Fréchet distance, nearest training images' },
  'train-classifier': { spec: CLASSIFIER, help: 'train a classifier and evaluate it on held-out data' },
  'eval-samples': { spec: EVAL_SAMPLES, help: "label a model's class-conditional samples with a classifier" },
  export: { spec: EXPORT, help: 'reduce a training checkpoint to what sampling needs (EMA weights, config)' },
  info: { spec: {}, help: 'show the WebGPU adapter and its limits' },
};

function usage(): string {
  const lines = ['usage: wgd <command> [options]', '', `every command that uses the GPU also takes --adapter ${ADAPTER_MODES.join('|')}: auto (default) uses a GPU when Dawn finds one, else SwiftShader (CPU-emulated) when installed; gpu refuses a software adapter; swiftshader asks for it`, ''];
  for (const [name, c] of Object.entries(COMMANDS)) {
    lines.push(`wgd ${name}: ${c.help}`);
    for (const [k, o] of Object.entries(c.spec)) lines.push(`  --${k}${o.type === 'string' ? ' VALUE' : ''}`.padEnd(28) + `${o.help}${o.default !== undefined && o.default !== false ? ` (default ${o.default})` : ''}`);
    lines.push('');
  }
  return lines.join('\n');
}

/** A comma-separated list of numbers, each checked as `num` checks one. */
function nums(name: string, v: string, opts: { int?: boolean; min?: number; max?: number } = {}): number[] {
  return v.split(',').map((x) => num(name, x, opts));
}

function num(name: string, v: string | undefined, opts: { int?: boolean; min?: number; max?: number } = {}): number {
  const x = Number(v);
  const ok = v !== undefined && v !== '' && Number.isFinite(x) && (!opts.int || Number.isInteger(x)) && x >= (opts.min ?? -Infinity) && x <= (opts.max ?? Infinity);
  if (!ok) {
    const range = `${opts.int ? 'an integer' : 'a number'}${opts.min !== undefined ? ` >= ${opts.min}` : ''}${opts.max !== undefined ? ` and <= ${opts.max}` : ''}`;
    throw new Error(`--${name} = '${v}': expected ${range}`);
  }
  return x;
}

function oneOf<const T extends string>(name: string, v: string, allowed: readonly T[]): T {
  if (!allowed.includes(v as T)) throw new Error(`--${name} = '${v}' is not allowed; allowed values: ${allowed.join(', ')}`);
  return v as T;
}

/** The guidance variants shared by the sampling commands (GUIDANCE_VARIANTS). */
const parseGuidanceVariants = (v: Record<string, unknown>): GuidanceVariants => ({
  guidanceRescale: num('guidance-rescale', String(v['guidance-rescale']), { min: 0, max: 1 }),
  guidanceParallel: num('guidance-parallel', String(v['guidance-parallel']), { min: 0, max: 1 }),
  guidanceInterval: v['guidance-interval'] === undefined ? undefined : parseGuidanceInterval(String(v['guidance-interval']), '--guidance-interval'),
});

/**
 * --clip: on/off set clipSample; auto leaves it to the model's default (see samplerDefaults).
 * --threshold switches to dynamic thresholding, within the same range R.
 */
function clipOption(v: Record<string, unknown>): SamplerOptions {
  const c = oneOf('clip', v.clip as string, ['auto', 'on', 'off'] as const);
  const r: SamplerOptions = c === 'auto' ? {} : { clipSample: c === 'on' };
  if (v['clip-range'] !== undefined) r.clipRange = num('clip-range', v['clip-range'] as string, { min: 1e-6 });
  if (v.threshold !== undefined) r.thresholdRatio = num('threshold', v.threshold as string, { min: 1e-6, max: 1 });
  if (v['threshold-max'] !== undefined) {
    if (r.thresholdRatio === undefined) throw new Error('--threshold-max needs --threshold');
    r.thresholdMax = num('threshold-max', v['threshold-max'] as string, { min: 1e-6 });
  }
  return r;
}

/** The sampler options given by CLIP and SAMPLER_PARAMS. */
function samplerOptionsOf(v: Record<string, unknown>): SamplerOptions {
  const r = clipOption(v);
  if (v.eta !== undefined) r.eta = num('eta', v.eta as string, { min: 0, max: 1 });
  if (v.snr !== undefined) r.snr = num('snr', v.snr as string, { min: 0 });
  if (v['step-size'] !== undefined) r.stepSize = num('step-size', v['step-size'] as string, { min: 0 });
  return r;
}

/**
 * --adapter auto|gpu|swiftshader, taken out of the arguments before the command's own options are
 * parsed (every command that makes a device takes it).
 */
export function takeAdapterOption(args: string[]): { mode: AdapterMode; rest: string[] } {
  let mode: AdapterMode = 'auto';
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const m = /^--adapter(?:=(.*))?$/.exec(a);
    if (!m) {
      rest.push(a);
      continue;
    }
    const value = m[1] ?? args[++i];
    mode = oneOf('adapter', value ?? '', ADAPTER_MODES);
  }
  return { mode, rest };
}

let adapterMode: AdapterMode = 'auto';

async function device(): Promise<Device> {
  return createDevice({ adapter: adapterMode });
}

/** train-vqgan's flags that define the model; --finetune-decoder takes all of them from its file. */
const VQGAN_MODEL_FLAGS = ['level-channels', 'codebook', 'beta', 'codebook-update', 'restart-after', 'mid-attention'] as const;

export async function main(args: string[]): Promise<number> {
  const { mode, rest: argv } = takeAdapterOption(args);
  adapterMode = mode;
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    console.log(usage());
    return cmd ? 0 : 2;
  }
  const c = COMMANDS[cmd];
  if (!c) {
    console.error(`wgd: unknown command '${cmd}'; allowed values: ${Object.keys(COMMANDS).join(', ')}\n\n${usage()}`);
    return 2;
  }
  const options = Object.fromEntries(Object.entries(c.spec).map(([k, o]) => [k, { type: o.type, ...(o.default !== undefined ? { default: o.default } : {}) }]));
  const { values: v, tokens } = parseArgs({ args: rest, options: options as never, strict: true, allowPositionals: false, tokens: true }) as {
    values: Record<string, string | boolean | undefined>; tokens: { kind: string; name?: string }[];
  };
  /** Options the user wrote (as opposed to defaults that parseArgs filled in). */
  const given = new Set(tokens.filter((t) => t.kind === 'option').map((t) => t.name));
  const s = (k: string) => v[k] as string;
  if (cmd === 'info') {
    const dev = await device();
    const a = dev.adapter;
    console.log(`adapter: ${[a.vendor, a.architecture, a.device, a.description].filter(Boolean).join(' / ')}`);
    const c = dev.rt.adapterChoice;
    const via = process.env.WGD_SOFTWARE_ADAPTER ? `; wgd ran itself again with VK_ICD_FILENAMES=${process.env.WGD_SOFTWARE_ADAPTER}` : process.env.VK_ICD_FILENAMES ? `; VK_ICD_FILENAMES=${process.env.VK_ICD_FILENAMES}` : '';
    console.log(`chosen: --adapter ${c.mode}: ${c.software ? 'software (CPU-emulated)' : 'GPU'}, because ${c.reason}${via}`);
    const lim = dev.limits as unknown as Record<string, number>;
    for (const k of ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxStorageBuffersPerShaderStage', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupsPerDimension']) {
      console.log(`  ${k.padEnd(36)} ${lim[k]}`);
    }
    dev.destroy();
    return 0;
  }
  if (cmd === 'train') {
    const dev = await device();
    const steps = num('steps', s('steps'), { int: true, min: 1 });
    const r = await trainCommand(dev, {
      data: { name: s('data'), size: num('size', s('size'), { int: true, min: 4 }), count: v.count ? num('count', s('count'), { int: true, min: 1 }) : undefined, labels: v.labels as boolean, channels: oneOf('channels', s('channels'), ['1', '3']) === '1' ? 1 : 3 },
      model: s('model'),
      modelConfig: { ...(v['level-channels'] ? { blockOutChannels: nums('level-channels', s('level-channels'), { int: true, min: 1 }) } : {}), dropout: num('dropout', s('dropout'), { min: 0, max: 0.99 }) },
      conditioning: v.cond ? oneOf('cond', s('cond'), ['none', 'class', 'cross'] as const) : undefined,
      process: oneOf('process', s('process'), PROCESS_KINDS) as ProcessKind,
      processConfig: { betaSchedule: oneOf('schedule', s('schedule'), ['linear', 'cosine'] as const) },
      train: {
        batch: num('batch', s('batch'), { int: true, min: 1 }), lr: num('lr', s('lr'), { min: 0 }), steps,
        warmupSteps: num('warmup', s('warmup'), { int: true, min: 0 }), schedule: oneOf('lr-schedule', s('lr-schedule'), ['constant', 'cosine'] as const),
        guidanceDropout: num('guidance-dropout', s('guidance-dropout'), { min: 0, max: 0.99 }), emaDecay: num('ema', s('ema'), { min: 0, max: 1 }),
        hflip: v.hflip as boolean, seed: num('seed', s('seed'), { int: true }),
      },
      out: s('out'), resume: v.resume as boolean,
      checkpointEvery: num('checkpoint-every', s('checkpoint-every'), { int: true, min: 1 }),
      sampleEvery: num('sample-every', s('sample-every'), { int: true, min: 1 }),
      sampleSteps: num('sample-steps', s('sample-steps'), { int: true, min: 1 }),
      latent: v.latent as string | undefined,
    });
    console.log(`final loss ${r.finalLoss.toFixed(4)}; run folder ${r.out}`);
    dev.destroy();
    return 0;
  }
  if (cmd === 'export') {
    if (!v.ckpt || !v.out) throw new Error('export: give --ckpt and --out');
    const r = await exportCommand(s('ckpt'), s('out'));
    console.log(`wrote ${s('out')}: ${r.kind}, ${r.tensors} tensors, ${(r.bytes / 1024).toFixed(0)} KiB`);
    return 0;
  }
  if (cmd === 'train-vqgan') {
    if (v['finetune-decoder']) {
      // The architecture and quantizer come from the file; a model flag would silently do nothing.
      const fixed = VQGAN_MODEL_FLAGS.filter((f) => given.has(f));
      if (fixed.length) throw new Error(`train-vqgan --finetune-decoder: the model is ${s('finetune-decoder')}'s own; drop ${fixed.map((f) => `--${f}`).join(', ')}`);
    }
    const [K, D] = s('codebook').split('x').map((x) => num('codebook', x, { int: true, min: 1 }));
    if (D === undefined) throw new Error(`--codebook = '${s('codebook')}': expected K x D, e.g. 1024x4`);
    const dev = await device();
    const r = await trainVQGANCommand(dev, {
      data: { name: s('data'), size: num('size', s('size'), { int: true, min: 4 }), count: v.count ? num('count', s('count'), { int: true, min: 1 }) : undefined, channels: oneOf('channels', s('channels'), ['1', '3'] as const) === '1' ? 1 : 3 },
      model: {
        blockOutChannels: nums('level-channels', s('level-channels'), { int: true, min: 1 }), numEmbeddings: K!, embedDim: D, latentChannels: D,
        beta: num('beta', s('beta'), { min: 0 }), codebookUpdate: oneOf('codebook-update', s('codebook-update'), ['ema', 'gradient'] as const),
        restartAfter: num('restart-after', s('restart-after'), { int: true, min: 0 }), midAttention: oneOf('mid-attention', s('mid-attention'), ['yes', 'no'] as const) === 'yes',
      },
      steps: num('steps', s('steps'), { int: true, min: 1 }), batch: num('batch', s('batch'), { int: true, min: 1 }), lr: num('lr', s('lr'), { min: 0 }),
      discStart: num('disc-start', s('disc-start'), { int: true, min: 0 }), discWeight: num('disc-weight', s('disc-weight'), { min: 0 }),
      emaDecay: num('ema', s('ema'), { min: 0, max: 1 }), seed: num('seed', s('seed'), { int: true }), out: s('out'), resume: v.resume as boolean,
      checkpointEvery: num('checkpoint-every', s('checkpoint-every'), { int: true, min: 1 }), lpips: v.lpips ? s('lpips').split(',') : undefined,
      finetuneDecoder: v['finetune-decoder'] as string | undefined,
    });
    console.log(`PSNR ${r.psnr.toFixed(2)} dB; wrote ${r.path}`);
    dev.destroy();
    return 0;
  }
  if (cmd === 'eval-colors') {
    if (!v.ckpt) throw new Error('eval-colors: give --ckpt');
    oneOf('sampler', s('sampler'), SAMPLER_NAMES);
    const dev = await device();
    await evalColorsCommand(dev, {
      checkpoint: s('ckpt'), guidance: nums('guidance', s('guidance'), { min: 0 }), count: num('count', s('count'), { int: true, min: 1 }),
      guidanceVariants: parseGuidanceVariants(v),
      sampler: s('sampler'), steps: num('steps', s('steps'), { int: true, min: 1 }), seed: num('seed', s('seed'), { int: true }), out: s('out'),
      classifier: v.classifier as string | undefined, vqgan: v.vqgan as string | undefined, samplerOptions: samplerOptionsOf(v),
    });
    dev.destroy();
    return 0;
  }
  if (cmd === 'train-classifier') {
    const dev = await device();
    const r = await trainClassifierCommand(dev, {
      data: { name: s('data'), size: num('size', s('size'), { int: true, min: 4 }), count: v.count ? num('count', s('count'), { int: true, min: 1 }) : undefined },
      steps: num('steps', s('steps'), { int: true, min: 1 }), batch: num('batch', s('batch'), { int: true, min: 1 }), lr: num('lr', s('lr'), { min: 0 }),
      seed: num('seed', s('seed'), { int: true }), out: s('out'),
    });
    console.log(`held-out accuracy ${(100 * r.accuracy).toFixed(1)}%; wrote ${r.path}`);
    dev.destroy();
    return 0;
  }
  if (cmd === 'eval-samples') {
    if (!v.ckpt || !v.classifier) throw new Error('eval-samples: give --ckpt and --classifier');
    const samplers = s('samplers').split(',');
    for (const x of samplers) oneOf('samplers', x, SAMPLER_NAMES);
    const dev = await device();
    await evalSamplesCommand(dev, {
      checkpoint: s('ckpt'), classifier: s('classifier'), samplers, guidance: nums('guidance', s('guidance'), { min: 0 }), guidanceVariants: parseGuidanceVariants(v),
      steps: num('steps', s('steps'), { int: true, min: 1 }), count: num('count', s('count'), { int: true, min: 1 }), seed: num('seed', s('seed'), { int: true }), out: s('out'),
    });
    dev.destroy();
    return 0;
  }
  if (cmd === 'sample') {
    if (!v.ckpt) throw new Error('--ckpt: give the checkpoint to sample from');
    oneOf('sampler', s('sampler'), SAMPLER_NAMES);
    const dev = await device();
    const r = await sampleCommand(dev, {
      checkpoint: s('ckpt'), sampler: s('sampler'), steps: num('steps', s('steps'), { int: true, min: 1 }),
      guidance: num('guidance', s('guidance'), { min: 0 }), labels: s('label').split(',').filter(Boolean), guidanceVariants: parseGuidanceVariants(v),
      count: num('count', s('count'), { int: true, min: 1 }), seed: num('seed', s('seed'), { int: true }), out: s('out'), strip: v.strip as boolean, vqgan: v.vqgan as string | undefined,
      samplerOptions: samplerOptionsOf(v),
    });
    console.log(`wrote ${r.out}${r.strip ? ` and ${r.strip}` : ''} (${r.shape[0]} images in ${r.seconds.toFixed(1)} s)`);
    dev.destroy();
    return 0;
  }
  return 2;
}
