// The `wgd` command line's options: one spec per command (with defaults and help), parsing with the
// project's own messages, and the checks that turn option strings into numbers and choices.
import { parseArgs } from 'node:util';
import { PREDICTION_TYPES, PROCESS_KINDS } from '../diffusion/process.js';
import { SAMPLER_NAMES, SamplerOptions, TIMESTEP_SPACINGS } from '../diffusion/samplers/index.js';
import type { ProcessFlags } from './diffusers.js';
import { GuidanceVariants, parseGuidanceInterval } from '../diffusion/denoiser.js';
import { MODEL_PRESETS } from './models.js';

/** A mistake in the command line itself: wgd exits with 2 (other errors: 1). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export type Spec = Record<string, { type: 'string' | 'boolean'; default?: string | boolean; help: string }>;

/** Every command that writes files refuses to replace one unless told to (--overwrite is the same). */
const FORCE: Spec = {
  force: { type: 'boolean', default: false, help: 'replace output files that exist (never the command\'s own input)' },
  overwrite: { type: 'boolean', default: false, help: 'the same as --force' },
};

/** Every training command accumulates gradients the same way. */
const ACCUMULATE: Spec = {
  accumulate: { type: 'string', default: '1', help: 'gradient accumulation: N micro-batches of --batch images per optimisation step, the update of one batch N times as large with one micro-batch in memory at a time' },
};

/** Options shared by the sampling commands (sample, eval-colors, eval-samples). */
const GUIDANCE_VARIANTS: Spec = {
  'guidance-rescale': { type: 'string', default: '0', help: 'guidance rescale phi in [0, 1] (Lin et al. 2024): guided eps scaled to the conditional one\'s std; 0: plain guidance' },
  'guidance-parallel': { type: 'string', default: '1', help: "weight eta in [0, 1] of the guidance update's part along the conditional x0 (adaptive projected guidance, Sadat et al. 2025); 1: plain guidance, 0: drop it" },
  'guidance-interval': { type: 'string', help: "LO,HI: guide only at noise levels sigma = b/a in (LO, HI] (Kynkäänniemi et al. 2024); sigma is in the data's units, so EDM2's 0.28,5.42 (latents of std 0.5) is 0.56,10.84 for this engine's unit-std latents; default: every level" },
};
const CLIP: Spec = {
  clip: { type: 'string', default: 'auto', help: 'ddpm/ddim/plms/euler/heun/dpm++2m: clip x̂0 at every step: on, off, or auto (pixel models: to [-1, 1]; latent models: to their training latents\' range where the checkpoint records it)' },
  'clip-range': { type: 'string', help: 'with --clip on: clip x̂0 to [-R, R] (default 1, the pixel range; latents need their own)' },
  threshold: { type: 'string', help: 'ddpm/ddim/plms/euler/heun/dpm++2m: dynamic thresholding instead of the clip (Imagen): per sample, s = this quantile of |x̂0| (e.g. 0.995), at least R; x̂0 clipped to ±s and scaled by R/s' },
  'threshold-max': { type: 'string', help: 'with --threshold: the largest s (diffusers\' sample_max_value); unbounded by default' },
};
/** Options of single samplers, shared by the commands that take one sampler (sample, eval-colors). */
const SAMPLER_PARAMS: Spec = {
  eta: { type: 'string', help: 'ddim: 0 deterministic .. 1 DDPM-like' },
  snr: { type: 'string', help: 'pc: signal-to-noise ratio of the corrector' },
  'step-size': { type: 'string', help: 'langevin: ε' },
  'timestep-spacing': { type: 'string', help: "ddpm/ddim/plms/euler/heun/dpm++2m: diffusers' timestep grid, leading, trailing or linspace (ddpm/ddim/plms then step to t - T/n as diffusers' schedulers); default: the engine's own (ddpm/ddim/plms: trailing, each step to the next grid level; euler/heun/dpm++2m: linspace)" },
  'steps-offset': { type: 'string', help: "with --timestep-spacing leading: added to every timestep (diffusers' steps_offset)" },
  karras: { type: 'string', help: "euler/heun/dpm++2m: Karras σ spacing, on (default) or off (σ at the grid's timesteps)" },
};

