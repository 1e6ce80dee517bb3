import { Tensor } from '../tensor.js';
import * as R from '../../../kernels/random.js';
import { ShapeError, fmtShape } from '../../runtime/errors.js';

function checkKey(op: string, key: Tensor): void {
  if (key.dtype !== 'i32' || key.size !== 2) {
    throw new ShapeError(op, `key has shape ${fmtShape(key.shape)} (${key.dtype}), expected an i32 tensor [2] holding (seed, counter); make one with dev.randomKey(seed)`);
  }
}

/**
 * Standard normal numbers of `shape` from the counter-based generator keyed by (seed, stream) with
 * the counter in key[1]: the same (seed, counter, stream) gives the same numbers on every device.
 */
export function randn(shape: readonly number[], key: Tensor, stream = 0): Tensor {
  checkKey('randn', key);
  return new Tensor(R.random(key.data, shape, stream, 'normal'));
}

/** Uniform numbers in (0, 1) of `shape`; see randn. */
export function rand(shape: readonly number[], key: Tensor, stream = 0): Tensor {
  checkKey('rand', key);
  return new Tensor(R.random(key.data, shape, stream, 'uniform'));
}

/** Advance the key's counter by one, on the device: the next randn/rand with it draws new numbers. */
export function advanceKey(key: Tensor): void {
  checkKey('advanceKey', key);
  R.advanceKey(key.data);
}
