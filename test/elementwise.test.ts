import { describe, expect, it } from 'vitest';
import { ops } from '../src/index.js';
import { UNARY, BINARY, UnaryOp, ELEMENTWISE_OPS_WGSL } from '../kernels/elementwise.js';
import { Kernel } from '../src/runtime/kernel.js';
import elementwiseSource from '../shaders/elementwise.wgsl';
import { unaryRef, unaryDerivRef, binaryRef, binaryDerivRef } from './reference/elementwise.js';
import { absQuantileRef } from './reference/quantile.js';
import { checkOp, randn, uniform, useDevice } from './helpers.js';

const dev = useDevice();

// Inputs in each op's domain, and away from kinks (relu at 0) that finite differences cannot cross.
function domain(op: UnaryOp, n: number): Float64Array {
  if (op === 'log' || op === 'sqrt') return uniform(n, 0.2, 3);
  if (op === 'relu' || op === 'abs' || op === 'step') return randn(n).map((v) => (Math.abs(v) < 0.01 ? v + 0.05 : v));
  return randn(n);
}

describe('unary ops', () => {
  for (const op of UNARY) {
    if (op === 'identity') continue;
    it(`${op}: forward and backward vs float64, reference vs finite differences`, async () => {
      const shape = [3, 5, 7]; // 105 elements: not a multiple of the 256-wide workgroup
      // f32 transcendental functions are accurate to a few ulp; 1e-5 relative plus 1e-6 absolute
      // covers exp/log/tanh on inputs of magnitude <= 4 while catching any formula error.
      await checkOp(dev(), {
        name: op,
        inputs: [{ shape, data: domain(op, 105) }],
        run: ([x]) => (ops as unknown as Record<string, (t: NonNullable<typeof x>) => NonNullable<typeof x>>)[op]!(x!),
        ref: ([x]) => x!.map((v) => unaryRef(op, v)),
        refGrad: ([x], gy) => [x!.map((v, i) => unaryDerivRef(op, v) * gy[i]!)],
        atol: 1e-5,
        rtol: 1e-5,
      });
    });
  }
});

describe('the op table', () => {
  it('generates one case per op, and an op code outside it computes NaN rather than a plausible value', async () => {
    expect((ELEMENTWISE_OPS_WGSL.match(/^fn unary_f[\s\S]*?^}/m)?.[0].match(/case \d+u/g) ?? []).length).toBe(UNARY.length);
    expect((ELEMENTWISE_OPS_WGSL.match(/^fn binary_f[\s\S]*?^}/m)?.[0].match(/case \d+u/g) ?? []).length).toBe(BINARY.length);
    // Every op has a finite float64 reference and derivative at a point inside every domain.
    for (const op of UNARY) expect([unaryRef(op, 0.7), unaryDerivRef(op, 0.7)].every(Number.isFinite), op).toBe(true);
    for (const op of BINARY) expect([binaryRef(op, 0.7, 1.3), ...binaryDerivRef(op, 0.7, 1.3)].every(Number.isFinite), op).toBe(true);
    const rt = dev().rt;
    const kernel = new Kernel('elementwise-test', ELEMENTWISE_OPS_WGSL + elementwiseSource);
    const x = rt.upload(new Float32Array([0.5, -2, 3]), [3]);
    const out = rt.alloc([3]);
    const uniforms = { n: 3, _pad0: 0, a_offset: 0, b_offset: 0, alpha: 1, beta: 0, a_outer: 1, b_outer: 1, shape: [], a_strides: [], b_strides: [] };
    rt.dispatch(kernel, 'unary', { bindings: { a: x, out }, uniforms, workgroups: [1], constants: { OP: UNARY.length, RANK: 1 } });
    expect([...(await rt.read(out))].every(Number.isNaN)).toBe(true);
    rt.dispatch(kernel, 'unary', { bindings: { a: x, out }, uniforms, workgroups: [1], constants: { OP: UNARY.indexOf('square'), RANK: 1 } });
    expect([...(await rt.read(out))]).toEqual([0.25, 4, 9]);
    expect(() => ops.affine(dev().tensor([1], [1]), 1)).not.toThrow();
  });
});

