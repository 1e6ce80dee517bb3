import { describe, expect, it } from 'vitest';
import { LimitError, ops, ShapeError } from '../src/index.js';
import { gemm, matmul, MatmulTiling, MatmulVariant, tilingName } from '../kernels/matmul.js';
import { linearRef, linearVjpRef, matmulRef, matmulVjpRef } from './reference/matmul.js';
import { GEMM_TILES, GemmTile, MIN_GROUPS, pickGemmTile } from '../kernels/gemm-tile.js';
import { checkOp, expectClose, f32, numel, randn, useDevice } from './helpers.js';

const dev = useDevice();

// Tolerance for f32 dot products of K standard-normal terms (inputs are f32-rounded, so accumulation is
// the only error). Each of the K partial sums, of size ~sqrt(K), is rounded with relative error
// u = 2^-24 and these errors add like a random walk: ~u·K ≈ 6e-8·K in total. 1e-5·sqrt(K) stays at
// least 10x above that for every K used here (K <= 256) yet far below any wrong or missing term (~1).
const dotTol = (k: number) => 1e-5 * Math.sqrt(Math.max(k, 1));

/** Batch dims of a [..., M, K] shape. */
const batchOf = (s: readonly number[]) => s.slice(0, -2);

describe('matmul op: forward and backward vs float64', () => {
  const cases: { name: string; a: number[]; b: number[] }[] = [
    // Not multiples of the 64x64 tile (or of 4) in any dim.
    { name: '2-D 37x19 @ 19x45', a: [37, 19], b: [19, 45] },
    // Exactly one 64x64 tile: the case with no edge.
    { name: '2-D 64x32 @ 32x64 (tile multiple)', a: [64, 32], b: [32, 64] },
    // Broadcast batch: a's batch [2, 1] with b's [3] -> [2, 3]; both gradients summed over a broadcast dim.
    { name: 'batched broadcast [2,1,5,7] @ [3,7,4]', a: [2, 1, 5, 7], b: [3, 7, 4] },
    // K = 1: an outer product; the k-loop runs once.
    { name: 'K = 1 edge [3,9,1] @ [3,1,11]', a: [3, 9, 1], b: [3, 1, 11] },
    // b shared by every batch (folded into M forward, into K for dB).
    { name: 'shared b [4,13,6] @ [6,70]', a: [4, 13, 6], b: [6, 70] },
    // a shared by every batch (dA summed over the batch).
    { name: 'shared a [5,3] @ [2,2,3,6]', a: [5, 3], b: [2, 2, 3, 6] },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const k = c.a[c.a.length - 1]!;
      const m = c.a[c.a.length - 2]!;
      const n = c.b[c.b.length - 1]!;
      // Gradient dots run over N (dA) and over M times the broadcast batch count (dB).
      const bcast = numel(batchOf(outShape(c.a, c.b)));
      await checkOp(dev(), {
        name: `matmul ${c.name}`,
        inputs: [{ shape: c.a }, { shape: c.b }],
        run: ([a, b]) => ops.matmul(a!, b!),
        ref: ([a, b]) => matmulRef(a!, c.a, b!, c.b),
        refGrad: ([a, b], gy) => matmulVjpRef(a!, c.a, b!, c.b, gy),
        atol: dotTol(k),
        rtol: 1e-5,
        gradAtol: dotTol(Math.max(n, m * bcast) * 2),
        gradRtol: 1e-5,
      });
      expect(ops.matmul(dev().zeros(c.a), dev().zeros(c.b)).shape).toEqual(outShape(c.a, c.b));
    });
  }

  it('names the op and both shapes when inner dims differ', () => {
    const a = dev().zeros([4, 5]);
    const b = dev().zeros([6, 3]);
    expect(() => ops.matmul(a, b)).toThrow(ShapeError);
    expect(() => ops.matmul(a, b)).toThrow(/^matmul: .*\[4, 5\].*\[6, 3\]/);
  });

  it('rejects batch dims that do not broadcast and rank-1 operands', () => {
    expect(() => ops.matmul(dev().zeros([2, 4, 5]), dev().zeros([3, 5, 6]))).toThrow(/matmul: batch dims.*\[2, 4, 5\].*\[3, 5, 6\]/);
    expect(() => ops.matmul(dev().zeros([5]), dev().zeros([5, 6]))).toThrow(/matmul: .*rank >= 2/);
  });

  it('accumulates the gradient of an operand used twice (x @ x)', async () => {
    const s = [6, 6];
    const x = f32(randn(36));
    const t = dev().tensor(Float32Array.from(x), s, { requiresGrad: true });
    const r = f32(randn(36));
    await ops.sum(ops.mul(ops.matmul(t, t), dev().tensor(Float32Array.from(r), s))).backward();
    const [ga, gb] = matmulVjpRef(x, s, x, s, r);
    expectClose('grad of x in x@x', await t.grad!.read(), ga.map((v, i) => v + gb[i]!), dotTol(12), 1e-5);
  });
});

