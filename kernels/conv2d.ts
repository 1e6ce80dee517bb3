import { Kernel } from '../src/runtime/kernel.js';
import { DeviceArray, Runtime } from '../src/runtime/runtime.js';
import { ShapeError, fmtShape } from '../src/runtime/errors.js';
import commonSource from '../shaders/conv2d_common.wgsl';
import source from '../shaders/conv2d.wgsl';
import gemmTileSource from '../shaders/gemm_tile.wgsl';
import tileSource from '../shaders/conv2d_tile.wgsl';
import { sumAxes } from './reduce.js';
import { GEMM_TILES, GemmTile, MIN_GROUPS, TileName, pickGemmTile, tileConstants, tileFits } from './gemm-tile.js';
import { fnv1a, tunedChoice, type TuneProblem, type TuneWorkload } from '../src/runtime/autotune.js';
import { tuneInput } from './tune-input.js';

/** The tiling for CPU emulation (8x8 outputs per thread; see shaders/conv2d.wgsl). */
const kernel = new Kernel('conv2d', commonSource + source);
/** The register-tiled GPU kernels (shaders/conv2d_tile.wgsl on the GEMM core). */
const tileKernel = new Kernel('conv2d_tile', gemmTileSource + commonSource + tileSource);

export type Pair = number | readonly [number, number];

export interface Conv2dOptions {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
}

/** Everything about one convolution's shapes: the op's shape rule, resolved once. */
export interface Conv2dGeometry {
  batch: number;
  cin: number;
  h: number;
  w: number;
  cout: number;
  kh: number;
  kw: number;
  oh: number;
  ow: number;
  stride: [number, number];
  padding: [number, number];
  dilation: [number, number];
  groups: number;
}

/**
 * Tiling (see shaders/conv2d.wgsl): a workgroup of WG_M x WG_N threads computes a (8 WG_M) x (8 WG_N)
 * tile of the GEMM, each thread an 8 x 8 block, in TK-deep steps. 8 x 8 threads with TK = 32 (16 KiB
 * of workgroup memory) measured best on SwiftShader among WG_N in {4, 8, 16} and TK in {16, 32}.
 */
export const CONV2D_TILE: Conv2dTile = { WG_M: 8, WG_N: 8, TK: 32 };
/** For GEMMs of at most 32 rows (e.g. 32 channels): half the rows, so no work is padded away. */
export const CONV2D_TILE_32: Conv2dTile = { WG_M: 4, WG_N: 8, TK: 32 };
/** For at most 16 rows; 16 deep, as 32 would take more than 16 KiB of workgroup memory. */
export const CONV2D_TILE_16: Conv2dTile = { WG_M: 2, WG_N: 16, TK: 16 };
export interface Conv2dTile {
  /** threads along M: 8, 4 or 2 (64-, 32- or 16-row tiles) */
  WG_M: number;
  WG_N: number;
  TK: number;
  /** weight gradient only: K ranges summed afterwards (default: from the sizes, see splitK) */
  splits?: number;
}

function checkTile(t: Conv2dTile): void {
  const nt = t.WG_M * t.WG_N;
  const bytes = 4 * 8 * t.TK * (t.WG_M + t.WG_N);
  if (![2, 4, 8].includes(t.WG_M) || nt > 256 || nt % t.TK !== 0 || (8 * t.WG_M * t.TK) % nt !== 0 || bytes > 16384) {
    throw new Error(`conv2d: tile ${JSON.stringify(t)} is not supported (WG_M must be 2, 4 or 8, threads ${nt} <= 256 and a multiple of TK, workgroup memory ${bytes} <= 16384 bytes)`);
  }
}

/**
 * The tile for an m x k GEMM: the one with the fewest padded rows, each tile's rows weighted by its
 * cost per row (smaller tiles' loads feed fewer FMAs; measured on SwiftShader, relative to 64-row
 * tiles: 1.2 for 32 rows, 1.9 for 16). So 16-row tiles for M <= 16 (e.g. a convolution out to
 * 1-4 image channels), 32-row ones for M <= 32 and M = 96, 64-row ones for M = 64. A K of at most 16
 * (a 3x3 convolution of one channel) takes 16-deep steps rather than padding to 32.
 */
