import { Tensor } from '../tensor.js';
import * as G from '../../../kernels/gather.js';
import { ShapeError, fmtShape } from '../../runtime/errors.js';

/**
 * Rows of `table` [V, E] picked by an i32 tensor of indices of any shape: the result has shape
 * [...indices.shape, E]. The table's gradient sums the upstream rows of each index (deterministically).
 * Indices are not checked on the host (they live on the GPU): an index outside [0, V) reads a row of
 * zeros and contributes no gradient; memory is never read out of bounds.
 */
export function embedding(indices: Tensor, table: Tensor): Tensor {
  const op = 'embedding';
  if (indices.dtype !== 'i32') {
    throw new ShapeError(op, `indices must be an i32 tensor, got ${indices.dtype} ${fmtShape(indices.shape)}; create them from an Int32Array`);
  }
  if (table.dtype !== 'f32' || table.shape.length !== 2) {
    throw new ShapeError(op, `table has shape ${fmtShape(table.shape)} (${table.dtype}), expected an f32 tensor [V, E]`);
  }
  const [v, e] = table.shape as [number, number];
  const y = G.gatherRows(indices.data, table.data);
  return Tensor.fromOp(op, y, [indices, table], (gy) => [
    null,
    table.requiresGrad ? G.segmentSum(indices.data, gy, null, v, e, G.denseRows(e)) : null,
  ]);
}
