import { Kernel } from '../src/runtime/kernel.js';
import { DeviceArray, Runtime } from '../src/runtime/runtime.js';
import { LimitError, ShapeError, fmtShape } from '../src/runtime/errors.js';
import source from '../shaders/matmul.wgsl';
import tileSource from '../shaders/gemm_tile.wgsl';
import { GEMM_TILES, GemmTile, TileName, pickGemmTile, tileConstants, tileFits } from './gemm-tile.js';
import { numel, stridesOf } from './shape.js';
import { sumAxes, sumTo } from './reduce.js';
import { fnv1a, tunedChoice, type TuneProblem, type TuneWorkload } from '../src/runtime/autotune.js';
import { tuneInput } from './tune-input.js';

const kernel = new Kernel('matmul', tileSource + source);

/**
 * 'regs': register-blocked 8x8 outputs per thread straight from storage, no workgroup memory, no
 * barrier (fastest on CPU emulation: SwiftShader). The others are the register-tiled GPU kernel
 * (shaders/gemm_tile.wgsl) with that tile as the largest allowed; smaller products step down to
 * smaller tiles (kernels/gemm-tile.ts pickGemmTile). Which one runs is the autotuner's choice.
 */
export type MatmulVariant = 'regs' | TileName;

/** A tiling as 'g64 64x64 k16 (4x4/thread)', or 'regs 64x64' for the 8x8-per-thread register kernel. */
export function tilingName(variant: MatmulVariant, t?: MatmulTiling | GemmTile): string {
  if (variant === 'regs') {
    const r = (t as MatmulTiling | undefined) ?? DEFAULT_REGS;
    return `regs ${8 * r.wy}x${8 * r.wx}`;
  }
  const g = (t as GemmTile | undefined) ?? GEMM_TILES[variant];
  return `${variant} ${g.bm}x${g.bn} k${g.bk} (${g.tm}x${g.tn}/thread)`;
}

/** 'regs' threads along N (wx) and M (wy); a workgroup computes an (8 wy) x (8 wx) tile of C. */
export interface MatmulTiling {
  wx: number;
  wy: number;
}
const DEFAULT_REGS: MatmulTiling = { wx: 8, wy: 8 };
/** 32x32 tiles, for products that 64x64 ones would pad (N = 77: 128 vs 96 columns) or leave few workgroups. */
const SMALL_REGS: MatmulTiling = { wx: 4, wy: 4 };

/**
 * 'regs' drops to 32x32 tiles when 64x64 ones would pad much more work or leave too few workgroups
 * to keep the cores busy; measured equal otherwise (SwiftShader).
 */
export function pickTiling(m: number, n: number, batch: number): MatmulTiling {
  const padded = (t: number) => Math.ceil(m / t) * Math.ceil(n / t) * t * t;
  const groups = Math.ceil(m / 64) * Math.ceil(n / 64) * batch;
  return padded(32) < 0.9 * padded(64) || groups < 8 ? SMALL_REGS : DEFAULT_REGS;
}

/**
 * The variant, chosen per adapter by measurement (src/runtime/autotune.ts) among the GPU tilings
 * (largest tile allowed) and 'regs'. The first candidate is the fixed default (untuned devices).
 * Measured at 256^3, 1024^3 and 2048^3, as far as the adapter gets within the launch budget: a CPU
 * emulator stops at 256^3 (where all GPU candidates run 32x32 tiles and 'regs' wins), a large GPU
 * reaches 2048^3, where the tile caps differ.
 */
export const MATMUL_TUNE: TuneProblem = {
  key: 'matmul',
  candidates: ['g128', 'g64x128', 'g64', 'regs'],
  revision: fnv1a(tileSource + source),
  workloads: [256, 1024, 2048].map(mmWorkload),
  usable: (rt, c) => c === 'regs' || tileFits(rt, GEMM_TILES[c as TileName]),
};