export function pickTile(m: number, k: number): Conv2dTile {
  const cost = (t: Conv2dTile, perRow: number) => Math.ceil(m / (8 * t.WG_M)) * 8 * t.WG_M * perRow;
  const options: [Conv2dTile, number][] = [[CONV2D_TILE, 1], [CONV2D_TILE_32, 1.2], [CONV2D_TILE_16, 1.9]];
  const t = options.reduce((best, o) => (cost(...o) < cost(...best) ? o : best))[0];
  return k <= 16 ? { ...t, TK: 16 } : t;
}

function pair(op: string, name: string, v: Pair, min: number): [number, number] {
  const p: [number, number] = typeof v === 'number' ? [v, v] : [v[0], v[1]];
  if ((typeof v !== 'number' && v.length !== 2) || p.some((d) => !Number.isInteger(d) || d < min)) {
    throw new ShapeError(op, `${name} must be an integer >= ${min} or a pair of them, got ${JSON.stringify(v)}`);
  }
  return p;
}

/**
 * The shape rule: validates x [N, Cin, H, W], w [Cout, Cin/groups, kh, kw] and bias [Cout] and returns
 * the geometry, with OH = floor((H + 2p - d(kh-1) - 1) / s) + 1 (likewise OW).
 */
export function conv2dGeometry(
  xShape: readonly number[],
  wShape: readonly number[],
  bShape: readonly number[] | null,
  opts: Conv2dOptions = {},
  op = 'conv2d',
): Conv2dGeometry {
  const stride = pair(op, 'stride', opts.stride ?? 1, 1);
  const padding = pair(op, 'padding', opts.padding ?? 0, 0);
  const dilation = pair(op, 'dilation', opts.dilation ?? 1, 1);
  const groups = opts.groups ?? 1;
  if (!Number.isInteger(groups) || groups < 1) throw new ShapeError(op, `groups must be a positive integer, got ${groups}`);
  if (xShape.length !== 4) throw new ShapeError(op, `x has shape ${fmtShape(xShape)}, expected rank 4 [N, Cin, H, W]`);
  if (wShape.length !== 4) throw new ShapeError(op, `w has shape ${fmtShape(wShape)}, expected rank 4 [Cout, Cin/groups, kh, kw]`);
  const [batch, cin, h, w] = xShape as [number, number, number, number];
  const [cout, cinG, kh, kw] = wShape as [number, number, number, number];
  if ([...xShape, ...wShape].some((d) => d < 1)) {
    throw new ShapeError(op, `x ${fmtShape(xShape)} and w ${fmtShape(wShape)} must have no empty axes`);
  }
  if (cin % groups !== 0 || cout % groups !== 0) {
    throw new ShapeError(op, `input channels ${cin} (x ${fmtShape(xShape)}) and output channels ${cout} (w ${fmtShape(wShape)}) must both be divisible by groups = ${groups}`);
  }
  if (cinG !== cin / groups) {
    throw new ShapeError(op, `x has shape ${fmtShape(xShape)} and w has shape ${fmtShape(wShape)}; with groups = ${groups} w must have shape ${fmtShape([cout, cin / groups, kh, kw])} (Cin/groups = ${cin / groups} in axis 1)`);
  }
  if (bShape && (bShape.length !== 1 || bShape[0] !== cout)) {
    throw new ShapeError(op, `bias has shape ${fmtShape(bShape)}, expected ${fmtShape([cout])} for w ${fmtShape(wShape)}`);
  }
  const oh = Math.floor((h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) / stride[0]) + 1;
  const ow = Math.floor((w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) / stride[1]) + 1;
  if (!(oh > 0 && ow > 0)) {
    throw new ShapeError(op, `x ${fmtShape(xShape)} with w ${fmtShape(wShape)}, stride [${stride}], padding [${padding}], dilation [${dilation}] gives output ${fmtShape([batch, cout, oh, ow])}; every size must be >= 1 (pad the input or use a smaller kernel or dilation)`);
  }
  // The data-gradient kernel divides (ih + pad - ky*dil) by the stride in f32: exact while the
  // numerator's magnitude plus the stride stays below 2^24.
  const span = Math.max(h + padding[0] + stride[0], w + padding[1] + stride[1], dilation[0] * (kh - 1) + stride[0], dilation[1] * (kw - 1) + stride[1]);
  if (span >= 2 ** 24) {
    throw new ShapeError(op, `x ${fmtShape(xShape)} with padding [${padding}] and dilation [${dilation}] spans ${span} pixels; at most 2^24 - 1 are supported`);
  }
  return { batch, cin, h, w, cout, kh, kw, oh, ow, stride, padding, dilation, groups };
}

