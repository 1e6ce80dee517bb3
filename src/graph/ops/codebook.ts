import { Tensor } from '../tensor.js';
import * as C from '../../../kernels/codebook.js';
import { ShapeError, fmtShape } from '../../runtime/errors.js';

export interface CodebookOptions {
  /** Weight of the commitment term (default 0.25, as in VQ-VAE and taming-transformers). */
  beta?: number;
}

export interface CodebookResult {
  /** [N, D, H, W]: each spatial vector replaced by its nearest code; the gradient passes straight through to z. */
  zq: Tensor;
  /** [N, H, W] i32: the code index of each vector (ties -> lowest index). No gradient. */
  indices: Tensor;
  /** Scalar: mean((sg[z] - e)^2) + beta * mean((z - sg[e])^2), means over all N*D*H*W elements. */
  loss: Tensor;
}

/**
 * Vector quantisation (VQ-VAE): nearest code by L2 for every spatial vector z[n, :, h, w] of an NCHW
 * tensor, codebook [K, D]. Gradients: zq passes dzq to z unchanged; the loss gives z the commitment
 * gradient beta * 2 (z - e) / numel and each code 2 (e_k - z) / numel summed over its vectors.
 */
export function codebookLookup(z: Tensor, codebook: Tensor, opts: CodebookOptions = {}): CodebookResult {
  const op = 'codebookLookup';
  const beta = opts.beta ?? 0.25;
  if (z.dtype !== 'f32' || codebook.dtype !== 'f32') {
    throw new ShapeError(op, `expects f32 tensors, got z ${z.dtype} ${fmtShape(z.shape)} and codebook ${codebook.dtype} ${fmtShape(codebook.shape)}`);
  }
  if (z.shape.length !== 4) throw new ShapeError(op, `z has shape ${fmtShape(z.shape)}, expected rank 4 [N, D, H, W]`);
  const d = z.shape[1]!;
  if (codebook.shape.length !== 2 || codebook.shape[1] !== d || codebook.shape[0] === 0) {
    throw new ShapeError(op, `codebook has shape ${fmtShape(codebook.shape)}, expected [K, ${d}] with K >= 1 for z ${fmtShape(z.shape)} [N, D, H, W]`);
  }
  if (d > C.MAX_CODE_DIM) throw new ShapeError(op, `z ${fmtShape(z.shape)} has D = ${d}; codes longer than ${C.MAX_CODE_DIM} do not fit the kernel's workgroup-memory tile`);
  if (z.size === 0) throw new ShapeError(op, `z ${fmtShape(z.shape)} is empty; the loss is a mean over its elements`);
  if (!Number.isFinite(beta)) throw new ShapeError(op, `beta must be a finite number, got ${beta}`);
  const k = codebook.shape[0]!;

  const { zq, indices, err } = C.nearestCode(z.data, codebook.data);
  const loss = C.codebookLoss(err, z.size, beta);
  return {
    // Straight-through estimator: zq = z + sg(e - z).
    zq: Tensor.fromOp('codebookLookup', zq, [z, codebook], (gy) => [gy, null]),
    indices: new Tensor(indices),
    loss: Tensor.fromOp('codebookLoss', loss, [z, codebook], (gy) => [
      z.requiresGrad ? C.commitGrad(z.data, zq, gy, beta) : null,
      codebook.requiresGrad ? C.codebookGrad(indices, z.data, zq, k, gy) : null,
    ]),
  };
}