export const TRAIN: Spec = {
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
  ...ACCUMULATE,
  lr: { type: 'string', default: '1e-3', help: 'learning rate (AdamW)' },
  warmup: { type: 'string', default: '100', help: 'learning-rate warm-up steps' },
  'lr-schedule': { type: 'string', default: 'cosine', help: 'constant or cosine (to lr/10)' },
  'guidance-dropout': { type: 'string', default: '0.1', help: 'probability of the null label (classifier-free guidance)' },
  ema: { type: 'string', default: '0.995', help: 'EMA decay of the weights used for sampling' },
  dropout: { type: 'string', default: '0', help: 'dropout in the residual blocks' },
  hflip: { type: 'boolean', default: false, help: 'random horizontal flips' },
  seed: { type: 'string', default: '0', help: 'seed of initialisation, batches and noise' },
  out: { type: 'string', default: 'runs/train', help: 'run folder' },
  resume: { type: 'boolean', default: false, help: "continue from the run folder's checkpoint with the run's own settings (from its config.json); only --steps, --checkpoint-every, --sample-every and --sample-steps may change" },
  'checkpoint-every': { type: 'string', default: '250', help: 'steps between checkpoints (and log lines)' },
  'sample-every': { type: 'string', default: '500', help: 'steps between sample grids' },
  'sample-steps': { type: 'string', default: '25', help: 'DDIM steps for the grids' },
  latent: { type: 'string', help: 'VQ-GAN checkpoint: train a latent diffusion model on its latents' },
  ...FORCE,
};

export const VQGAN_TRAIN: Spec = {
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
  ...ACCUMULATE,
  lr: { type: 'string', default: '2e-4', help: 'learning rate (Adam, betas 0.5, 0.9)' },
  'disc-start': { type: 'string', default: '1000', help: 'step at which the patch discriminator and GAN loss start' },
  'disc-weight': { type: 'string', default: '0.8', help: 'scale of the adaptive GAN weight' },
  ema: { type: 'string', default: '0.99', help: 'EMA decay of the weights used for encoding and decoding (0: off)' },
  lpips: { type: 'string', help: 'comma-separated safetensors with VGG16 and LPIPS weights (perceptual loss; off when absent)' },
  seed: { type: 'string', default: '0', help: 'seed' },
  out: { type: 'string', default: 'runs/vqgan', help: 'run folder' },
  resume: { type: 'boolean', default: false, help: "continue from the run folder's checkpoint with the run's own settings (from its config.json); only --steps and --checkpoint-every may change" },
  'checkpoint-every': { type: 'string', default: '100', help: 'steps between checkpoints and reconstruction grids' },
  'finetune-decoder': { type: 'string', help: "VQ-GAN file: train only its decoder from its weights, encoder and codebook frozen (its latent models stay valid); the model is the file's, so the model flags above are refused" },
  ...FORCE,
};

export const EVAL_COLORS: Spec = {
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
  ...FORCE,
};

/** Where a diffusers folder has no scheduler_config.json, its noise process from these (diffusers' DDPMScheduler defaults otherwise). */
const SCHEDULER_FLAGS: Spec = {
  scheduler: { type: 'string', help: "diffusers folders: a scheduler_config.json to use instead of the one beside the model (or in the pipeline's scheduler/)" },
  'prediction-type': { type: 'string', help: 'diffusers folders: what the network predicts, epsilon, v_prediction or sample (over the scheduler config\'s)' },
  'beta-schedule': { type: 'string', help: 'diffusers folders: linear, scaled_linear or squaredcos_cap_v2 (over the scheduler config\'s)' },
  'beta-start': { type: 'string', help: 'diffusers folders: the first β' },
  'beta-end': { type: 'string', help: 'diffusers folders: the last β' },
  'train-timesteps': { type: 'string', help: "diffusers folders: the chain's length T (num_train_timesteps)" },
};

