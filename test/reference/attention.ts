// float64 references of kernels/attention.ts, for the tests only (not shipped with the package).

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
        for (let t = 0; t < d; t++) o[(g * lq + i) * d + t]! += pij * v[(g * lk + j) * d + t]!;
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
          dv[kj + t]! += pij * go[qi + t]!;
          dq[qi + t]! += ds * k[kj + t]!;
          dk[kj + t]! += ds * q[qi + t]!;
        }
      }
    }
  }
  return [dq, dk, dv];
}
