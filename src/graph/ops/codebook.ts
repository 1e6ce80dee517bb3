import { Tensor } from '../tensor.js';
import * as C from '../../../kernels/codebook.js';
import * as G from '../../../kernels/gather.js';
import * as V from '../../../kernels/vq.js';
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

/**
 * How many vectors chose each code, counts [K], and the sum of those vectors, sums [K, D], for the
 * EMA codebook update (VQ-VAE, appendix A.1). No gradient; deterministic (fixed-order sums).
 */
export function codebookStats(indices: Tensor, z: Tensor, k: number): { counts: Tensor; sums: Tensor } {
  const op = 'codebookStats';
  if (z.shape.length !== 4 || indices.dtype !== 'i32' || indices.size !== z.shape[0]! * z.shape[2]! * z.shape[3]!) {
    throw new ShapeError(op, `z has shape ${fmtShape(z.shape)}, indices ${indices.dtype} ${fmtShape(indices.shape)}; expected z [N, D, H, W] and i32 indices [N, H, W]`);
  }
  const rt = z.rt;
  const ones = rt.alloc([indices.size, 1], 'f32', op);
  rt.fillValue(ones, 1);
  const counts = G.segmentSum(indices.data, ones, null, k, 1, G.denseRows(1)).reshape([k]);
  const sums = G.segmentSum(indices.data, z.data, null, k, z.shape[1]!, G.nchwVectors(z.shape));
  return { counts: new Tensor(counts), sums: new Tensor(sums) };
}

export interface RestartState {
  /** [K, D] codes, written in place for codes that restart. */
  codebook: Tensor;
  /** [K] steps since each code was last chosen, updated in place. */
  age: Tensor;
  /** EMA statistics ([K] cluster sizes, [K, D] sums), reset to one vector for a restarted code. */
  ema?: { cluster: Tensor; sum: Tensor } | null;
}

/**
 * Ages the codes (0 if chosen this step, counts [K] > 0, else +1) and restarts each code unused for
 * `threshold` steps from a random vector of z [N, D, H, W]: vector floor(u[k]·N·H·W) for u [K]
 * uniform in (0, 1). In place, on the device; threshold 0 only ages.
 */
export function restartCodes(s: RestartState, counts: Tensor, u: Tensor, z: Tensor, threshold: number): void {
  const op = 'restartCodes';
  const [k, d] = s.codebook.shape as [number, number];
  if (s.codebook.shape.length !== 2 || z.shape.length !== 4 || z.shape[1] !== d) {
    throw new ShapeError(op, `codebook ${fmtShape(s.codebook.shape)} and z ${fmtShape(z.shape)}: expected [K, D] and [N, D, H, W]`);
  }
  for (const [name, t] of [['age', s.age], ['counts', counts], ['u', u], ['ema.cluster', s.ema?.cluster]] as const) {
    if (t && t.size !== k) throw new ShapeError(op, `${name} has shape ${fmtShape(t.shape)}, expected [${k}]`);
  }
  if (s.ema && s.ema.sum.size !== k * d) throw new ShapeError(op, `ema.sum has shape ${fmtShape(s.ema.sum.shape)}, expected [${k}, ${d}]`);
  if (!(threshold >= 0)) throw new ShapeError(op, `threshold must be >= 0 steps, got ${threshold}`);
  V.restartCodes(
    { codebook: s.codebook.data, age: s.age.data, ema: s.ema ? { cluster: s.ema.cluster.data, sum: s.ema.sum.data } : null },
    counts.data, u.data, z.data, threshold,
  );
}