function mmWorkload(s: number): TuneWorkload {
  return {
    label: `${s}x${s}x${s}`,
    work: 2 * s ** 3,
    setup(rt) {
      const a = tuneInput(rt, [s, s]);
      const b = tuneInput(rt, [s, s]);
      let c: DeviceArray | null = null;
      return {
        run: (cand) => {
          if (c) rt.dispose(c);
          c = matmul(a, b, { variant: cand as MatmulVariant });
        },
        dispose: () => [a, b].forEach((x) => rt.dispose(x)),
        runs: (cand) => (cand === 'regs' ? cand : pickGemmTile(cand as TileName, s, s, 1)),
      };
    },
  };
}

/** What an m x n product (of `batch` matrices) runs on this adapter, e.g. 'g128 128x128 k8 (8x8/thread)'. */
export function matmulRunName(rt: Runtime, m: number, n: number, batch = 1): string {
  const v = defaultVariant(rt);
  return v === 'regs' ? tilingName(v, pickTiling(m, n, batch)) : tilingName(pickGemmTile(v, m, n, batch));
}

/** The variant this adapter runs: see MATMUL_TUNE. */
export function defaultVariant(rt: Runtime): MatmulVariant {
  return tunedChoice(rt, MATMUL_TUNE) as MatmulVariant;
}

/** How the kernel reads one operand, a logical [...batch, rows, cols] matrix, from an array. */
export interface MatOperand {
  array: DeviceArray;
  offset: number;
  rowStride: number;
  colStride: number;
  /** One stride per output batch dim (as `batchShape` in GemmArgs); 0 where broadcast. */
  batchStrides: readonly number[];
}

export interface GemmArgs {
  a: MatOperand; // [...batch, M, K]
  b: MatOperand; // [...batch, K, N]
  m: number;
  n: number;
  k: number;
  batchShape: readonly number[];
  /** Added to every output: bias[offset + m·rowStride + n·colStride] (per column: rowStride 0). */
  bias?: { array: DeviceArray; offset?: number; rowStride: number; colStride: number };
  /** Scales the product (not the bias). */
  alpha?: number;
  /** Added to the result: a contiguous array of the output's shape (a fused residual add). */
  residual?: DeviceArray;
  variant?: MatmulVariant;
  /** Exactly this tiling, instead of the variant's choice for the sizes (tests, benchmarks). */
  tiling?: MatmulTiling | GemmTile;
  op?: string;
}

const aligned4 = (xs: readonly number[]) => xs.every((x) => x % 4 === 0);

/**
 * C = alpha · A·B + bias (+ residual) as a new contiguous [...batchShape, M, N] array: the one entry
 * point to the kernel. Batch dims are simplified first (size-1 dims dropped, adjacent dims merged, a
 * batch folded into M when B is shared across it), at most 4 go to the kernel and any outer ones
 * become separate dispatches.
 */