export const conv2dOutShape = (g: Conv2dGeometry): number[] => [g.batch, g.cout, g.oh, g.ow];

/** Floating-point operations of the forward pass (each of dX and dW costs the same). */
export const conv2dFlops = (g: Conv2dGeometry): number => 2 * g.batch * g.cout * g.oh * g.ow * (g.cin / g.groups) * g.kh * g.kw;

function uniforms(g: Conv2dGeometry, m: number, n: number, k: number, splits = 1, kSplit = k) {
  return {
    batch: g.batch, cin: g.cin, in_h: g.h, in_w: g.w,
    cout: g.cout, out_h: g.oh, out_w: g.ow, groups: g.groups,
    k_h: g.kh, k_w: g.kw, stride_h: g.stride[0], stride_w: g.stride[1],
    pad_h: g.padding[0], pad_w: g.padding[1], dil_h: g.dilation[0], dil_w: g.dilation[1],
    cin_g: g.cin / g.groups, cout_g: g.cout / g.groups,
    gemm_m: m, gemm_n: n, gemm_k: k, splits, k_split: kSplit, _pad0: 0,
  };
}

/**
 * 'cpu': the tiling for CPU emulation (shaders/conv2d.wgsl: 8x8 outputs per thread, tiles picked by
 * pickTile). The others are the register-tiled GPU kernels (shaders/conv2d_tile.wgsl) with that tile
 * as the largest allowed (kernels/gemm-tile.ts pickGemmTile). Chosen per adapter and per GEMM by the
 * autotuner (CONV2D_TUNE and its data and weight twins).
 */
export type Conv2dVariant = 'cpu' | TileName;

/** How one convolution GEMM runs: the variant (default: tuned), an exact tile, a forced K split, a residual. */
export interface Conv2dRun {
  variant?: Conv2dVariant;
  /** Exactly this tile: a Conv2dTile for 'cpu' (its `splits` forces the K split), a GemmTile otherwise. */
  tile?: Conv2dTile | GemmTile;
  /** Weight gradient on the GPU kernel: this many K ranges instead of the default. */
  splits?: number;
  /** Forward only: added to the output, a contiguous array of its shape (a fused residual add). */
  residual?: DeviceArray | null;
}

const CANDIDATES: readonly Conv2dVariant[] = ['g64x128', 'g128', 'g64', 'cpu'];
export type Conv2dEntry = 'forward' | 'data' | 'weight';
type Entry = Conv2dEntry;

/** The GEMM of one entry: M x N x K per group. */
function gemmSize(e: Entry, g: Conv2dGeometry): { m: number; n: number; k: number } {
  const khw = g.kh * g.kw;
  if (e === 'forward') return { m: g.cout / g.groups, n: g.batch * g.oh * g.ow, k: (g.cin / g.groups) * khw };
  if (e === 'data') return { m: g.cin / g.groups, n: g.batch * g.h * g.w, k: (g.cout / g.groups) * khw };
  return { m: g.cout / g.groups, n: (g.cin / g.groups) * khw, k: g.batch * g.oh * g.ow };
}

/** What an entry runs for this geometry: the variant, and its tile (and K split for the weight gradient). */
interface Plan { variant: Conv2dVariant; cpu?: Conv2dTile; tile?: GemmTile; splits: number; kSplit: number }

function plan(e: Entry, rt: Runtime, g: Conv2dGeometry, run: Conv2dRun): Plan {
  const variant = run.variant ?? (tunedChoice(rt, TUNE[e]) as Conv2dVariant);
  const { m, n, k } = gemmSize(e, g);
  if (variant === 'cpu') {
    const t = (run.tile as Conv2dTile | undefined) ?? pickTile(m, k);
    checkTile(t);
    const { splits, kSplit } = e === 'weight' ? splitK(m, n, k, g.groups, t) : { splits: 1, kSplit: k };
    return { variant, cpu: t, splits, kSplit };
  }
  if (!(variant in GEMM_TILES)) throw new Error(`conv2d: unknown variant '${variant}' (have: ${CANDIDATES.join(', ')}, g32)`);
  // The weight gradient's M x N is small and its K long: it splits K for workgroups, rather than
  // shrinking its tile.
  const tile = (run.tile as GemmTile | undefined) ?? GEMM_TILES[pickGemmTile(variant, m, n, g.groups, e === 'weight' ? 0 : MIN_GROUPS)];
  if (e !== 'weight') return { variant, tile, splits: 1, kSplit: k };
  const tiles = Math.ceil(m / tile.bm) * Math.ceil(n / tile.bn) * g.groups;
  return { variant, tile, ...splitRange(tiles, k, tile.bk, MIN_GROUPS, run.splits) };
}