export const SAMPLE: Spec = {
  ckpt: { type: 'string', help: 'checkpoint (.safetensors) written by wgd train or wgd import, or a diffusers model folder (config.json + diffusion_pytorch_model.safetensors, or a pipeline folder with unet/): its scheduler_config.json picks the sampler unless --sampler is given' },
  sampler: { type: 'string', default: 'ddim', help: `sampler: ${SAMPLER_NAMES.join(', ')}` },
  steps: { type: 'string', default: '50', help: 'sampler steps (langevin: steps per noise level)' },
  guidance: { type: 'string', default: '2', help: 'classifier-free guidance scale s (1: conditional only; a model without a null class, e.g. from diffusers, samples at 1 unless given)' },
  ...GUIDANCE_VARIANTS,
  label: { type: 'string', default: 'all', help: "class names or indices, comma-separated, or 'all'" },
  count: { type: 'string', default: '8', help: 'images per label' },
  seed: { type: 'string', default: '0', help: 'seed of the noise' },
  ...CLIP,
  ...SAMPLER_PARAMS,
  out: { type: 'string', default: 'samples.png', help: 'output PNG grid' },
  vqgan: { type: 'string', help: "latent models: the VQ-GAN, if not where the checkpoint's header says" },
  strip: { type: 'boolean', default: false, help: 'also write OUT-strip.png with x̂0 every steps/10 steps' },
  start: { type: 'string', help: "start from this x_T instead of noise: a .safetensors with tensor 'xT' (wgd invert's OUT.safetensors), an image per row, with the labels it records unless --label is given (one for all, or one per row; --count is not used); wgd invert's reconstruction is --sampler ddim with its --steps and --guidance and --clip off" },
  ...SCHEDULER_FLAGS,
  ...FORCE,
};

export const INVERT: Spec = {
  ckpt: { type: 'string', help: 'diffusion checkpoint (.safetensors, pixel or latent) or a diffusers model folder, on a ddpm or vp-sde process' },
  image: { type: 'string', help: "PNG images, comma-separated, or a folder of them (its PNGs sorted by name), each of the model's image size and channels" },
  steps: { type: 'string', default: '50', help: 'DDIM steps, the same for the inversion and the reconstruction' },
  label: { type: 'string', help: "class-conditional models: the images' class, one for all or one per image (names or indices, comma-separated)" },
  guidance: { type: 'string', default: '1', help: 'classifier-free guidance scale s of both directions (1: the conditional model alone; larger scales reconstruct worse)' },
  eta: { type: 'string', default: '0', help: 'only 0: the deterministic DDIM update is the one that can be run backwards' },
  'timestep-spacing': { type: 'string', help: "diffusers' timestep grid, leading, trailing or linspace, for both directions; default: the model's (a diffusers scheduler's), else the engine's own" },
  'steps-offset': { type: 'string', help: "with --timestep-spacing leading: added to every timestep (diffusers' steps_offset)" },
  out: { type: 'string', default: 'invert.png', help: "OUT.png: a row per image, original | x_T (values in [-3, 3] as black..white; a latent model's x_T enlarged, its channels in turn) | reconstruction (DDIM from x_T, x̂0 not clipped); beside it OUT.json (per image the reconstruction's MSE and PSNR, x_T's mean, std and Kolmogorov-Smirnov distance to N(0, 1)) and OUT.safetensors (x_T, tensor 'xT')" },
  vqgan: { type: 'string', help: "latent models: the VQ-GAN, if not where the checkpoint's header says" },
  ...SCHEDULER_FLAGS,
  ...FORCE,
};

export const CLASSIFIER: Spec = {
  data: { type: 'string', default: 'letters', help: 'dataset: letters or colors' },
  size: { type: 'string', default: '16', help: 'image side in pixels' },
  count: { type: 'string', help: 'letters: variants per glyph (default 8); colors: images (default 4096)' },
  steps: { type: 'string', default: '800', help: 'training steps' },
  batch: { type: 'string', default: '64', help: 'batch size' },
  ...ACCUMULATE,
  lr: { type: 'string', default: '2e-3', help: 'learning rate' },
  seed: { type: 'string', default: '0', help: 'seed' },
  out: { type: 'string', default: 'runs/classifier', help: 'run folder (classifier.safetensors, classifier-config.json, classifier-log.jsonl, classifier-loss.png, eval.json): may be a diffusion run\'s folder' },
  resume: { type: 'boolean', default: false, help: "continue from the run folder's checkpoint with the run's own settings (from its classifier-config.json); only --steps and --checkpoint-every may change" },
  'checkpoint-every': { type: 'string', default: '200', help: 'steps between checkpoints' },
  ...FORCE,
};