export function gemm(args: GemmArgs): DeviceArray {
  const { a, b, k } = args;
  const rt = a.array.rt;
  const op = args.op ?? 'matmul';
  const outShape = [...args.batchShape, args.m, args.n];
  const out = rt.alloc(outShape, 'f32', op);
  if (out.size === 0) return out;
  const res = args.residual;
  if (res && (res.size !== out.size || res.shape.length !== outShape.length || res.shape.some((d, i) => d !== outShape[i]))) {
    throw new ShapeError(op, `residual has shape ${fmtShape(res.shape)}, expected the output's ${fmtShape(outShape)}`);
  }
  let m = args.m;
  const n = args.n;

  // Simplify the batch: drop size-1 dims, merge neighbours whose strides chain, fold into M.
  let dims: { size: number; sa: number; sb: number }[] = [];
  args.batchShape.forEach((size, i) => {
    if (size !== 1) dims.push({ size, sa: a.batchStrides[i]!, sb: b.batchStrides[i]! });
  });
  dims = dims.reduce<typeof dims>((acc, d) => {
    const prev = acc[acc.length - 1];
    if (prev && prev.sa === d.sa * d.size && prev.sb === d.sb * d.size) {
      prev.size *= d.size;
      prev.sa = d.sa;
      prev.sb = d.sb;
    } else acc.push({ ...d });
    return acc;
  }, []);
  const last = dims[dims.length - 1];
  // B shared by every batch and A's batches continue its rows: one taller matrix, better tiles.
  if (last && last.sb === 0 && last.sa === m * a.rowStride && !(args.bias && args.bias.rowStride !== 0)) {
    m *= last.size;
    dims.pop();
  }
  const inner = dims.slice(-4);
  const outer = dims.slice(0, -4);
  const zCount = numel(inner.map((d) => d.size));
  const outerCount = numel(outer.map((d) => d.size));
  const pad = <T>(xs: T[], fill: T): T[] => [...Array<T>(4 - xs.length).fill(fill), ...xs];

  const variant = args.variant ?? defaultVariant(rt);
  const bias = args.bias;
  const base = {
    m, n, k, has_bias: bias ? 1 : 0,
    a_rs: a.rowStride, a_cs: a.colStride, alpha: args.alpha ?? 1,
    b_rs: b.rowStride, b_cs: b.colStride,
    bias_off: bias?.offset ?? 0, bias_rs: bias?.rowStride ?? 0, bias_cs: bias?.colStride ?? 0, _pad0: 0,
    batch_shape: pad(inner.map((d) => d.size), 1),
    a_bstrides: pad(inner.map((d) => d.sa), 0),
    b_bstrides: pad(inner.map((d) => d.sb), 0),
  };
  let entry: string;
  let constants: Record<string, number>;
  let workgroups: [number, number, number];
  if (variant === 'regs') {
    const t = (args.tiling as MatmulTiling | undefined) ?? pickTiling(m, n, zCount * outerCount);
    if (t.wx * t.wy > rt.limits.maxComputeInvocationsPerWorkgroup) {
      throw new LimitError(op, 'maxComputeInvocationsPerWorkgroup', t.wx * t.wy, rt.limits.maxComputeInvocationsPerWorkgroup, `Tiling ${JSON.stringify(t)} has too many threads per workgroup; use a smaller wx·wy.`);
    }
    entry = 'matmul_regs';
    constants = { WX: t.wx, WY: t.wy, HAS_RES: res ? 1 : 0 };
    workgroups = [Math.ceil(n / (8 * t.wx)), Math.ceil(m / (8 * t.wy)), zCount];
  } else {
    if (!(variant in GEMM_TILES)) throw new Error(`${op}: unknown matmul variant '${variant}' (have: regs, ${Object.keys(GEMM_TILES).join(', ')})`);
    const t = (args.tiling as GemmTile | undefined) ?? GEMM_TILES[pickGemmTile(variant, m, n, zCount * outerCount)];
    // vec4 loads run along an operand's contiguous dimension when every vec4 they read is aligned and
    // lies wholly inside the operand: that dimension's size, the other stride, the offset and every
    // batch stride (outer ones too) are multiples of 4.
    const aRest = [a.offset, ...dims.map((d) => d.sa)];
    const bRest = [b.offset, ...dims.map((d) => d.sb)];
    const aVec = a.colStride === 1 && aligned4([k, a.rowStride, ...aRest]) ? 2 : a.rowStride === 1 && aligned4([m, a.colStride, ...aRest]) ? 1 : 0;
    const bVec = b.colStride === 1 && aligned4([n, b.rowStride, ...bRest]) ? 1 : b.rowStride === 1 && aligned4([k, b.colStride, ...bRest]) ? 2 : 0;
    entry = 'matmul_tile';
    constants = {
      ...tileConstants(op, rt, t), HAS_RES: res ? 1 : 0,
      A_VEC: aVec, B_VEC: bVec, A_KFAST: a.colStride === 1 ? 1 : 0, B_KFAST: b.rowStride === 1 && b.colStride !== 1 ? 1 : 0,
    };
    workgroups = [Math.ceil(n / t.bn), Math.ceil(m / t.bm), zCount];
  }
  for (let o = 0; o < outerCount; o++) {
    // Offsets of this outer batch index (row-major over the outer dims).
    let rem = o;
    let aOff = a.offset;
    let bOff = b.offset;
    for (let d = outer.length - 1; d >= 0; d--) {
      const i = rem % outer[d]!.size;
      rem = Math.floor(rem / outer[d]!.size);
      aOff += i * outer[d]!.sa;
      bOff += i * outer[d]!.sb;
    }
    rt.dispatch(kernel, entry, {
      bindings: { a: a.array, b: b.array, av4: a.array, bv4: b.array, bias: bias?.array ?? a.array, c: out, res: res ?? a.array },
      uniforms: { ...base, a_off: aOff, b_off: bOff, c_off: o * zCount * m * n },
      workgroups,
      constants,
    });
  }
  return out;
}

