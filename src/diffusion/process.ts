// Noise processes: how data x0 becomes x_t = a(t)·x0 + b(t)·ε, ε ~ N(0, I), and what the network is
// told about t. Every process trains one ε-prediction network (the score is -ε̂/b), so DDPM, NCSN and
// the score SDEs differ only in how levels are drawn for training and visited when sampling.
//
// - 'ddpm': discrete variance-preserving chain of T steps with linear or cosine betas (Ho et al. 2020;
//   Nichol & Dhariwal 2021 for cosine). a = sqrt(ᾱ_t), b = sqrt(1 - ᾱ_t), model time t.
// - 'ncsn': noise-conditional score network (Song & Ermon 2019) over L geometric sigmas; a = 1, b = σ_i.
//   Denoising score matching weighted by σ² equals the ε-prediction loss: σ²‖s + (x̃ - x)/σ²‖² =
//   ‖σ·s + ε‖² = ‖ε - ε̂‖² with s = -ε̂/σ (NCSNv2's s(x, σ) = s(x)/σ parameterisation).
// - 'vp-sde' / 've-sde': continuous time t in [eps, 1] (Song et al. 2021, score SDEs): VP with
//   β(t) = βmin + t(βmax - βmin), ᾱ(t) = exp(-βmin·t - (βmax - βmin)·t²/2); VE with σ(t) = σmin·(σmax/σmin)^t.
//
// The network sees x_t scaled by c_in = 1/sqrt(a² + b²) (1 for VP; keeps VE inputs of σ up to 50 in
// range, as Karras et al. 2022 do) and a time in [0, 999]: t for DDPM, 999·t for the SDEs, and
// 999·ln(σ/σmin)/ln(σmax/σmin) for NCSN, so that all processes give the time embedding the same range.

export type ProcessKind = 'ddpm' | 'ncsn' | 'vp-sde' | 've-sde';
export const PROCESS_KINDS: readonly ProcessKind[] = ['ddpm', 'ncsn', 'vp-sde', 've-sde'];

/**
 * What the network predicts (diffusers' prediction_type): the noise ε ('epsilon'), the velocity
 * v = α·ε − σ·x0 of Salimans & Ho 2022 ('v_prediction', α and σ of the variance-preserving view), or
 * the clean sample x0 ('sample'). Samplers all work from ε̂; the denoiser converts.
 */
export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';
export const PREDICTION_TYPES: readonly PredictionType[] = ['epsilon', 'v_prediction', 'sample'];

export interface ProcessConfig {
  kind: ProcessKind;
  /** What the network predicts; 'epsilon' by default (and in checkpoints that do not record it). */
  predictionType?: PredictionType;
  /**
   * ddpm: number of steps T and beta schedule: 'linear' (DDPM), 'cosine' (improved DDPM; diffusers'
   * squaredcos_cap_v2), 'scaled_linear' (linear in √β, latent diffusion's).
   */
  timesteps?: number;
  betaSchedule?: 'linear' | 'cosine' | 'scaled_linear';
  betaStart?: number;
  betaEnd?: number;
  /** ncsn and ve-sde: noise levels σmin..σmax; ncsn: their number. */
  sigmaMin?: number;
  sigmaMax?: number;
  levels?: number;
  /** vp-sde: βmin, βmax. */
  betaMin?: number;
  betaMax?: number;
  /** SDEs: smallest time used in training and sampling (t = 0 is singular for VE and for scores). */
  tMin?: number;
}

/** One noise level: x = a·x0 + b·ε, and the time the network is given. */
export interface Level {
  a: number;
  b: number;
  time: number;
}

export class ConfigError extends Error {
  constructor(what: string, message: string) {
    super(`${what}: ${message}`);
    this.name = 'ConfigError';
  }
}

export abstract class NoiseProcess {
  abstract readonly kind: ProcessKind;
  /** 'vp': a² + b² = 1; 've': a = 1. Samplers check this. */
  abstract readonly family: 'vp' | 've';
  /** The full configuration, defaults filled in (stored in checkpoints). */
  abstract readonly config: Required<ProcessConfig>;
  /** The level a training example gets from a uniform number u in [0, 1). */
  abstract trainLevel(u: number): Level;
}