describe('exact GELU', () => {
  it('geluErf holds its relative accuracy in both tails (x in [-9, 9]) and is not the tanh form', async () => {
    const d = dev();
    const xs = Float32Array.from({ length: 181 }, (_, i) => -9 + i * 0.1);
    const got = (await ops.geluErf(d.tensor(xs, [181])).read()) as Float32Array;
    const tanhForm = (await ops.gelu(d.tensor(xs, [181])).read()) as Float32Array;
    let maxGap = 0;
    xs.forEach((x, i) => {
      const want = unaryRef('geluErf', x);
      // erfc's fit is good to 1.2e-7 relative; in f32, z = x/√2 is rounded (6e-8 relative) and exp(-z²)
      // turns that into 2z²·6e-8 ≈ 5e-6 at z = 6.4, plus exp's own few ulp: 1e-5 relative, down to
      // GELU(-9) ≈ -1e-18, far below where an absolute tolerance would see anything.
      expect(Math.abs(got[i]! - want), `geluErf(${x.toFixed(1)})`).toBeLessThanOrEqual(1e-5 * Math.abs(want) + 1e-30);
      maxGap = Math.max(maxGap, Math.abs(tanhForm[i]! - want));
    });
    // The two forms differ by up to ~4.7e-4 (near |x| = 2): what GEGLU's form changes, and why it matters at 1e-4.
    expect(maxGap).toBeGreaterThan(3e-4);
  });
});

describe('binary ops with broadcasting', () => {
  const shapes: [number[], number[]][] = [
    [[2, 3, 4], [2, 3, 4]],
    [[2, 3, 4], [3, 1]],
    [[1, 5], [4, 1]],
    [[6], [2, 3, 6]],
  ];
  for (const op of BINARY) {
    for (const [sa, sb] of shapes) {
      it(`${op} ${JSON.stringify(sa)} with ${JSON.stringify(sb)}`, async () => {
        const na = sa.reduce((a, b) => a * b, 1);
        const nb = sb.reduce((a, b) => a * b, 1);
        const a = op === 'pow' ? uniform(na, 0.5, 2) : randn(na);
        const b = op === 'div' ? uniform(nb, 0.5, 2).map((v, i) => (i % 2 ? -v : v)) : op === 'pow' ? uniform(nb, -1.5, 1.5) : randn(nb);
        const out = broadcastRef(sa, sb);
        // One f32 rounding per element (pow: a few ulp of exp2/log2); gradients summed over at most
        // 24 broadcast terms stay within 1e-5 relative.
        await checkOp(dev(), {
          name: op,
          inputs: [{ shape: sa, data: a }, { shape: sb, data: b }],
          run: ([x, y]) => (ops as unknown as Record<string, (p: NonNullable<typeof x>, q: NonNullable<typeof y>) => NonNullable<typeof x>>)[op]!(x!, y!),
          ref: ([x, y]) => out.idx.map(([i, j]) => binaryRef(op, x![i]!, y![j]!)).reduce((acc, v, k) => ((acc[k] = v), acc), new Float64Array(out.idx.length)),
          refGrad: ([x, y], gy) => {
            const ga = new Float64Array(na);
            const gb = new Float64Array(nb);
            out.idx.forEach(([i, j], k) => {
              const [da, db] = binaryDerivRef(op, x![i]!, y![j]!);
              ga[i]! += da * gy[k]!;
              gb[j]! += db * gy[k]!;
            });
            return [ga, gb];
          },
          atol: 1e-5,
          rtol: 1e-5,
        });
      });
    }
  }
});

/** Index pairs (into a, into b) for each element of the broadcast result. */
function broadcastRef(sa: number[], sb: number[]) {
  const r = Math.max(sa.length, sb.length);
  const A = [...Array(r - sa.length).fill(1), ...sa];
  const B = [...Array(r - sb.length).fill(1), ...sb];
  const out = A.map((d, i) => Math.max(d, B[i]!));
  const n = out.reduce((x, y) => x * y, 1);
  const idx: [number, number][] = [];
  for (let k = 0; k < n; k++) {
    let rem = k;
    let ia = 0, ib = 0, sA = 1, sB = 1;
    for (let d = r - 1; d >= 0; d--) {
      const c = rem % out[d]!;
      rem = Math.floor(rem / out[d]!);
      if (A[d]! > 1) ia += c * sA;
      if (B[d]! > 1) ib += c * sB;
      sA *= A[d]!;
      sB *= B[d]!;
    }
    idx.push([ia, ib]);
  }
  return { shape: out, idx };
}

