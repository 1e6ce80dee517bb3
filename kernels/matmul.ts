import { Kernel } from '../src/runtime/kernel.js';
import { DeviceArray, Runtime } from '../src/runtime/runtime.js';
import { LimitError, ShapeError, fmtShape } from '../src/runtime/errors.js';
import source from '../shaders/matmul.wgsl';
import { numel, stridesOf } from './shape.js';
import { sumAxes, sumTo } from './reduce.js';
import { fnv1a, tunedChoice, type TuneProblem, type TuneWorkload } from '../src/runtime/autotune.js';
import { tuneInput } from './tune-input.js';

const kernel = new Kernel('matmul', source);

/**
 * 'regs': register-blocked, no workgroup memory; 'tiled': K tiles staged in workgroup memory; both
 * compute 8x8 outputs per thread. 'tiled4': as 'tiled' with 4x4 outputs per thread, so 4x as many
 * threads and workgroups for the same product: what a large GPU needs (with 8x8 per thread a 512^2
 * product is 64 workgroups of 64 threads, 4x slower than tfjs on an H200). On CPU-emulated adapters
 * (SwiftShader) 'regs' is fastest: the CPU's caches already do what workgroup memory would, and
 * barriers are expensive there.
 */
export type MatmulVariant = 'regs' | 'tiled' | 'tiled4';
const ENTRY: Record<MatmulVariant, string> = { regs: 'matmul_regs', tiled: 'matmul_tiled', tiled4: 'matmul_tiled4' };
/** Outputs per thread along each of M and N. */
const PER_THREAD: Record<MatmulVariant, number> = { regs: 8, tiled: 8, tiled4: 4 };

/** A variant and tiling as 'tiled4 64x64 k16': the tile of C a workgroup computes, and its K depth. */
export function tilingName(variant: MatmulVariant, t: MatmulTiling): string {
  const per = PER_THREAD[variant];
  return `${variant} ${per * t.wy}x${per * t.wx}${variant === 'regs' ? '' : ` k${t.bk}`}`;
}

export interface MatmulTiling {
  /** threads along N and M; a workgroup computes an (8 wy) x (8 wx) tile of C ((4 wy) x (4 wx) for 'tiled4') */
  wx: number;
  wy: number;
  /** K-tile depth in workgroup memory ('tiled', 'tiled4'); see sharedBytes */
  bk: number;
}

export const DEFAULT_TILING: Record<MatmulVariant, MatmulTiling> = {
  regs: { wx: 8, wy: 8, bk: 16 },
  tiled: { wx: 8, wy: 8, bk: 16 },
  tiled4: { wx: 16, wy: 16, bk: 16 },
};

/** Workgroup memory of one workgroup: a bk-deep slice of the A and B tiles (rows padded by a vec4 in 'tiled4'). */
function sharedBytes(variant: MatmulVariant, t: MatmulTiling): number {
  if (variant === 'regs') return 0;
  return variant === 'tiled' ? 32 * t.bk * (t.wx + t.wy) : 16 * t.bk * (t.wx + t.wy + 2);
}

/**
 * 'regs' drops to 32x32 tiles when 64x64 ones would pad much more work (e.g. N = 77: 128 vs 96 columns)
 * or leave too few workgroups to keep the cores busy; measured equal otherwise.
 */
export function pickTiling(variant: MatmulVariant, m: number, n: number, batch: number): MatmulTiling {
  if (variant === 'tiled') return DEFAULT_TILING.tiled;
  const padded = (t: number) => Math.ceil(m / t) * Math.ceil(n / t) * t * t;
  if (variant === 'tiled4') {
    // Measured on an H200 (bench/matmul-variants.ts, bench/h200/): 64x64 tiles (256 threads, k 16)
    // were within 5% of the best candidate at every shape from 256x64x256 to 2048^3, while 32x32 ones
    // were up to 1.6x slower; so 64x64 unless it pads much more work than 32x32 would.
    return padded(32) < 0.9 * padded(64) ? SMALL_TILED4 : DEFAULT_TILING.tiled4;
  }
  const groups = Math.ceil(m / 64) * Math.ceil(n / 64) * batch;
  return padded(32) < 0.9 * padded(64) || groups < 8 ? SMALL_REGS : DEFAULT_TILING.regs;
}
const SMALL_REGS: MatmulTiling = { wx: 4, wy: 4, bk: 16 };
/** 32x32 tiles of 64 threads, for shapes that 64x64 tiles would pad (N = 77: 128 vs 96 columns). */
const SMALL_TILED4: MatmulTiling = { wx: 8, wy: 8, bk: 16 };

