// Kernel benchmarks side by side with tfjs's WebGPU backend on the same adapter, plus the adapter's
// measured FMA peak. By default the GPU-sized shapes diffusion models meet (matmul 1024^3 to 4096^3,
// a 3x3 320->320 convolution on 64x64, group norm of 2x320x64x64); --quick runs the small shapes of a
// small U-Net instead (what a CPU emulator such as SwiftShader finishes: the large ones would take
// hours there). Outputs are checked against tfjs before anything is timed, and each result names the
// kernel variant the autotuner chose for it. Then a training step of a small U-Net-like stack
// (bench/train.ts), also beside tfjs; then sampling, VQ-GAN and latent-diffusion throughput on the
// shipped models (bench/models.ts).
// Usage: npm run bench [-- --quick] [--json FILE] [--reps N] [--min-ms MS] [--only NAME|attention|training|models] [--no-training] [--no-models]
// [--sample-batches 16,128] [--sample-runs N] [--autotune-cache FILE] [--retune]
// [--batch N --size N --channels N --steps N --rounds N for the training step]
import { writeFileSync } from 'node:fs';
import { ops, grad, Device, Tensor } from '../src/index.js';
import { attentionRunName } from '../kernels/attention.js';
import { Kernel } from '../src/runtime/kernel.js';
import { matmulRunName } from '../kernels/matmul.js';
import { conv2dGeometry, conv2dRunName } from '../kernels/conv2d.js';
import { groupNormWorkgroup } from '../kernels/groupnorm.js';
import type { TuneRecord } from '../src/runtime/autotune.js';
import peakSource from './peak.wgsl';

import { TF, flag, randn, nchwToNhwc, loadTf, timeLaunches, benchDevice } from './common.js';
import { trainingBench, trainingOptions, TrainingResult } from './train.js';
import { modelsBench, ModelsResult } from './models.js';

interface Timing {
  ms: number;
  gflops: number;
  /** launches per timed block (see timeLaunches); 1 where one launch already lasts --min-ms */
  launchesPerBlock: number;
}
export interface BenchResult {
  kernel: string;
  shape: string;
  ours: Timing;
  tfjs: Timing | null;
  /** max |ours - tfjs| over the output, checked before timing */
  maxAbsDiff: number | null;
  /** the kernel variant (and tile) that ran, as the autotuner chose it on this adapter */
  variant?: string;
}

const args = process.argv.slice(2);
const opt = (name: string) => flag(args, name);
const REPS = Number(opt('--reps') ?? 3);
const ONLY = opt('--only');
const QUICK = args.includes('--quick');

/** Shortest timed block, in ms: on a fast GPU one launch is shorter than the readback that ends it. */
const MIN_BLOCK_MS = Number(opt('--min-ms') ?? 25);

const timeIt = (launch: () => void, finish: () => Promise<void>, reps = REPS) => timeLaunches(launch, finish, reps, MIN_BLOCK_MS);

/** f32 FMA peak: the grid grows (×4) until one dispatch lasts 2 ms, long enough to fill a large GPU. */
async function measurePeak(dev: Device): Promise<number> {
  const k = new Kernel('fma_peak', peakSource);
  const iters = 2048;
  const maxGroups = dev.rt.limits.maxComputeWorkgroupsPerDimension;
  let groups = 256;
  for (;;) {
    const out = dev.rt.alloc([groups * 64]);
    const launch = () => dev.rt.dispatch(k, 'fma_peak', { bindings: { out }, uniforms: { iters, seed: 1 }, workgroups: [groups] });
    const { ms } = await timeIt(launch, () => dev.sync(), 3);
    dev.rt.dispose(out);
    if (ms >= 2 || groups * 4 > maxGroups) return (groups * 64 * iters * 8 * 4 * 2) / ms / 1e6;
    groups *= 4;
  }
}

interface Case {
  kernel: string;
  shape: string;
  flops: number;
  ours: (dev: Device) => { run: () => Tensor; inputs: Tensor[] };
  tfjs: ((tf: TF) => { run: () => import('@tensorflow/tfjs-core').Tensor }) | null;
  /** maps ours' output to tfjs' layout for the check (e.g. NCHW -> NHWC) */
  toTfLayout?: (y: Float32Array, tf: TF) => Float32Array;
  /** the largest |ours - tfjs| accepted before timing (default 1e-2) */
  tol?: number;
  /** what runs on this adapter (the tuned variant and its tile) */
  variant?: (dev: Device) => string;
  /** `--only` also selects the case by this name (e.g. 'attention' for all attention cases) */
  group?: string;
}

