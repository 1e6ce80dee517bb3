// Helpers shared by the benchmarks: tfjs on the engine's adapter, seeded inputs, layout changes.
import type { Device } from '../src/index.js';

export type TF = typeof import('@tensorflow/tfjs-core');

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
