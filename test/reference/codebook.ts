// float64 references of kernels/codebook.ts, for the tests only (not shipped with the package).

/**
 * Nearest code of each vector of z [N, D, H, W] (ties -> lowest index), with the smallest and the
 * second smallest squared distance (their gap is the margin an input can move without a switch).
 */
export function nearestRef(z: Float64Array, shape: readonly number[], codebook: Float64Array, k: number): { indices: Int32Array; best: Float64Array; second: Float64Array } {
  const [n, , h, w] = shape as [number, number, number, number];
  const m = n * h * w;
  const indices = new Int32Array(m);
  const best = new Float64Array(m).fill(Infinity);
  const second = new Float64Array(m).fill(Infinity);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < k; j++) {
      const s = distRef(z, shape, codebook, i, j);
      if (s < best[i]!) {
        second[i] = best[i]!;
        best[i] = s;
        indices[i] = j;
      } else if (s < second[i]!) second[i] = s;
    }
  }
  return { indices, best, second };
}

/** |z_m - e_j|^2 for vector m of NCHW z. */
export function distRef(z: Float64Array, shape: readonly number[], codebook: Float64Array, m: number, j: number): number {
  const d = shape[1]!;
  let s = 0;
  for (let c = 0; c < d; c++) {
    const diff = z[vectorOffset(m, c, shape)]! - codebook[j * d + c]!;
    s += diff * diff;
  }
  return s;
}

/** Index of element (m, c) of NCHW z viewed as vectors. */
export function vectorOffset(m: number, c: number, shape: readonly number[]): number {
  const [, d, h, w] = shape as [number, number, number, number];
  const hw = h * w;
  return Math.floor(m / hw) * d * hw + c * hw + (m % hw);
}

/** zq (NCHW, the codes chosen by `indices`) and the loss (1 + beta) * mean((z - e)^2). */
export function codebookRef(z: Float64Array, shape: readonly number[], codebook: Float64Array, indices: ArrayLike<number>, beta: number): { zq: Float64Array; loss: number } {
  const d = shape[1]!;
  const zq = new Float64Array(z.length);
  let sq = 0;
  for (let m = 0; m < indices.length; m++) {
    for (let c = 0; c < d; c++) {
      const o = vectorOffset(m, c, shape);
      const e = codebook[indices[m]! * d + c]!;
      zq[o] = e;
      sq += (z[o]! - e) ** 2;
    }
  }
  return { zq, loss: ((1 + beta) * sq) / z.length };
}

/**
 * VJP reference: upstream gZq (through zq, straight through to z) and gLoss (through the loss) give
 * dz = gZq + gLoss * 2 beta (z - e) / numel and dcodebook[k] = gLoss * sum over vectors of k of 2 (e_k - z) / numel.
 */
export function codebookGradRef(z: Float64Array, shape: readonly number[], codebook: Float64Array, k: number, indices: ArrayLike<number>, beta: number, gZq: Float64Array | null, gLoss: number): { dz: Float64Array; dcb: Float64Array } {
  const d = shape[1]!;
  const numel = z.length;
  const dz = gZq ? gZq.slice() : new Float64Array(numel);
  const dcb = new Float64Array(k * d);
  for (let m = 0; m < indices.length; m++) {
    const j = indices[m]!;
    for (let c = 0; c < d; c++) {
      const o = vectorOffset(m, c, shape);
      const diff = z[o]! - codebook[j * d + c]!;
      dz[o]! += (gLoss * 2 * beta * diff) / numel;
      dcb[j * d + c]! -= (gLoss * 2 * diff) / numel;
    }
  }
  return { dz, dcb };
}