function matmulCase(M: number, K: number, N: number): Case {
  const a = randn(M * K, 1), b = randn(K * N, 2);
  return {
    kernel: 'matmul', shape: `${M}x${K} @ ${K}x${N}`, flops: 2 * M * N * K,
    ours: (dev) => { const A = dev.tensor(a, [M, K]), B = dev.tensor(b, [K, N]); return { inputs: [A, B], run: () => ops.matmul(A, B) }; },
    tfjs: (tf) => { const A = tf.tensor2d(a, [M, K]), B = tf.tensor2d(b, [K, N]); return { run: () => tf.matMul(A, B) }; },
    // Outputs are sums of K products of unit normals (~sqrt(K)); two f32 summation orders differ by
    // ~1e-7·K at most, and a wrong term by ~1: 1e-2·sqrt(K/512) lies between for K <= 4096.
    tol: 1e-2 * Math.sqrt(Math.max(1, K / 512)),
    variant: (dev) => matmulRunName(dev.rt, M, N),
  };
}

function convCase(n: number, c: number, co: number, h: number, w: number): Case {
  const x = randn(n * c * h * w, 3), wt = randn(co * c * 9, 4).map((v) => v * 0.05), bias = randn(co, 5);
  // tfjs' WebGPU conv2d is NHWC with HWIO filters: same numbers, its native layout.
  const xN = nchwToNhwc(x, [n, c, h, w]);
  const wH = new Float32Array(co * c * 9);
  for (let o = 0; o < co; o++) for (let i = 0; i < c; i++) for (let k = 0; k < 9; k++) wH[(k * c + i) * co + o] = wt[(o * c + i) * 9 + k]!;
  const g = conv2dGeometry([n, c, h, w], [co, c, 3, 3], [co], { padding: 1 });
  return {
    kernel: 'conv2d', shape: `3x3 ${c}->${co}, ${h}x${w}, batch ${n}, pad 1, bias`, flops: 2 * n * co * h * w * c * 9,
    ours: (dev) => {
      const X = dev.tensor(x, [n, c, h, w]), W = dev.tensor(wt, [co, c, 3, 3]), B = dev.tensor(bias, [co]);
      return { inputs: [X, W, B], run: () => ops.conv2d(X, W, B, { padding: 1 }) };
    },
    tfjs: (tf) => {
      const X = tf.tensor4d(xN, [n, h, w, c]), W = tf.tensor4d(wH, [3, 3, c, co]), B = tf.tensor1d(bias);
      return { run: () => tf.add(tf.conv2d(X, W, 1, 'same'), B) };
    },
    toTfLayout: (y) => nchwToNhwc(y, [n, co, h, w]),
    variant: (dev) => conv2dRunName(dev.rt, g),
  };
}

function groupNormCase(n: number, c: number, h: number, w: number, g: number): Case {
  const x = randn(n * c * h * w, 6), gamma = randn(c, 7), beta = randn(c, 8);
  return {
    kernel: 'groupNorm', shape: `[${n}, ${c}, ${h}, ${w}], ${g} groups`, flops: 8 * n * c * h * w,
    ours: (dev) => {
      const X = dev.tensor(x, [n, c, h, w]), G = dev.tensor(gamma, [c]), B = dev.tensor(beta, [c]);
      return { inputs: [X, G, B], run: () => ops.groupNorm(X, g, G, B, { eps: 1e-5 }) };
    },
    tfjs: (tf) => {
      const X = tf.tensor4d(x, [n, c, h, w]), G = tf.tensor4d(gamma, [1, c, 1, 1]), B = tf.tensor4d(beta, [1, c, 1, 1]);
      return {
        run: () => tf.tidy(() => {
          const xg = tf.reshape(X, [n, g, (c / g) * h * w]);
          const { mean, variance } = tf.moments(xg, 2, true);
          const xn = tf.reshape(tf.div(tf.sub(xg, mean), tf.sqrt(tf.add(variance, 1e-5))), [n, c, h, w]);
          return tf.add(tf.mul(xn, G), B);
        }),
      };
    },
    variant: (dev) => `${groupNormWorkgroup(dev.rt)} threads per group`,
  };
}

