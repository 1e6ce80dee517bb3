import { Kernel } from '../src/runtime/kernel.js';
import { DeviceArray } from '../src/runtime/runtime.js';
import source from '../shaders/attention.wgsl';

const kernel = new Kernel('attention', source);

/** Largest head dimension the kernels hold (DV_CAP vec4s per private row in the shader). */
export const MAX_HEAD_DIM = 128;

/** Rows each invocation owns (unrolled by hand in the shader). */
const ROWS = 4;

/**
 * Pipeline variant for head dimension d and `rows` rows to own (Lq for forward and grad_q, Lk for
 * grad_kv). The two workgroup tiles hold BT rows of 4·DVMAX floats each within 16 KiB
 * (2 · BT · DVMAX · 16 bytes), so narrower heads stream longer tiles (fewer barriers). A workgroup
 * of WG invocations owns 4·WG rows: 16 (64 rows) unless 8 wastes much less on a short sequence
 * (Lk = 77 pads to 96 rather than 128).
 */
function variant(d: number, rows: number): { WG: number; BT: number; DVMAX: number } {
  const padded = (wg: number) => Math.ceil(rows / (ROWS * wg)) * ROWS * wg;
  const WG = padded(8) < 0.8 * padded(16) ? 8 : 16;
  if (d <= 32) return { WG, BT: 64, DVMAX: 8 };
  if (d <= 64) return { WG, BT: 32, DVMAX: 16 };
  return { WG, BT: 16, DVMAX: 32 };
}

interface Dims {
  bh: number;
  lq: number;
  lk: number;
  d: number;
}

function dimsOf(q: DeviceArray, k: DeviceArray): Dims {
  const [b, h, lq, d] = q.shape as [number, number, number, number];
  return { bh: b * h, lq, lk: k.shape[2]!, d };
}

function uniforms(x: Dims, scale: number) {
  return { lq: x.lq, lk: x.lk, d: x.d, dv: Math.ceil(x.d / 4), scale, scale2: scale * Math.LOG2E, _pad0: 0, _pad1: 0 };
}

/**
 * o = softmax(q kᵀ · scale) v for q [B, H, Lq, D], k and v [B, H, Lk, D] (shapes already checked,
 * D <= MAX_HEAD_DIM, Lk >= 1). Also returns lse [B, H, Lq], the log-sum-exp of each row of scores,
 * which the backward needs.
 */
export function attentionForward(q: DeviceArray, k: DeviceArray, v: DeviceArray, scale: number): { o: DeviceArray; lse: DeviceArray } {
  const rt = q.rt;
  const x = dimsOf(q, k);
  const o = rt.alloc(q.shape, 'f32', 'attention');
  const lse = rt.alloc(q.shape.slice(0, 3), 'f32', 'attention');
  if (o.size === 0) return { o, lse };
  const c = variant(x.d, x.lq);
  rt.dispatch(kernel, 'forward', {
    bindings: { q, k, v, o, lse },
    uniforms: uniforms(x, scale),
    workgroups: [Math.ceil(x.lq / (ROWS * c.WG)), x.bh],
    constants: c,
  });
  return { o, lse };
}

/**
 * Gradients of attention for the upstream gradient go (FlashAttention-2 backward): grad_q computes
 * delta = rowsum(go ∘ o) and dq per query block; grad_kv then computes dk, dv per key block, both
 * recomputing the probabilities from lse. `needKV` false skips the second kernel.
 */
export function attentionBackward(
  q: DeviceArray, k: DeviceArray, v: DeviceArray, o: DeviceArray, lse: DeviceArray, go: DeviceArray, scale: number, needKV = true,
): { dq: DeviceArray; dk: DeviceArray | null; dv: DeviceArray | null } {
  const rt = q.rt;
  const x = dimsOf(q, k);
  const u = uniforms(x, scale);
  const dq = rt.alloc(q.shape, 'f32', 'attention backward');
  const delta = rt.alloc(lse.shape, 'f32', 'attention backward');
  if (dq.size > 0) {
    const c = variant(x.d, x.lq);
    rt.dispatch(kernel, 'grad_q', {
      bindings: { q, k, v, o, go, lse, delta, dq },
      uniforms: u,
      workgroups: [Math.ceil(x.lq / (ROWS * c.WG)), x.bh],
      constants: c,
    });
  }
  if (!needKV) {
    rt.dispose(delta); // safe: later users of the buffer are ordered after this dispatch
    return { dq, dk: null, dv: null };
  }
  const dk = rt.alloc(k.shape, 'f32', 'attention backward');
  const dvv = rt.alloc(v.shape, 'f32', 'attention backward');
  if (dk.size > 0) {
    if (x.lq === 0) {
      // No queries: nothing flows back to the keys and values.
      rt.fillValue(dk, 0);
      rt.fillValue(dvv, 0);
    } else {
      const c = variant(x.d, x.lk);
      rt.dispatch(kernel, 'grad_kv', {
        bindings: { q, k, v, go, lse, delta, dk, dvv },
        uniforms: u,
        workgroups: [Math.ceil(x.lk / (ROWS * c.WG)), x.bh],
        constants: c,
      });
    }
  }
  rt.dispose(delta);
  return { dq, dk, dv: dvv };
}