/** Discrete DDPM chain. Step t = 0..T-1; ᾱ_t = Π_{s ≤ t} (1 - β_s). */
export class DiscreteVP extends NoiseProcess {
  readonly kind = 'ddpm' as const;
  readonly family = 'vp' as const;
  readonly config: Required<ProcessConfig>;
  readonly betas: Float64Array;
  readonly alphasCumprod: Float64Array;
  constructor(c: Required<ProcessConfig>) {
    super();
    this.config = c;
    this.betas = betaSchedule(c.betaSchedule, c.timesteps, c.betaStart, c.betaEnd);
    this.alphasCumprod = new Float64Array(c.timesteps);
    let p = 1;
    this.betas.forEach((b, t) => (this.alphasCumprod[t] = p *= 1 - b));
  }
  get T(): number {
    return this.config.timesteps;
  }
  /** ᾱ at step t; ᾱ_{-1} = 1 (the clean data). */
  alphaBar(t: number): number {
    return t < 0 ? 1 : this.alphasCumprod[t]!;
  }
  levelAt(t: number): Level {
    const ab = this.alphaBar(t);
    return { a: Math.sqrt(ab), b: Math.sqrt(1 - ab), time: t };
  }
  trainLevel(u: number): Level {
    return this.levelAt(Math.min(this.T - 1, Math.floor(u * this.T)));
  }
}

/** NCSN's geometric noise levels σ_0 = σmax > ... > σ_{L-1} = σmin. */
export class NCSNProcess extends NoiseProcess {
  readonly kind = 'ncsn' as const;
  readonly family = 've' as const;
  readonly config: Required<ProcessConfig>;
  readonly sigmas: Float64Array;
  constructor(c: Required<ProcessConfig>) {
    super();
    this.config = c;
    const L = c.levels;
    this.sigmas = Float64Array.from({ length: L }, (_, i) => c.sigmaMax * (c.sigmaMin / c.sigmaMax) ** (L === 1 ? 0 : i / (L - 1)));
  }
  levelOfSigma(sigma: number): Level {
    const { sigmaMin, sigmaMax } = this.config;
    return { a: 1, b: sigma, time: sigmaTime(sigma, sigmaMin, sigmaMax) };
  }
  trainLevel(u: number): Level {
    return this.levelOfSigma(this.sigmas[Math.min(this.sigmas.length - 1, Math.floor(u * this.sigmas.length))]!);
  }
}

/** Continuous-time SDE (VP or VE) in t ∈ [tMin, 1]: drift f(x, t) = -½β(t)·x (VP) or 0 (VE), diffusion g(t). */
export abstract class SDEProcess extends NoiseProcess {
  abstract level(t: number): Level;
  /** f(x, t) = drift(t)·x. */
  abstract drift(t: number): number;
  /** g(t)². */
  abstract g2(t: number): number;
  trainLevel(u: number): Level {
    const t0 = this.config.tMin;
    return this.level(t0 + (1 - t0) * u);
  }
}

export class VPSDE extends SDEProcess {
  readonly kind = 'vp-sde' as const;
  readonly family = 'vp' as const;
  constructor(readonly config: Required<ProcessConfig>) {
    super();
  }
  beta(t: number): number {
    return this.config.betaMin + t * (this.config.betaMax - this.config.betaMin);
  }
  alphaBar(t: number): number {
    const { betaMin, betaMax } = this.config;
    return Math.exp(-betaMin * t - 0.5 * (betaMax - betaMin) * t * t);
  }
  level(t: number): Level {
    const ab = this.alphaBar(t);
    return { a: Math.sqrt(ab), b: Math.sqrt(1 - ab), time: 999 * t };
  }
  drift(t: number): number {
    return -0.5 * this.beta(t);
  }
  g2(t: number): number {
    return this.beta(t);
  }
}

export class VESDE extends SDEProcess {
  readonly kind = 've-sde' as const;
  readonly family = 've' as const;
  constructor(readonly config: Required<ProcessConfig>) {
    super();
  }
  sigma(t: number): number {
    const { sigmaMin, sigmaMax } = this.config;
    return sigmaMin * (sigmaMax / sigmaMin) ** t;
  }
  level(t: number): Level {
    return { a: 1, b: this.sigma(t), time: 999 * t };
  }
  drift(): number {
    return 0;
  }
  g2(t: number): number {
    const { sigmaMin, sigmaMax } = this.config;
    return this.sigma(t) ** 2 * 2 * Math.log(sigmaMax / sigmaMin);
  }
}

/** The model time of noise level σ on a log scale from σmin (0) to σmax (999). */
function sigmaTime(sigma: number, sigmaMin: number, sigmaMax: number): number {
  return (999 * Math.log(sigma / sigmaMin)) / Math.log(sigmaMax / sigmaMin);
}

/**
 * β_t for t = 0..T-1: linear from start to end (DDPM); linear in √β from √start to √end, squared
 * (latent diffusion's 'scaled_linear'); or from the cosine ᾱ (improved DDPM, s = 0.008, β ≤ 0.999).
 */
export function betaSchedule(kind: 'linear' | 'cosine' | 'scaled_linear', T: number, start: number, end: number): Float64Array {
  const b = new Float64Array(T);
  if (kind === 'linear') {
    for (let t = 0; t < T; t++) b[t] = T === 1 ? start : start + ((end - start) * t) / (T - 1);
  } else if (kind === 'scaled_linear') {
    const [s, e] = [Math.sqrt(start), Math.sqrt(end)];
    for (let t = 0; t < T; t++) b[t] = (T === 1 ? s : s + ((e - s) * t) / (T - 1)) ** 2;
  } else {
    const s = 0.008;
    const f = (t: number) => Math.cos((((t / T + s) / (1 + s)) * Math.PI) / 2) ** 2;
    for (let t = 0; t < T; t++) b[t] = Math.min(1 - f(t + 1) / f(t), 0.999);
  }
  return b;
}