/** The kernels of other work (attention, codebook). */
function otherCases(): Case[] {
  const list: Case[] = [];
  // Attention: --quick keeps the small shapes (SwiftShader); by default the shapes of a diffusion
  // model's attention on 32x32 and 64x64 latents, forward and forward+backward. tfjs runs matmul,
  // softmax, matmul (and tf.grads of it). FLOPs: 4·BH·Lq·Lk·D forward (two products) and 14·BH·Lq·Lk·D
  // forward+backward (the backward's five products; our kernels also recompute the scores). Outputs
  // and gradients are ~1/sqrt(Lk) (0.02-0.08 here) and two f32 summation orders differ by ~1e-7:
  // 1e-4 lies between that and a wrong term.
  const attnShapes: [number, number, number, number, boolean][] = QUICK
    ? [[1, 4, 256, 256, false], [1, 4, 256, 77, false]]
    : [[2, 8, 1024, 1024, false], [2, 8, 4096, 4096, false], [2, 8, 1024, 1024, true], [2, 8, 4096, 4096, true]];
  for (const [b, hd, lq, lk, backward] of attnShapes) {
    const d = 64, bh = b * hd;
    const q = randn(bh * lq * d, 9), k = randn(bh * lk * d, 10), v = randn(bh * lk * d, 11), go = randn(bh * lq * d, 14);
    const scale = 1 / Math.sqrt(d);
    const kernel = lq === lk ? 'attention' : 'cross-attention';
    type TfT = import('@tensorflow/tfjs-core').Tensor;
    list.push({
      kernel: backward ? `${kernel} forward+backward` : kernel, group: 'attention', shape: `B=${b} H=${hd} Lq=${lq} Lk=${lk} D=${d}`,
      flops: (backward ? 14 : 4) * bh * lq * lk * d, tol: 1e-4,
      ours: (dev) => {
        const opt = { requiresGrad: backward };
        const Q = dev.tensor(q, [b, hd, lq, d], opt), K = dev.tensor(k, [b, hd, lk, d], opt), V = dev.tensor(v, [b, hd, lk, d], opt);
        if (!backward) return { inputs: [Q, K, V], run: () => ops.attention(Q, K, V, { scale }) };
        const GO = dev.tensor(go, [b, hd, lq, d]);
        // dq, dk, dv side by side along L, as tfjs' concat of [BH, L, D] along axis 1
        return { inputs: [Q, K, V, GO], run: () => ops.concat(grad(ops.attention(Q, K, V, { scale }), [Q, K, V], { gradOutput: GO }), 2) };
      },
      tfjs: (tf) => {
        const Q = tf.tensor3d(q, [bh, lq, d]), K = tf.tensor3d(k, [bh, lk, d]), V = tf.tensor3d(v, [bh, lk, d]);
        const f = (q: TfT, k: TfT, v: TfT) => tf.matMul(tf.softmax(tf.mul(tf.matMul(q, k, false, true), scale)), v);
        if (!backward) return { run: () => tf.tidy(() => f(Q, K, V)) };
        const GO = tf.tensor3d(go, [bh, lq, d]);
        const g = tf.grads(f as (...a: TfT[]) => TfT);
        return { run: () => tf.tidy(() => tf.concat(g([Q, K, V], GO), 1)) };
      },
      variant: (dev) => (backward ? `${attentionRunName(dev.rt, 'forward', d)}; ${attentionRunName(dev.rt, 'backward', d)}` : attentionRunName(dev.rt, 'forward', d)),
    });
  }
  {
    const K = 1024, D = 4, hw = 64;
    const z = randn(D * hw * hw, 12), cb = randn(K * D, 13);
    // tfjs: distances through one matmul, argmin, gather (vectors as rows).
    const zRows = nchwToNhwc(z, [1, D, hw, hw]);
    list.push({
      kernel: 'codebookLookup', shape: `K=${K} D=${D}, ${hw * hw} vectors`, flops: 3 * K * D * hw * hw,
      ours: (dev) => {
        const Z = dev.tensor(z, [1, D, hw, hw]), C = dev.tensor(cb, [K, D]);
        return { inputs: [Z, C], run: () => ops.codebookLookup(Z, C, { beta: 0.25 }).zq };
      },
      tfjs: (tf) => {
        const Z = tf.tensor2d(zRows, [hw * hw, D]), C = tf.tensor2d(cb, [K, D]);
        const cn = tf.sum(tf.square(C), 1);
        return { run: () => tf.tidy(() => tf.gather(C, tf.argMin(tf.sub(cn, tf.mul(tf.matMul(Z, C, false, true), 2)), 1))) };
      },
      toTfLayout: (y) => nchwToNhwc(y, [1, D, hw, hw]),
    });
  }
  return list;
}

/**
 * --quick: the shapes of a small U-Net (SwiftShader's bench; bench/README.md). Default: the shapes
 * diffusion models meet on a GPU (issue 22's bars: matmul 4096^3, conv 3x3 320->320 on 64x64).
 */
