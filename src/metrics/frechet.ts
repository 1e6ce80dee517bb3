/**
 * Fréchet distance between two feature sets (the FID formula, over whatever features the caller
 * gives), CPU float64. Matrices are dense row-major Float64Array [dim, dim].
 *
 * d² = ||mu1 - mu2||² + Tr(S1 + S2 - 2 (S1^{1/2} S2 S1^{1/2})^{1/2})
 *
 * The product S1^{1/2} S2 S1^{1/2} is symmetric PSD (unlike S1 S2), so both square roots come
 * from a symmetric eigendecomposition (cyclic Jacobi), which is accurate and needs no complex
 * arithmetic. Cost is O(dim³) per sweep: fine for a few hundred features, slow for 2048.
 */

export type Features = Float64Array | Float32Array;

/**
 * Entry [i, j] of a dense row-major [dim, dim] matrix. Every caller below indexes with loop
 * counters below dim into a matrix of dim·dim values (checked where one comes in), so the entry
 * exists. Float64Array only: one element kind keeps this inlined and monomorphic in the hot loops.
 */
function at(m: Float64Array, dim: number, i: number, j: number): number {
  return m[i * dim + j]!;
}

/** Row means and unbiased (n - 1) covariance of `x` [n, dim], two-pass in float64. */
export function meanCov(x: Features, dim: number): { mean: Float64Array; cov: Float64Array; n: number } {
  if (!(dim > 0) || x.length % dim !== 0) throw new Error(`meanCov: ${x.length} values is not a whole number of rows of dim ${dim}`);
  const n = x.length / dim;
  if (n < 2) throw new Error(`meanCov: need at least 2 samples for an unbiased covariance, got ${n}`);
  const mean = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) mean[j]! += x[i * dim + j]!;
  for (let j = 0; j < dim; j++) mean[j]! /= n;
  const cov = new Float64Array(dim * dim);
  const d = new Float64Array(dim);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < dim; j++) d[j] = x[i * dim + j]! - mean[j]!;
    for (let j = 0; j < dim; j++) {
      const dj = d[j]!;
      for (let k = j; k < dim; k++) cov[j * dim + k]! += dj * d[k]!;
    }
  }
  for (let j = 0; j < dim; j++) {
    for (let k = j; k < dim; k++) {
      const v = at(cov, dim, j, k) / (n - 1);
      cov[j * dim + k] = v;
      cov[k * dim + j] = v;
    }
  }
  return { mean, cov, n };
}

/**
 * Eigendecomposition of a symmetric matrix by the cyclic Jacobi method: A = V diag(values) V^T,
 * eigenvectors in the columns of V (row-major). Only the upper triangle's symmetry is assumed.
 */
export function symEig(a: Float64Array, dim: number): { values: Float64Array; vectors: Float64Array } {
  if (a.length !== dim * dim) throw new Error(`symEig: want a [${dim},${dim}] matrix (${dim * dim} values), got ${a.length} values`);
  const A = Float64Array.from(a);
  const V = new Float64Array(dim * dim);
  for (let i = 0; i < dim; i++) V[i * dim + i] = 1;
  let scale = 0;
  for (let i = 0; i < A.length; i++) scale += A[i]! * A[i]!;
  // Stop when the off-diagonal part is at rounding level relative to the whole matrix.
  const tol = 1e-30 * scale;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < dim; p++) for (let q = p + 1; q < dim; q++) off += at(A, dim, p, q) ** 2;
    if (off <= tol) break;
    for (let p = 0; p < dim - 1; p++) {
      for (let q = p + 1; q < dim; q++) {
        const apq = at(A, dim, p, q);
        if (apq === 0) continue;
        const app = at(A, dim, p, p);
        const aqq = at(A, dim, q, q);
        // Numerical Recipes' rule: once apq no longer changes either diagonal entry in floating
        // point, drop it. This guarantees the loop ends even where rounding keeps `off` above tol.
        if (sweep > 3 && Math.abs(app) + 100 * Math.abs(apq) === Math.abs(app) && Math.abs(aqq) + 100 * Math.abs(apq) === Math.abs(aqq)) {
          A[p * dim + q] = 0;
          A[q * dim + p] = 0;
          continue;
        }
        // Rotation J (c at pp, qq; s at pq; -s at qp) with A <- J^T A J zeroing A[p,q].
        const theta = (aqq - app) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < dim; k++) {
          const akp = at(A, dim, k, p);
          const akq = at(A, dim, k, q);
          A[k * dim + p] = c * akp - s * akq;
          A[k * dim + q] = s * akp + c * akq;
        }
        for (let k = 0; k < dim; k++) {
          const apk = at(A, dim, p, k);
          const aqk = at(A, dim, q, k);
          A[p * dim + k] = c * apk - s * aqk;
          A[q * dim + k] = s * apk + c * aqk;
          const vkp = at(V, dim, k, p);
          const vkq = at(V, dim, k, q);
          V[k * dim + p] = c * vkp - s * vkq;
          V[k * dim + q] = s * vkp + c * vkq;
        }
        A[p * dim + q] = 0;
        A[q * dim + p] = 0;
      }
    }
  }
  const values = new Float64Array(dim);
  for (let i = 0; i < dim; i++) values[i] = at(A, dim, i, i);
  return { values, vectors: V };
}

