// Float64 reference for the samplers on one-dimensional Gaussian data N(μ, s²) with the optimal
// denoiser ε̂(x) = k·(x - a·μ), k = b/(a²s² + b²). Every step of these samplers is then affine in x
// plus independent noise, so the output distribution is Gaussian and its moments follow exactly.
// The steps are written here again from the papers' equations (not taken from the samplers' plans),
// with the schedule values from the process objects.
import { DiscreteVP, NCSNProcess, NoiseProcess, SDEProcess, VPSDE } from '../src/diffusion/process.js';
import { randomRef } from './reference/random.js';

/**
 * A quantity p·x_T + q + r·n: x_T is the initial noise ~ N(0, std²), n the noise the steps have
 * added so far ~ N(0, W), independent of x_T. Within a step everything is linear in (x_T, n); a step
 * that draws fresh noise z folds it in at its end (n' = r·n + σ·z).
 */
interface Aff {
  p: number;
  q: number;
  r: number;
}

const add = (...xs: [Aff, number][]): Aff => ({
  p: xs.reduce((s, [x, c]) => s + c * x.p, 0),
  q: xs.reduce((s, [x, c]) => s + c * x.q, 0),
  r: xs.reduce((s, [x, c]) => s + c * x.r, 0),
});

/** The optimal ε̂ at level (a, b) for data N(μ, s²). */
function eps(x: Aff, a: number, b: number, mu: number, s2: number): Aff {
  const k = b / (a * a * s2 + b * b);
  return { p: k * x.p, q: k * (x.q - a * mu), r: k * x.r };
}

export interface RefOptions {
  eta?: number;
  stepSize?: number;
  /** DDPM/DDIM/PLMS on diffusers' grids: timesteps of this spacing, each step to t − ⌊T/n⌋. */
  timestepSpacing?: 'leading' | 'trailing' | 'linspace';
  stepsOffset?: number;
  setAlphaToOne?: boolean;
  varianceType?: 'small' | 'large';
  /** euler, heun, dpm++2m: Karras σ (default) or σ at linspace timesteps. */
  karras?: boolean;
}

/**
 * diffusers' timestep grids, written out again from its set_timesteps (not the engine's code):
 * leading (0..n−1)·⌊T/n⌋ + offset, trailing round(T − i·T/n) − 1, linspace round(i·(T − 1)/(n − 1)),
 * noisiest first; halves round to even, as NumPy does.
 */
function diffusersGrid(T: number, n: number, spacing: string, offset: number): number[] {
  const even = (v: number) => (Math.abs(v - Math.trunc(v)) === 0.5 ? 2 * Math.round(v / 2) : Math.round(v));
  if (spacing === 'leading') return Array.from({ length: n }, (_, i) => (n - 1 - i) * Math.floor(T / n) + offset);
  if (spacing === 'trailing') return Array.from({ length: n }, (_, i) => even(T - (i * T) / n) - 1);
  return Array.from({ length: n }, (_, i) => even(((n - 1 - i) * (T - 1)) / Math.max(n - 1, 1)));
}

/** σ = √((1 − ᾱ)/ᾱ) of n steps from σ(T − 1) to σ(0), Karras et al. eq. 5 with ρ = 7, then 0. */
function karras(process: DiscreteVP, n: number): number[] {
  const sig = (t: number) => Math.sqrt((1 - process.alphasCumprod[t]!) / process.alphasCumprod[t]!);
  const [lo, hi] = [sig(0) ** (1 / 7), sig(process.T - 1) ** (1 / 7)];
  return [...Array.from({ length: n }, (_, i) => (hi + (n === 1 ? 0 : i / (n - 1)) * (lo - hi)) ** 7), 0];
}

/** σ at linspace timesteps (whole or fractional: σ interpolated linearly between steps), then 0. */
function linspaceSigmas(process: DiscreteVP, n: number): number[] {
  const sig = (t: number) => Math.sqrt((1 - process.alphasCumprod[t]!) / process.alphasCumprod[t]!);
  return [...Array.from({ length: n }, (_, i) => {
    const t = ((n - 1 - i) * (process.T - 1)) / Math.max(n - 1, 1);
    const lo = Math.floor(t);
    return lo + 1 < process.T ? sig(lo) * (1 - (t - lo)) + sig(lo + 1) * (t - lo) : sig(lo);
  }), 0];
}

