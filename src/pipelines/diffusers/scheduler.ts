// diffusers scheduler configs (scheduler_config.json) to the engine's noise process, sampler and
// sampler options, and back. Each key is honoured or refused by name; unknown keys are refused unless
// null. Schedulers: DDPM, DDIM, PNDM (PLMS), EulerDiscrete, HeunDiscrete, DPMSolverMultistep.
import type { PredictionType, ProcessConfig } from '../../diffusion/process.js';
import type { SamplerOptions } from '../../diffusion/samplers/index.js';
import { DiffusersConfigError, DIFFUSERS_VERSION } from './config.js';

export type SchedulerClassName = 'DDPMScheduler' | 'DDIMScheduler' | 'PNDMScheduler' | 'EulerDiscreteScheduler' | 'HeunDiscreteScheduler' | 'DPMSolverMultistepScheduler';

/** Each scheduler as the engine's sampler, and its timestep_spacing default in diffusers. */
const SCHEDULERS: Record<SchedulerClassName, { sampler: string; spacing: string }> = {
  DDPMScheduler: { sampler: 'ddpm', spacing: 'leading' },
  DDIMScheduler: { sampler: 'ddim', spacing: 'leading' },
  PNDMScheduler: { sampler: 'plms', spacing: 'leading' },
  EulerDiscreteScheduler: { sampler: 'euler', spacing: 'linspace' },
  HeunDiscreteScheduler: { sampler: 'heun', spacing: 'linspace' },
  DPMSolverMultistepScheduler: { sampler: 'dpm++2m', spacing: 'linspace' },
};
export const SCHEDULER_CLASSES = Object.keys(SCHEDULERS) as SchedulerClassName[];

export interface SchedulerSetup {
  className: SchedulerClassName;
  /** The noise process (a discrete DDPM chain) with the network's prediction type. */
  process: ProcessConfig;
  sampler: string;
  samplerOptions: SamplerOptions;
}

const BETA_SCHEDULES: Record<string, ProcessConfig['betaSchedule']> = { linear: 'linear', scaled_linear: 'scaled_linear', squaredcos_cap_v2: 'cosine' };

/**
 * JSON as Python's json module writes it: diffusers' configs may hold -Infinity (DPM-Solver's
 * lambda_min_clipped), Infinity or NaN, which JSON.parse refuses; they are read as strings here.
 */