export const EVAL_SAMPLES: Spec = {
  ckpt: { type: 'string', help: 'diffusion checkpoint' },
  classifier: { type: 'string', help: 'classifier checkpoint from wgd train-classifier' },
  samplers: { type: 'string', default: 'ddim', help: 'comma-separated samplers' },
  guidance: { type: 'string', default: '1,2,5', help: 'comma-separated guidance scales' },
  ...GUIDANCE_VARIANTS,
  steps: { type: 'string', default: '50', help: 'sampler steps, comma-separated for a quality-vs-steps table (each sampler at each count)' },
  count: { type: 'string', default: '4', help: 'samples per class' },
  seed: { type: 'string', default: '0', help: 'seed' },
  out: { type: 'string', default: 'runs/eval', help: 'output folder (eval.json and grids)' },
  ...FORCE,
};

export const EXPORT: Spec = {
  ckpt: { type: 'string', help: 'training checkpoint (diffusion, VQ-GAN or classifier)' },
  format: { type: 'string', default: 'engine', help: "engine: one .safetensors with the EMA weights and the config; diffusers: a diffusers model folder (config.json, diffusion_pytorch_model.safetensors, scheduler_config.json) at DIR that diffusers loads strictly (diffusion and VQ-GAN checkpoints)" },
  out: { type: 'string', help: 'output .safetensors (--format engine), or the folder (--format diffusers; or give it as DIR)' },
  sampler: { type: 'string', default: 'ddim', help: "--format diffusers: the scheduler_config.json's scheduler: ddpm (DDPMScheduler), ddim, plms (PNDMScheduler), euler, heun, dpm++2m (DPMSolverMultistepScheduler)" },
  ...FORCE,
};

export const IMPORT: Spec = {
  out: { type: 'string', help: 'output .safetensors: an engine checkpoint of the model (with its scheduler\'s process and sampler settings)' },
  ...SCHEDULER_FLAGS,
  ...FORCE,
};

/** A command's options, what it does, and the positional argument it takes, if any (e.g. DIR). */
export const COMMANDS: Record<string, { spec: Spec; help: string; args?: string }> = {
  train: { spec: TRAIN, help: 'train a diffusion model into a run folder' },
  sample: { spec: SAMPLE, help: 'sample a PNG grid from a checkpoint' },
  invert: { spec: INVERT, help: 'DDIM inversion: images to the x_T that DDIM sampling takes back to them, with the reconstructions and their error' },
  'train-vqgan': { spec: VQGAN_TRAIN, help: 'train a VQ-GAN (the first stage of latent diffusion)' },
  'eval-colors': { spec: EVAL_COLORS, help: 'colour accuracy and distances over a guidance sweep, Fréchet distance, nearest training images' },
  'train-classifier': { spec: CLASSIFIER, help: 'train a classifier and evaluate it on held-out data' },
  'eval-samples': { spec: EVAL_SAMPLES, help: "label a model's class-conditional samples with a classifier" },
  export: { spec: EXPORT, help: 'reduce a training checkpoint to what sampling needs (EMA weights, config), or write it as a diffusers model folder', args: '[DIR]' },
  import: { spec: IMPORT, help: 'convert a diffusers model folder (UNet2DModel, UNet2DConditionModel, VQModel) into an engine checkpoint', args: 'DIR' },
  info: { spec: {}, help: 'show the WebGPU adapter and its limits' },
};

/** `wgd`, `wgd help`: the commands, one line each. */
export function overview(): string {
  const lines = ['usage: wgd <command> [options]; wgd help <command> (or wgd <command> --help) lists its options', ''];
  for (const [name, c] of Object.entries(COMMANDS)) lines.push(`wgd ${name}: ${c.help}`);
  lines.push('', ADAPTER_HELP);
  return lines.join('\n');
}

/** The option every command takes (main.ts takes it out before the command's own are parsed). */
export const ADAPTER_HELP =
  'every command takes --adapter auto|gpu|swiftshader: auto (default) uses a GPU when Dawn finds one, else SwiftShader (CPU-emulated) when it is installed; gpu refuses a software adapter; swiftshader asks for it';

