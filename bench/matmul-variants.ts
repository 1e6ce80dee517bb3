// Matmul entry points and tilings side by side at shapes the engine meets, to choose defaults per
// adapter: every candidate's output is checked against the first (and that one against float64 dot
// products at sampled entries) before anything is timed.
// Usage: node scripts/run.mjs bench/matmul-variants.ts [--min-ms 25] [--json FILE] [--small] [--large]
// (--small: only the two smallest shapes, for CPU-emulated adapters; --large: 4096^3 too).
import { writeFileSync } from 'node:fs';
import type { DeviceArray, Runtime } from '../src/index.js';
import { defaultVariant, matmul, pickTiling, tilingName, MatmulTiling, MatmulVariant } from '../kernels/matmul.js';
import { GEMM_TILES, GemmTile, pickGemmTile } from '../kernels/gemm-tile.js';
import { benchDevice, flag, randn, timeLaunches } from './common.js';

const args = process.argv.slice(2);
const opt = (name: string) => flag(args, name);
const MIN_BLOCK_MS = Number(opt('--min-ms') ?? 25);
const REPS = 5;

/** M x K x N, smallest first (--small takes the first two). */
interface Shape { name: string; batch: number; m: number; k: number; n: number; transB?: boolean }
const SHAPES: Shape[] = [
  { name: '256x64x256 (small)', batch: 1, m: 256, k: 64, n: 256 },
  { name: '8 x 256x64x256 (attention-like)', batch: 8, m: 256, k: 64, n: 256 },
  { name: '4096x128x128', batch: 1, m: 4096, k: 128, n: 128 },
  { name: '64x512x2048 (linear-like, x·wᵀ)', batch: 1, m: 64, k: 512, n: 2048, transB: true },
  { name: '512x512x512', batch: 1, m: 512, k: 512, n: 512 },
  { name: '1024x1024x1024', batch: 1, m: 1024, k: 1024, n: 1024 },
  { name: '2048x2048x2048', batch: 1, m: 2048, k: 2048, n: 2048 },
];
const LARGE: Shape = { name: '4096x4096x4096', batch: 1, m: 4096, k: 4096, n: 4096 };

interface Candidate { label: string; variant?: MatmulVariant; tiling?: MatmulTiling | GemmTile }
const CANDIDATES: Candidate[] = [
  { label: 'regs 64x64 (8x8 thr)', variant: 'regs', tiling: { wx: 8, wy: 8 } },
  { label: 'regs 32x32 (4x4 thr)', variant: 'regs', tiling: { wx: 4, wy: 4 } },
  ...Object.entries(GEMM_TILES).map(([name, tiling]) => ({ label: tilingName(name as MatmulVariant, tiling), variant: name as MatmulVariant, tiling })),
  { label: 'g64 single-buffered', variant: 'g64', tiling: { ...GEMM_TILES.g64, stages: 1 } },
  { label: 'g128x64 (8x4/thread)', variant: 'g128', tiling: { bm: 128, bn: 64, bk: 16, tm: 8, tn: 4 } },
  { label: 'default', variant: undefined, tiling: undefined },
];

const timeIt = (launch: () => void, finish: () => Promise<void>) => timeLaunches(launch, finish, REPS, MIN_BLOCK_MS);

/** float64 C[z, i, j] from the host copies, for a few sampled entries. */
function refEntry(s: Shape, a: Float32Array, b: Float32Array, z: number, i: number, j: number): number {
  let sum = 0;
  for (let q = 0; q < s.k; q++) {
    const bv = s.transB ? b[(z * s.n + j) * s.k + q]! : b[(z * s.k + q) * s.n + j]!;
    sum += a[(z * s.m + i) * s.k + q]! * bv;
  }
  return sum;
}

interface Row { shape: string; candidate: string; ms: number; gflops: number; launchesPerBlock: number; maxAbsDiff: number }

