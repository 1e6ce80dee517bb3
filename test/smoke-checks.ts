// A smoke subset of the kernel checks, run unchanged in Node (test/smoke.test.ts) and in headless
// Chromium (test/browser.test.ts), so both runtimes are held to the same float64 references.
import { ops } from '../src/index.js';
import { OpCheck } from './check.js';
import { unaryRef, unaryDerivRef } from './reference/elementwise.js';
import { absQuantileRef } from '../kernels/quantile.js';

export function smokeChecks(): OpCheck[] {
  return [
    {
      name: 'silu',
      inputs: [{ shape: [3, 37] }],
      run: ([x]) => ops.silu(x!),
      ref: ([x]) => x!.map((v) => unaryRef('silu', v)),
      refGrad: ([x], gy) => [x!.map((v, i) => unaryDerivRef('silu', v) * gy[i]!)],
      // one f32 exp and divide per element
      atol: 1e-5,
      rtol: 1e-5,
    },
    {
      name: 'mean over axis 1',
      inputs: [{ shape: [3, 70, 2] }],
      run: ([x]) => ops.mean(x!, 1),
      ref: ([x]) => {
        const y = new Float64Array(6);
        for (let a = 0; a < 3; a++) for (let b = 0; b < 70; b++) for (let c = 0; c < 2; c++) y[a * 2 + c] += x![(a * 70 + b) * 2 + c]! / 70;
        return y;
      },
      refGrad: (_, gy) => [Float64Array.from({ length: 420 }, (_, k) => gy[Math.floor(k / 140) * 2 + (k % 2)]! / 70)],
      // 70-term f32 sums of N(0,1) values
      atol: 1e-5,
      rtol: 1e-5,
    },
    {
      // Bisection over bit patterns with workgroup atomics and barriers: rows longer than the workgroup.
      name: 'absQuantile',
      inputs: [{ shape: [3, 300] }],
      run: ([x]) => ops.absQuantile(x!, 0.995),
      ref: ([x]) => absQuantileRef(x!, 3, 300, 0.995),
      // two exact order statistics interpolated in f32
      atol: 0,
      rtol: 3e-7,
    },
  ];
}