/**
 * Principal square root of a symmetric PSD matrix, V diag(sqrt(max(λ, 0))) V^T. Eigenvalues a
 * hair below zero are rounding error in a PSD matrix (e.g. a covariance of fewer samples than
 * dimensions), hence the clamp.
 */
export function sqrtmSym(a: Float64Array, dim: number): Float64Array {
  const { values, vectors: V } = symEig(a, dim);
  const r = values.map((v) => Math.sqrt(Math.max(v, 0)));
  const out = new Float64Array(dim * dim);
  for (let i = 0; i < dim; i++) {
    for (let j = i; j < dim; j++) {
      let s = 0;
      for (let k = 0; k < dim; k++) s += at(V, dim, i, k) * r[k]! * at(V, dim, j, k);
      out[i * dim + j] = s;
      out[j * dim + i] = s;
    }
  }
  return out;
}

function matmul(a: Float64Array, b: Float64Array, dim: number): Float64Array {
  const out = new Float64Array(dim * dim);
  for (let i = 0; i < dim; i++) {
    for (let k = 0; k < dim; k++) {
      const aik = at(a, dim, i, k);
      for (let j = 0; j < dim; j++) out[i * dim + j]! += aik * at(b, dim, k, j);
    }
  }
  return out;
}

/** Fréchet distance (squared, as FID reports it) between N(mu1, S1) and N(mu2, S2). */
export function gaussianFrechet(mu1: ArrayLike<number>, s1: Float64Array, mu2: ArrayLike<number>, s2: Float64Array): number {
  const dim = mu1.length;
  if (mu2.length !== dim || s1.length !== dim * dim || s2.length !== dim * dim) {
    throw new Error(`gaussianFrechet: want mu [${dim}] and covariances [${dim},${dim}]; got mu2 [${mu2.length}], S1 ${s1.length} and S2 ${s2.length} values`);
  }
  let meanTerm = 0;
  for (let i = 0; i < dim; i++) meanTerm += (mu1[i]! - mu2[i]!) ** 2;
  const r = sqrtmSym(s1, dim);
  const m = matmul(matmul(r, s2, dim), r, dim);
  // Symmetrise away the rounding asymmetry so Jacobi sees an exactly symmetric matrix.
  for (let i = 0; i < dim; i++) {
    for (let j = i + 1; j < dim; j++) {
      const v = (at(m, dim, i, j) + at(m, dim, j, i)) / 2;
      m[i * dim + j] = v;
      m[j * dim + i] = v;
    }
  }
  let trCross = 0;
  for (const v of symEig(m, dim).values) trCross += Math.sqrt(Math.max(v, 0));
  let tr = 0;
  for (let i = 0; i < dim; i++) tr += at(s1, dim, i, i) + at(s2, dim, i, i);
  // The true value is >= 0; cancellation can leave a rounding-level negative (e.g. FD(a, a)).
  return Math.max(0, meanTerm + tr - 2 * trCross);
}

/** Fréchet distance between feature sets a [na, dim] and b [nb, dim] (rows = samples). */
export function frechetDistance(a: Features, b: Features, dim: number): number {
  const A = meanCov(a, dim);
  const B = meanCov(b, dim);
  return gaussianFrechet(A.mean, A.cov, B.mean, B.cov);
}
