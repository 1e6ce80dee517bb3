// Helpers shared by the benchmarks: the device (with its tuned kernel variants), tfjs on the engine's
// adapter, seeded inputs, layout changes.
import { createDevice, type Device } from '../src/index.js';
import { autotuneFileStore, defaultAutotunePath } from '../src/io/autotune-file.js';

export type TF = typeof import('@tensorflow/tfjs-core');

/** The value after `--name` on the command line, if any. */
export function flag(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

/**
 * The benchmarks' device: kernel variants tuned as for the CLI, cached in --autotune-cache FILE (default
 * $WGD_AUTOTUNE_CACHE or ~/.cache/webgpu-diffusion/autotune.json); --retune measures them again. Prints
 * which variant each kernel runs and whether it was measured now or read from the cache.
 */
export async function benchDevice(args: readonly string[]): Promise<Device> {
  const path = flag(args, '--autotune-cache') ?? defaultAutotunePath();
  const dev = await createDevice({ tune: { store: autotuneFileStore(path), force: args.includes('--retune'), budgetMs: Infinity, log: (l) => console.log(l) } });
  console.log(`tuned kernel variants (${path}): ${tuningSummary(dev)}`);
  return dev;
}

/** 'matmul regs (cached), conv2d cpu (measured), ...' */
export function tuningSummary(dev: Device): string {
  return Object.entries(dev.tuning).map(([k, r]) => `${k} ${r.choice} (${r.source})`).join(', ');
}

/** Seeded normal numbers (an LCG and Box-Muller): the same inputs for both engines on every run. */
export function randn(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 4294967296;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

export const nchwToNhwc = (x: Float32Array, [n, c, h, w]: readonly number[]): Float32Array => {
  const out = new Float32Array(x.length);
  for (let a = 0; a < n!; a++) for (let b = 0; b < c!; b++) for (let i = 0; i < h! * w!; i++) out[(a * h! * w! + i) * c! + b] = x[(a * c! + b) * h! * w! + i]!;
  return out;
};

/** tfjs with its WebGPU backend on the same Dawn instance (hence the same adapter) as the engine; null if unavailable. */
export async function loadTf(dev: Device): Promise<TF | null> {
  try {
    const g = globalThis as { navigator?: { gpu?: unknown } };
    if (!g.navigator?.gpu) Object.defineProperty(globalThis, 'navigator', { value: { gpu: dev.rt.keepAlive, userAgent: 'node' }, configurable: true });
    const tf = await import('@tensorflow/tfjs-core');
    // tfjs-core's Node build has no gradient functions (the umbrella @tensorflow/tfjs package registers
    // them). Its ESM sources use extensionless imports Node cannot load, so esbuild bundles this file
    // (a path, not a package name, escapes run.mjs's externals); the registry and the engine are
    // global, so the gradients land where the Node build finds them.
    await import('../node_modules/@tensorflow/tfjs-core/dist/register_all_gradients.js');
    await import('@tensorflow/tfjs-backend-webgpu');
    if (!(await tf.setBackend('webgpu'))) return null;
    await tf.ready();
    return tf;
  } catch (e) {
    console.warn(`tfjs WebGPU backend unavailable: ${(e as Error).message}`);
    return null;
  }
}

/**
 * Median time of one launch, in ms, over `reps` timed blocks (after a warm-up). `launch` records one
 * run of the kernel; `finish` waits for everything recorded (a readback or a sync). A block holds as
 * many launches as it takes to last `minBlockMs` (doubling from 1), so the fixed cost of ending a
 * block, a millisecond or more of readback latency on a real GPU, is spread over enough launches to be
 * a few percent of the time instead of being timed as the kernel; on SwiftShader one launch is already
 * longer, and a block is one launch.
 */
export async function timeLaunches(launch: () => void, finish: () => Promise<void>, reps: number, minBlockMs: number): Promise<{ ms: number; perBlock: number }> {
  const block = async (n: number) => {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) launch();
    await finish();
    return performance.now() - t0;
  };
  const MAX = 1 << 14;
  let perBlock = 1;
  while ((await block(perBlock)) < minBlockMs && perBlock < MAX) perBlock *= 2;
  for (;;) {
    const ts: number[] = [];
    for (let i = 0; i < reps; i++) ts.push((await block(perBlock)) / perBlock);
    ts.sort((a, b) => a - b);
    const ms = ts[Math.floor(ts.length / 2)]!;
    // A one-off stall during calibration (a first readback, the driver) can stop the doubling early:
    // then the timed blocks come out much shorter than asked, and are timed again, longer.
    if (ms * perBlock >= minBlockMs / 2 || perBlock >= MAX) return { ms, perBlock };
    while (ms * perBlock < minBlockMs && perBlock < MAX) perBlock *= 2;
  }
}
