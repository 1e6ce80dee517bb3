import { Tensor } from '../tensor.js';
import { attentionBackward, attentionForward, MAX_HEAD_DIM } from '../../../kernels/attention.js';
import { ShapeError, fmtShape } from '../../runtime/errors.js';

export interface AttentionOptions {
  /** Multiplies the scores before the softmax (default 1/sqrt(D)). */
  scale?: number;
}

/**
 * Scaled dot-product attention, softmax(q kᵀ · scale) v, for q [B, H, Lq, D] and k, v [B, H, Lk, D]:
 * self-attention when Lq == Lk, cross-attention otherwise (e.g. Lk = 77 context tokens). Returns
 * [B, H, Lq, D]. One fused kernel with an online softmax; the Lq x Lk scores are never stored. The
 * backward saves only o and the per-row log-sum-exp. D is at most 128.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const op = 'attention';
  const want = '(q [B, H, Lq, D], k and v [B, H, Lk, D])';
  for (const [name, t] of [['q', q], ['k', k], ['v', v]] as const) {
    if (t.dtype !== 'f32') throw new ShapeError(op, `expects f32 tensors, got ${name} ${t.dtype} ${fmtShape(t.shape)}`);
    if (t.shape.length !== 4) throw new ShapeError(op, `${name} has shape ${fmtShape(t.shape)}, expected rank 4 ${want}`);
  }
  const [b, h, , d] = q.shape as [number, number, number, number];
  const lk = k.shape[2]!;
  const kvWant = fmtShape([b, h, lk, d]);
  if (k.shape[0] !== b || k.shape[1] !== h || k.shape[3] !== d) {
    throw new ShapeError(op, `k has shape ${fmtShape(k.shape)} but q has shape ${fmtShape(q.shape)}; expected k [${b}, ${h}, Lk, ${d}] ${want}`);
  }
  if (v.shape.some((n, i) => n !== k.shape[i])) {
    throw new ShapeError(op, `v has shape ${fmtShape(v.shape)}, expected the shape of k, ${kvWant} ${want}`);
  }
  if (d < 1 || d > MAX_HEAD_DIM) {
    throw new ShapeError(op, `head dimension D = ${d} (q ${fmtShape(q.shape)}) is outside the supported range 1..${MAX_HEAD_DIM}; split the heads further`);
  }
  if (lk < 1) throw new ShapeError(op, `k and v have Lk = 0 (${kvWant}): softmax over no keys is undefined`);
  const scale = opts.scale ?? 1 / Math.sqrt(d);
  if (!Number.isFinite(scale)) throw new ShapeError(op, `scale must be a finite number, got ${scale}`);

  const { o, lse } = attentionForward(q.data, k.data, v.data, scale);
  return Tensor.fromOp(op, o, [q, k, v], (go) => {
    const g = attentionBackward(q.data, k.data, v.data, o, lse, go.reshape(o.shape), scale, k.requiresGrad || v.requiresGrad);
    return [q.requiresGrad ? g.dq : null, k.requiresGrad ? g.dk : null, v.requiresGrad ? g.dv : null];
  });
}
