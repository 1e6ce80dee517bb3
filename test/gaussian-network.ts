// The exact network for Gaussian data x0 ~ N(μ, diag s²), in each parameterisation (ε, v, x0): the
// closed form the sampler and inversion tests check against. It knows ᾱ_t from the (whole) timestep
// through a one-hot row of a table, so it sees only what a network sees (x_VP and t).
import { ops, Tensor } from '../src/index.js';
import type { Device } from '../src/graph/device.js';
import type { DiscreteVP, PredictionType } from '../src/diffusion/process.js';
import { perSample } from '../src/diffusion/denoiser.js';

/** `mu` and `s2` per element of one [1, 1, 4, 4] image. */
export function exactGaussianNetwork(d: Device, proc: DiscreteVP, mu: ArrayLike<number>, s2: ArrayLike<number>) {
  const muT = d.tensor(Float32Array.from(mu), [1, 1, 4, 4]);
  const s2T = d.tensor(Float32Array.from(s2), [1, 1, 4, 4]);
  const tab = d.tensor(Float32Array.from({ length: 2 * proc.T }, (_, i) => (i % 2 ? Math.sqrt(1 - proc.alphasCumprod[i >> 1]!) : Math.sqrt(proc.alphasCumprod[i >> 1]!))), [proc.T, 2]);
  const idx = d.tensor(Float32Array.from({ length: proc.T }, (_, i) => i), [1, proc.T]);
  return (pred: PredictionType) => ({
    forward(x: Tensor, t: Tensor) {
      const hot = ops.step(ops.affine(ops.abs(ops.sub(t.reshape([t.shape[0]!, 1]), idx)), -1, 0.5));
      const ab = ops.matmul(hot, tab);
      const a = perSample(ops.slice(ab, 0, 1, 1).reshape([t.shape[0]!]), x), b = perSample(ops.slice(ab, 1, 1, 1).reshape([t.shape[0]!]), x);
      const e = ops.div(ops.mul(b, ops.sub(x, ops.mul(a, muT))), ops.add(ops.mul(ops.square(a), s2T), ops.square(b)));
      if (pred === 'epsilon') return e;
      const x0 = ops.div(ops.sub(x, ops.mul(b, e)), a);
      return pred === 'sample' ? x0 : ops.sub(ops.mul(a, e), ops.mul(b, x0));
    },
  });
}
