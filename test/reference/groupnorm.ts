// float64 references of kernels/groupnorm.ts, for the tests only (not shipped with the package).
import { groupNormDims, type GroupNormDims } from '../../kernels/groupnorm.js';

const sig = (z: number) => 1 / (1 + Math.exp(-z));

/** Per group (n, g): mean and rstd in float64, two-pass. */
function refStats(x: Float64Array, d: GroupNormDims, eps: number): { mean: Float64Array; rstd: Float64Array } {
  const L = (d.c / d.groups) * d.s;
  const blocks = d.n * d.groups;
  const mean = new Float64Array(blocks);
  const rstd = new Float64Array(blocks);
  for (let b = 0; b < blocks; b++) {
    let m = 0;
    for (let i = 0; i < L; i++) m += x[b * L + i]!;
    m /= L;
    let v = 0;
    for (let i = 0; i < L; i++) v += (x[b * L + i]! - m) ** 2;
    mean[b] = m;
    rstd[b] = 1 / Math.sqrt(v / L + eps);
  }
  return { mean, rstd };
}

/** Calls f(k, block, channel) for every element k of x. */
function forEachElement(d: GroupNormDims, f: (k: number, blk: number, ch: number) => void): void {
  const cpg = d.c / d.groups;
  for (let n = 0; n < d.n; n++) {
    for (let ch = 0; ch < d.c; ch++) {
      const blk = n * d.groups + Math.floor(ch / cpg);
      for (let s = 0; s < d.s; s++) f((n * d.c + ch) * d.s + s, blk, ch);
    }
  }
}

export function groupNormRef(
  x: Float64Array, shape: readonly number[], groups: number, gamma: Float64Array | null, beta: Float64Array | null, eps: number, silu: boolean,
): Float64Array {
  const d = groupNormDims(shape, groups);
  const { mean, rstd } = refStats(x, d, eps);
  const y = new Float64Array(x.length);
  forEachElement(d, (k, blk, ch) => {
    const z = (x[k]! - mean[blk]!) * rstd[blk]! * (gamma ? gamma[ch]! : 1) + (beta ? beta[ch]! : 0);
    y[k] = silu ? z * sig(z) : z;
  });
  return y;
}

/** Vector-Jacobian product of groupNormRef with gy: gradients of x, gamma and beta. */
export function groupNormGradRef(
  x: Float64Array, shape: readonly number[], groups: number, gamma: Float64Array | null, beta: Float64Array | null, eps: number, silu: boolean,
  gy: Float64Array,
): { dx: Float64Array; dgamma: Float64Array; dbeta: Float64Array } {
  const d = groupNormDims(shape, groups);
  const { mean, rstd } = refStats(x, d, eps);
  const L = (d.c / d.groups) * d.s;
  const xhat = new Float64Array(x.length);
  const dxhat = new Float64Array(x.length);
  const sum1 = new Float64Array(d.n * groups);
  const sum2 = new Float64Array(d.n * groups);
  const dgamma = new Float64Array(d.c);
  const dbeta = new Float64Array(d.c);
  forEachElement(d, (k, blk, ch) => {
    const g = gamma ? gamma[ch]! : 1;
    const xh = (x[k]! - mean[blk]!) * rstd[blk]!;
    const z = xh * g + (beta ? beta[ch]! : 0);
    const s = sig(z);
    const dz = gy[k]! * (silu ? s * (1 + z * (1 - s)) : 1);
    xhat[k] = xh;
    dxhat[k] = dz * g;
    sum1[blk]! += dz * g;
    sum2[blk]! += dz * g * xh;
    dgamma[ch]! += dz * xh;
    dbeta[ch]! += dz;
  });
  const dx = new Float64Array(x.length);
  forEachElement(d, (k, blk) => {
    dx[k] = rstd[blk]! * (dxhat[k]! - sum1[blk]! / L - xhat[k]! * (sum2[blk]! / L));
  });
  return { dx, dgamma, dbeta };
}
