// float64 references of kernels/matmul.ts, for the tests only (not shipped with the package).
import { dims2, matmulShape } from '../../kernels/matmul.js';
import { numel } from '../../kernels/shape.js';


function batchIndex(shape: readonly number[], batch: readonly number[], flat: number): number {
  // Offset (in matrices) of the batch element `flat` of `batch` within an array whose batch dims are `shape`.
  let rem = flat;
  let off = 0;
  let mul = 1;
  for (let d = batch.length - 1; d >= 0; d--) {
    const i = rem % batch[d]!;
    rem = Math.floor(rem / batch[d]!);
    const j = d - (batch.length - shape.length);
    if (j >= 0) {
      if (shape[j]! !== 1) off += i * mul;
      mul *= shape[j]!;
    }
  }
  return off;
}

/** C = op(A)·op(B) in float64 with NumPy batch broadcasting. */
export function matmulRef(a: Float64Array, aShape: readonly number[], b: Float64Array, bShape: readonly number[], transA = false, transB = false): Float64Array {
  const shape = matmulShape('matmulRef', aShape, bShape, transA, transB);
  const batch = shape.slice(0, -2);
  const [m, k] = dims2(aShape, transA);
  const n = shape[shape.length - 1]!;
  const nb = numel(batch);
  const c = new Float64Array(nb * m * n);
  const ar = aShape[aShape.length - 1]!;
  const br = bShape[bShape.length - 1]!;
  for (let z = 0; z < nb; z++) {
    const ao = batchIndex(aShape.slice(0, -2), batch, z) * m * k;
    const bo = batchIndex(bShape.slice(0, -2), batch, z) * k * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let q = 0; q < k; q++) {
          const av = transA ? a[ao + q * ar + i]! : a[ao + i * ar + q]!;
          const bv = transB ? b[bo + j * br + q]! : b[bo + q * br + j]!;
          s += av * bv;
        }
        c[(z * m + i) * n + j] = s;
      }
    }
  }
  return c;
}

/** Vector-Jacobian product of matmulRef: [dA, dB] for upstream gc, summed over broadcast batch dims. */
export function matmulVjpRef(a: Float64Array, aShape: readonly number[], b: Float64Array, bShape: readonly number[], gc: Float64Array): [Float64Array, Float64Array] {
  const shape = matmulShape('matmulRef', aShape, bShape);
  const batch = shape.slice(0, -2);
  const [m, k] = dims2(aShape, false);
  const n = shape[shape.length - 1]!;
  const ga = new Float64Array(a.length);
  const gb = new Float64Array(b.length);
  for (let z = 0; z < numel(batch); z++) {
    const ao = batchIndex(aShape.slice(0, -2), batch, z) * m * k;
    const bo = batchIndex(bShape.slice(0, -2), batch, z) * k * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        const g = gc[(z * m + i) * n + j]!;
        for (let q = 0; q < k; q++) {
          ga[ao + i * k + q]! += g * b[bo + q * n + j]!;
          gb[bo + q * n + j]! += g * a[ao + i * k + q]!;
        }
      }
    }
  }
  return [ga, gb];
}

/** y = x·wᵀ + bias in float64; x [rows·in], w [out·in]. */
export function linearRef(x: Float64Array, w: Float64Array, bias: Float64Array | null, out: number, inF: number): Float64Array {
  const rows = x.length / inF;
  const y = new Float64Array(rows * out);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < out; o++) {
      let s = bias ? bias[o]! : 0;
      for (let i = 0; i < inF; i++) s += x[r * inF + i]! * w[o * inF + i]!;
      y[r * out + o] = s;
    }
  }
  return y;
}

/** Vector-Jacobian product of linearRef: [dx, dw, db]. */
export function linearVjpRef(x: Float64Array, w: Float64Array, gy: Float64Array, out: number, inF: number): [Float64Array, Float64Array, Float64Array] {
  const rows = x.length / inF;
  const gx = new Float64Array(x.length);
  const gw = new Float64Array(w.length);
  const gb = new Float64Array(out);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < out; o++) {
      const g = gy[r * out + o]!;
      gb[o]! += g;
      for (let i = 0; i < inF; i++) {
        gx[r * inF + i]! += g * w[o * inF + i]!;
        gw[o * inF + i]! += g * x[r * inF + i]!;
      }
    }
  }
  return [gx, gw, gb];
}
