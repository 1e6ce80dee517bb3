import { Tensor } from '../tensor.js';
import { groupNormBackward, groupNormForward } from '../../../kernels/groupnorm.js';
import { ShapeError, fmtShape } from '../../runtime/errors.js';
import { checkRank } from '../../../kernels/shape.js';

export interface GroupNormOptions {
  /** Added to the variance (default 1e-5, as PyTorch). */
  eps?: number;
  /** Apply SiLU to the result in the same kernel (default false). */
  silu?: boolean;
}

/**
 * Group norm of x [N, C, ...spatial] (any number of spatial axes, none included) over `groups`
 * groups of C / groups channels, then the per-channel affine gamma [C], beta [C] (either may be
 * null: scale 1 / shift 0), then optionally SiLU. Gradients flow to x, gamma and beta.
 */
export function groupNorm(x: Tensor, groups: number, gamma: Tensor | null = null, beta: Tensor | null = null, opts: GroupNormOptions = {}): Tensor {
  const op = 'groupNorm';
  const eps = opts.eps ?? 1e-5;
  const silu = opts.silu ?? false;
  const shape = x.shape;
  for (const t of [x, gamma, beta]) {
    if (t && t.dtype !== 'f32') throw new ShapeError(op, `expects f32 tensors, got ${t.dtype} ${fmtShape(t.shape)}`);
  }
  if (shape.length < 2) throw new ShapeError(op, `x has shape ${fmtShape(shape)}, expected [N, C, ...spatial] (rank >= 2)`);
  checkRank(op, shape);
  const c = shape[1]!;
  if (!Number.isInteger(groups) || groups < 1 || c % groups !== 0) {
    throw new ShapeError(op, `x has shape ${fmtShape(shape)} with C = ${c} channels, which cannot be split into ${groups} groups; groups must be a positive divisor of C`);
  }
  for (const [name, t] of [['gamma', gamma], ['beta', beta]] as const) {
    if (t && (t.shape.length !== 1 || t.shape[0] !== c)) {
      throw new ShapeError(op, `${name} has shape ${fmtShape(t.shape)}, expected [${c}] (one per channel of x ${fmtShape(shape)})`);
    }
  }
  if (!(eps >= 0)) throw new ShapeError(op, `eps must be >= 0, got ${eps}`);

  const { y, stats } = groupNormForward(x.data, groups, gamma?.data ?? null, beta?.data ?? null, eps, silu);
  return Tensor.fromOp(op, y, [x, gamma, beta], (gy) => {
    const g = groupNormBackward(x.data, gy, groups, gamma?.data ?? null, beta?.data ?? null, stats, silu, {
      x: x.requiresGrad,
      gamma: gamma?.requiresGrad ?? false,
      beta: beta?.requiresGrad ?? false,
    });
    return [g.dx, g.dgamma, g.dbeta];
  });
}
