import { Kernel } from '../src/runtime/kernel.js';
import { DeviceArray } from '../src/runtime/runtime.js';
import { ShapeError, fmtShape } from '../src/runtime/errors.js';
import source from '../shaders/conv2d.wgsl';
import { sumAxes } from './reduce.js';

const kernel = new Kernel('conv2d', source);

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

function gemm(entry: string, g: Conv2dGeometry, m: number, n: number, k: number, bindings: Record<string, DeviceArray>, extra: Record<string, number>, tile: Conv2dTile, splits = 1, kSplit = k): void {
  checkTile(tile);
  const rt = Object.values(bindings)[0]!.rt;
  rt.dispatch(kernel, entry, {
    bindings,
    uniforms: uniforms(g, m, n, k, splits, kSplit),
    workgroups: [Math.ceil(n / (8 * tile.WG_N)), Math.ceil(m / (8 * tile.WG_M)), g.groups * splits],
    constants: { WG_M: tile.WG_M, WG_N: tile.WG_N, TK: tile.TK, ...extra },
  });
}

/** y = conv2d(x, w) + bias, [N, Cout, OH, OW]. */
export function conv2dForward(x: DeviceArray, w: DeviceArray, b: DeviceArray | null, g: Conv2dGeometry, tile?: Conv2dTile): DeviceArray {
  const y = x.rt.alloc(conv2dOutShape(g), 'f32', 'conv2d');
  const m = g.cout / g.groups;
  const k = (g.cin / g.groups) * g.kh * g.kw;
  // Without a bias the binding still needs a buffer; HAS_BIAS = 0 means it is never read.
  gemm('forward', g, m, g.batch * g.oh * g.ow, k, { x, wt: w, bias: b ?? w, y }, { HAS_BIAS: b ? 1 : 0 }, tile ?? pickTile(m, k));
  return y;
}

/** dL/dx from dL/dy, [N, Cin, H, W]. */
export function conv2dBackwardData(gy: DeviceArray, w: DeviceArray, g: Conv2dGeometry, tile?: Conv2dTile): DeviceArray {
  const dx = gy.rt.alloc([g.batch, g.cin, g.h, g.w], 'f32', 'conv2d backward');
  const m = g.cin / g.groups;
  const k = (g.cout / g.groups) * g.kh * g.kw;
  const unit = g.stride[0] === 1 && g.stride[1] === 1;
  gemm('backward_data', g, m, g.batch * g.h * g.w, k, { gy, wt: w, dx }, { UNIT_STRIDE: unit ? 1 : 0 }, tile ?? pickTile(m, k));
  return dx;
}

/** Workgroups the weight gradient should have at least, so that every core (or SM) gets work. */
const MIN_WORKGROUPS = 32;
/** K steps each split keeps at least, so that its partial sums stay worth the extra pass. */
const MIN_SPLIT_STEPS = 8;

/**
 * How many K ranges the weight gradient's GEMM (M x N tiles few, K = batch * pixels long) is split
 * into, and the length of each (a multiple of TK): enough for MIN_WORKGROUPS workgroups.
 */
export function splitK(m: number, n: number, k: number, groups: number, t: Conv2dTile): { splits: number; kSplit: number } {
  const tiles = Math.ceil(m / (8 * t.WG_M)) * Math.ceil(n / (8 * t.WG_N)) * groups;
  const want = t.splits ?? Math.min(Math.ceil(MIN_WORKGROUPS / tiles), Math.floor(k / (MIN_SPLIT_STEPS * t.TK)));
  if (want <= 1) return { splits: 1, kSplit: k };
  const kSplit = Math.ceil(k / want / t.TK) * t.TK;
  return { splits: Math.ceil(k / kSplit), kSplit };
}

/** dL/dw from dL/dy and x, [Cout, Cin/groups, kh, kw]. */
export function conv2dBackwardWeight(gy: DeviceArray, x: DeviceArray, g: Conv2dGeometry, tile?: Conv2dTile): DeviceArray {
  const cinG = g.cin / g.groups;
  const m = g.cout / g.groups;
  const n = cinG * g.kh * g.kw;
  const k = g.batch * g.oh * g.ow;
  const t = tile ?? pickTile(m, k);
  const { splits, kSplit } = splitK(m, n, k, g.groups, t);
  const shape = [g.cout, cinG, g.kh, g.kw];
  // Split: each K range writes its own partial dw, [splits, ...shape], summed here.
  const dw = gy.rt.alloc(splits > 1 ? [splits, ...shape] : shape, 'f32', 'conv2d backward');
  gemm('backward_weight', g, m, n, k, { gy, x, dw }, {}, t, splits, kSplit);
  return splits > 1 ? sumAxes(dw, [0]).reshape(shape) : dw;
}

/** dL/dbias = sum of dL/dy over N, OH, OW, [Cout]. */
export function conv2dBackwardBias(gy: DeviceArray): DeviceArray {
  return sumAxes(gy, [0, 2, 3]).reshape([gy.shape[1]!]);
}

// ------------------------------------------------------------------ float64 references (tests only)

/** Calls f(xIndex, wIndex, yIndex) for every (output, tap) pair whose input pixel lies inside x. */
function forEachTap(g: Conv2dGeometry, f: (xi: number, wi: number, yi: number) => void): void {
  const cinG = g.cin / g.groups;
  const coutG = g.cout / g.groups;
  for (let b = 0; b < g.batch; b++)
    for (let co = 0; co < g.cout; co++) {
      const grp = Math.floor(co / coutG);
      for (let oy = 0; oy < g.oh; oy++)
        for (let ox = 0; ox < g.ow; ox++) {
          const yi = ((b * g.cout + co) * g.oh + oy) * g.ow + ox;
          for (let ci = 0; ci < cinG; ci++)
            for (let ky = 0; ky < g.kh; ky++) {
              const iy = oy * g.stride[0] - g.padding[0] + ky * g.dilation[0];
              if (iy < 0 || iy >= g.h) continue;
              for (let kx = 0; kx < g.kw; kx++) {
                const ix = ox * g.stride[1] - g.padding[1] + kx * g.dilation[1];
                if (ix < 0 || ix >= g.w) continue;
                const xi = ((b * g.cin + grp * cinG + ci) * g.h + iy) * g.w + ix;
                const wi = ((co * cinG + ci) * g.kh + ky) * g.kw + kx;
                f(xi, wi, yi);
              }
            }
        }
    }
}

/** Direct float64 convolution. */
export function conv2dRef(x: Float64Array, w: Float64Array, b: Float64Array | null, g: Conv2dGeometry): Float64Array {
  const y = new Float64Array(g.batch * g.cout * g.oh * g.ow);
  if (b) for (let i = 0; i < y.length; i++) y[i] = b[Math.floor(i / (g.oh * g.ow)) % g.cout]!;
  forEachTap(g, (xi, wi, yi) => (y[yi] += x[xi]! * w[wi]!));
  return y;
}

/** Analytic float64 VJP: gradients of sum(conv2d(x, w, b) * gy) with respect to x, w and b. */
export function conv2dGradRef(x: Float64Array, w: Float64Array, gy: Float64Array, g: Conv2dGeometry): { dx: Float64Array; dw: Float64Array; db: Float64Array } {
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(w.length);
  const db = new Float64Array(g.cout);
  forEachTap(g, (xi, wi, yi) => {
    dx[xi] += w[wi]! * gy[yi]!;
    dw[wi] += x[xi]! * gy[yi]!;
  });
  for (let i = 0; i < gy.length; i++) db[Math.floor(i / (g.oh * g.ow)) % g.cout] += gy[i]!;
  return { dx, dw, db };
}
