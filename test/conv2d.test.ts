import { describe, expect, it } from 'vitest';
import { ops, ShapeError } from '../src/index.js';
import { conv2dBackwardData, conv2dBackwardWeight, conv2dForward, conv2dGeometry, Conv2dOptions, Conv2dTile, Conv2dVariant, CONV2D_TILE, CONV2D_TILE_16, CONV2D_TILE_32, splitK } from '../kernels/conv2d.js';
import { conv2dGradRef, conv2dRef } from './reference/conv2d.js';
import { GEMM_TILES, GemmTile } from '../kernels/gemm-tile.js';
import { checkOp, expectClose, f32, randn, useDevice } from './helpers.js';

const dev = useDevice();

interface Case {
  name: string;
  x: [number, number, number, number];
  w: [number, number, number, number];
  bias?: boolean;
  opts?: Conv2dOptions;
  /** Fewer finite-difference probes for the larger cases keep each test fast (default 24). */
  fdProbes?: number;
}

// The op runs the variant the autotuner chose ('cpu' on SwiftShader, whose GEMM tiles are 64 (M) x 64
// (N) x 32 (K), 32 x 64 x 32 when M <= 32, 16 x 128 x 16 when M <= 16: kernels/conv2d.ts pickTile);
// every variant runs every case below at kernel level too. Most sizes are not multiples of any tile. Each GEMM (forward, dx, dw) has its own M, N, K: see the comments on the larger
// cases. The weight gradient splits K when its M x N tiles are few (kernels/conv2d.ts, splitK).
const cases: Case[] = [
  { name: '3x3 pad 1', x: [2, 3, 7, 6], w: [5, 3, 3, 3], bias: true, opts: { padding: 1 } },
  { name: '3x3 stride 2 pad 1', x: [2, 4, 9, 8], w: [6, 4, 3, 3], bias: true, opts: { stride: 2, padding: 1 } },
  { name: 'dilation 2', x: [1, 3, 9, 10], w: [4, 3, 3, 3], bias: true, opts: { dilation: 2, padding: 2 } },
  { name: 'groups 2', x: [2, 6, 5, 7], w: [4, 3, 3, 3], bias: true, opts: { groups: 2, padding: 1 } },
  { name: 'depthwise', x: [2, 5, 6, 6], w: [5, 1, 3, 3], bias: true, opts: { groups: 5, padding: 1 } },
  { name: '1x1', x: [3, 7, 5, 4], w: [9, 7, 1, 1], bias: true },
  { name: 'non-square kernel and input, no bias', x: [2, 3, 8, 5], w: [4, 3, 2, 3], opts: { stride: [2, 1], padding: [1, 0], dilation: [1, 2] } },
  // forward GEMM 64 x 64 x 288, dx 32 x 64 x 576, dw 64 x 288 x 64: whole tiles (all but dx's M, dw's N).
  { name: 'tile multiples', x: [1, 32, 8, 8], w: [64, 32, 3, 3], bias: true, opts: { padding: 1 }, fdProbes: 8 },
  // forward 70 x 112 x 180, dx 20 x 544 x 630, dw 70 x 180 x 112: more than one tile, ragged, everywhere.
  { name: 'several ragged tiles, stride 2, no padding', x: [2, 20, 17, 16], w: [70, 20, 3, 3], bias: true, opts: { stride: 2 }, fdProbes: 8 },
  // 16-row tiles 128 wide (each thread loads 4 B columns), ragged: forward 6 x 162 x 108, dx 12 x 162 x 54,
  // dw 6 x 108 x 162.
  { name: '16-row tiles', x: [2, 12, 9, 9], w: [6, 12, 3, 3], bias: true, opts: { padding: 1 }, fdProbes: 8 },
  // forward 24 x 800 x 360 (32-row tile), dx 40 x 800 x 216 (64-row tile), dw 24 x 360 x 800: K split
  // into 3 ranges of 288, 288 and 224.
  { name: 'split K in the weight gradient, 64-row data gradient', x: [2, 40, 20, 20], w: [24, 40, 3, 3], bias: true, opts: { padding: 1 }, fdProbes: 4 },
];

