// float64 references of kernels/gather.ts, for the tests only (not shipped with the package).

/** Forward reference of gatherRows over dense [V, E] rows; out-of-range indices give zeros. */
export function gatherRowsRef(indices: ArrayLike<number>, table: Float64Array, v: number, e: number): Float64Array {
  const out = new Float64Array(indices.length * e);
  for (let r = 0; r < indices.length; r++) {
    const k = indices[r]!;
    if (k < 0 || k >= v) continue;
    for (let c = 0; c < e; c++) out[r * e + c] = table[k * e + c]!;
  }
  return out;
}

/** Reference of segmentSum over dense [M, E] rows: the VJP of gatherRows with respect to the table. */
export function segmentSumRef(indices: ArrayLike<number>, g: Float64Array, v: number, e: number): Float64Array {
  const out = new Float64Array(v * e);
  for (let r = 0; r < indices.length; r++) {
    const k = indices[r]!;
    if (k < 0 || k >= v) continue;
    for (let c = 0; c < e; c++) out[k * e + c]! += g[r * e + c]!;
  }
  return out;
}