describe('reductions', () => {
  const cases: [number[], number[] | undefined][] = [
    [[4, 5, 6], undefined],
    [[4, 5, 6], [1]],
    [[4, 5, 6], [0, 2]],
    [[3, 300], [1]], // reduced length above the 64-thread workgroup
    // The kernel merges axes and picks a thread or a workgroup per output (kernels/reduce.ts):
    [[3, 5, 70, 4], [0, 2, 3]], // a bias gradient: workgroup per output, runs of 280 (axes 2, 3 merged)
    [[300, 3, 2], [0, 2]], // workgroup per output, runs of 2 (shorter than the workgroup): flat index
    [[2, 3, 1, 40, 5], [1, 2, 4]], // thread per output; kept and reduced axes interleaved, a size-1 axis
    [[70, 9], [0]], // thread per output, strided run (split-K partial sums)
  ];
  for (const [shape, axes] of cases) {
    for (const kind of ['sum', 'mean'] as const) {
      it(`${kind} of ${JSON.stringify(shape)} over ${JSON.stringify(axes ?? 'all')}`, async () => {
        const n = shape.reduce((a, b) => a * b, 1);
        const ax = axes ?? shape.map((_, i) => i);
        const count = ax.reduce((a, i) => a * shape[i]!, 1);
        const alpha = kind === 'mean' ? 1 / count : 1;
        const outIndex = (k: number) => {
          let rem = k, o = 0, m = 1;
          for (let d = shape.length - 1; d >= 0; d--) {
            const c = rem % shape[d]!;
            rem = Math.floor(rem / shape[d]!);
            if (!ax.includes(d)) { o += c * m; m *= shape[d]!; }
          }
          return o;
        };
        const nOut = n / count;
        // Sums of up to 900 terms of magnitude ~1: f32 error grows ~sqrt(count)·eps·sum|x| < 1e-4.
        await checkOp(dev(), {
          name: kind,
          inputs: [{ shape }],
          run: ([x]) => ops[kind](x!, axes),
          ref: ([x]) => {
            const y = new Float64Array(nOut);
            for (let k = 0; k < n; k++) y[outIndex(k)]! += alpha * x![k]!;
            return y;
          },
          refGrad: ([x], gy) => [x!.map((_, k) => alpha * gy[outIndex(k)]!)],
          atol: 1e-4,
          rtol: 1e-5,
        });
      });
    }
  }
});

describe('absQuantile', () => {
  // [shape, q, how the values are drawn]; rows longer than the 256-thread workgroup, a one-element
  // row, the ends q = 0 and 1, and rows full of ties (values on a coarse grid) where the order
  // statistic and the next one coincide.
  const cases: [number[], number, 'normal' | 'ties' | 'wide'][] = [
    [[3, 5, 7], 0.995, 'normal'],
    [[2, 600], 0.5, 'normal'],
    [[5, 1, 16, 16], 0.9, 'wide'],
    [[4, 33], 0, 'normal'],
    [[4, 33], 1, 'normal'],
    [[2, 1], 0.3, 'normal'],
    [[3, 40], 0.75, 'ties'],
  ];
  for (const [shape, q, draw] of cases) {
    it(`of ${JSON.stringify(shape)} at q = ${q} (${draw})`, async () => {
      const [n, ...rest] = shape as [number, ...number[]];
      const m = rest.reduce((a, b) => a * b, 1);
      let x = randn(n * m);
      if (draw === 'ties') x = x.map((v) => Math.round(v * 2) / 2);
      // Magnitudes over 12 orders, to check the bisection over bit patterns far from 1.
      if (draw === 'wide') x = x.map((v, i) => v * 10 ** ((i % 13) - 6));
      // The two order statistics are exact f32 values; interpolating them in f32 rounds twice.
      await checkOp(dev(), {
        name: 'absQuantile',
        inputs: [{ shape, data: x }],
        run: ([t]) => ops.absQuantile(t!, q),
        ref: ([xs]) => absQuantileRef(xs!, n, m, q),
        atol: 0,
        rtol: 3e-7,
      });
    });
  }
  it('names the op and the bound for a bad q, and the shape for a scalar', () => {
    const x = dev().tensor(new Float32Array(6), [2, 3]);
    expect(() => ops.absQuantile(x, 1.5)).toThrow(/absQuantile.*q = 1\.5 is outside the allowed range \[0, 1\]/);
    expect(() => ops.absQuantile(dev().tensor(new Float32Array(3), [3]), 0.5)).toThrow(/absQuantile.*rank 2 or more, got \[3\]/);
  });
});