describe('linear op: forward and backward vs float64', () => {
  for (const withBias of [true, false]) {
    it(`3-D input [2,7,13] -> 9 features ${withBias ? 'with' : 'without'} bias`, async () => {
      const [out, inF] = [9, 13];
      const xs = [2, 7, inF];
      await checkOp(dev(), {
        name: `linear${withBias ? '+bias' : ''}`,
        inputs: [{ shape: xs }, { shape: [out, inF] }, ...(withBias ? [{ shape: [out] }] : [])],
        run: ([x, w, b]) => ops.linear(x!, w!, b),
        ref: ([x, w, b]) => linearRef(x!, w!, b ?? null, out, inF),
        refGrad: ([x, w], gy) => {
          const [gx, gw, gb] = linearVjpRef(x!, w!, gy, out, inF);
          return withBias ? [gx, gw, gb] : [gx, gw];
        },
        atol: dotTol(inF),
        rtol: 1e-5,
        // dx sums over `out` terms, dw over the 14 rows, db over 14 rows.
        gradAtol: dotTol(14),
        gradRtol: 1e-5,
      });
    });
  }

  it('shape errors name linear and the shapes', () => {
    const x = dev().zeros([3, 5]);
    expect(() => ops.linear(x, dev().zeros([4, 6]))).toThrow(/^linear: .*\[3, 5\].*\[4, 6\]/);
    expect(() => ops.linear(x, dev().zeros([4, 5]), dev().zeros([5]))).toThrow(/^linear: .*expected b \[4\]/);
  });

  it('bias gradient only (x and w frozen)', async () => {
    const [out, inF] = [70, 3]; // more than one 64-wide column tile
    const x = f32(randn(5 * inF));
    const w = f32(randn(out * inF));
    const b = f32(randn(out));
    const tb = dev().tensor(Float32Array.from(b), [out], { requiresGrad: true });
    const y = ops.linear(dev().tensor(Float32Array.from(x), [5, inF]), dev().tensor(Float32Array.from(w), [out, inF]), tb);
    expectClose('linear forward', await y.read(), linearRef(x, w, b, out, inF), dotTol(inF), 1e-5);
    const r = f32(randn(5 * out));
    await ops.sum(ops.mul(y, dev().tensor(Float32Array.from(r), [5, out]))).backward();
    expectClose('linear db', await tb.grad!.read(), linearVjpRef(x, w, r, out, inF)[2], dotTol(5), 1e-5);
  });
});

