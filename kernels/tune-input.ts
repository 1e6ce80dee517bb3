import type { DeviceArray, Runtime } from '../src/runtime/runtime.js';

/** An input for an autotuning workload: fixed pseudo-random values in [-1, 1) (never zeros, NaN or denormals). */
export function tuneInput(rt: Runtime, shape: readonly number[]): DeviceArray {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let s = 0x9e3779b9;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s / 2 ** 31 - 1;
  }
  return rt.upload(data, shape, 'autotune');
}