// ------------------------------------------------------------------ float64 references (tests only)

export interface AttnShape {
  b: number;
  h: number;
  lq: number;
  lk: number;
  d: number;
}

/** Row-wise softmax probabilities P [BH, Lq, Lk] in float64 (max-subtracted, so large logits are exact). */
function probsRef(q: Float64Array, k: Float64Array, s: AttnShape, scale: number): Float64Array {
  const { lq, lk, d } = s;
  const bh = s.b * s.h;
  const P = new Float64Array(bh * lq * lk);
  for (let g = 0; g < bh; g++) {
    for (let i = 0; i < lq; i++) {
      const row = P.subarray((g * lq + i) * lk, (g * lq + i + 1) * lk);
      let m = -Infinity;
      for (let j = 0; j < lk; j++) {
        let acc = 0;
        for (let t = 0; t < d; t++) acc += q[(g * lq + i) * d + t]! * k[(g * lk + j) * d + t]!;
        row[j] = acc * scale;
        m = Math.max(m, row[j]!);
      }
      let sum = 0;
      for (let j = 0; j < lk; j++) sum += (row[j] = Math.exp(row[j]! - m));
      for (let j = 0; j < lk; j++) row[j]! /= sum;
    }
  }
  return P;
}

/** softmax(q kᵀ · scale) v in float64. */
export function attentionRef(q: Float64Array, k: Float64Array, v: Float64Array, s: AttnShape, scale: number): Float64Array {
  const { lq, lk, d } = s;
  const bh = s.b * s.h;
  const P = probsRef(q, k, s, scale);
  const o = new Float64Array(bh * lq * d);
  for (let g = 0; g < bh; g++) {
    for (let i = 0; i < lq; i++) {
      for (let j = 0; j < lk; j++) {
        const pij = P[(g * lq + i) * lk + j]!;
        for (let t = 0; t < d; t++) o[(g * lq + i) * d + t] += pij * v[(g * lk + j) * d + t]!;
      }
    }
  }
  return o;
}

/**
 * Vector-Jacobian product of attentionRef for upstream gradient go, in float64, by the analytic rule:
 * dv = Pᵀ go, dP = go vᵀ, dS = P ∘ (dP - rowsum(dP ∘ P)), dq = scale · dS k, dk = scale · dSᵀ q.
 */
export function attentionVjpRef(
  q: Float64Array, k: Float64Array, v: Float64Array, go: Float64Array, s: AttnShape, scale: number,
): [Float64Array, Float64Array, Float64Array] {
  const { lq, lk, d } = s;
  const bh = s.b * s.h;
  const P = probsRef(q, k, s, scale);
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  const dP = new Float64Array(lk);
  for (let g = 0; g < bh; g++) {
    for (let i = 0; i < lq; i++) {
      const qi = (g * lq + i) * d;
      let rs = 0;
      for (let j = 0; j < lk; j++) {
        let acc = 0;
        for (let t = 0; t < d; t++) acc += go[qi + t]! * v[(g * lk + j) * d + t]!;
        dP[j] = acc;
        rs += acc * P[(g * lq + i) * lk + j]!;
      }
      for (let j = 0; j < lk; j++) {
        const pij = P[(g * lq + i) * lk + j]!;
        const ds = pij * (dP[j]! - rs) * scale;
        const kj = (g * lk + j) * d;
        for (let t = 0; t < d; t++) {
          dv[kj + t] += pij * go[qi + t]!;
          dq[qi + t] += ds * k[kj + t]!;
          dk[kj + t] += ds * q[qi + t]!;
        }
      }
    }
  }
  return [dq, dk, dv];
}
