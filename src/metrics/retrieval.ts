/**
 * k-nearest-neighbour retrieval (Euclidean), CPU: finds the training images (or their features)
 * closest to each generated one, to check a model for memorised training examples.
 */

type Rows = Float32Array | Float64Array;

/**
 * For each query row (queries [nq, dim]) the k nearest database rows (database [nd, dim]).
 * Returns index and Euclidean distance as [nq, k], nearest first; equal distances are ordered
 * by database index, so the result is deterministic. Distances are accumulated in float64.
 */
export function nearestNeighbours(
  queries: Rows,
  database: Rows,
  dim: number,
  k = 5,
): { index: Int32Array; distance: Float32Array } {
  if (!(dim > 0) || queries.length % dim !== 0 || database.length % dim !== 0) {
    throw new Error(`nearestNeighbours: queries (${queries.length} values) and database (${database.length}) must be whole rows of dim ${dim}`);
  }
  const nq = queries.length / dim;
  const nd = database.length / dim;
  if (!(Number.isInteger(k) && k >= 1 && k <= nd)) throw new Error(`nearestNeighbours: k = ${k} must be in 1..${nd} (database rows)`);
  const index = new Int32Array(nq * k);
  const distance = new Float32Array(nq * k);
  const bestD = new Float64Array(k); // squared distances of the current k best, ascending
  const bestI = new Int32Array(k);
  for (let q = 0; q < nq; q++) {
    bestD.fill(Infinity);
    bestI.fill(-1);
    const qo = q * dim;
    for (let i = 0; i < nd; i++) {
      let d = 0;
      const io = i * dim;
      for (let j = 0; j < dim; j++) {
        const t = queries[qo + j]! - database[io + j]!;
        d += t * t;
      }
      // Strict < keeps the earlier index first among equal distances (rows come in index order).
      if (!(d < bestD[k - 1]!)) continue;
      let s = k - 1;
      while (s > 0 && d < bestD[s - 1]!) {
        bestD[s] = bestD[s - 1]!;
        bestI[s] = bestI[s - 1]!;
        s--;
      }
      bestD[s] = d;
      bestI[s] = i;
    }
    for (let s = 0; s < k; s++) {
      index[q * k + s] = bestI[s]!;
      distance[q * k + s] = Math.sqrt(bestD[s]!);
    }
  }
  return { index, distance };
}