/**
 * The variant, chosen per adapter by measurement (src/runtime/autotune.ts): 'regs' wins on CPU
 * emulation, 'tiled4' on GPUs. The first candidate is the fixed default (untuned devices).
 */
export const MATMUL_TUNE: TuneProblem = {
  key: 'matmul',
  candidates: ['tiled4', 'regs'],
  revision: fnv1a(source),
  workloads: [256, 1024, 2048].map(mmWorkload),
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
      };
    },
  };
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
  variant?: MatmulVariant;
  tiling?: MatmulTiling;
  op?: string;
}

/**
 * C = alpha · A·B + bias as a new contiguous [...batchShape, M, N] array: the one entry point to the
 * kernel. Batch dims are simplified first (size-1 dims dropped, adjacent dims merged, a batch folded
 * into M when B is shared across it), at most 4 go to the kernel and any outer ones become separate
 * dispatches.
 */
export function gemm(args: GemmArgs): DeviceArray {
  const { a, b, k } = args;
  const rt = a.array.rt;
  const op = args.op ?? 'matmul';
  const out = rt.alloc([...args.batchShape, args.m, args.n], 'f32', op);
  if (out.size === 0) return out;
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
  const pad = <T>(xs: T[], fill: T): T[] => [...Array<T>(4 - xs.length).fill(fill), ...xs];

  const variant = args.variant ?? defaultVariant(rt);
  const t = args.tiling ?? pickTiling(variant, m, n, numel(dims.map((d) => d.size)));
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
  if (!(variant in ENTRY)) throw new Error(`${op}: unknown matmul variant '${variant}' (have: ${Object.keys(ENTRY).join(', ')})`);
  const shared = sharedBytes(variant, t);
  if (shared > rt.limits.maxComputeWorkgroupStorageSize) {
    throw new LimitError(op, 'maxComputeWorkgroupStorageSize', shared, rt.limits.maxComputeWorkgroupStorageSize, `Tiling ${JSON.stringify(t)} of variant '${variant}' needs more workgroup memory; use a smaller bk or tile.`);
  }
  if (t.wx * t.wy > rt.limits.maxComputeInvocationsPerWorkgroup) {
    throw new LimitError(op, 'maxComputeInvocationsPerWorkgroup', t.wx * t.wy, rt.limits.maxComputeInvocationsPerWorkgroup, `Tiling ${JSON.stringify(t)} has too many threads per workgroup; use a smaller wx·wy.`);
  }
  const constants: Record<string, number> = variant === 'regs' ? { WX: t.wx, WY: t.wy } : { WX: t.wx, WY: t.wy, BK: t.bk };
  const per = PER_THREAD[variant];
  const workgroups = [Math.ceil(n / (per * t.wx)), Math.ceil(m / (per * t.wy)), zCount] as const;
  const outerCount = numel(outer.map((d) => d.size));
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
    rt.dispatch(kernel, ENTRY[variant], {
      bindings: { a: a.array, b: b.array, bias: bias?.array ?? a.array, c: out },
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

const dims2 = (s: readonly number[], trans: boolean): [number, number] => {
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
  variant?: MatmulVariant;
  tiling?: MatmulTiling;
}

/** alpha · op(a)·op(b) over NumPy-broadcast batch dims: [..., M, N]. */
export function matmul(a: DeviceArray, b: DeviceArray, o: MatmulOptions = {}): DeviceArray {
  const shape = matmulShape('matmul', a.shape, b.shape, o.transA, o.transB);
  const batch = shape.slice(0, -2);
  const [m, k] = dims2(a.shape, !!o.transA);
  return gemm({
    a: operand(a, batch, o.transA), b: operand(b, batch, o.transB),
    m, n: shape[shape.length - 1]!, k, batchShape: batch,
    alpha: o.alpha, variant: o.variant, tiling: o.tiling,
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

// ------------------------------------------------------------------ float64 references (tests only)

/** Row-major index helpers for broadcast batches. */
function batchIndex(shape: readonly number[], batch: readonly number[], flat: number): number {
  // Offset (in matrices) of the batch element `flat` of `batch` within an array whose batch dims are `shape`.
  let rem = flat;
  let off = 0;
  let mul = 1;
  for (let d = batch.length - 1; d >= 0; d--) {
    const i = rem % batch[d]!;
    rem = Math.floor(rem / batch[d]!);
    const j = d - (batch.length - shape.length);
    if (j >= 0) {
      if (shape[j]! !== 1) off += i * mul;
      mul *= shape[j]!;
    }
  }
  return off;
}

/** C = op(A)·op(B) in float64 with NumPy batch broadcasting. */
export function matmulRef(a: Float64Array, aShape: readonly number[], b: Float64Array, bShape: readonly number[], transA = false, transB = false): Float64Array {
  const shape = matmulShape('matmulRef', aShape, bShape, transA, transB);
  const batch = shape.slice(0, -2);
  const [m, k] = dims2(aShape, transA);
  const n = shape[shape.length - 1]!;
  const nb = numel(batch);
  const c = new Float64Array(nb * m * n);
  const ar = aShape[aShape.length - 1]!;
  const br = bShape[bShape.length - 1]!;
  for (let z = 0; z < nb; z++) {
    const ao = batchIndex(aShape.slice(0, -2), batch, z) * m * k;
    const bo = batchIndex(bShape.slice(0, -2), batch, z) * k * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let q = 0; q < k; q++) {
          const av = transA ? a[ao + q * ar + i]! : a[ao + i * ar + q]!;
          const bv = transB ? b[bo + j * br + q]! : b[bo + q * br + j]!;
          s += av * bv;
        }
        c[(z * m + i) * n + j] = s;
      }
    }
  }
  return c;
}

/** Vector-Jacobian product of matmulRef: [dA, dB] for upstream gc, summed over broadcast batch dims. */
export function matmulVjpRef(a: Float64Array, aShape: readonly number[], b: Float64Array, bShape: readonly number[], gc: Float64Array): [Float64Array, Float64Array] {
  const shape = matmulShape('matmulRef', aShape, bShape);
  const batch = shape.slice(0, -2);
  const [m, k] = dims2(aShape, false);
  const n = shape[shape.length - 1]!;
  const ga = new Float64Array(a.length);
  const gb = new Float64Array(b.length);
  for (let z = 0; z < numel(batch); z++) {
    const ao = batchIndex(aShape.slice(0, -2), batch, z) * m * k;
    const bo = batchIndex(bShape.slice(0, -2), batch, z) * k * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        const g = gc[(z * m + i) * n + j]!;
        for (let q = 0; q < k; q++) {
          ga[ao + i * k + q] += g * b[bo + q * n + j]!;
          gb[bo + q * n + j] += g * a[ao + i * k + q]!;
        }
      }
    }
  }
  return [ga, gb];
}

/** y = x·wᵀ + bias in float64; x [rows·in], w [out·in]. */
export function linearRef(x: Float64Array, w: Float64Array, bias: Float64Array | null, out: number, inF: number): Float64Array {
  const rows = x.length / inF;
  const y = new Float64Array(rows * out);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < out; o++) {
      let s = bias ? bias[o]! : 0;
      for (let i = 0; i < inF; i++) s += x[r * inF + i]! * w[o * inF + i]!;
      y[r * out + o] = s;
    }
  }
  return y;
}

/** Vector-Jacobian product of linearRef: [dx, dw, db]. */
export function linearVjpRef(x: Float64Array, w: Float64Array, gy: Float64Array, out: number, inF: number): [Float64Array, Float64Array, Float64Array] {
  const rows = x.length / inF;
  const gx = new Float64Array(x.length);
  const gw = new Float64Array(w.length);
  const gb = new Float64Array(out);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < out; o++) {
      const g = gy[r * out + o]!;
      gb[o] += g;
      for (let i = 0; i < inF; i++) {
        gx[r * inF + i] += g * w[o * inF + i]!;
        gw[o * inF + i] += g * x[r * inF + i]!;
      }
    }
  }
  return [gx, gw, gb];
}
