import { Tensor } from '../tensor.js';
import { ShapeError, fmtShape } from '../../runtime/errors.js';
import * as C from '../../../kernels/conv2d.js';

export type { Conv2dOptions } from '../../../kernels/conv2d.js';

/**
 * 2-D convolution as PyTorch's F.conv2d: x [N, Cin, H, W], w [Cout, Cin/groups, kh, kw], optional
 * bias [Cout]; stride, padding and dilation are a number or an [h, w] pair. Returns
 * [N, Cout, OH, OW] with OH = floor((H + 2·pad - dil·(kh-1) - 1) / stride) + 1.
 */
export function conv2d(x: Tensor, w: Tensor, b?: Tensor | null, opts: C.Conv2dOptions = {}): Tensor {
  for (const [name, t] of [['x', x], ['w', w], ['bias', b]] as const) {
    if (t && t.dtype !== 'f32') throw new ShapeError('conv2d', `${name} must be f32, got ${t.dtype} ${fmtShape(t.shape)}`);
  }
  const g = C.conv2dGeometry(x.shape, w.shape, b ? b.shape : null, opts);
  const y = C.conv2dForward(x.data, w.data, b ? b.data : null, g);
  return Tensor.fromOp('conv2d', y, [x, w, b], (gy) => [
    x.requiresGrad ? C.conv2dBackwardData(gy, w.data, g) : null,
    w.requiresGrad ? C.conv2dBackwardWeight(gy, x.data, g) : null,
    b?.requiresGrad ? C.conv2dBackwardBias(gy) : null,
  ]);
}