/** What one of the three GEMMs runs for this geometry on this adapter, e.g. 'g64x128 64x128 k16 (4x8/thread)'. */
export function conv2dRunName(rt: Runtime, g: Conv2dGeometry, entry: Entry = 'forward'): string {
  const p = plan(entry, rt, g, {});
  const split = p.splits > 1 ? `, K in ${p.splits} ranges` : '';
  if (p.cpu) return `cpu ${8 * p.cpu.WG_M}x${8 * p.cpu.WG_N} k${p.cpu.TK} (8x8/thread)${split}`;
  const t = p.tile!;
  return `${p.variant} ${t.bm}x${t.bn} k${t.bk} (${t.tm}x${t.tn}/thread)${split}`;
}

/** One entry's dispatch, on the kernel its plan names. */
function launch(e: Entry, g: Conv2dGeometry, p: Plan, bindings: Record<string, DeviceArray>, extra: Record<string, number>): void {
  const rt = Object.values(bindings)[0]!.rt;
  const { m, n, k } = gemmSize(e, g);
  const u = uniforms(g, m, n, k, p.splits, p.kSplit);
  if (p.cpu) {
    const t = p.cpu;
    rt.dispatch(kernel, e === 'forward' ? 'forward' : `backward_${e}`, {
      bindings, uniforms: u,
      workgroups: [Math.ceil(n / (8 * t.WG_N)), Math.ceil(m / (8 * t.WG_M)), g.groups * p.splits],
      constants: { WG_M: t.WG_M, WG_N: t.WG_N, TK: t.TK, ...extra },
    });
    return;
  }
  const t = p.tile!;
  rt.dispatch(tileKernel, `conv_${e}`, {
    bindings: e === 'forward' ? { ...bindings, wt_v4: bindings.wt! } : bindings, uniforms: u,
    workgroups: [Math.ceil(n / t.bn), Math.ceil(m / t.bm), g.groups * p.splits],
    constants: { ...tileConstants('conv2d', rt, t), ...extra, ...(e === 'forward' ? { W_VEC: k % 4 === 0 ? 1 : 0 } : {}) },
  });
}

/** y = conv2d(x, w) + bias (+ residual), [N, Cout, OH, OW]. */
export function conv2dForward(x: DeviceArray, w: DeviceArray, b: DeviceArray | null, g: Conv2dGeometry, run: Conv2dRun = {}): DeviceArray {
  const shape = conv2dOutShape(g);
  const y = x.rt.alloc(shape, 'f32', 'conv2d');
  const res = run.residual ?? null;
  if (res && res.shape.join() !== shape.join()) throw new ShapeError('conv2d', `residual has shape ${fmtShape(res.shape)}, expected the output's ${fmtShape(shape)}`);
  // Without a bias (residual) the binding still needs a buffer; HAS_BIAS = 0 means it is never read.
  launch('forward', g, plan('forward', x.rt, g, run), { x, wt: w, bias: b ?? w, res: res ?? w, y }, { HAS_BIAS: b ? 1 : 0, HAS_RES: res ? 1 : 0 });
  return y;
}

/** dL/dx from dL/dy, [N, Cin, H, W]. */
export function conv2dBackwardData(gy: DeviceArray, w: DeviceArray, g: Conv2dGeometry, run: Conv2dRun = {}): DeviceArray {
  const dx = gy.rt.alloc([g.batch, g.cin, g.h, g.w], 'f32', 'conv2d backward');
  const unit = g.stride[0] === 1 && g.stride[1] === 1;
  launch('data', g, plan('data', gy.rt, g, run), { gy, wt: w, dx }, { UNIT_STRIDE: unit ? 1 : 0 });
  return dx;
}

/** Workgroups the weight gradient should have at least on the CPU tiling, so that every core gets work. */
const MIN_WORKGROUPS = 32;
/** K steps each split keeps at least, so that its partial sums stay worth the extra pass. */
const MIN_SPLIT_STEPS = 8;

/**
 * How many K ranges a GEMM of `tiles` output tiles and a long K is split into, and the length of each
 * (a multiple of `step`): enough for `minGroups` workgroups, each range at least MIN_SPLIT_STEPS steps.
 */
