import { Kernel } from '../src/runtime/kernel.js';
import { DeviceArray } from '../src/runtime/runtime.js';
import source from '../shaders/codebook.wgsl';
import { binary } from './elementwise.js';
import { sumAxes } from './reduce.js';
import { nchwVectors, segmentSum } from './gather.js';

const kernel = new Kernel('codebook', source);

const WG = 64;
/** vec4s of staged codes in workgroup memory (TILE in the WGSL). */
const TILE = 512;
/** The longest code vector the generic kernel can stage (one code per tile). */
export const MAX_CODE_DIM = 4 * TILE;

function uniforms(z: DeviceArray, k: number, alpha = 0) {
  const [n, d, h, w] = z.shape as [number, number, number, number];
  const q = Math.ceil(d / 16) * 4;
  return { m: n * h * w, hw: h * w, d, k, q, tk: Math.min(128, Math.floor(TILE / q)), n: z.size, alpha };
}

/** Entry point and vectors per thread for vector length d (VQ-GAN / LDM latents have D = 3 or 4). */
function variant(d: number): [string, number] {
  if (d <= 4) return ['nearest_d4', 8];
  if (d <= 8) return ['nearest_d8', 8];
  if (d <= 16) return ['nearest_d16', 4];
  return ['nearest', 1];
}

export interface Nearest {
  /** [N, D, H, W]: the chosen code of each vector. */
  zq: DeviceArray;
  /** [N, H, W] i32: its index. */
  indices: DeviceArray;
  /** [N*H*W]: |z - e|^2 per vector. */
  err: DeviceArray;
}

/** Nearest code by L2 for every spatial vector of z [N, D, H, W], codebook [K, D] (ties -> lowest index). */
export function nearestCode(z: DeviceArray, codebook: DeviceArray): Nearest {
  const rt = z.rt;
  const [n, d, h, w] = z.shape as [number, number, number, number];
  const k = codebook.shape[0]!;
  const m = n * h * w;
  const zq = rt.alloc(z.shape, 'f32', 'codebookLookup');
  const indices = rt.alloc([n, h, w], 'i32', 'codebookLookup');
  const err = rt.alloc([m], 'f32', 'codebookLookup');
  const [entry, perThread] = variant(d);
  rt.dispatch(kernel, entry, {
    bindings: { z, codebook, indices, zq, err },
    uniforms: uniforms(z, k),
    workgroups: rt.grid1d(m, perThread * WG),
    constants: { WG },
  });
  return { zq, indices, err };
}

/** The loss value (1 + beta) * mean((z - e)^2), shape [], from the per-vector errors (a fixed-order sum). */
export function codebookLoss(err: DeviceArray, numel: number, beta: number): DeviceArray {
  return sumAxes(err, [0], (1 + beta) / numel).reshape([]);
}

/** d loss / d z for the commitment term: gLoss * 2 * beta / numel * (z - zq). */
export function commitGrad(z: DeviceArray, zq: DeviceArray, gLoss: DeviceArray, beta: number): DeviceArray {
  const rt = z.rt;
  const out = rt.alloc(z.shape, 'f32', 'codebookLookup');
  rt.dispatch(kernel, 'commit_grad', {
    bindings: { z, zq_in: zq, g: gLoss, out },
    uniforms: uniforms(z, 0, (2 * beta) / z.size),
    workgroups: rt.grid1d(z.size, 256),
  });
  return out;
}

/** d loss / d codebook for the codebook term: gLoss * 2 / numel * sum over vectors assigned to k of (e_k - z). */
export function codebookGrad(indices: DeviceArray, z: DeviceArray, zq: DeviceArray, k: number, gLoss: DeviceArray): DeviceArray {
  const d = z.shape[1]!;
  const s = segmentSum(indices, zq, z, k, d, nchwVectors(z.shape), 2 / z.size);
  return binary('mul', s, gLoss.reshape([1, 1]));
}

// ------------------------------------------------------------------ float64 references (tests only)

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
      dz[o] += (gLoss * 2 * beta * diff) / numel;
      dcb[j * d + c] -= (gLoss * 2 * diff) / numel;
    }
  }
  return { dz, dcb };
}