const DEFAULTS: Record<ProcessKind, Required<ProcessConfig>> = {
  ddpm: { kind: 'ddpm', predictionType: 'epsilon', timesteps: 1000, betaSchedule: 'linear', betaStart: 1e-4, betaEnd: 0.02, sigmaMin: 0, sigmaMax: 0, levels: 0, betaMin: 0, betaMax: 0, tMin: 0 },
  ncsn: { kind: 'ncsn', predictionType: 'epsilon', timesteps: 0, betaSchedule: 'linear', betaStart: 0, betaEnd: 0, sigmaMin: 0.01, sigmaMax: 1, levels: 10, betaMin: 0, betaMax: 0, tMin: 0 },
  'vp-sde': { kind: 'vp-sde', predictionType: 'epsilon', timesteps: 0, betaSchedule: 'linear', betaStart: 0, betaEnd: 0, sigmaMin: 0, sigmaMax: 0, levels: 0, betaMin: 0.1, betaMax: 20, tMin: 1e-3 },
  've-sde': { kind: 've-sde', predictionType: 'epsilon', timesteps: 0, betaSchedule: 'linear', betaStart: 0, betaEnd: 0, sigmaMin: 0.01, sigmaMax: 50, levels: 0, betaMin: 0, betaMax: 0, tMin: 1e-5 },
};

/** Build a process from a (partial) config; errors name the option and its allowed values. */
export function makeProcess(config: ProcessConfig | ProcessKind): NoiseProcess {
  const c0 = typeof config === 'string' ? { kind: config } : config;
  if (!PROCESS_KINDS.includes(c0.kind)) throw new ConfigError('process', `kind '${c0.kind}' is unknown; allowed values: ${PROCESS_KINDS.join(', ')}`);
  const unknown = Object.keys(c0).filter((k) => !(k in DEFAULTS.ddpm));
  if (unknown.length) throw new ConfigError('process', `config has unknown keys ${unknown.slice(0, 5).map((k) => `'${k.slice(0, 60)}'`).join(', ')}; known keys: ${Object.keys(DEFAULTS.ddpm).join(', ')}`);
  const c = { ...DEFAULTS[c0.kind], ...c0 } as Required<ProcessConfig>;
  const bad = (k: keyof ProcessConfig, why: string) => new ConfigError('process', `${k} = ${JSON.stringify(c[k])}: ${why}`);
  if (!PREDICTION_TYPES.includes(c.predictionType)) throw bad('predictionType', `allowed values: ${PREDICTION_TYPES.join(', ')}`);
  if (c.predictionType === 'v_prediction' && c.kind !== 'ddpm' && c.kind !== 'vp-sde') throw bad('predictionType', `v_prediction is defined for variance-preserving processes (ddpm, vp-sde); this one is '${c.kind}'`);
  switch (c.kind) {
    case 'ddpm':
      if (!Number.isInteger(c.timesteps) || c.timesteps < 1) throw bad('timesteps', 'must be a positive integer');
      if (!['linear', 'cosine', 'scaled_linear'].includes(c.betaSchedule)) throw bad('betaSchedule', "allowed values: 'linear', 'cosine', 'scaled_linear'");
      if (!(c.betaStart > 0 && c.betaEnd < 1 && c.betaStart <= c.betaEnd)) throw bad('betaStart', 'need 0 < betaStart <= betaEnd < 1');
      return new DiscreteVP(c);
    case 'ncsn':
      if (!Number.isInteger(c.levels) || c.levels < 1) throw bad('levels', 'must be a positive integer');
      if (!(c.sigmaMin > 0 && c.sigmaMax > c.sigmaMin)) throw bad('sigmaMin', 'need 0 < sigmaMin < sigmaMax');
      return new NCSNProcess(c);
    case 'vp-sde':
      if (!(c.betaMin > 0 && c.betaMax > c.betaMin)) throw bad('betaMin', 'need 0 < betaMin < betaMax');
      if (!(c.tMin > 0 && c.tMin < 1)) throw bad('tMin', 'must be in (0, 1)');
      return new VPSDE(c);
    case 've-sde':
      if (!(c.sigmaMin > 0 && c.sigmaMax > c.sigmaMin)) throw bad('sigmaMin', 'need 0 < sigmaMin < sigmaMax');
      if (!(c.tMin > 0 && c.tMin < 1)) throw bad('tMin', 'must be in (0, 1)');
      return new VESDE(c);
  }
}
