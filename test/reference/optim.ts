// float64 references of kernels/optim.ts, for the tests only (not shipped with the package).
import type { AdamConfig } from '../../kernels/optim.js';

/** The learning rate of update number `step` (1-based), as the kernel computes it. */
export function lrAt(c: AdamConfig, step: number): number {
  if (c.warmupSteps > 0 && step < c.warmupSteps) return (c.lr * step) / c.warmupSteps;
  if (c.schedule === 'constant') return c.lr;
  const frac = Math.min(1, Math.max(0, (step - c.warmupSteps) / Math.max(c.totalSteps - c.warmupSteps, 1)));
  const k = c.schedule === 'cosine' ? 0.5 * (1 + Math.cos(Math.PI * frac)) : 1 - frac;
  return c.minLr + (c.lr - c.minLr) * k;
}

/** Float64 Adam/AdamW with clipping, in place on plain arrays; returns the gradient norm. */
export function adamRef(c: AdamConfig, step: number, param: Float64Array, grad: Float64Array, m: Float64Array, v: Float64Array): number {
  const norm = Math.sqrt(grad.reduce((s, g) => s + g * g, 0));
  const clip = c.maxGradNorm > 0 ? Math.min(1, c.maxGradNorm / (norm + 1e-6)) : 1;
  const lr = lrAt(c, step);
  for (let i = 0; i < param.length; i++) {
    let g = grad[i]! * clip;
    let x = param[i]!;
    if (c.kind === 'adam') g += c.weightDecay * x;
    else x -= lr * c.weightDecay * x;
    m[i] = c.beta1 * m[i]! + (1 - c.beta1) * g;
    v[i] = c.beta2 * v[i]! + (1 - c.beta2) * g * g;
    const mhat = m[i]! / (1 - c.beta1 ** step);
    const vhat = v[i]! / (1 - c.beta2 ** step);
    param[i] = x - (lr * mhat) / (Math.sqrt(vhat) + c.eps);
  }
  return norm;
}