/** Read the last two dims of `x` as a matrix (transposed if `trans`), its batch dims aligned to `batchShape`. */
export function operand(x: DeviceArray, batchShape: readonly number[], trans = false): MatOperand {
  const r = x.shape.length;
  const st = stridesOf(x.shape);
  const lead = batchShape.length - (r - 2);
  return {
    array: x,
    offset: 0,
    rowStride: trans ? st[r - 1]! : st[r - 2]!,
    colStride: trans ? st[r - 2]! : st[r - 1]!,
    batchStrides: batchShape.map((_, i) => (i < lead || x.shape[i - lead] === 1 ? 0 : st[i - lead]!)),
  };
}

export const dims2 = (s: readonly number[], trans: boolean): [number, number] => {
  const r = s[s.length - 2]!;
  const c = s[s.length - 1]!;
  return trans ? [c, r] : [r, c];
};

/** Batch shape of a matmul result: the batch dims of a and b broadcast, NumPy style. */
export function matmulShape(op: string, aShape: readonly number[], bShape: readonly number[], transA = false, transB = false): number[] {
  const expect = `a [..., M, K] and b [..., K, N]${transA || transB ? ` (read ${transA ? 'aᵀ' : 'a'}·${transB ? 'bᵀ' : 'b'})` : ''}`;
  if (aShape.length < 2 || bShape.length < 2) {
    throw new ShapeError(op, `got a ${fmtShape(aShape)} and b ${fmtShape(bShape)}; both need rank >= 2: ${expect}`);
  }
  const [m, ka] = dims2(aShape, transA);
  const [kb, n] = dims2(bShape, transB);
  if (ka !== kb) {
    throw new ShapeError(op, `inner dimensions differ: a ${fmtShape(aShape)} has K = ${ka}, b ${fmtShape(bShape)} has K = ${kb}; expected ${expect}`);
  }
  const ab = aShape.slice(0, -2);
  const bb = bShape.slice(0, -2);
  const r = Math.max(ab.length, bb.length);
  const batch: number[] = [];
  for (let i = 0; i < r; i++) {
    const da = ab[ab.length - r + i] ?? 1;
    const db = bb[bb.length - r + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new ShapeError(op, `batch dims of a ${fmtShape(aShape)} and b ${fmtShape(bShape)} do not broadcast (${fmtShape(ab)} vs ${fmtShape(bb)})`);
    }
    batch.push(da === 1 ? db : da);
  }
  return [...batch, m, n];
}

export interface MatmulOptions {
  /** Use the transpose of a's (b's) last two dims; no copy is made. */
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  /** Added to the result: a contiguous array of the output's shape (a fused residual add). */
  residual?: DeviceArray;
  variant?: MatmulVariant;
  tiling?: MatmulTiling | GemmTile;
}