describe('conv2d', () => {
  for (const c of cases) {
    it(`${c.name}: x ${JSON.stringify(c.x)}, w ${JSON.stringify(c.w)}, ${JSON.stringify(c.opts ?? {})}`, async () => {
      const g = conv2dGeometry(c.x, c.w, c.bias ? [c.w[0]] : null, c.opts);
      const kFwd = g.cin / g.groups * g.kh * g.kw; // terms in each output's dot product
      const kDx = (g.cout / g.groups) * g.kh * g.kw; // terms in each dx element (at most)
      const kDw = g.batch * g.oh * g.ow; // terms in each dw and db element
      // An f32 dot product of K terms of size ~1 with random signs carries error ~u·K (√K roundings of
      // partial sums of size ~√K, u = 6e-8); 1e-6·K allows 16x that and still catches a wrong or missing
      // term (size ~1).
      const tol = (k: number) => 1e-6 * k;
      await checkOp(dev(), {
        name: `conv2d ${c.name}`,
        inputs: [{ shape: c.x }, { shape: c.w }, ...(c.bias ? [{ shape: [c.w[0]] }] : [])],
        run: ([x, w, b]) => ops.conv2d(x!, w!, b ?? null, c.opts),
        ref: ([x, w, b]) => conv2dRef(x!, w!, b ?? null, g),
        refGrad: ([x, w], gy) => {
          const r = conv2dGradRef(x!, w!, gy, g);
          return c.bias ? [r.dx, r.dw, r.db] : [r.dx, r.dw];
        },
        atol: tol(kFwd),
        rtol: 1e-6,
        gradAtol: tol(Math.max(kDx, kDw)),
        gradRtol: 1e-6,
        fdProbes: c.fdProbes,
      });
    });
  }

  it('every CPU tiling and K split gives the same numbers (forward, dx, dw)', async () => {
    const rt = dev().rt;
    // groups 2, stride 2, dilation 2: per group forward 21 x 200 x 45, dx 5 x 722 x 189, dw 21 x 45 x 200
    // (splits 2: K ranges of 128 and 72; splits 5: ranges of 64, the last of 8; splits 3 at TK 16: 80, 80, 40).
    const g = conv2dGeometry([2, 10, 19, 19], [42, 5, 3, 3], [42], { groups: 2, stride: 2, padding: 2, dilation: 2 });
    const [xs, ws] = [[2, 10, 19, 19], [42, 5, 3, 3]];
    const x = f32(randn(2 * 10 * 19 * 19));
    const w = f32(randn(42 * 5 * 9));
    const b = f32(randn(42));
    const gy = f32(randn(2 * 42 * g.oh * g.ow));
    const X = rt.upload(Float32Array.from(x), xs);
    const W = rt.upload(Float32Array.from(w), ws);
    const Bias = rt.upload(Float32Array.from(b), [42]);
    const GY = rt.upload(Float32Array.from(gy), [2, 42, g.oh, g.ow]);
    const y = conv2dRef(x, w, b, g);
    const ref = conv2dGradRef(x, w, gy, g);
    const tiles: Conv2dTile[] = [
      CONV2D_TILE, CONV2D_TILE_32, CONV2D_TILE_16, { WG_M: 4, WG_N: 16, TK: 16 },
      { ...CONV2D_TILE, splits: 2 }, { ...CONV2D_TILE_32, splits: 5 }, { ...CONV2D_TILE_16, splits: 3 },
    ];
    for (const t of tiles) {
      const what = `tile ${JSON.stringify(t)}`;
      const run = { variant: 'cpu' as const, tile: t };
      // Dot products of K terms ~1: 1e-6·K, as in the cases above.
      expectClose(`${what} forward`, await rt.read(conv2dForward(X, W, Bias, g, run)), y, 1e-6 * 45, 1e-6);
      expectClose(`${what} dx`, await rt.read(conv2dBackwardData(GY, W, g, run)), ref.dx, 1e-6 * 189, 1e-6);
      expectClose(`${what} dw`, await rt.read(conv2dBackwardWeight(GY, X, g, run)), ref.dw, 1e-6 * 200, 1e-6);
    }
    // The default split: none for this dw (K = 200 is short); a long K is split into ranges that are
    // multiples of TK and cover it exactly.
    expect(splitK(21, 45, 200, 2, CONV2D_TILE_32).splits).toBe(1);
    const s = splitK(32, 288, 8192, 1, CONV2D_TILE_32);
    expect(s.splits).toBeGreaterThan(1);
    expect(s.kSplit % 32).toBe(0);
    expect((s.splits - 1) * s.kSplit < 8192 && s.splits * s.kSplit >= 8192).toBe(true);
  });

  it('a weight used twice accumulates both gradients', async () => {
    // y = conv2d(x, w, pad 1) + conv2d(x, w, pad 2, dilation 2): both keep the 6 x 7 size.
    const xs = [2, 3, 6, 7];
    const ws = [4, 3, 3, 3];
    const o1 = { padding: 1 };
    const o2 = { padding: 2, dilation: 2 };
    const g1 = conv2dGeometry(xs, ws, null, o1);
    const g2 = conv2dGeometry(xs, ws, null, o2);
    const tol = 1e-6 * 2 * 3 * 6 * 7; // dw sums 2·(N·OH·OW) terms, the largest count here
    await checkOp(dev(), {
      name: 'conv2d twice',
      inputs: [{ shape: xs }, { shape: ws }],
      run: ([x, w]) => ops.add(ops.conv2d(x!, w!, null, o1), ops.conv2d(x!, w!, null, o2)),
      ref: ([x, w]) => {
        const b = conv2dRef(x!, w!, null, g2);
        return conv2dRef(x!, w!, null, g1).map((v, i) => v + b[i]!);
      },
      refGrad: ([x, w], gy) => {
        const a = conv2dGradRef(x!, w!, gy, g1);
        const b = conv2dGradRef(x!, w!, gy, g2);
        return [a.dx.map((v, i) => v + b.dx[i]!), a.dw.map((v, i) => v + b.dw[i]!)];
      },
      atol: tol,
      rtol: 1e-6,
    });
  });

  it('gradient only for the inputs that need one (x constant)', async () => {
    const d = dev();
    const x = d.tensor(new Float32Array(2 * 3 * 5 * 5).map((_, i) => Math.sin(i)), [2, 3, 5, 5]);
    const w = d.tensor(new Float32Array(4 * 3 * 3 * 3).map((_, i) => Math.cos(i)), [4, 3, 3, 3], { requiresGrad: true });
    const y = ops.conv2d(x, w, null, { padding: 1 });
    await ops.sum(y).backward();
    expect(x.grad).toBeNull();
    expect(w.grad?.shape).toEqual([4, 3, 3, 3]);
  });
});

