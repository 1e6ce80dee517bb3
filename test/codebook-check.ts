// The codebook lookup's checks shared by test/codebook.test.ts and the smoke checks (Node and Chromium):
// inputs whose nearest codes are well separated, and the float64 reference with its stop-gradients.
import { ops, Tensor } from '../src/index.js';
import { codebookGradRef, codebookRef, nearestRef, vectorOffset } from '../kernels/codebook.js';
import { f32, numel, randn } from './check.js';

/**
 * z [N,D,H,W] and a codebook [k,D] (f32-representable) in which every vector's nearest code beats the
 * second nearest by at least `gap` in squared distance: far above f32 rounding of the distances
 * (~1e-6), so the GPU's argmin must equal the float64 one exactly, and above the change 2h|e_a - e_b|
 * ~ 1e-4 that a finite-difference step h = 1e-5 can cause, so no probe switches an assignment.
 */
export function separatedCodebookInputs(shape: number[], k: number, r: () => number, gap = 1e-3): { z: Float64Array; cb: Float64Array } {
  const d = shape[1]!;
  const cb = f32(randn(k * d, r));
  const z = f32(randn(numel(shape), r));
  for (let round = 0; round < 100; round++) {
    const { best, second } = nearestRef(z, shape, cb, k);
    let redrawn = 0;
    best.forEach((b, m) => {
      if (second[m]! - b >= gap) return;
      redrawn++;
      for (let c = 0; c < d; c++) z[vectorOffset(m, c, shape)] = Math.fround(randn(1, r)[0]!);
    });
    if (redrawn === 0) return { z, cb };
  }
  throw new Error('could not draw separated inputs');
}

export type Through = 'zq' | 'loss' | 'both';

/**
 * The float64 reference with stop-gradients frozen at the base point (z0, e0), which is what sg[] means:
 * zq = z + sg(e - z) has the value e0 there and derivative 1 in z, 0 in the codebook;
 * loss = mean((sg[z] - e)^2) + beta mean((z - sg[e])^2). Finite differences of this function therefore
 * check the straight-through, codebook and commitment gradients. Output: zq, loss, or zq then loss.
 */
export function vqRef(z0: Float64Array, cb0: Float64Array, shape: number[], k: number, beta: number, through: Through) {
  const d = shape[1]!;
  const idx0 = nearestRef(z0, shape, cb0, k).indices;
  const e0 = codebookRef(z0, shape, cb0, idx0, 0).zq;
  const ref = ([z, cb]: Float64Array[]): Float64Array => {
    const idx = nearestRef(z!, shape, cb!, k).indices;
    const zq = z!.map((v, o) => v + (e0[o]! - z0[o]!));
    let codeTerm = 0;
    let commitTerm = 0;
    for (let m = 0; m < idx.length; m++) {
      for (let c = 0; c < d; c++) {
        const o = vectorOffset(m, c, shape);
        const e = cb![idx[m]! * d + c]!;
        codeTerm += (z0[o]! - e) ** 2;
        commitTerm += (z![o]! - e0[o]!) ** 2;
      }
    }
    const loss = (codeTerm + beta * commitTerm) / z!.length;
    if (through === 'zq') return zq;
    if (through === 'loss') return Float64Array.of(loss);
    const out = new Float64Array(zq.length + 1);
    out.set(zq);
    out[zq.length] = loss;
    return out;
  };
  const refGrad = ([z, cb]: Float64Array[], gy: Float64Array): Float64Array[] => {
    const n = z!.length;
    const gZq = through === 'loss' ? null : gy.subarray(0, n);
    const gLoss = through === 'zq' ? 0 : gy[through === 'loss' ? 0 : n]!;
    const { dz, dcb } = codebookGradRef(z!, shape, cb!, k, idx0, beta, gZq ? Float64Array.from(gZq) : null, gLoss);
    return [dz, dcb];
  };
  return { ref, refGrad, idx0 };
}

/** The op under test: zq, the loss, or both concatenated. */
export function runVq(through: Through, beta: number) {
  return ([z, cb]: Tensor[]): Tensor => {
    const { zq, loss } = ops.codebookLookup(z!, cb!, { beta });
    if (through === 'zq') return zq;
    if (through === 'loss') return loss.reshape([1]);
    return ops.concat([zq.reshape([zq.size]), loss.reshape([1])], 0);
  };
}