/** Mean and variance of the sampler's output for data N(mu, s2). */
export function referenceMoments(sampler: string, process: NoiseProcess, steps: number, mu: number, s2: number, o: RefOptions = {}): { mean: number; variance: number } {
  let x: Aff = { p: 1, q: 0, r: 0 };
  let std = 1;
  let W = 0;
  /** y plus fresh noise of standard deviation sigma, as the new accumulated noise. */
  const withNoise = (y: Aff, sigma: number): Aff => {
    W = y.r * y.r * W + sigma * sigma;
    return { p: y.p, q: y.q, r: W > 0 ? 1 : 0 };
  };
  const e = (y: Aff, a: number, b: number) => eps(y, a, b, mu, s2);

  if (sampler === 'ddpm' || sampler === 'ddim' || sampler === 'plms') {
    // ᾱ on the sampler's grid, noisiest first, then 1.
    let ab: number[];
    let abNext: number[] | null = null;
    if (process instanceof DiscreteVP && o.timestepSpacing) {
      const T = process.T;
      const ts = diffusersGrid(T, steps, o.timestepSpacing, o.stepsOffset ?? 0);
      const final = sampler === 'ddpm' || (o.setAlphaToOne ?? true) ? 1 : process.alphasCumprod[0]!;
      ab = ts.map((t) => process.alphasCumprod[t]!);
      abNext = ts.map((t) => (t - Math.floor(T / steps) >= 0 ? process.alphasCumprod[t - Math.floor(T / steps)]! : final));
    } else if (process instanceof DiscreteVP) {
      const T = process.T;
      ab = Array.from({ length: steps }, (_, i) => process.alphasCumprod[Math.round(T - (i * T) / steps) - 1]!);
    } else if (process instanceof VPSDE) {
      const t0 = process.config.tMin;
      ab = Array.from({ length: steps }, (_, i) => process.alphaBar(steps === 1 ? 1 : 1 - (i * (1 - t0)) / (steps - 1)));
    } else throw new Error('not VP');
    ab.push(1);
    const past: Aff[] = [];
    for (let i = 0; i < steps; i++) {
      const at = ab[i]!, ap = abNext ? abNext[i]! : ab[i + 1]!;
      const a = Math.sqrt(at), b = Math.sqrt(1 - at);
      const ddimStep = (y: Aff, ey: Aff, sigma: number): Aff => {
        const x0 = add([y, 1 / a], [ey, -b / a]); // eq. 9 of DDIM
        const det = add([x0, Math.sqrt(ap)], [ey, Math.sqrt(Math.max(1 - ap - sigma * sigma, 0))]); // eq. 12
        return sigma > 0 ? withNoise(det, sigma) : det;
      };
      const ex = e(x, a, b);
      if (sampler === 'ddpm') {
        // Ho et al. eqs. 6-7 on the respaced chain.
        const beta = 1 - at / ap;
        const x0 = add([x, 1 / a], [ex, -b / a]);
        const mean = add([x0, (Math.sqrt(ap) * beta) / (1 - at)], [x, (Math.sqrt(1 - beta) * (1 - ap)) / (1 - at)]);
        x = withNoise(mean, Math.sqrt(o.varianceType === 'large' ? beta : (beta * (1 - ap)) / (1 - at)));
      } else if (sampler === 'ddim') {
        const eta = o.eta ?? 0;
        x = ddimStep(x, ex, eta * Math.sqrt(((1 - ap) / (1 - at)) * (1 - at / ap))); // eq. 16
      } else {
        // PLMS (Liu et al. 2022): Adams-Bashforth on ε, pseudo improved Euler first.
        let ep: Aff;
        if (past.length === 0) {
          const xn = ddimStep(x, ex, 0);
          ep = add([ex, 0.5], [e(xn, Math.sqrt(ap), Math.sqrt(Math.max(1 - ap, 1e-12))), 0.5]);
        } else if (past.length === 1) ep = add([ex, 3 / 2], [past[0]!, -1 / 2]);
        else if (past.length === 2) ep = add([ex, 23 / 12], [past[0]!, -16 / 12], [past[1]!, 5 / 12]);
        else ep = add([ex, 55 / 24], [past[0]!, -59 / 24], [past[1]!, 37 / 24], [past[2]!, -9 / 24]);
        past.unshift(ex);
        x = ddimStep(x, ep, 0);
      }
    }
  } else if (sampler === 'langevin') {
    if (!(process instanceof NCSNProcess)) throw new Error('not NCSN');
    const sig = Array.from(process.sigmas);
    const sL = sig[sig.length - 1]!;
    std = sig[0]!;
    const epsStep = o.stepSize ?? 2e-5;
    for (const s of sig) {
      const alpha = (epsStep * s * s) / (sL * sL); // Song & Ermon Alg. 1
      for (let t = 0; t < steps; t++) x = withNoise(add([x, 1], [e(x, 1, s), -alpha / (2 * s)]), Math.sqrt(alpha));
    }
    x = add([x, 1], [e(x, 1, sL), -sL]);
  } else if (sampler === 'euler-maruyama' || sampler === 'ode') {
    if (!(process instanceof SDEProcess)) throw new Error('not an SDE');
    const sde = process;
    const t0 = sde.config.tMin;
    const l1 = sde.level(1);
    std = Math.sqrt(l1.b * l1.b + (sde.family === 'vp' ? l1.a * l1.a : 0));
    const ts = Array.from({ length: steps + 1 }, (_, i) => 1 - (i * (1 - t0)) / steps);
    // dx = [f - g²s]dt + g dw (reverse SDE) or [f - g²s/2]dt (probability flow), s = -ε̂/b.
    const velocity = (y: Aff, t: number, half: boolean): Aff => {
      const l = sde.level(t);
      return add([y, sde.drift(t)], [e(y, l.a, l.b), ((half ? 0.5 : 1) * sde.g2(t)) / l.b]);
    };
    for (let i = 0; i < steps; i++) {
      const t = ts[i]!, tn = ts[i + 1]!, h = tn - t;
      if (sampler === 'euler-maruyama') x = withNoise(add([x, 1], [velocity(x, t, false), h]), Math.sqrt(sde.g2(t) * -h));
      else {
        const v1 = velocity(x, t, true);
        const xe = add([x, 1], [v1, h]);
        x = add([x, 1], [v1, h / 2], [velocity(xe, tn, true), h / 2]);
      }
    }
    const l = sde.level(t0);
    x = add([x, 1 / l.a], [e(x, l.a, l.b), -l.b / l.a]);
  } else if (sampler === 'euler' || sampler === 'heun') {
    // The probability-flow ODE dx/dσ = (x − x̂0)/σ = ε̂ in x = x0 + σ·ε (a = 1, b = σ): Karras et al. 2022, Algorithm 1.
    if (!(process instanceof DiscreteVP)) throw new Error('not discrete');
    const sig = o.karras === false ? linspaceSigmas(process, steps) : karras(process, steps);
    std = Math.sqrt(sig[0]! ** 2 + 1);
    for (let i = 0; i < steps; i++) {
      const [s0, s1] = [sig[i]!, sig[i + 1]!];
      const d1 = e(x, 1, s0);
      const xe = add([x, 1], [d1, s1 - s0]);
      x = sampler === 'heun' && s1 > 0 ? add([x, 1], [d1, (s1 - s0) / 2], [e(xe, 1, s1), (s1 - s0) / 2]) : xe;
    }
  } else if (sampler === 'dpm++2m') {
    // Lu et al. 2022 (DPM-Solver++), multistep second order in λ = ln(α/σ_VP) on x_VP, first order on the first and last steps.
    if (!(process instanceof DiscreteVP)) throw new Error('not discrete');
    const sig = o.karras === false ? linspaceSigmas(process, steps) : karras(process, steps);
    const alpha = (s: number) => 1 / Math.sqrt(1 + s * s);
    let prev: Aff | null = null;
    for (let i = 0; i < steps; i++) {
      const [s0, s1] = [sig[i]!, sig[i + 1]!];
      const [a0, a1] = [alpha(s0), alpha(s1)];
      const x0 = add([x, 1 / a0], [e(x, a0, s0 * a0), -s0]); // (x − σ_VP·ε̂)/α with σ_VP = σ·α
      if (s1 === 0) {
        x = x0;
        break;
      }
      const h = Math.log(s0 / s1);
      let D = x0;
      if (prev && i > 0) {
        const r = Math.log(sig[i - 1]! / s0) / h;
        D = add([x0, 1 + 1 / (2 * r)], [prev, -1 / (2 * r)]);
      }
      x = add([x, (s1 * a1) / (s0 * a0)], [D, -a1 * (Math.exp(-h) - 1)]);
      prev = x0;
    }
  } else throw new Error(`no reference for ${sampler}`);
  return { mean: x.q, variance: x.p * x.p * std * std + x.r * x.r * W };
}

