import type { NoiseProcess } from '../process.js';
import { Sampler, SamplerError } from './types.js';
import { DDIMSampler, DDPMSampler, PLMSSampler } from './vp.js';
import { AnnealedLangevinSampler } from './langevin.js';
import { EulerMaruyamaSampler, PredictorCorrectorSampler, ProbabilityFlowSampler } from './sde.js';
import { DPMSolverPP2MSampler, EulerSampler, HeunSampler } from './sigma.js';
import type { TimestepSpacing } from './timesteps.js';

export * from './types.js';
export { DDIMSampler, DDPMSampler, PLMSSampler, vpGrid } from './vp.js';
export { AnnealedLangevinSampler } from './langevin.js';
export { EulerMaruyamaSampler, PredictorCorrectorSampler, ProbabilityFlowSampler } from './sde.js';
export { DPMSolverPP2MSampler, EulerSampler, HeunSampler, sigmaGrid } from './sigma.js';
export { spacedTimesteps, karrasSigmas, TIMESTEP_SPACINGS } from './timesteps.js';
export type { TimestepSpacing } from './timesteps.js';

/** Options of every sampler; each takes the ones it knows. */
export interface SamplerOptions {
  eta?: number;
  clipSample?: boolean;
  clipRange?: number;
  thresholdRatio?: number;
  thresholdMax?: number;
  stepSize?: number;
  levels?: number;
  denoise?: boolean;
  snr?: number;
  correctorSteps?: number;
  /** ddpm, ddim, plms, euler, heun, dpm++2m: diffusers' timestep grid (see VPSamplerOptions, SigmaSamplerOptions). */
  timestepSpacing?: TimestepSpacing;
  stepsOffset?: number;
  /** ddim, plms with timestepSpacing: ᾱ after the last step 1 (default) or ᾱ_0. */
  setAlphaToOne?: boolean;
  /** ddpm: 'small' (β̃, default) or 'large' (β) reverse variance. */
  varianceType?: 'small' | 'large';
  /** euler, heun, dpm++2m: Karras σ spacing (default true), and its range. */
  karras?: boolean;
  sigmaMin?: number;
  sigmaMax?: number;
}

const SAMPLERS: Record<string, (p: NoiseProcess, o: SamplerOptions) => Sampler> = {
  ddpm: (p, o) => new DDPMSampler(p, o),
  ddim: (p, o) => new DDIMSampler(p, o),
  plms: (p, o) => new PLMSSampler(p, o),
  langevin: (p, o) => new AnnealedLangevinSampler(p, o),
  'euler-maruyama': (p) => new EulerMaruyamaSampler(p),
  pc: (p, o) => new PredictorCorrectorSampler(p, o),
  ode: (p) => new ProbabilityFlowSampler(p),
  euler: (p, o) => new EulerSampler(p, o),
  heun: (p, o) => new HeunSampler(p, o),
  'dpm++2m': (p, o) => new DPMSolverPP2MSampler(p, o),
};

export const SAMPLER_NAMES = Object.keys(SAMPLERS);

/** The samplers that work with a process of this kind. */
export function samplersFor(process: NoiseProcess): string[] {
  return SAMPLER_NAMES.filter((n) => {
    try {
      SAMPLERS[n]!(process, {});
      return true;
    } catch {
      return false;
    }
  });
}

/** A sampler by name; an unknown name lists the allowed values. */
export function makeSampler(name: string, process: NoiseProcess, opts: SamplerOptions = {}): Sampler {
  const f = SAMPLERS[name];
  if (!f) throw new SamplerError(`sampler '${name}' is unknown; allowed values: ${SAMPLER_NAMES.join(', ')}`);
  return f(process, opts);
}
