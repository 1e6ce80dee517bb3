// float64 references of kernels/vq.ts, for the tests only (not shipped with the package).

/** restartCodes on host arrays, in place. */
export function restartCodesRef(
  s: { codebook: Float64Array; age: Float64Array; cluster?: Float64Array; sum?: Float64Array },
  counts: ArrayLike<number>, u: ArrayLike<number>, z: Float64Array, shape: readonly number[], threshold: number,
): void {
  const [n, d, h, w] = shape as [number, number, number, number];
  const m = n * h * w;
  const hw = h * w;
  for (let k = 0; k < s.age.length; k++) {
    if (counts[k]! > 0.5) {
      s.age[k] = 0;
      continue;
    }
    const a = s.age[k]! + 1;
    s.age[k] = a;
    if (!(threshold > 0 && a % threshold === 0)) continue;
    const r = Math.min(Math.floor(Math.fround(u[k]! * m)), m - 1);
    for (let c = 0; c < d; c++) {
      const v = z[Math.floor(r / hw) * d * hw + c * hw + (r % hw)]!;
      s.codebook[k * d + c] = v;
      if (s.sum) s.sum[k * d + c] = v;
    }
    if (s.cluster) s.cluster[k] = 1;
  }
}