/** `wgd help CMD`, `wgd CMD --help`: that command's options with their defaults. */
export function commandHelp(cmd: string): string {
  const c = COMMANDS[cmd]!;
  const lines = [`usage: wgd ${cmd}${c.args ? ` ${c.args}` : ''} [options]`, `${c.help}`, ''];
  for (const [k, o] of Object.entries(c.spec)) lines.push(`  --${k}${o.type === 'string' ? ' VALUE' : ''}`.padEnd(28) + `${o.help}${o.default !== undefined && o.default !== false ? ` (default ${o.default})` : ''}`);
  lines.push(`  --adapter VALUE`.padEnd(28) + 'auto, gpu or swiftshader: see wgd help (default auto)');
  return lines.join('\n');
}

/** A number given as an option's value, e.g. `--steps -5`, which parseArgs would take for an option. */
const NUMBERISH = /^-(\d|\.\d|Infinity$|NaN$)/;

/**
 * parseArgs with the project's messages: an unknown option or a missing value names the command and
 * its help; a negative number after a string option is that option's value (parseArgs calls it
 * ambiguous), so its range check can say what is allowed. Returns the values and the options the
 * user wrote (as opposed to defaults).
 */
export function parseCommandLine(cmd: string, args: readonly string[]): { values: Record<string, string | boolean | undefined>; given: Set<string>; positionals: string[] } {
  const spec = COMMANDS[cmd]!.spec;
  const takesArg = COMMANDS[cmd]!.args !== undefined;
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const name = a.startsWith('--') && !a.includes('=') ? a.slice(2) : null;
    const next = args[i + 1];
    if (name && spec[name]?.type === 'string' && next !== undefined && NUMBERISH.test(next)) {
      joined.push(`${a}=${next}`);
      i++;
    } else joined.push(a);
  }
  const options = Object.fromEntries(Object.entries(spec).map(([k, o]) => [k, { type: o.type, ...(o.default !== undefined ? { default: o.default } : {}) }]));
  let parsed;
  try {
    parsed = parseArgs({ args: joined, options: options as never, strict: true, allowPositionals: takesArg, tokens: true }) as {
      values: Record<string, string | boolean | undefined>; positionals: string[]; tokens: { kind: string; name?: string; rawName?: string; value?: string }[];
    };
  } catch (e) {
    const err = e as Error & { code?: string };
    const opt = /'(-[^' ]+)/.exec(err.message)?.[1] ?? '';
    const help = `see wgd ${cmd} --help`;
    if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new UsageError(`${cmd}: unknown option '${opt}'; ${help}`);
    if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      const why = /argument missing/.test(err.message) ? `${opt} needs a value`
        : /ambiguous/.test(err.message) ? `${opt} needs a value (a value that starts with '-' is written ${opt}=VALUE)`
        : err.message.split('\n')[0];
      throw new UsageError(`${cmd}: ${why}; ${help}`);
    }
    if (err.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') throw new UsageError(`${cmd}: unexpected argument ${err.message.match(/'[^']*'/)?.[0] ?? ''}; options are written --name VALUE; ${help}`);
    throw new UsageError(`${cmd}: ${err.message.split('\n')[0]}; ${help}`);
  }
  if (parsed.positionals.length > 1) throw new UsageError(`${cmd}: one ${COMMANDS[cmd]!.args!.replace(/[[\]]/g, '')} is taken, got ${parsed.positionals.length} (${parsed.positionals.join(', ')}); see wgd ${cmd} --help`);
  return { values: parsed.values, given: new Set(parsed.tokens.filter((t) => t.kind === 'option').map((t) => t.name!)), positionals: parsed.positionals };
}

/** A comma-separated list of numbers, each checked as `num` checks one. */
export function nums(name: string, v: string, opts: { int?: boolean; min?: number; max?: number } = {}): number[] {
  return v.split(',').map((x) => num(name, x, opts));
}

export function num(name: string, v: string | undefined, opts: { int?: boolean; min?: number; max?: number } = {}): number {
  const x = Number(v);
  const ok = v !== undefined && v !== '' && Number.isFinite(x) && (!opts.int || Number.isInteger(x)) && x >= (opts.min ?? -Infinity) && x <= (opts.max ?? Infinity);
  if (!ok) {
    const range = `${opts.int ? 'an integer' : 'a number'}${opts.min !== undefined ? ` >= ${opts.min}` : ''}${opts.max !== undefined ? ` and <= ${opts.max}` : ''}`;
    throw new UsageError(`--${name} = '${v}': expected ${range}`);
  }
  return x;
}

export function oneOf<const T extends string>(name: string, v: string, allowed: readonly T[]): T {
  if (!allowed.includes(v as T)) throw new UsageError(`--${name} = '${v}' is not allowed; allowed values: ${allowed.join(', ')}`);
  return v as T;
}

/** A check of an option's value that throws its own error: a usage error. */
function usage<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** The guidance variants shared by the sampling commands (GUIDANCE_VARIANTS). */
export const parseGuidanceVariants = (v: Record<string, unknown>): GuidanceVariants => ({
  guidanceRescale: num('guidance-rescale', String(v['guidance-rescale']), { min: 0, max: 1 }),
  guidanceParallel: num('guidance-parallel', String(v['guidance-parallel']), { min: 0, max: 1 }),
  guidanceInterval: v['guidance-interval'] === undefined ? undefined : usage(() => parseGuidanceInterval(String(v['guidance-interval']), '--guidance-interval')),
});

/**
 * --clip: on/off set clipSample; auto leaves it to the model's default (see samplerDefaults).
 * --threshold switches to dynamic thresholding, within the same range R.
 */
export function clipOption(v: Record<string, unknown>): SamplerOptions {
  const c = oneOf('clip', v.clip as string, ['auto', 'on', 'off'] as const);
  const r: SamplerOptions = c === 'auto' ? {} : { clipSample: c === 'on' };
  if (v['clip-range'] !== undefined) r.clipRange = num('clip-range', v['clip-range'] as string, { min: 1e-6 });
  if (v.threshold !== undefined) r.thresholdRatio = num('threshold', v.threshold as string, { min: 1e-6, max: 1 });
  if (v['threshold-max'] !== undefined) {
    if (r.thresholdRatio === undefined) throw new UsageError('--threshold-max needs --threshold');
    r.thresholdMax = num('threshold-max', v['threshold-max'] as string, { min: 1e-6 });
  }
  return r;
}

/** The sampler options given by CLIP and SAMPLER_PARAMS. */
export function samplerOptionsOf(v: Record<string, unknown>): SamplerOptions {
  const r = clipOption(v);
  if (v.eta !== undefined) r.eta = num('eta', v.eta as string, { min: 0, max: 1 });
  if (v.snr !== undefined) r.snr = num('snr', v.snr as string, { min: 0 });
  if (v['step-size'] !== undefined) r.stepSize = num('step-size', v['step-size'] as string, { min: 0 });
  if (v['timestep-spacing'] !== undefined) r.timestepSpacing = oneOf('timestep-spacing', v['timestep-spacing'] as string, TIMESTEP_SPACINGS);
  if (v['steps-offset'] !== undefined) r.stepsOffset = num('steps-offset', v['steps-offset'] as string, { int: true, min: 0 });
  if (v.karras !== undefined) r.karras = oneOf('karras', v.karras as string, ['on', 'off'] as const) === 'on';
  return r;
}

/** The process flags of a diffusers folder (SCHEDULER_FLAGS). */
export function processFlagsOf(v: Record<string, unknown>): ProcessFlags {
  const r: ProcessFlags = {};
  if (v.scheduler !== undefined) r.scheduler = v.scheduler as string;
  if (v['prediction-type'] !== undefined) r.predictionType = oneOf('prediction-type', v['prediction-type'] as string, PREDICTION_TYPES);
  if (v['beta-schedule'] !== undefined) {
    const b = oneOf('beta-schedule', v['beta-schedule'] as string, ['linear', 'scaled_linear', 'squaredcos_cap_v2'] as const);
    r.betaSchedule = b === 'squaredcos_cap_v2' ? 'cosine' : b;
  }
  if (v['beta-start'] !== undefined) r.betaStart = num('beta-start', v['beta-start'] as string, { min: 1e-12, max: 1 });
  if (v['beta-end'] !== undefined) r.betaEnd = num('beta-end', v['beta-end'] as string, { min: 1e-12, max: 1 });
  if (v['train-timesteps'] !== undefined) r.trainTimesteps = num('train-timesteps', v['train-timesteps'] as string, { int: true, min: 1 });
  return r;
}