function splitRange(tiles: number, k: number, step: number, minGroups: number, forced?: number): { splits: number; kSplit: number } {
  const want = forced ?? Math.min(Math.ceil(minGroups / tiles), Math.floor(k / (MIN_SPLIT_STEPS * step)));
  if (want <= 1) return { splits: 1, kSplit: k };
  const kSplit = Math.ceil(k / want / step) * step;
  return { splits: Math.ceil(k / kSplit), kSplit };
}

/** The K split of the CPU tiling's weight gradient: enough for MIN_WORKGROUPS workgroups. */
export function splitK(m: number, n: number, k: number, groups: number, t: Conv2dTile): { splits: number; kSplit: number } {
  const tiles = Math.ceil(m / (8 * t.WG_M)) * Math.ceil(n / (8 * t.WG_N)) * groups;
  return splitRange(tiles, k, t.TK, MIN_WORKGROUPS, t.splits);
}

/** dL/dw from dL/dy and x, [Cout, Cin/groups, kh, kw]. */
export function conv2dBackwardWeight(gy: DeviceArray, x: DeviceArray, g: Conv2dGeometry, run: Conv2dRun = {}): DeviceArray {
  const shape = [g.cout, g.cin / g.groups, g.kh, g.kw];
  const p = plan('weight', gy.rt, g, run);
  // Split: each K range writes its own partial dw, [splits, ...shape], summed here.
  const dw = gy.rt.alloc(p.splits > 1 ? [p.splits, ...shape] : shape, 'f32', 'conv2d backward');
  launch('weight', g, p, { gy, x, dw }, {});
  return p.splits > 1 ? sumAxes(dw, [0]).reshape(shape) : dw;
}

// ------------------------------------------------------------------ autotuning

/**
 * Each GEMM's variant is measured on its own (the three have different shapes and loads): a small
 * convolution (3x3, 32 -> 32, 16x16, batch 4), a U-Net-sized one (3x3, 128 -> 128, 32x32, batch 4)
 * and the large one of the GPU bench (3x3, 320 -> 320, 64x64, batch 2), as far as the adapter gets
 * within the launch budget (a CPU emulator stops at the small one).
 */
function convWorkload(e: Entry, [n, c, hw]: [number, number, number]): TuneWorkload {
  const g = conv2dGeometry([n, c, hw, hw], [c, c, 3, 3], [c], { padding: 1 });
  return {
    label: `3x3 ${c}->${c} ${hw}x${hw} batch ${n}`,
    work: conv2dFlops(g),
    setup(rt) {
      const x = tuneInput(rt, [n, c, hw, hw]);
      const w = tuneInput(rt, [c, c, 3, 3]);
      const b = tuneInput(rt, [c]);
      let out: DeviceArray | null = null;
      return {
        run: (cand) => {
          if (out) rt.dispose(out);
          const run = { variant: cand as Conv2dVariant };
          out = e === 'forward' ? conv2dForward(x, w, b, g, run) : e === 'data' ? conv2dBackwardData(x, w, g, run) : conv2dBackwardWeight(x, x, g, run);
        },
        dispose: () => [x, w, b].forEach((a) => rt.dispose(a)),
        runs: (cand) => {
          const p = plan(e, rt, g, { variant: cand as Conv2dVariant });
          return JSON.stringify([p.variant === 'cpu' ? p.cpu : p.tile, p.splits]);
        },
      };
    },
  };
}

function convProblem(e: Entry): TuneProblem {
  return {
    key: e === 'forward' ? 'conv2d' : `conv2d.${e}`,
    candidates: CANDIDATES,
    revision: fnv1a(commonSource + source + gemmTileSource + tileSource),
    workloads: ([[4, 32, 16], [4, 128, 32], [2, 320, 64]] as const).map((s) => convWorkload(e, [...s])),
    usable: (rt, c) => c === 'cpu' || tileFits(rt, GEMM_TILES[c as TileName]),
  };
}

export const CONV2D_TUNE = convProblem('forward');
export const CONV2D_DATA_TUNE = convProblem('data');
export const CONV2D_WEIGHT_TUNE = convProblem('weight');
const TUNE: Record<Entry, TuneProblem> = { forward: CONV2D_TUNE, data: CONV2D_DATA_TUNE, weight: CONV2D_WEIGHT_TUNE };

/** dL/dbias = sum of dL/dy over N, OH, OW, [Cout]. */
export function conv2dBackwardBias(gy: DeviceArray): DeviceArray {
  return sumAxes(gy, [0, 2, 3]).reshape([gy.shape[1]!]);
}
