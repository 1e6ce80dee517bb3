import { Tensor } from '../tensor.js';
import { softmaxBackward, softmaxForward } from '../../../kernels/softmax.js';
import { ShapeError, fmtShape } from '../../runtime/errors.js';
import { checkRank } from '../../../kernels/shape.js';

/**
 * Softmax along `axis` (default the last). Any axis works: the kernel walks a row with a stride,
 * so no permute copy is made (the last axis, stride 1, is the fast case).
 */
export function softmax(x: Tensor, axis = -1): Tensor {
  const op = 'softmax';
  if (x.dtype !== 'f32') throw new ShapeError(op, `expects an f32 tensor, got ${x.dtype} ${fmtShape(x.shape)}`);
  if (x.shape.length === 0) throw new ShapeError(op, `x has shape ${fmtShape(x.shape)}, expected rank >= 1`);
  checkRank(op, x.shape);
  const rank = x.shape.length;
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) {
    throw new ShapeError(op, `axis ${axis} is out of range for x of shape ${fmtShape(x.shape)} (expected -${rank} <= axis < ${rank})`);
  }
  const ax = axis < 0 ? axis + rank : axis;
  const y = softmaxForward(x.data, ax);
  return Tensor.fromOp(op, y, [x], (gy) => [softmaxBackward(y, gy, ax)]);
}
