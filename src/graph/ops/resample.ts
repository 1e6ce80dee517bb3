import { Tensor } from '../tensor.js';
import * as R from '../../../kernels/resample.js';
import { ShapeError, fmtShape } from '../../runtime/errors.js';

function check(op: string, x: Tensor): void {
  if (x.dtype !== 'f32' || x.shape.length !== 4) {
    throw new ShapeError(op, `x has shape ${fmtShape(x.shape)} (${x.dtype}), expected an f32 tensor [N, C, H, W]`);
  }
}

/** Nearest-neighbour 2x upsampling of NCHW x: [N, C, H, W] -> [N, C, 2H, 2W]. */
export function upsample2x(x: Tensor): Tensor {
  check('upsample2x', x);
  return Tensor.fromOp('upsample2x', R.expand2x(x.data, 1, 'upsample2x'), [x], (gy) => [R.pool2x(gy, 1, 'upsample2x')]);
}

/** 2x2 average pooling with stride 2 of NCHW x with even H and W: [N, C, H, W] -> [N, C, H/2, W/2]. */
export function downsample2x(x: Tensor): Tensor {
  check('downsample2x', x);
  const [n, c, h, w] = x.shape as [number, number, number, number];
  if (h % 2 !== 0 || w % 2 !== 0) {
    throw new ShapeError('downsample2x', `x has shape ${fmtShape(x.shape)} with H = ${h}, W = ${w}; expected even H and W ([${n}, ${c}, 2h, 2w]); pad or crop first`);
  }
  return Tensor.fromOp('downsample2x', R.pool2x(x.data, 0.25, 'downsample2x'), [x], (gy) => [R.expand2x(gy, 0.25, 'downsample2x')]);
}
