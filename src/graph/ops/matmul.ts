import { Tensor } from '../tensor.js';
import * as K from '../../../kernels/matmul.js';
import { ShapeError, fmtShape } from '../../runtime/errors.js';

function requireFloat(op: string, ...ts: Tensor[]): void {
  for (const t of ts) if (t.dtype !== 'f32') throw new ShapeError(op, `expects f32 tensors, got ${t.dtype} ${fmtShape(t.shape)}`);
}

/**
 * Batched matrix product: a [..., M, K] · b [..., K, N] -> [..., M, N], batch dims broadcast as in
 * NumPy (a 2-D operand is shared by every batch). Both operands need rank >= 2.
 */
export function matmul(a: Tensor, b: Tensor): Tensor {
  requireFloat('matmul', a, b);
  K.matmulShape('matmul', a.shape, b.shape); // ShapeError naming both shapes
  const y = K.matmul(a.data, b.data);
  return Tensor.fromOp('matmul', y, [a, b], (gy) => K.matmulBackward(a.data, b.data, gy, a.requiresGrad, b.requiresGrad));
}

/** y = x·wᵀ + b for x [..., in], w [out, in] (PyTorch's layout), optional bias [out]; one dispatch. */
export function linear(x: Tensor, w: Tensor, b?: Tensor | null): Tensor {
  const bias = b ?? null;
  requireFloat('linear', x, w, ...(bias ? [bias] : []));
  const given = `x ${fmtShape(x.shape)}, w ${fmtShape(w.shape)}${bias ? `, b ${fmtShape(bias.shape)}` : ''}`;
  if (w.shape.length !== 2) throw new ShapeError('linear', `got ${given}; expected w [out, in]`);
  const [out, inF] = w.shape as [number, number];
  if (x.shape.length < 1 || x.shape[x.shape.length - 1] !== inF) {
    throw new ShapeError('linear', `got ${given}; expected x [..., ${inF}] to match w [${out}, ${inF}]`);
  }
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== out)) {
    throw new ShapeError('linear', `got ${given}; expected b [${out}]`);
  }
  const y = K.linear(x.data, w.data, bias?.data);
  return Tensor.fromOp('linear', y, [x, w, bias], (gy) =>
    K.linearBackward(x.data, w.data, gy, x.requiresGrad, w.requiresGrad, !!bias?.requiresGrad),
  );
}