// Every variant, at kernel level, on every case above: forward with bias and with a fused residual,
// dx, and dw with its default K split and with a forced one (3 ranges). The register-tiled GPU tiles
// run here on SwiftShader too, where the tuner picks 'cpu'. Forward with K % 4 == 0 ('tile multiples':
// K = 288) reads the weights as vec4; the others scalars.
describe('conv2d kernel variants vs float64', () => {
  const variants: [Conv2dVariant, GemmTile | undefined][] = [
    ['cpu', undefined],
    ...Object.entries(GEMM_TILES).map(([name, t]) => [name as Conv2dVariant, t] as [Conv2dVariant, GemmTile]),
    ['g64', { ...GEMM_TILES.g64, stages: 1 }],
  ];
  for (const [variant, tile] of variants) {
    it(`${variant}${tile ? ` ${tile.bm}x${tile.bn}x${tile.bk}${tile.stages ? `, ${tile.stages} stage` : ''}` : ''}: forward (+bias, +residual), dx, dw (split and not)`, async () => {
      const rt = dev().rt;
      const run = { variant, tile };
      for (const c of cases) {
        const g = conv2dGeometry(c.x, c.w, [c.w[0]], c.opts);
        const n = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
        const x = f32(randn(n(c.x)));
        const w = f32(randn(n(c.w)));
        const b = f32(randn(g.cout));
        const gy = f32(randn(g.batch * g.cout * g.oh * g.ow));
        const r = f32(randn(gy.length));
        const X = rt.upload(Float32Array.from(x), c.x);
        const W = rt.upload(Float32Array.from(w), c.w);
        const B = rt.upload(Float32Array.from(b), [g.cout]);
        const GY = rt.upload(Float32Array.from(gy), [g.batch, g.cout, g.oh, g.ow]);
        const R = rt.upload(Float32Array.from(r), [g.batch, g.cout, g.oh, g.ow]);
        const y = conv2dRef(x, w, b, g);
        const ref = conv2dGradRef(x, w, gy, g);
        // As in the op checks: 1e-6·K for dot products of K terms of size ~1 (the residual adds one rounding).
        const kFwd = (g.cin / g.groups) * g.kh * g.kw;
        const kDx = (g.cout / g.groups) * g.kh * g.kw;
        const kDw = g.batch * g.oh * g.ow;
        const what = `${variant} ${c.name}`;
        expectClose(`${what} forward`, await rt.read(conv2dForward(X, W, B, g, run)), y, 1e-6 * kFwd, 1e-6);
        expectClose(`${what} forward + residual`, await rt.read(conv2dForward(X, W, null, g, { ...run, residual: R })), conv2dRef(x, w, null, g).map((v, i) => v + r[i]!), 1e-6 * kFwd, 1e-6);
        expectClose(`${what} dx`, await rt.read(conv2dBackwardData(GY, W, g, run)), ref.dx, 1e-6 * kDx, 1e-6);
        expectClose(`${what} dw`, await rt.read(conv2dBackwardWeight(GY, X, g, run)), ref.dw, 1e-6 * kDw, 1e-6);
        if (variant !== 'cpu') expectClose(`${what} dw, 3 K ranges`, await rt.read(conv2dBackwardWeight(GY, X, g, { ...run, splits: 3 })), ref.dw, 1e-6 * kDw, 1e-6);
        for (const a of [X, W, B, GY, R]) rt.dispose(a);
      }
    });
  }

  it('a residual of the wrong shape is an error naming both shapes', () => {
    const rt = dev().rt;
    const g = conv2dGeometry([1, 2, 4, 4], [3, 2, 3, 3], null, { padding: 1 });
    const X = rt.upload(new Float32Array(32), [1, 2, 4, 4]);
    const W = rt.upload(new Float32Array(54), [3, 2, 3, 3]);
    expect(() => conv2dForward(X, W, null, g, { residual: rt.upload(new Float32Array(32), [1, 2, 4, 4]) })).toThrow(/^conv2d: residual has shape \[1, 2, 4, 4\], expected the output's \[1, 3, 4, 4\]/);
  });
});

describe('conv2d shape errors', () => {
  it('names the op, both shapes and the expected w shape when Cin does not match', () => {
    const d = dev();
    const x = d.zeros([2, 8, 5, 5]);
    const w = d.zeros([4, 3, 3, 3]);
    expect(() => ops.conv2d(x, w)).toThrow(ShapeError);
    expect(() => ops.conv2d(x, w)).toThrow(/conv2d: x has shape \[2, 8, 5, 5\] and w has shape \[4, 3, 3, 3\].*\[4, 8, 3, 3\]/);
    expect(() => ops.conv2d(x, w, null, { groups: 2 })).toThrow(/\[4, 4, 3, 3\]/);
  });
  it('channels not divisible by groups', () => {
    const d = dev();
    expect(() => ops.conv2d(d.zeros([1, 6, 5, 5]), d.zeros([4, 2, 3, 3]), null, { groups: 3 })).toThrow(/conv2d: .*output channels 4.*divisible by groups = 3/);
    expect(() => ops.conv2d(d.zeros([1, 5, 5, 5]), d.zeros([4, 2, 3, 3]), null, { groups: 2 })).toThrow(/conv2d: input channels 5/);
  });
  it('output size <= 0', () => {
    const d = dev();
    expect(() => ops.conv2d(d.zeros([1, 2, 4, 4]), d.zeros([3, 2, 5, 5]))).toThrow(/conv2d: .*gives output \[1, 3, 0, 0\]/);
    expect(() => ops.conv2d(d.zeros([1, 2, 4, 4]), d.zeros([3, 2, 3, 3]), null, { dilation: 2 })).toThrow(/conv2d: .*gives output \[1, 3, 0, 0\]/);
  });
  it('bad bias shape, stride, padding, empty axes', () => {
    const d = dev();
    expect(() => ops.conv2d(d.zeros([1, 2, 4, 4]), d.zeros([3, 2, 3, 3]), d.zeros([2]))).toThrow(/conv2d: bias has shape \[2\], expected \[3\]/);
    expect(() => ops.conv2d(d.zeros([1, 2, 4, 4]), d.zeros([3, 2, 3, 3]), null, { stride: 0 })).toThrow(/conv2d: stride/);
    expect(() => ops.conv2d(d.zeros([1, 2, 4, 4]), d.zeros([3, 2, 3, 3]), null, { padding: [1, 2, 3] as unknown as [number, number] })).toThrow(/conv2d: padding/);
    expect(() => ops.conv2d(d.zeros([0, 2, 4, 4]), d.zeros([3, 2, 3, 3]))).toThrow(/conv2d: .*no empty axes/);
  });
});
