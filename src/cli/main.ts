// The `wgd` command line: train, sample, info and the rest. Options are specified and checked in
// options.ts; this file turns them into each command's arguments and owns the GPU device: it is made
// once the options are known good and destroyed on every path out, errors included, after the queue
// has drained (a Dawn device left alive at process exit can crash the process).
import { basename } from 'node:path';
import { createDevice, Device } from '../graph/device.js';
import { ADAPTER_MODES, AdapterMode } from '../runtime/device.js';
import { autotuneFileStore } from '../io/autotune-file.js';
import { PROCESS_KINDS, ProcessKind } from '../diffusion/process.js';
import { SAMPLER_NAMES, SamplerOptions, TIMESTEP_SPACINGS } from '../diffusion/samplers/index.js';
import { checkTrainOutputs, trainCommand } from './train.js';
import { checkSampleOutputs, sampleCommand } from './sample.js';
import { checkInvertOutputs, invertCommand } from './invert.js';
import { checkClassifierOutputs, checkEvalSamplesOutputs, trainClassifierCommand, evalSamplesCommand } from './classifier.js';
import { checkVQGANOutputs, trainVQGANCommand } from './vqgan.js';
import { checkEvalColorsOutputs, evalColorsCommand } from './colors.js';
import { exportCommand } from './export.js';
import { cliReference } from './reference.js';
import { COMMANDS, UsageError, commandHelp, num, nums, oneOf, overview, parseCommandLine, parseGuidanceVariants, processFlagsOf, samplerOptionsOf } from './options.js';
import { exportDiffusersCommand, importCommand } from './diffusers.js';
import { OptionValues, ResumeRecord, recordedOptions, resumeOptions } from './resume.js';
import { StopRequest } from './stop.js';

export { UsageError } from './options.js';

/** The command's device, made on first use and destroyed by close() whatever happened in between. */
class DeviceHolder {
  private dev: Device | null = null;

  constructor(private readonly adapter: AdapterMode) {}

  /** Kernel variants are measured once per adapter (at most a minute per command; a later one measures what is left) and kept in $WGD_AUTOTUNE_CACHE or ~/.cache/webgpu-diffusion/autotune.json. */
  async get(): Promise<Device> {
    return (this.dev ??= await createDevice({ adapter: this.adapter, tune: { store: autotuneFileStore(), budgetMs: 60_000 } }));
  }

  /** Let the queue drain, then destroy: destroying with work or callbacks in flight is what crashes. */
  async close(): Promise<void> {
    const d = this.dev;
    this.dev = null;
    if (!d) return;
    try {
      d.rt.flush();
      await d.gpu.queue.onSubmittedWorkDone();
    } catch {
      /* a lost device has nothing left to wait for */
    }
    try {
      d.destroy();
    } catch {
      d.gpu.destroy(); // destroy() flushes first, which a lost device refuses
    }
  }
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

/** train-vqgan's flags that define the model; --finetune-decoder takes all of them from its file. */
const VQGAN_MODEL_FLAGS = ['level-channels', 'codebook', 'beta', 'codebook-update', 'restart-after', 'mid-attention'] as const;

/** Options that may differ when a run is resumed (the rest must be the run's own). */
const RESUMABLE = { train: ['steps', 'checkpoint-every', 'sample-every', 'sample-steps'], 'train-vqgan': ['steps', 'checkpoint-every'], 'train-classifier': ['steps', 'checkpoint-every'] } as const;

/** Each training command's checkpoint, and the file of its run's settings. */
const RUN_FILES = {
  train: ['checkpoint.safetensors', 'config.json'], 'train-vqgan': ['vqgan.safetensors', 'config.json'], 'train-classifier': ['classifier.safetensors', 'classifier-config.json'],
} as const;

/**
 * Runs one command. Returns the exit status (0; 130 or 143 when training was stopped by SIGINT or
 * SIGTERM); throws on errors, UsageError for mistakes in the command line (wgd exits 2, else 1).
 */
export async function main(args: string[]): Promise<number> {
  const { mode, rest: argv } = takeAdapterOption(args);
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h') {
    console.log(overview());
    return cmd ? 0 : 2;
  }
  if (cmd === 'help') {
    const topic = rest[0];
    if (topic === undefined) console.log(overview());
    else if (topic === '--markdown') process.stdout.write(cliReference());
    else if (COMMANDS[topic]) console.log(commandHelp(topic));
    else throw new UsageError(`help: unknown command '${topic}'; allowed values: ${Object.keys(COMMANDS).join(', ')}`);
    return 0;
  }
  if (!COMMANDS[cmd]) throw new UsageError(`unknown command '${cmd}'; allowed values: ${Object.keys(COMMANDS).join(', ')} (wgd help lists them)`);
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(commandHelp(cmd));
    return 0;
  }
  const { values, given, positionals } = parseCommandLine(cmd, rest);
  const devices = new DeviceHolder(mode);
  try {
    return await run(cmd, values, given, () => devices.get(), positionals[0]);
  } finally {
    await devices.close();
  }
}