function cases(): Case[] {
  if (QUICK) return [matmulCase(512, 512, 512), convCase(8, 64, 64, 32, 32), groupNormCase(8, 64, 32, 32, 32), ...otherCases()];
  return [
    matmulCase(1024, 1024, 1024), matmulCase(2048, 2048, 2048), matmulCase(4096, 4096, 4096),
    convCase(2, 320, 320, 64, 64),
    groupNormCase(2, 320, 64, 64, 32),
    ...otherCases(),
  ];
}

async function main() {
  const dev = await benchDevice(args);
  const adapter = `${dev.adapter.vendor} ${dev.adapter.architecture} ${dev.adapter.description}`.trim();
  console.log(`adapter: ${adapter}; ${QUICK ? 'quick (small) shapes' : 'GPU-sized shapes (--quick: the small ones)'}`);
  const peak = await measurePeak(dev);
  console.log(`measured f32 FMA peak: ${peak.toFixed(2)} GFLOP/s`);
  const tf = await loadTf(dev);
  const results: BenchResult[] = [];
  for (const c of cases()) {
    if (ONLY && c.kernel !== ONLY && c.group !== ONLY) continue;
    const mine = c.ours(dev);
    let y: Tensor = mine.run();
    const ourOut = (await y.read()) as Float32Array;
    const { ms: ourMs, perBlock } = await timeIt(
      () => {
        y.dispose();
        y = mine.run();
      },
      async () => void (await y.read()),
    );
    let tfT: Timing | null = null;
    let diff: number | null = null;
    if (tf && c.tfjs) {
      const theirs = c.tfjs(tf);
      const ref = theirs.run();
      const refData = (await ref.data()) as Float32Array;
      ref.dispose();
      const mineInTf = c.toTfLayout ? c.toTfLayout(ourOut, tf) : ourOut;
      diff = 0;
      for (let i = 0; i < refData.length; i++) diff = Math.max(diff, Math.abs(refData[i]! - mineInTf[i]!));
      if (!(diff < (c.tol ?? 1e-2))) throw new Error(`${c.kernel} ${c.shape}: our output differs from tfjs by ${diff} (> ${c.tol ?? 1e-2}); not timing a wrong kernel`);
      let last = theirs.run();
      const { ms: tfMs, perBlock: tfPerBlock } = await timeIt(
        () => {
          last.dispose();
          last = theirs.run();
        },
        async () => void (await last.data()),
      );
      last.dispose();
      tfT = { ms: tfMs, gflops: c.flops / tfMs / 1e6, launchesPerBlock: tfPerBlock };
    }
    const r: BenchResult = { kernel: c.kernel, shape: c.shape, ours: { ms: ourMs, gflops: c.flops / ourMs / 1e6, launchesPerBlock: perBlock }, tfjs: tfT, maxAbsDiff: diff, variant: c.variant?.(dev) };
    results.push(r);
    const ratio = tfT ? `${(tfT.ms / ourMs).toFixed(2)}x tfjs` : 'no tfjs';
    console.log(`${c.kernel.padEnd(16)} ${c.shape.padEnd(40)} ours ${ourMs.toFixed(ourMs < 1 ? 4 : 1).padStart(8)} ms ${r.ours.gflops.toFixed(3).padStart(7)} GFLOP/s (${((100 * r.ours.gflops) / peak).toFixed(1)}% of peak)  tfjs ${tfT ? tfT.ms.toFixed(tfT.ms < 1 ? 4 : 1).padStart(8) + ' ms' : '      -'}  ${ratio}${r.variant ? `  [${r.variant}]` : ''}`);
    for (const t of mine.inputs) t.dispose();
    y.dispose();
  }
  let training: TrainingResult | null = null;
  if ((!ONLY || ONLY === 'training') && !args.includes('--no-training')) training = await trainingBench(dev, tf, trainingOptions(args));
  let models: ModelsResult | null = null;
  if ((!ONLY || ONLY === 'models') && !args.includes('--no-models')) models = await modelsBench(dev, { batches: opt('--sample-batches')?.split(',').map(Number), runs: Number(opt('--sample-runs') ?? 1) });
  const json = opt('--json');
  if (json) {
    const tuning: Record<string, TuneRecord> = dev.tuning;
    writeFileSync(json, JSON.stringify({ adapter, peakGflops: peak, minBlockMs: MIN_BLOCK_MS, quick: QUICK, tuning, results, training, models }, null, 2));
    console.log(`wrote ${json}`);
  }
  dev.destroy();
}

await main();
// tfjs keeps Dawn's event loop busy after the device is destroyed: end the process explicitly.
process.exit(0);