/**
 * The predictor–corrector sampler's output for one batch, in float64, driven by the same noise the
 * engine draws (randomRef with the loop's seed, the step's counter and stream): Song et al. 2021,
 * Algorithms 2 (VE) and 3 (VP), corrector first. Its step size depends on the batch's norms, so its
 * output is not Gaussian in closed form; this follows each sample's trajectory instead. The noise:
 * x_T from stream 0x7fff0000 at counter 0 (times the process's initial std); step i draws from
 * counter i, stream 1 (corrector z) then 2 (predictor z); the last step is Tweedie's denoising at tMin.
 */
export function pcTrajectoryRef(process: NoiseProcess, steps: number, snr: number, mu: ArrayLike<number>, s2: ArrayLike<number>, batch: number, seed: number): Float64Array {
  if (!(process instanceof SDEProcess)) throw new Error('not an SDE');
  const sde = process;
  const D = mu.length;
  const n = batch * D;
  const t0 = sde.config.tMin;
  const l1 = sde.level(1);
  const std = Math.sqrt(l1.b * l1.b + (sde.family === 'vp' ? l1.a * l1.a : 0));
  const x = randomRef(seed, 0, 0x7fff0000, n, 'normal').map((v) => v * std);
  /** The optimal ε̂ for data N(μ, s²) at level (a, b), elementwise. */
  const epsOf = (y: Float64Array, a: number, b: number) => y.map((v, i) => (b * (v - a * mu[i % D]!)) / (a * a * s2[i % D]! + b * b));
  /** Mean over the batch of each sample's L2 norm. */
  const meanNorm = (v: Float64Array) => {
    let total = 0;
    for (let s = 0; s < batch; s++) {
      let sq = 0;
      for (let d = 0; d < D; d++) sq += v[s * D + d]! ** 2;
      total += Math.sqrt(sq);
    }
    return total / batch;
  };
  for (let i = 0; i < steps; i++) {
    const t = 1 - (i * (1 - t0)) / steps;
    const h = (1 - t0) / steps; // the step back in time
    const { a, b } = sde.level(t);
    const g2 = sde.g2(t);
    // Corrector (Langevin): s = -ε̂/b, ε = 2α(r‖z‖/‖s‖)², x ← x + ε·s + sqrt(2ε)·z; α = 1 - β(t)Δ for VP, 1 for VE.
    const score = epsOf(x, a, b).map((e) => -e / b);
    const z = randomRef(seed, i, 1, n, 'normal');
    const alpha = sde.family === 'vp' ? 1 - g2 * h : 1;
    const stepSize = 2 * alpha * ((snr * meanNorm(z)) / meanNorm(score)) ** 2;
    for (let k = 0; k < n; k++) x[k] = x[k]! + stepSize * score[k]! + Math.sqrt(2 * stepSize) * z[k]!;
    // Predictor (Euler–Maruyama on the reverse SDE): x ← x - [f(t)x - g²(t)·s(x)]·h + g(t)·sqrt(h)·z.
    const e = epsOf(x, a, b);
    const zp = randomRef(seed, i, 2, n, 'normal');
    const f = sde.drift(t);
    for (let k = 0; k < n; k++) x[k] = x[k]! - (f * x[k]! + (g2 * e[k]!) / b) * h + Math.sqrt(g2 * h) * zp[k]!;
  }
  const { a, b } = sde.level(t0);
  const e = epsOf(x, a, b);
  return x.map((v, k) => (v - b * e[k]!) / a);
}
