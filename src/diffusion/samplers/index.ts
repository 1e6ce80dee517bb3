import type { NoiseProcess } from '../process.js';
import { Sampler, SamplerError } from './types.js';
import { DDIMSampler, DDPMSampler, PLMSSampler } from './vp.js';
import { AnnealedLangevinSampler } from './langevin.js';
import { EulerMaruyamaSampler, PredictorCorrectorSampler, ProbabilityFlowSampler } from './sde.js';

export * from './types.js';
export { DDIMSampler, DDPMSampler, PLMSSampler, vpGrid } from './vp.js';
export { AnnealedLangevinSampler } from './langevin.js';
export { EulerMaruyamaSampler, PredictorCorrectorSampler, ProbabilityFlowSampler } from './sde.js';

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
}

const SAMPLERS: Record<string, (p: NoiseProcess, o: SamplerOptions) => Sampler> = {
  ddpm: (p, o) => new DDPMSampler(p, o),
  ddim: (p, o) => new DDIMSampler(p, o),
  plms: (p, o) => new PLMSSampler(p, o),
  langevin: (p, o) => new AnnealedLangevinSampler(p, o),
  'euler-maruyama': (p) => new EulerMaruyamaSampler(p),
  pc: (p, o) => new PredictorCorrectorSampler(p, o),
  ode: (p) => new ProbabilityFlowSampler(p),
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
