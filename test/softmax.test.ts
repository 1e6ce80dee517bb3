import { describe, expect, it } from 'vitest';
import { ops, ShapeError } from '../src/index.js';
import { softmaxBackward, softmaxForward } from '../kernels/softmax.js';
import { softmaxGradRef, softmaxRef } from './reference/softmax.js';
import { checkOp, expectClose, f32, numel, randn, useDevice } from './helpers.js';

const dev = useDevice();

interface Case {
  shape: number[];
  axis: number;
  /** Logits = scale * randn + shift. */
  scale?: number;
  shift?: number;
  why: string;
}

// A workgroup has 64 threads: 64 / T rows of T threads, T = 1 up to 64 elements per row, then doubling
// until each thread has <= 64 elements, capped at 4 or 64 as the autotuner chose on this adapter
// (kernels/softmax.ts SOFTMAX_TUNE: 4 on SwiftShader); the larger T are run explicitly below.
const cases: Case[] = [
  { shape: [3, 7], axis: -1, why: 'rows of 7, one thread per row, most of the workgroup idle' },
  { shape: [70, 5], axis: -1, why: '70 rows: two workgroups, the second partly idle' },
  { shape: [4, 33], axis: -1, why: 'rows of 33' },
  { shape: [40, 130], axis: -1, why: 'rows of 130: 4 threads per row, 16 rows per workgroup, 3 workgroups' },
  { shape: [2, 256], axis: -1, why: 'rows of 256: 4 threads each with 64 elements' },
  { shape: [2, 3, 300], axis: -1, why: 'rows of 300: 8 threads per row' },
  { shape: [2, 1000], axis: 1, why: 'rows of 1000: 16 threads per row' },
  { shape: [2, 5000], axis: 1, why: 'rows of 5000: the whole workgroup, 79 elements per thread' },
  { shape: [3, 40], axis: -1, scale: 30, shift: 1000, why: 'large logits near 1000, spread 30' },
  { shape: [2, 300], axis: -1, scale: 30, shift: -1000, why: 'large negative logits, several threads per row' },
  { shape: [3, 5, 4], axis: 1, why: 'a middle axis (strided rows)' },
  { shape: [2, 150, 3], axis: 1, why: 'a middle axis with 4 threads per strided row' },
  { shape: [6, 2, 3], axis: 0, why: 'the first axis' },
  { shape: [1], axis: 0, why: 'one element' },
];

// Outputs lie in [0, 1]: exp is good to a few ulp and the row sum to ~log2(len) ulp, so 1e-5
// relative (measured <= 6e-8 absolute); x - max is exact in f32 (Sterbenz), so large logits need
// nothing more.
const ATOL = 1e-6;
const RTOL = 1e-5;
// dx = y * (dy - sum(dy * y)): the dot product of <= 5000 terms of size <= |dy| ~ 3 is good to a few
// ulp of its value (measured <= 5e-8), well inside 1e-6.
const GRAD_ATOL = 1e-6;
const GRAD_RTOL = 1e-5;

describe('softmax', () => {
  for (const c of cases) {
    it(`${JSON.stringify(c.shape)} axis ${c.axis} (${c.why})`, async () => {
      const ax = c.axis < 0 ? c.axis + c.shape.length : c.axis;
      await checkOp(dev(), {
        name: 'softmax',
        inputs: [{ shape: c.shape, data: randn(numel(c.shape)).map((v) => v * (c.scale ?? 1) + (c.shift ?? 0)) }],
        run: ([x]) => ops.softmax(x!, c.axis),
        ref: ([x]) => softmaxRef(x!, c.shape, ax),
        refGrad: ([x], gy) => [softmaxGradRef(x!, c.shape, ax, gy)],
        atol: ATOL,
        rtol: RTOL,
        gradAtol: GRAD_ATOL,
        gradRtol: GRAD_RTOL,
      });
    });
  }

  it('rejects an axis out of range, naming the op and the shape', () => {
    const x = dev().zeros([2, 3]);
    expect(() => ops.softmax(x, 2)).toThrow(ShapeError);
    expect(() => ops.softmax(x, -3)).toThrow(/softmax: axis -3 is out of range for x of shape \[2, 3\]/);
  });
});

// Threads per row beyond this adapter's choice (a GPU uses up to 64), at kernel level.
describe('softmax kernels with more threads per row', () => {
  const shapes: [number[], number, number][] = [
    [[5, 300], 1, 8],
    [[3, 1000], 1, 16],
    [[2, 5000], 1, 64],
    [[2, 150, 3], 1, 16],
  ];
  for (const [shape, axis, t] of shapes) {
    it(`${JSON.stringify(shape)} axis ${axis}, ${t} threads per row`, async () => {
      const d = dev();
      const xs = f32(randn(numel(shape)).map((v) => 3 * v));
      const gy = f32(randn(xs.length));
      const y = softmaxForward(d.rt.upload(Float32Array.from(xs), shape), axis, t);
      expectClose('forward', await d.rt.read(y), softmaxRef(xs, shape, axis), ATOL, RTOL);
      const dx = softmaxBackward(y, d.rt.upload(Float32Array.from(gy), shape), axis, t);
      expectClose('backward', await d.rt.read(dx), softmaxGradRef(xs, shape, axis, gy), GRAD_ATOL, GRAD_RTOL);
    });
  }
});