export function parsePythonJson(text: string, where: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text.replace(/(?<=[:,[]\s*)(-?Infinity|NaN)(?=\s*[,}\]])/g, '"$1"'));
  } catch (e) {
    throw new DiffusersConfigError(`${where}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new DiffusersConfigError(`${where}: not a JSON object`);
  return v as Record<string, unknown>;
}

/** A diffusers scheduler config as the engine's process, sampler and sampler options. */
export function readSchedulerConfig(cfg: Record<string, unknown>, where = 'scheduler_config.json'): SchedulerSetup {
  const className = cfg._class_name as SchedulerClassName;
  if (!SCHEDULER_CLASSES.includes(className)) {
    throw new DiffusersConfigError(`${where}: _class_name ${JSON.stringify(cfg._class_name)} is not supported; supported: ${SCHEDULER_CLASSES.join(', ')}`);
  }
  const fail = (key: string, why: string): never => {
    throw new DiffusersConfigError(`${where}: ${className} '${key}' = ${JSON.stringify(cfg[key])}: ${why}`);
  };
  const get = (key: string, def: unknown) => (cfg[key] === undefined ? def : cfg[key]);
  const only = (key: string, allowed: unknown[], why: string) => {
    const v = get(key, allowed[0]);
    if (!allowed.includes(v)) fail(key, `${why}; supported: ${allowed.map((a) => JSON.stringify(a)).join(', ')}`);
  };
  const num = (key: string, def: number) => {
    const v = get(key, def);
    if (typeof v !== 'number' || !Number.isFinite(v)) fail(key, 'expected a number');
    return v as number;
  };
  const bool = (key: string, def: boolean) => {
    const v = get(key, def);
    if (typeof v !== 'boolean') fail(key, 'expected true or false');
    return v as boolean;
  };
  const known = new Set(['num_train_timesteps', 'beta_start', 'beta_end', 'beta_schedule', 'trained_betas', 'prediction_type', 'timestep_spacing', 'steps_offset', 'rescale_betas_zero_snr']);

  // The chain.
  const T = get('num_train_timesteps', 1000);
  if (!(Number.isInteger(T) && (T as number) >= 1)) fail('num_train_timesteps', 'expected an integer >= 1');
  const schedule = BETA_SCHEDULES[String(get('beta_schedule', 'linear'))];
  if (!schedule) fail('beta_schedule', `supported: ${Object.keys(BETA_SCHEDULES).join(', ')}`);
  if (get('trained_betas', null) !== null) fail('trained_betas', 'explicit betas are not supported; use beta_schedule');
  only('rescale_betas_zero_snr', [false], 'zero-terminal-SNR rescaling is not supported');
  const prediction = get('prediction_type', 'epsilon') as PredictionType;
  if (!['epsilon', 'v_prediction', 'sample'].includes(prediction)) fail('prediction_type', 'supported: "epsilon", "v_prediction", "sample"');
  const process: ProcessConfig = {
    kind: 'ddpm', timesteps: T as number, betaSchedule: schedule, betaStart: num('beta_start', 0.0001), betaEnd: num('beta_end', 0.02), predictionType: prediction,
  };

  // The grid.
  const spacing = get('timestep_spacing', SCHEDULERS[className].spacing);
  if (!['leading', 'trailing', 'linspace'].includes(spacing as string)) fail('timestep_spacing', 'supported: "leading", "trailing", "linspace"');
  const offset = get('steps_offset', 0);
  if (!(Number.isInteger(offset) && (offset as number) >= 0)) fail('steps_offset', 'expected an integer >= 0');
  // Schedulers without an x̂0 clip (PNDM, Euler, DPM-Solver unless thresholding) say so explicitly, so
  // that the engine's own default (clip pixel models to [-1, 1]) does not add one.
  const o: SamplerOptions = { timestepSpacing: spacing as SamplerOptions['timestepSpacing'], stepsOffset: offset as number, clipSample: false };

  // x̂0 limits: thresholding wins over clip_sample, as in diffusers.
  const limits = (clipDefault: boolean) => {
    for (const k of ['clip_sample', 'clip_sample_range', 'thresholding', 'dynamic_thresholding_ratio', 'sample_max_value']) known.add(k);
    if (bool('thresholding', false)) {
      Object.assign(o, { thresholdRatio: num('dynamic_thresholding_ratio', 0.995), thresholdMax: num('sample_max_value', 1), clipRange: 1 });
    } else if (bool('clip_sample', clipDefault)) {
      Object.assign(o, { clipSample: true, clipRange: num('clip_sample_range', 1) });
    } else o.clipSample = false;
  };

  switch (className) {
    case 'DDPMScheduler': {
      known.add('variance_type');
      const v = get('variance_type', 'fixed_small');
      if (v === 'fixed_small' || v === 'fixed_small_log') o.varianceType = 'small';
      else if (v === 'fixed_large') o.varianceType = 'large';
      else fail('variance_type', 'supported: "fixed_small", "fixed_small_log", "fixed_large" (learned variances need a network that predicts them)');
      limits(true);
      break;
    }
    case 'DDIMScheduler':
      known.add('set_alpha_to_one');
      o.setAlphaToOne = bool('set_alpha_to_one', true);
      o.eta = 0;
      limits(true);
      break;
    case 'PNDMScheduler':
      known.add('set_alpha_to_one').add('skip_prk_steps');
      o.setAlphaToOne = bool('set_alpha_to_one', false);
      if (!bool('skip_prk_steps', false)) fail('skip_prk_steps', "PNDM's Runge-Kutta warm-up is not supported; the engine's PLMS starts with a pseudo improved-Euler step, as skip_prk_steps true does");
      break;
    case 'EulerDiscreteScheduler':
    case 'HeunDiscreteScheduler':
    case 'DPMSolverMultistepScheduler': {
      known.add('use_karras_sigmas');
      o.karras = bool('use_karras_sigmas', false);
      if (className === 'EulerDiscreteScheduler') {
        for (const k of ['interpolation_type', 'timestep_type', 'sigma_min', 'sigma_max']) known.add(k);
        only('interpolation_type', ['linear'], "'log_linear' σ grids are not supported");
        only('timestep_type', ['discrete'], "'continuous' timesteps are not supported");
        for (const k of ['sigma_min', 'sigma_max'] as const) {
          const v = get(k, null);
          if (v !== null) o[k === 'sigma_min' ? 'sigmaMin' : 'sigmaMax'] = num(k, 0);
        }
      } else if (className === 'HeunDiscreteScheduler') {
        limits(false);
      } else {
        for (const k of ['solver_order', 'algorithm_type', 'solver_type', 'lower_order_final', 'euler_at_final', 'use_lu_lambdas', 'final_sigmas_type', 'lambda_min_clipped', 'variance_type']) known.add(k);
        only('solver_order', [2], 'only the second-order multistep solver (2M) is supported');
        only('algorithm_type', ['dpmsolver++'], 'only DPM-Solver++ is supported');
        only('solver_type', ['midpoint'], "only the 'midpoint' second-order form is supported");
        only('use_lu_lambdas', [false], 'λ-uniform steps are not supported');
        only('final_sigmas_type', ['zero'], 'the last step goes to σ = 0');
        only('variance_type', [null], 'learned variances are not supported');
        const clip = get('lambda_min_clipped', '-Infinity');
        if (clip !== '-Infinity' && !(typeof clip === 'number' && clip <= -20)) fail('lambda_min_clipped', 'clipping λ is not supported (-Infinity, or a value below every λ of the chain)');
        // With the last step to σ = 0 the last step is first order whatever these say (diffusers forces it).
        bool('lower_order_final', true);
        bool('euler_at_final', false);
        known.add('thresholding').add('dynamic_thresholding_ratio').add('sample_max_value');
        if (bool('thresholding', false)) Object.assign(o, { thresholdRatio: num('dynamic_thresholding_ratio', 0.995), thresholdMax: num('sample_max_value', 1), clipRange: 1 });
      }
      break;
    }
  }
  for (const key of Object.keys(cfg)) {
    if (!key.startsWith('_') && !known.has(key) && cfg[key] !== null) fail(key, `not a ${className} option of diffusers ${DIFFUSERS_VERSION} that this loader knows; refused rather than ignored`);
  }
  return { className, process, sampler: SCHEDULERS[className].sampler, samplerOptions: o };
}

/**
 * The diffusers scheduler config for an engine process and sampler: the sampler's scheduler class,
 * the chain's betas, prediction type, x̂0 clipping, and the grid. The engine's own grid (no
 * timestepSpacing) is written as 'trailing', which visits the same timesteps (exactly so when the
 * step count divides T).
 */
export function exportSchedulerConfig(process: Required<ProcessConfig>, sampler = 'ddim', o: SamplerOptions = {}): Record<string, unknown> {
  if (process.kind !== 'ddpm') throw new DiffusersConfigError(`export: diffusers' schedulers run discrete DDPM chains; this model's process is '${process.kind}', so no scheduler_config.json is written`);
  const className = (Object.keys(SCHEDULERS) as SchedulerClassName[]).find((k) => SCHEDULERS[k].sampler === sampler);
  if (!className) throw new DiffusersConfigError(`export: sampler '${sampler}' has no diffusers scheduler; those that do: ${Object.values(SCHEDULERS).map((s) => s.sampler).join(', ')}`);
  const schedule = Object.keys(BETA_SCHEDULES).find((k) => BETA_SCHEDULES[k] === process.betaSchedule)!;
  const out: Record<string, unknown> = {
    _class_name: className, _diffusers_version: DIFFUSERS_VERSION,
    num_train_timesteps: process.timesteps, beta_start: process.betaStart, beta_end: process.betaEnd, beta_schedule: schedule,
    trained_betas: null, prediction_type: process.predictionType ?? 'epsilon',
    timestep_spacing: o.timestepSpacing ?? 'trailing', steps_offset: o.stepsOffset ?? 0, rescale_betas_zero_snr: false,
  };
  const limits = () => {
    if (o.thresholdRatio !== undefined) Object.assign(out, { thresholding: true, dynamic_thresholding_ratio: o.thresholdRatio, sample_max_value: o.thresholdMax ?? 1, clip_sample: false });
    else Object.assign(out, { thresholding: false, clip_sample: o.clipSample ?? false, clip_sample_range: o.clipRange ?? 1 });
  };
  switch (className) {
    case 'DDPMScheduler':
      out.variance_type = o.varianceType === 'large' ? 'fixed_large' : 'fixed_small';
      limits();
      break;
    case 'DDIMScheduler':
      out.set_alpha_to_one = o.setAlphaToOne ?? true;
      limits();
      break;
    case 'PNDMScheduler':
      Object.assign(out, { skip_prk_steps: true, set_alpha_to_one: o.setAlphaToOne ?? true });
      break;
    case 'EulerDiscreteScheduler':
      Object.assign(out, { use_karras_sigmas: o.karras ?? true, interpolation_type: 'linear', timestep_type: 'discrete', sigma_min: o.sigmaMin ?? null, sigma_max: o.sigmaMax ?? null, timestep_spacing: o.timestepSpacing ?? 'linspace' });
      break;
    case 'HeunDiscreteScheduler':
      Object.assign(out, { use_karras_sigmas: o.karras ?? true, clip_sample: o.clipSample ?? false, clip_sample_range: o.clipRange ?? 1, timestep_spacing: o.timestepSpacing ?? 'linspace' });
      break;
    case 'DPMSolverMultistepScheduler':
      Object.assign(out, {
        solver_order: 2, algorithm_type: 'dpmsolver++', solver_type: 'midpoint', lower_order_final: true, euler_at_final: false,
        use_karras_sigmas: o.karras ?? true, use_lu_lambdas: false, final_sigmas_type: 'zero', variance_type: null, timestep_spacing: o.timestepSpacing ?? 'linspace',
        thresholding: o.thresholdRatio !== undefined, dynamic_thresholding_ratio: o.thresholdRatio ?? 0.995, sample_max_value: o.thresholdMax ?? 1,
      });
      break;
  }
  return out;
}