/** alpha · op(a)·op(b) (+ residual) over NumPy-broadcast batch dims: [..., M, N]. */
export function matmul(a: DeviceArray, b: DeviceArray, o: MatmulOptions = {}): DeviceArray {
  const shape = matmulShape('matmul', a.shape, b.shape, o.transA, o.transB);
  const batch = shape.slice(0, -2);
  const [m, k] = dims2(a.shape, !!o.transA);
  return gemm({
    a: operand(a, batch, o.transA), b: operand(b, batch, o.transB),
    m, n: shape[shape.length - 1]!, k, batchShape: batch,
    alpha: o.alpha, residual: o.residual, variant: o.variant, tiling: o.tiling,
  });
}

/** Gradients of matmul(a, b) from gc = dL/dC, each summed back over the dims it was broadcast along. */
export function matmulBackward(a: DeviceArray, b: DeviceArray, gc: DeviceArray, needA = true, needB = true): [DeviceArray | null, DeviceArray | null] {
  const batch = gc.shape.slice(0, -2);
  const ga = needA ? sumTo(matmul(gc, b, { transB: true }), a.shape) : null; // dA = dC·Bᵀ
  let gb: DeviceArray | null = null;
  if (needB) {
    const [m, k] = [a.shape[a.shape.length - 2]!, a.shape[a.shape.length - 1]!];
    const n = gc.shape[gc.shape.length - 1]!;
    if (numel(b.shape) === k * n && numel(a.shape) === numel(batch) * m * k) {
      // b is one matrix shared by every batch and a is not broadcast: dB = Σ_batch Aᵀ·dC is a single
      // product with the batch folded into K, and no [batch, K, N] intermediate.
      const rows = numel(batch) * m;
      gb = matmul(a.reshape([rows, k]), gc.reshape([rows, n]), { transA: true }).reshape(b.shape);
    } else {
      gb = sumTo(matmul(a, gc, { transA: true }), b.shape); // dB = Aᵀ·dC
    }
  }
  return [ga, gb];
}

/** y = x·wᵀ + bias for x [..., in], w [out, in] (PyTorch layout), bias [out]: one dispatch. */
export function linear(x: DeviceArray, w: DeviceArray, bias?: DeviceArray | null, variant?: MatmulVariant): DeviceArray {
  const [out, inF] = [w.shape[0]!, w.shape[1]!];
  const rows = x.size / inF;
  const y = gemm({
    op: 'linear',
    a: { array: x, offset: 0, rowStride: inF, colStride: 1, batchStrides: [] },
    b: { array: w, offset: 0, rowStride: 1, colStride: inF, batchStrides: [] }, // wᵀ through strides
    m: rows, n: out, k: inF, batchShape: [],
    bias: bias ? { array: bias, rowStride: 0, colStride: 1 } : undefined,
    variant,
  });
  return y.reshape([...x.shape.slice(0, -1), out]);
}

/** Gradients of linear: dx = gy·w, dw = gyᵀ·x (rows folded into K), db = Σ_rows gy. */
export function linearBackward(x: DeviceArray, w: DeviceArray, gy: DeviceArray, needX = true, needW = true, needB = false): [DeviceArray | null, DeviceArray | null, DeviceArray | null] {
  const [out, inF] = [w.shape[0]!, w.shape[1]!];
  const rows = x.size / inF;
  const g2 = gy.reshape([rows, out]);
  const gx = needX ? matmul(g2, w).reshape(x.shape) : null;
  const gw = needW
    ? gemm({
        op: 'linear',
        a: { array: gy, offset: 0, rowStride: 1, colStride: out, batchStrides: [] }, // gyᵀ through strides
        b: { array: x, offset: 0, rowStride: inF, colStride: 1, batchStrides: [] },
        m: out, n: inF, k: rows, batchShape: [],
      })
    : null;
  const gb = needB ? sumAxes(g2, [0]).reshape([out]) : null;
  return [gx, gw, gb];
}