/** Row-major coordinates of flat index k in `shape`, and back. */
const coords = (k: number, shape: readonly number[]) => {
  const c = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    c[d] = k % shape[d]!;
    k = Math.floor(k / shape[d]!);
  }
  return c;
};
const flat = (c: readonly number[], shape: readonly number[]) => c.reduce((acc, v, d) => acc * shape[d]! + v, 0);

// Strided copies (one kernel; the host merges axes whose strides chain before dispatch). Copies are
// exact: tolerance 0.
describe('strided copies: permute, concat, slice', () => {
  const perms: [number[], number[]][] = [
    [[2, 3, 4, 5], [0, 2, 1, 3]], // attention's head split: the outer and inner axes merge with nothing
    [[2, 3, 4, 5], [0, 1, 3, 2]], // axes 0 and 1 merge in both views
    [[3, 1, 4], [2, 0, 1]], // a size-1 axis
    [[2, 3, 4, 5], [3, 2, 1, 0]],
  ];
  for (const [shape, perm] of perms) {
    it(`permute ${JSON.stringify(shape)} by ${JSON.stringify(perm)}`, async () => {
      const outShape = perm.map((p) => shape[p]!);
      const n = shape.reduce((a, b) => a * b, 1);
      // out[c] = x[c'] where c'[perm[d]] = c[d]
      const src = (k: number) => {
        const c = coords(k, outShape);
        const ci = new Array<number>(shape.length);
        perm.forEach((p, d) => (ci[p] = c[d]!));
        return flat(ci, shape);
      };
      await checkOp(dev(), {
        name: 'permute',
        inputs: [{ shape }],
        run: ([x]) => ops.permute(x!, perm),
        ref: ([x]) => Float64Array.from({ length: n }, (_, k) => x![src(k)]!),
        refGrad: (_, gy) => {
          const g = new Float64Array(n);
          for (let k = 0; k < n; k++) g[src(k)] = gy[k]!;
          return [g];
        },
        atol: 0,
        rtol: 0,
      });
    });
  }

  const concats: [number[][], number][] = [
    [[[2, 3, 4, 5], [2, 2, 4, 5]], 1], // U-Net skip connections: channels
    [[[2, 3, 4], [1, 3, 4], [3, 3, 4]], 0],
    [[[2, 3, 4], [2, 3, 1]], 2],
  ];
  for (const [shapes, axis] of concats) {
    it(`concat ${JSON.stringify(shapes)} along ${axis}, and its gradient (slices)`, async () => {
      const outShape = shapes[0]!.slice();
      outShape[axis] = shapes.reduce((s, sh) => s + sh[axis]!, 0);
      const n = outShape.reduce((a, b) => a * b, 1);
      // Element k of the output: which part and which of its elements.
      const src = (k: number): [number, number] => {
        const c = coords(k, outShape);
        let at = c[axis]!;
        let part = 0;
        while (at >= shapes[part]![axis]!) at -= shapes[part++]![axis]!;
        c[axis] = at;
        return [part, flat(c, shapes[part]!)];
      };
      await checkOp(dev(), {
        name: 'concat',
        inputs: shapes.map((shape) => ({ shape })),
        run: (xs) => ops.concat(xs, axis),
        ref: (xs) => Float64Array.from({ length: n }, (_, k) => { const [p, i] = src(k); return xs[p]![i]!; }),
        refGrad: (xs, gy) => {
          const gs = xs.map((x) => new Float64Array(x.length));
          for (let k = 0; k < n; k++) { const [p, i] = src(k); gs[p]![i] = gy[k]!; }
          return gs;
        },
        atol: 0,
        rtol: 0,
      });
    });
  }

  it('slice [2, 7, 3, 3] channels 2..5, and its gradient (zeros elsewhere)', async () => {
    const shape = [2, 7, 3, 3];
    const outShape = [2, 4, 3, 3];
    const n = 2 * 4 * 9;
    const src = (k: number) => { const c = coords(k, outShape); c[1]! += 2; return flat(c, shape); };
    await checkOp(dev(), {
      name: 'slice',
      inputs: [{ shape }],
      run: ([x]) => ops.slice(x!, 2, 4, 1),
      ref: ([x]) => Float64Array.from({ length: n }, (_, k) => x![src(k)]!),
      refGrad: (_, gy) => {
        const g = new Float64Array(2 * 7 * 9);
        for (let k = 0; k < n; k++) g[src(k)] = gy[k]!;
        return [g];
      },
      atol: 0,
      rtol: 0,
    });
  });
});