// Kernel-level checks of every entry point and tiling on strided reads: each operand layout the
// register-tiled kernel specialises (vec4 along K or along M/N, scalar along either), transposes,
// broadcasts, > 4 batch dims, misaligned offsets, fused bias along rows and columns, alpha, the fused
// residual. Forward only: the backward passes are these same products. The variant and tile are
// forced: on SwiftShader the tuned variant is 'regs'.
describe('matmul kernel variants', () => {
  const variants: [MatmulVariant, MatmulTiling | GemmTile][] = [
    ['regs', { wx: 8, wy: 8 }],
    ['regs', { wx: 4, wy: 4 }],
    ['g128', GEMM_TILES.g128],
    ['g64x128', GEMM_TILES.g64x128],
    ['g64', GEMM_TILES.g64],
    ['g32', GEMM_TILES.g32],
    ['g64', { ...GEMM_TILES.g64, stages: 1 }], // single-buffered: two barriers per K step
    ['g128', { bm: 128, bn: 64, bk: 16, tm: 8, tn: 4 }], // 8x4 outputs per thread
  ];
  // Sizes are not multiples of any tile (nor of 4, where a case says so); `layout` is what the
  // register-tiled kernel does with A and B (kernels/matmul.ts gemm: A_VEC, B_VEC).
  const cases: { a: number[]; b: number[]; tA?: boolean; tB?: boolean; alpha?: number; layout: string }[] = [
    { a: [68, 72], b: [72, 132], layout: 'A vec4 along K, B vec4 along N; N past a 128 tile' },
    { a: [36, 68], b: [36, 20], tA: true, layout: 'Aᵀ: A vec4 along M' },
    { a: [67, 40], b: [70, 40], tB: true, layout: 'Bᵀ (as in linear): B vec4 along K' },
    { a: [67, 70], b: [70, 65], layout: 'no size a multiple of 4: scalar loads along K (A) and N (B)' },
    { a: [3, 21, 33], b: [3, 41, 21], tA: true, tB: true, alpha: 0.5, layout: 'Aᵀ·Bᵀ, M and K odd: scalar along M (A) and K (B), batched, alpha' },
    { a: [3, 12, 16], b: [3, 16, 20], layout: 'batched, vec4 with batch strides' },
    { a: [2, 1, 2, 1, 2, 3, 4], b: [2, 1, 2, 1, 4, 5], layout: '5 unmergeable batch dims: the outer one is a loop of dispatches' },
    { a: [3, 0], b: [0, 4], layout: 'K = 0: zeros' },
    { a: [1, 9, 17], b: [4, 17, 8], layout: 'a broadcast along a size-1 batch dim' },
  ];
  for (const [v, tiling] of variants) {
    const tag = tilingName(v, tiling);
    for (const c of cases) {
      it(`${tag}: ${JSON.stringify(c.a)}${c.tA ? 'ᵀ' : ''} @ ${JSON.stringify(c.b)}${c.tB ? 'ᵀ' : ''} (${c.layout})`, async () => {
        const rt = dev().rt;
        const a = f32(randn(numel(c.a)));
        const b = f32(randn(numel(c.b)));
        const y = matmul(rt.upload(Float32Array.from(a), c.a), rt.upload(Float32Array.from(b), c.b), { transA: c.tA, transB: c.tB, alpha: c.alpha, variant: v, tiling });
        const want = matmulRef(a, c.a, b, c.b, c.tA, c.tB).map((x) => x * (c.alpha ?? 1));
        const k = c.tA ? c.a[c.a.length - 2]! : c.a[c.a.length - 1]!;
        expectClose(`${v} matmul`, await rt.read(y), want, dotTol(k), 1e-5);
      });
    }
    it(`${tag}: per-row bias through strides, A at an offset that is not a multiple of 4 (scalar loads)`, async () => {
      const rt = dev().rt;
      const [m, n, k] = [10, 7, 8];
      const off = 5;
      const a = f32(randn(off + m * k));
      const b = f32(randn(k * n));
      const bias = f32(randn(m));
      const ta = rt.upload(Float32Array.from(a), [off + m * k]);
      const tb = rt.upload(Float32Array.from(b), [k, n]);
      const y = gemm({
        a: { array: ta, offset: off, rowStride: k, colStride: 1, batchStrides: [] },
        b: { array: tb, offset: 0, rowStride: n, colStride: 1, batchStrides: [] },
        m, n, k, batchShape: [], variant: v, tiling,
        bias: { array: rt.upload(Float32Array.from(bias), [m]), rowStride: 1, colStride: 0 },
      });
      const want = matmulRef(a.slice(off), [m, k], b, [k, n]).map((x, i) => x + bias[Math.floor(i / n)]!);
      expectClose(`${v} row bias`, await rt.read(y), want, dotTol(k), 1e-5);
    });
    it(`${tag}: linear-like, Bᵀ through strides, per-column bias, alpha, residual`, async () => {
      const rt = dev().rt;
      // Past a 64 tile in both M and N, K not a multiple of any bk; B = wᵀ read with row stride 1.
      const [m, n, k] = [69, 66, 36];
      const a = f32(randn(m * k));
      const w = f32(randn(n * k));
      const bias = f32(randn(n));
      const r = f32(randn(m * n));
      const alpha = -1.5;
      const y = gemm({
        a: { array: rt.upload(Float32Array.from(a), [m, k]), offset: 0, rowStride: k, colStride: 1, batchStrides: [] },
        b: { array: rt.upload(Float32Array.from(w), [n, k]), offset: 0, rowStride: 1, colStride: k, batchStrides: [] },
        m, n, k, batchShape: [], variant: v, tiling, alpha,
        bias: { array: rt.upload(Float32Array.from(bias), [n]), rowStride: 0, colStride: 1 },
        residual: rt.upload(Float32Array.from(r), [m, n]),
      });
      const want = linearRef(a, w, null, n, k).map((x, i) => alpha * x + bias[i % n]! + r[i]!);
      // |alpha| = 1.5 scales the dot's error; the bias and the residual add a rounding each.
      expectClose(`${v} column bias + residual`, await rt.read(y), want, 1.5 * dotTol(k), 1e-5);
    });
    it(`${tag}: residual add over a batch with outer dispatches`, async () => {
      const rt = dev().rt;
      const as = [2, 1, 2, 1, 2, 5, 6];
      const bs = [2, 1, 2, 1, 6, 7];
      const a = f32(randn(numel(as)));
      const b = f32(randn(numel(bs)));
      const want = matmulRef(a, as, b, bs);
      const r = f32(randn(want.length));
      const y = matmul(rt.upload(Float32Array.from(a), as), rt.upload(Float32Array.from(b), bs), { variant: v, tiling, residual: rt.upload(Float32Array.from(r), outShape(as, bs)) });
      expectClose(`${v} residual`, await rt.read(y), want.map((x, i) => x + r[i]!), dotTol(6), 1e-5);
    });
  }

  it('names the limit when a tile needs too much workgroup memory, and rejects unsupported tiles', () => {
    const rt = dev().rt;
    const x = rt.upload(Float32Array.from(randn(16)), [4, 4]);
    // 2 stages of 128x128x16 tiles: 2 x 16.5 KiB.
    const big: GemmTile = { bm: 128, bn: 128, bk: 16, tm: 8, tn: 8, stages: 2 };
    if (rt.limits.maxComputeWorkgroupStorageSize < 2 * 16 * 16 * 66) {
      expect(() => matmul(x, x, { variant: 'g128', tiling: big })).toThrow(LimitError);
      expect(() => matmul(x, x, { variant: 'g128', tiling: big })).toThrow(/^matmul: maxComputeWorkgroupStorageSize .*2 stages/);
    }
    expect(() => matmul(x, x, { variant: 'g64', tiling: { bm: 64, bn: 64, bk: 64, tm: 4, tn: 4 } })).toThrow(/^matmul: tile .* is not supported/);
    expect(() => matmul(x, x, { variant: 'g7' as MatmulVariant })).toThrow(/unknown matmul variant 'g7'/);
    expect(() => matmul(x, x, { residual: rt.upload(Float32Array.from(randn(12)), [3, 4]) })).toThrow(/^matmul: residual has shape \[3, 4\], expected the output's \[4, 4\]/);
  });

  it('tile choice: the tuned cap unless it gives fewer than MIN_GROUPS workgroups or pads much more work', () => {
    expect(pickGemmTile('g128', 4096, 4096, 1)).toBe('g128');
    expect(pickGemmTile('g64', 4096, 4096, 1)).toBe('g64'); // never above the cap
    expect(pickGemmTile('g128', 2048, 2048, 1)).toBe('g128'); // 256 workgroups
    expect(pickGemmTile('g128', 1024, 1024, 1)).toBe('g64'); // 64 and 128 workgroups are too few; 256
    expect(pickGemmTile('g128', 1024, 1024, 4)).toBe('g128'); // a batch of 4: 256
    expect(pickGemmTile('g128', 320, 8192, 1)).toBe('g64x128'); // 128-row tiles pad 320 rows to 384
    expect(pickGemmTile('g128', 4096, 128, 1)).toBe('g32'); // 4096x128: 64x64 tiles give 128 workgroups
    expect(pickGemmTile('g128', 256, 256, 1)).toBe('g32');
    expect(MIN_GROUPS).toBe(192);
  });
});

function outShape(a: number[], b: number[]): number[] {
  const ab = batchOf(a), bb = batchOf(b);
  const r = Math.max(ab.length, bb.length);
  const batch = [...Array(r).keys()].map((i) => Math.max(ab[ab.length - r + i] ?? 1, bb[bb.length - r + i] ?? 1));
  return [...batch, a[a.length - 2]!, b[b.length - 1]!];
}
