// Tile configurations of the register-tiled GEMM core (shaders/gemm_tile.wgsl), shared by matmul and
// the GPU convolution: which tile a product gets, and the override constants that make its pipeline.
import { LimitError } from '../src/runtime/errors.js';
import type { Runtime } from '../src/runtime/runtime.js';

export interface GemmTile {
  /** Tile of C per workgroup (M x N) and K depth per step. */
  bm: number;
  bn: number;
  bk: number;
  /** Outputs per thread along M and N: 4 or 8. */
  tm: number;
  tn: number;
  /** Copies of the tiles in workgroup memory, 1 or 2 (default: 2 where they fit the device). */
  stages?: number;
}

/**
 * The tiles, largest first. 256-thread workgroups but for g32 (64 threads, for products too small
 * to fill a GPU with larger tiles). 8x8 outputs per thread (g128) need half the workgroup-memory
 * reads per FMA of 4x4 (g64): what large products on big GPUs want; g64x128 suits convolutions,
 * whose N (batch x pixels) is long and M (channels) short.
 */
export const GEMM_TILES = {
  g128: { bm: 128, bn: 128, bk: 8, tm: 8, tn: 8 },
  g64x128: { bm: 64, bn: 128, bk: 16, tm: 4, tn: 8 },
  g64: { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4 },
  g32: { bm: 32, bn: 32, bk: 16, tm: 4, tn: 4 },
} as const satisfies Record<string, GemmTile>;
export type TileName = keyof typeof GEMM_TILES;
const ORDER = Object.keys(GEMM_TILES) as TileName[];

/**
 * Workgroups a product should have at least before a larger tile is taken: enough for about two per
 * compute unit on a large GPU (an H200 has 132 SMs; measured there, 64x64 tiles of a 4096x128 product,
 * 128 workgroups, ran 1.75x slower than 32x32 ones). Smaller GPUs lose little from the smaller tiles.
 */
export const MIN_GROUPS = 192;

/**
 * The tile for an m x n product with `batch` matrices: the largest no larger than `cap` (the tuned
 * choice) that gives at least `minGroups` workgroups and pads no more than 15% more work than 32x32
 * tiles would (M = 320: 128-row tiles pad to 384, 64-row ones not at all).
 */
export function pickGemmTile(cap: TileName, m: number, n: number, batch: number, minGroups = MIN_GROUPS): TileName {
  const padded = (t: GemmTile) => Math.ceil(m / t.bm) * t.bm * Math.ceil(n / t.bn) * t.bn;
  const base = padded(GEMM_TILES.g32);
  for (const name of ORDER.slice(ORDER.indexOf(cap))) {
    const t = GEMM_TILES[name];
    if (name === 'g32') return name;
    if (Math.ceil(m / t.bm) * Math.ceil(n / t.bn) * batch >= minGroups && padded(t) <= 1.15 * base) return name;
  }
  return 'g32';
}

export const tileThreads = (t: GemmTile) => (t.bm / t.tm) * (t.bn / t.tn);

/** Workgroup memory of one copy of the A and B tiles (rows padded by a vec4). */
export const tileStageBytes = (t: GemmTile) => 16 * t.bk * (t.bm / 4 + 1 + t.bn / 4 + 1);

/**
 * Tiles the core supports: 4 or 8 outputs per thread each way, a K step of whole vec4s, each thread
 * loading 4 or 8 elements of A and of B per step, and as many threads as columns (or K rows) times a
 * whole number, so the convolution's loaders give each thread a fixed column (kernels/conv2d.ts).
 */
export function tileShapeOk(t: GemmTile): boolean {
  const nt = tileThreads(t);
  const ea = (t.bm * t.bk) / nt;
  const eb = (t.bk * t.bn) / nt;
  return [4, 8].includes(t.tm) && [4, 8].includes(t.tn) && t.bm % t.tm === 0 && t.bn % t.tn === 0 && t.bk % 4 === 0 &&
    [4, 8].includes(ea) && [4, 8].includes(eb) && nt % t.bn === 0 && nt % t.bk === 0;
}

/** Whether this device can run the tile at all. */
export function tileFits(rt: Runtime, t: GemmTile): boolean {
  return tileThreads(t) <= rt.limits.maxComputeInvocationsPerWorkgroup && tileThreads(t) <= rt.limits.maxComputeWorkgroupSizeX &&
    tileStageBytes(t) <= rt.limits.maxComputeWorkgroupStorageSize;
}

/** The core's override constants for a tile: double-buffered where two copies fit the device. */
export function tileConstants(op: string, rt: Runtime, t: GemmTile): Record<string, number> {
  if (!tileShapeOk(t)) throw new Error(`${op}: tile ${JSON.stringify(t)} is not supported (tm, tn 4 or 8; each thread must load 4 or 8 elements of A and of B per step)`);
  const bytes = tileStageBytes(t);
  const limit = rt.limits.maxComputeWorkgroupStorageSize;
  if (bytes > limit) throw new LimitError(op, 'maxComputeWorkgroupStorageSize', bytes, limit, `Tile ${JSON.stringify(t)} needs more workgroup memory; use a smaller bk or tile.`);
  const threads = tileThreads(t);
  if (threads > rt.limits.maxComputeInvocationsPerWorkgroup) {
    throw new LimitError(op, 'maxComputeInvocationsPerWorkgroup', threads, rt.limits.maxComputeInvocationsPerWorkgroup, `Tile ${JSON.stringify(t)} has too many threads per workgroup; use a smaller tile.`);
  }
  const stages = t.stages ?? (2 * bytes <= limit ? 2 : 1);
  if (stages !== 1 && stages !== 2) throw new Error(`${op}: tile stages must be 1 or 2, got ${stages}`);
  if (stages * bytes > limit) throw new LimitError(op, 'maxComputeWorkgroupStorageSize', stages * bytes, limit, `Tile ${JSON.stringify(t)} with ${stages} stages needs more workgroup memory.`);
  return { BM: t.bm, BN: t.bn, BK: t.bk, TM: t.tm, TN: t.tn, STAGES: stages };
}
