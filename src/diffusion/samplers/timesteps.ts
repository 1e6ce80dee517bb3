// Which training timesteps an n-step sampler visits, as diffusers' schedulers choose them
// (timestep_spacing, Lin et al. 2024, Table 2), and the σ view of a discrete chain that the σ-space
// samplers step through (σ = √((1 − ᾱ)/ᾱ), Karras et al. 2022).
import type { DiscreteVP } from '../process.js';
import { SamplerError } from './types.js';

export type TimestepSpacing = 'leading' | 'trailing' | 'linspace';
export const TIMESTEP_SPACINGS: readonly TimestepSpacing[] = ['leading', 'trailing', 'linspace'];

/** NumPy's round: halves to the even neighbour (np.round, ndarray.round), which diffusers' grids use. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** np.linspace(a, b, n). */
function linspace(a: number, b: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => (n === 1 ? a : a + ((b - a) * i) / (n - 1)));
}

/**
 * Timesteps noisiest first, as diffusers' set_timesteps makes them for each family of schedulers:
 * - 'discrete' (DDPM, DDIM, PNDM): whole steps; linspace rounds np.linspace(0, T−1, n).
 * - 'sigma' (Euler, Heun): linspace keeps the fractional float32 values.
 * - 'dpm' (DPM-Solver multistep): linspace and leading space n + 1 points and drop the last (t = 0).
 * 'leading' is (0..n−1)·⌊T/n⌋ + steps_offset; 'trailing' is round(T − i·T/n) − 1, from T − 1 down.
 */
export function spacedTimesteps(T: number, n: number, spacing: TimestepSpacing, stepsOffset: number, family: 'discrete' | 'sigma' | 'dpm'): number[] {
  if (!TIMESTEP_SPACINGS.includes(spacing)) throw new SamplerError(`timestepSpacing '${spacing}' is unknown; allowed values: ${TIMESTEP_SPACINGS.join(', ')}`);
  if (!(Number.isInteger(stepsOffset) && stepsOffset >= 0)) throw new SamplerError(`stepsOffset = ${stepsOffset} must be an integer >= 0`);
  let ts: number[];
  if (spacing === 'trailing') {
    // np.arange(T, 0, -T/n): start + i·step, not a running sum.
    ts = Array.from({ length: n }, (_, i) => roundHalfEven(T - (i * T) / n) - 1);
  } else if (family === 'dpm') {
    const pts = spacing === 'linspace' ? linspace(0, T - 1, n + 1).map(roundHalfEven) : Array.from({ length: n + 1 }, (_, i) => i * Math.floor(T / (n + 1)) + stepsOffset);
    ts = pts.reverse().slice(0, n);
  } else if (spacing === 'linspace') {
    const pts = linspace(0, T - 1, n);
    ts = (family === 'sigma' ? pts.map(Math.fround) : pts.map(roundHalfEven)).reverse();
  } else {
    ts = Array.from({ length: n }, (_, i) => i * Math.floor(T / n) + stepsOffset).reverse();
  }
  for (const t of ts) {
    if (!(t >= 0 && t <= T - 1)) throw new SamplerError(`timestep ${t} of a '${spacing}' grid of ${n} steps (steps offset ${stepsOffset}) is outside the chain's 0..${T - 1}`);
  }
  return ts;
}

/** σ of the chain at each training step: √((1 − ᾱ_t)/ᾱ_t), increasing with t. */
export function chainSigmas(p: DiscreteVP): Float64Array {
  return Float64Array.from(p.alphasCumprod, (ab) => Math.sqrt((1 - ab) / ab));
}

/** σ at a fractional timestep: linear interpolation between whole steps (np.interp, as diffusers). */
export function sigmaAt(sigmas: Float64Array, t: number): number {
  const lo = Math.max(0, Math.min(sigmas.length - 1, Math.floor(t)));
  const hi = Math.min(sigmas.length - 1, lo + 1);
  const w = t - lo;
  return sigmas[lo]! * (1 - w) + sigmas[hi]! * w;
}

/** The fractional timestep of σ: linear in log σ between whole steps, clamped to the chain (diffusers' _sigma_to_t). */
export function timestepOf(sigmas: Float64Array, sigma: number): number {
  const ls = Math.log(Math.max(sigma, 1e-10));
  const T = sigmas.length;
  let low = 0;
  for (let i = 0; i < T; i++) if (Math.log(sigmas[i]!) <= ls) low = i;
  low = Math.min(low, T - 2);
  const a = Math.log(sigmas[low]!), b = Math.log(sigmas[low + 1]!);
  const w = Math.min(1, Math.max(0, (a - ls) / (a - b)));
  return (1 - w) * low + w * (low + 1);
}

/** Karras et al. 2022, eq. 5: n noise levels from σmax to σmin, evenly spaced in σ^(1/ρ), ρ = 7. */
export function karrasSigmas(n: number, sigmaMin: number, sigmaMax: number, rho = 7): number[] {
  const lo = sigmaMin ** (1 / rho), hi = sigmaMax ** (1 / rho);
  return Array.from({ length: n }, (_, i) => (hi + (n === 1 ? 0 : i / (n - 1)) * (lo - hi)) ** rho);
}
