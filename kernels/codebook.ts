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