async function benchShape(rt: Runtime, s: Shape, rows: Row[]) {
  const lead = s.batch > 1 ? [s.batch] : [];
  const a = randn(s.batch * s.m * s.k, 1), b = randn(s.batch * s.k * s.n, 2);
  const A = rt.upload(a, [...lead, s.m, s.k]);
  const B = rt.upload(b, [...lead, ...(s.transB ? [s.n, s.k] : [s.k, s.n])]);
  const run = (c: Candidate) => matmul(A, B, { transB: s.transB, variant: c.variant, tiling: c.tiling });
  // Tolerance: f32 sums of K normal products in different orders differ by ~1e-7·K; a wrong or
  // missing term is ~1. 1e-3·sqrt(K) lies between for every K here.
  const tol = 1e-3 * Math.sqrt(s.k);
  rt.poison = true; // outputs start as NaN, so an element a kernel skips cannot pass
  const outs: Float32Array[] = [];
  for (const c of CANDIDATES) outs.push((await rt.read(run(c))) as Float32Array);
  rt.poison = false;
  for (let e = 0; e < 16; e++) {
    const [z, i, j] = [e % s.batch, (e * 97) % s.m, (e * 389 + 7) % s.n];
    const d = Math.abs(outs[0]![(z * s.m + i) * s.n + j]! - refEntry(s, a, b, z, i, j));
    if (!(d <= tol)) throw new Error(`${s.name}: ${CANDIDATES[0]!.label} differs from float64 by ${d} at [${z}, ${i}, ${j}]`);
  }
  const flops = 2 * s.batch * s.m * s.n * s.k;
  const v0 = defaultVariant(rt);
  const dflt = `default: ${v0 === 'regs' ? tilingName(v0, pickTiling(s.m, s.n, s.batch)) : tilingName(pickGemmTile(v0, s.m, s.n, s.batch))}`; // gemm's choice for these shapes (no batch folding here)
  console.log(`\n${s.name}: ${(flops / 1e9).toFixed(3)} GFLOP`);
  console.log(`  ${'candidate'.padEnd(30)} ${'ms'.padStart(10)} ${'GFLOP/s'.padStart(10)} ${'vs best'.padStart(8)} ${'launches'.padStart(8)}  max|diff|`);
  const mine: Row[] = [];
  for (const [ci, c] of CANDIDATES.entries()) {
    let diff = 0;
    for (let i = 0; i < outs[ci]!.length; i++) diff = Math.max(diff, Math.abs(outs[ci]![i]! - outs[0]![i]!));
    if (!(diff <= tol)) throw new Error(`${s.name}: ${c.label} differs from ${CANDIDATES[0]!.label} by ${diff}; not timing a wrong kernel`);
    let y: DeviceArray = run(c);
    const { ms, perBlock } = await timeIt(() => { rt.dispose(y); y = run(c); }, () => rt.sync());
    rt.dispose(y);
    mine.push({ shape: s.name, candidate: c.variant ? c.label : dflt, ms, gflops: flops / ms / 1e6, launchesPerBlock: perBlock, maxAbsDiff: diff });
  }
  const best = Math.min(...mine.map((r) => r.ms));
  for (const r of mine) {
    console.log(`  ${r.candidate.padEnd(30)} ${r.ms.toFixed(r.ms < 1 ? 4 : 2).padStart(10)} ${r.gflops.toFixed(1).padStart(10)} ${(r.ms / best).toFixed(2).padStart(7)}x ${String(r.launchesPerBlock).padStart(8)}  ${r.maxAbsDiff.toExponential(1)}`);
  }
  rows.push(...mine);
  rt.dispose(A);
  rt.dispose(B);
}

async function main() {
  const dev = await benchDevice(args);
  const rt = dev.rt;
  const adapter = `${dev.adapter.vendor} ${dev.adapter.architecture} ${dev.adapter.description}`.trim();
  console.log(`adapter: ${adapter}; default variant ${defaultVariant(rt)}; blocks of >= ${MIN_BLOCK_MS} ms, median of ${REPS}`);
  const rows: Row[] = [];
  for (const s of args.includes('--small') ? SHAPES.slice(0, 2) : args.includes('--large') ? [...SHAPES, LARGE] : SHAPES) await benchShape(rt, s, rows);
  const json = opt('--json');
  if (json) {
    writeFileSync(json, JSON.stringify({ adapter, minBlockMs: MIN_BLOCK_MS, reps: REPS, rows }, null, 2));
    console.log(`wrote ${json}`);
  }
  dev.destroy();
}

await main();
process.exit(0);