async function run(cmd: string, parsed: OptionValues, given: Set<string>, device: () => Promise<Device>, arg?: string): Promise<number> {
  let v = parsed;
  const s = (k: string) => v[k] as string;
  const force = Boolean(v.force || v.overwrite);
  let resumed: ResumeRecord | undefined;
  if ((cmd === 'train' || cmd === 'train-vqgan' || cmd === 'train-classifier') && v.resume) {
    const [ck, config] = RUN_FILES[cmd];
    ({ values: v, record: resumed } = resumeOptions(cmd, s('out'), ck, v, given, RESUMABLE[cmd], (args) => parseCommandLine(cmd, args).values, config));
  }
  const accumulate = () => num('accumulate', s('accumulate'), { int: true, min: 1 });
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
    return 0;
  }
  if (cmd === 'train') {
    const args = {
      data: { name: s('data'), size: num('size', s('size'), { int: true, min: 4 }), count: v.count ? num('count', s('count'), { int: true, min: 1 }) : undefined, labels: v.labels as boolean, channels: oneOf('channels', s('channels'), ['1', '3']) === '1' ? (1 as const) : (3 as const) },
      model: s('model'),
      modelConfig: { ...(v['level-channels'] ? { blockOutChannels: nums('level-channels', s('level-channels'), { int: true, min: 1 }) } : {}), dropout: num('dropout', s('dropout'), { min: 0, max: 0.99 }) },
      conditioning: v.cond ? oneOf('cond', s('cond'), ['none', 'class', 'cross'] as const) : undefined,
      process: oneOf('process', s('process'), PROCESS_KINDS) as ProcessKind,
      processConfig: { betaSchedule: oneOf('schedule', s('schedule'), ['linear', 'cosine'] as const) },
      train: {
        batch: num('batch', s('batch'), { int: true, min: 1 }), accumulate: accumulate(), lr: num('lr', s('lr'), { min: 0 }), steps: num('steps', s('steps'), { int: true, min: 1 }),
        warmupSteps: num('warmup', s('warmup'), { int: true, min: 0 }), schedule: oneOf('lr-schedule', s('lr-schedule'), ['constant', 'cosine'] as const),
        guidanceDropout: num('guidance-dropout', s('guidance-dropout'), { min: 0, max: 0.99 }), emaDecay: num('ema', s('ema'), { min: 0, max: 1 }),
        hflip: v.hflip as boolean, seed: num('seed', s('seed'), { int: true }),
      },
      out: s('out'), resume: v.resume as boolean, force, options: recordedOptions(v), resumed,
      checkpointEvery: num('checkpoint-every', s('checkpoint-every'), { int: true, min: 1 }),
      sampleEvery: num('sample-every', s('sample-every'), { int: true, min: 1 }),
      sampleSteps: num('sample-steps', s('sample-steps'), { int: true, min: 1 }),
      latent: v.latent as string | undefined,
    };
    checkTrainOutputs(args); // before the device is made: a bad --out costs nothing
    return withStop(async (stop) => {
      const r = await trainCommand(await device(), { ...args, stop });
      if (!r.stopped) console.log(`final loss ${r.finalLoss.toFixed(4)}; run folder ${r.out}`);
    });
  }
  if (cmd === 'export') {
    const format = oneOf('format', s('format'), ['engine', 'diffusers'] as const);
    const out = arg ?? (v.out as string | undefined);
    if (arg !== undefined && v.out !== undefined && arg !== v.out) throw new UsageError(`export: the output is given twice (${arg} and --out ${s('out')})`);
    if (!v.ckpt || !out) throw new UsageError(format === 'diffusers' ? 'export --format diffusers: give --ckpt and the folder to write (DIR or --out DIR)' : 'export: give --ckpt and --out');
    if (format === 'engine') {
      if (arg !== undefined) throw new UsageError(`export: a positional DIR is for --format diffusers; the engine format writes --out FILE.safetensors`);
      const r = await exportCommand(s('ckpt'), out, force);
      console.log(`wrote ${out}: ${r.kind}, ${r.tensors} tensors, ${(r.bytes / 1024).toFixed(0)} KiB`);
      return 0;
    }
    const sampler = oneOf('sampler', s('sampler'), ['ddpm', 'ddim', 'plms', 'euler', 'heun', 'dpm++2m'] as const);
    const r = await exportDiffusersCommand(await device(), { ckpt: s('ckpt'), dir: out, sampler, force });
    for (const w of r.warnings) console.error(`note: ${w}`);
    console.log(`wrote ${r.dir}: ${r.className} (${r.files.map((f) => basename(f)).join(', ')})`);
    return 0;
  }
  if (cmd === 'import') {
    if (!arg || !v.out) throw new UsageError('import: give the diffusers folder (DIR) and --out FILE.safetensors');
    const processFlags = processFlagsOf(v);
    const r = await importCommand(await device(), { dir: arg, out: s('out'), force, ...processFlags });
    console.log(`wrote ${r.out}: ${r.className}, ${r.tensors} tensors${r.renamed ? ` (${r.renamed} renamed from the old attention names)` : ''}; process ${r.scheduler ? `from its ${r.scheduler}` : 'from the flags (no scheduler_config.json found)'}`);
    return 0;
  }
  if (cmd === 'train-vqgan') {
    if (v['finetune-decoder']) {
      // The architecture and quantizer come from the file; a model flag would silently do nothing.
      const fixed = VQGAN_MODEL_FLAGS.filter((f) => given.has(f));
      if (fixed.length) throw new UsageError(`train-vqgan --finetune-decoder: the model is ${s('finetune-decoder')}'s own; drop ${fixed.map((f) => `--${f}`).join(', ')}`);
    }
    const [K, D] = s('codebook').split('x').map((x) => num('codebook', x, { int: true, min: 1 }));
    if (D === undefined) throw new UsageError(`--codebook = '${s('codebook')}': expected K x D, e.g. 1024x4`);
    const args = {
      data: { name: s('data'), size: num('size', s('size'), { int: true, min: 4 }), count: v.count ? num('count', s('count'), { int: true, min: 1 }) : undefined, channels: oneOf('channels', s('channels'), ['1', '3'] as const) === '1' ? (1 as const) : (3 as const) },
      model: {
        blockOutChannels: nums('level-channels', s('level-channels'), { int: true, min: 1 }), numEmbeddings: K!, embedDim: D, latentChannels: D,
        beta: num('beta', s('beta'), { min: 0 }), codebookUpdate: oneOf('codebook-update', s('codebook-update'), ['ema', 'gradient'] as const),
        restartAfter: num('restart-after', s('restart-after'), { int: true, min: 0 }), midAttention: oneOf('mid-attention', s('mid-attention'), ['yes', 'no'] as const) === 'yes',
      },
      steps: num('steps', s('steps'), { int: true, min: 1 }), batch: num('batch', s('batch'), { int: true, min: 1 }), accumulate: accumulate(), lr: num('lr', s('lr'), { min: 0 }),
      discStart: num('disc-start', s('disc-start'), { int: true, min: 0 }), discWeight: num('disc-weight', s('disc-weight'), { min: 0 }),
      emaDecay: num('ema', s('ema'), { min: 0, max: 1 }), seed: num('seed', s('seed'), { int: true }), out: s('out'), resume: v.resume as boolean, force,
      options: recordedOptions(v), resumed,
      checkpointEvery: num('checkpoint-every', s('checkpoint-every'), { int: true, min: 1 }), lpips: v.lpips ? s('lpips').split(',') : undefined,
      finetuneDecoder: v['finetune-decoder'] as string | undefined,
    };
    checkVQGANOutputs(args);
    return withStop(async (stop) => {
      const r = await trainVQGANCommand(await device(), { ...args, stop });
      if (!r.stopped) console.log(`PSNR ${r.psnr.toFixed(2)} dB; wrote ${r.path}`);
    });
  }
  if (cmd === 'eval-colors') {
    if (!v.ckpt) throw new UsageError('eval-colors: give --ckpt');
    const args = {
      checkpoint: s('ckpt'), guidance: nums('guidance', s('guidance'), { min: 0 }), count: num('count', s('count'), { int: true, min: 1 }),
      guidanceVariants: parseGuidanceVariants(v),
      sampler: oneOf('sampler', s('sampler'), SAMPLER_NAMES), steps: num('steps', s('steps'), { int: true, min: 1 }), seed: num('seed', s('seed'), { int: true }), out: s('out'),
      classifier: v.classifier as string | undefined, vqgan: v.vqgan as string | undefined, samplerOptions: samplerOptionsOf(v), force,
    };
    checkEvalColorsOutputs(args);
    await evalColorsCommand(await device(), args);
    return 0;
  }
  if (cmd === 'train-classifier') {
    const args = {
      data: { name: s('data'), size: num('size', s('size'), { int: true, min: 4 }), count: v.count ? num('count', s('count'), { int: true, min: 1 }) : undefined },
      steps: num('steps', s('steps'), { int: true, min: 1 }), batch: num('batch', s('batch'), { int: true, min: 1 }), accumulate: accumulate(), lr: num('lr', s('lr'), { min: 0 }),
      seed: num('seed', s('seed'), { int: true }), out: s('out'), resume: v.resume as boolean, force, options: recordedOptions(v), resumed,
      checkpointEvery: num('checkpoint-every', s('checkpoint-every'), { int: true, min: 1 }),
    };
    checkClassifierOutputs(args);
    return withStop(async (stop) => {
      const r = await trainClassifierCommand(await device(), { ...args, stop });
      if (!r.stopped) console.log(`held-out accuracy ${(100 * r.accuracy).toFixed(1)}%; wrote ${r.path}`);
    });
  }
  if (cmd === 'eval-samples') {
    if (!v.ckpt || !v.classifier) throw new UsageError('eval-samples: give --ckpt and --classifier');
    const samplers = s('samplers').split(',');
    for (const x of samplers) oneOf('samplers', x, SAMPLER_NAMES);
    const args = {
      checkpoint: s('ckpt'), classifier: s('classifier'), samplers, guidance: nums('guidance', s('guidance'), { min: 0 }), guidanceVariants: parseGuidanceVariants(v),
      steps: nums('steps', s('steps'), { int: true, min: 1 }), count: num('count', s('count'), { int: true, min: 1 }), seed: num('seed', s('seed'), { int: true }), out: s('out'), force,
    };
    checkEvalSamplesOutputs(args);
    await evalSamplesCommand(await device(), args);
    return 0;
  }
  if (cmd === 'sample') {
    if (!v.ckpt) throw new UsageError('--ckpt: give the checkpoint to sample from');
    const args = {
      checkpoint: s('ckpt'), sampler: oneOf('sampler', s('sampler'), SAMPLER_NAMES), steps: num('steps', s('steps'), { int: true, min: 1 }),
      guidance: num('guidance', s('guidance'), { min: 0 }), labels: s('label').split(',').filter(Boolean), guidanceVariants: parseGuidanceVariants(v),
      count: num('count', s('count'), { int: true, min: 1 }), seed: num('seed', s('seed'), { int: true }), out: s('out'), strip: v.strip as boolean, vqgan: v.vqgan as string | undefined,
      samplerOptions: samplerOptionsOf(v), force, samplerGiven: given.has('sampler'), guidanceGiven: given.has('guidance'), processFlags: processFlagsOf(v),
      start: v.start as string | undefined, labelGiven: given.has('label'),
    };
    checkSampleOutputs(args);
    const r = await sampleCommand(await device(), args);
    console.log(`wrote ${r.out}${r.strip ? ` and ${r.strip}` : ''} (${r.shape[0]} images in ${r.seconds.toFixed(1)} s)`);
    return 0;
  }
  if (cmd === 'invert') {
    if (!v.ckpt) throw new UsageError('invert: give --ckpt (the diffusion model) and --image');
    if (!v.image) throw new UsageError('invert: give --image A.png[,B.png...] or a folder of PNGs');
    if (num('eta', s('eta'), { min: 0, max: 1 }) !== 0) throw new UsageError(`--eta = '${s('eta')}': DDIM inversion runs the deterministic update (eta 0) backwards; the noise eta > 0 adds cannot be undone`);
    const grid: SamplerOptions = {};
    if (v['timestep-spacing'] !== undefined) grid.timestepSpacing = oneOf('timestep-spacing', s('timestep-spacing'), TIMESTEP_SPACINGS);
    if (v['steps-offset'] !== undefined) grid.stepsOffset = num('steps-offset', s('steps-offset'), { int: true, min: 0 });
    const args = {
      checkpoint: s('ckpt'), images: s('image').split(',').filter(Boolean), steps: num('steps', s('steps'), { int: true, min: 1 }),
      labels: v.label ? s('label').split(',').filter(Boolean) : [], guidance: num('guidance', s('guidance'), { min: 0 }), samplerOptions: grid,
      out: s('out'), vqgan: v.vqgan as string | undefined, force, processFlags: processFlagsOf(v),
    };
    checkInvertOutputs(args);
    const r = await invertCommand(await device(), args);
    console.log(`wrote ${r.png}, ${r.json} and ${r.xT}: ${r.summary.images} images, reconstruction PSNR ${r.summary.psnr.toFixed(2)} dB, x_T std ${r.summary.xT.std.toFixed(3)} (${r.summary.secondsPerImage.toFixed(2)} s an image)`);
    return 0;
  }
  return 2;
}

/** Runs a training command with SIGINT/SIGTERM turned into a stop request; the exit status says which. */
async function withStop(train: (stop: StopRequest) => Promise<void>): Promise<number> {
  const stop = StopRequest.listen();
  try {
    await train(stop);
    return stop.exitCode;
  } finally {
    stop.dispose();
  }
}
