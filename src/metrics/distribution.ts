// How close a set of numbers is to a standard normal (an inverted x_T should look like the noise the
// sampler starts from), and the reconstruction error of images in [-1, 1]. Browser-safe.

/** erfc(x), Numerical Recipes' erfcc (Chebyshev fit): fractional error below 1.2e-7 everywhere. */
export function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? r : 2 - r;
}

/** Φ(x), the standard normal distribution function. */
export function normalCdf(x: number): number {
  return 0.5 * erfc(-x / Math.SQRT2);
}

/**
 * The Kolmogorov–Smirnov distance of the values' empirical distribution to N(0, 1): the largest
 * |F_n(x) − Φ(x)|, taken at the sorted values from both sides of each step. 0 for a perfect fit; for
 * n true normal draws it is about 0.87/√n on average (and below 1.36/√n 95% of the time).
 */
export function ksDistanceToNormal(values: ArrayLike<number>): number {
  const v = Float64Array.from(values).sort();
  const n = v.length;
  let d = 0;
  for (let i = 0; i < n; i++) {
    const f = normalCdf(v[i]!);
    d = Math.max(d, (i + 1) / n - f, f - i / n);
  }
  return d;
}

/** Mean and standard deviation (over n, float64) of the values. */
export function meanStd(values: ArrayLike<number>): { mean: number; std: number } {
  let m = 0;
  for (let i = 0; i < values.length; i++) m += values[i]!;
  m /= values.length;
  let v = 0;
  for (let i = 0; i < values.length; i++) v += (values[i]! - m) ** 2;
  return { mean: m, std: Math.sqrt(v / values.length) };
}

/** Mean squared difference of two equally long arrays (float64). */
export function mse(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`mse: ${a.length} values against ${b.length}`);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return s / a.length;
}

/** PSNR in dB of a mean squared error, for values spanning `range` (2 for images in [-1, 1]): 10·log10(range²/mse). */
export function psnr(meanSquaredError: number, range = 2): number {
  return 10 * Math.log10((range * range) / meanSquaredError);
}
