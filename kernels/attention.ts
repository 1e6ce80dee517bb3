import { Kernel } from '../src/runtime/kernel.js';
import { DeviceArray, Runtime } from '../src/runtime/runtime.js';
import source from '../shaders/attention.wgsl';
import flashBody from '../shaders/attention_flash.wgsl';
import flashIo4 from '../shaders/attention_flash_io4.wgsl';
import flashIo1 from '../shaders/attention_flash_io1.wgsl';
import flashRowWg from '../shaders/attention_flash_rowwg.wgsl';
import flashRowSg from '../shaders/attention_flash_rowsg.wgsl';

/** Largest head dimension the kernels hold (DV_CAP vec4s per private row in the shader). */
export const MAX_HEAD_DIM = 128;

// ------------------------------------------------------------------ candidates

/**
 * The kernels that can run attention, by name:
 * - 'rows4' (shaders/attention.wgsl): each invocation owns 4 rows with their full-D vectors in private
 *   arrays; workgroups of 8-16. Written for CPU emulation (SwiftShader), where it is the fastest.
 * - 'flash HRxSR' and 'flash HRxSR sg' (shaders/attention_flash.wgsl): a workgroup of HR·SR/16
 *   invocations holds HR rows in workgroup memory and streams SR-row tiles; 4x4 register blocks for
 *   both products. Written for GPUs. 'sg' does the softmax's row reductions with subgroup shuffles
 *   (adapters with the 'subgroups' feature), the other through workgroup memory.
 * Which runs on an adapter is measured (tuneAttention), per pass and head-dimension bucket.
 */
export interface AttentionCandidate {
  name: string;
  kind: 'rows4' | 'flash';
  /** flash: held rows per workgroup, streamed rows per tile, subgroup reductions */
  hr: number;
  sr: number;
  subgroups: boolean;
}

export type AttentionPass = 'forward' | 'backward';

/** Flash tilings (HR x SR) worth measuring; each is kept where it fits the adapter's limits. */
const FLASH_TILES: readonly (readonly [number, number])[] = [[64, 32], [32, 64], [64, 16], [32, 32], [16, 64], [16, 32], [32, 16]];

const ROWS4: AttentionCandidate = { name: 'rows4', kind: 'rows4', hr: 0, sr: 0, subgroups: false };

function flash(hr: number, sr: number, subgroups: boolean): AttentionCandidate {
  return { name: `flash ${hr}x${sr}${subgroups ? ' sg' : ''}`, kind: 'flash', hr, sr, subgroups };
}

/** Every candidate by name (whether it fits a given adapter and head dimension is `fits`). */
export const ATTENTION_CANDIDATES: readonly AttentionCandidate[] = [
  ROWS4,
  ...FLASH_TILES.flatMap(([hr, sr]) => [flash(hr, sr, false), ...(sr >= 32 ? [flash(hr, sr, true)] : [])]),
];

export function attentionCandidate(name: string): AttentionCandidate {
  const c = ATTENTION_CANDIDATES.find((x) => x.name === name);
  if (!c) throw new Error(`attention: no candidate '${name}' (have: ${ATTENTION_CANDIDATES.map((x) => x.name).join(', ')})`);
  return c;
}

/** vec4s per padded row of the flash kernels: head dimensions share pipelines in buckets 16, 32, 64, 128. */
function dp4Of(d: number): number {
  return d <= 16 ? 4 : d <= 32 ? 8 : d <= 64 ? 16 : 32;
}

/**
 * Workgroup memory of a flash kernel in bytes, as shaders/attention_flash.wgsl declares it: tile rows
 * of DP4 + 1 vec4s, pt/dt rows of HR/4 + 1 vec4s, and the per-row scalars.
 */
export function flashSharedBytes(c: AttentionCandidate, entry: 'forward' | 'grad_q' | 'grad_kv', d: number): number {
  const row4 = dp4Of(d) + 1;
  const pt4 = c.hr / 4 + 1;
  const t = (c.hr * c.sr) / 16;
  if (entry === 'forward') return 16 * (c.hr * row4 + c.sr * row4 + c.sr * pt4) + 4 * c.hr + (c.subgroups || c.sr < 32 ? 0 : 4 * t);
  if (entry === 'grad_q') return 16 * (2 * c.hr * row4 + 2 * c.sr * row4 + c.sr * pt4) + 8 * c.hr;
  return 16 * (2 * c.hr * row4 + 2 * c.sr * row4 + 2 * c.sr * pt4) + 8 * c.sr;
}

/** Whether candidate c can run `pass` at head dimension d on this device. */
export function fits(rt: Runtime, c: AttentionCandidate, pass: AttentionPass, d: number): boolean {
  if (c.kind === 'rows4') return d <= MAX_HEAD_DIM;
  const lim = rt.limits;
  const t = (c.hr * c.sr) / 16;
  if (t > lim.maxComputeInvocationsPerWorkgroup || t > lim.maxComputeWorkgroupSizeX) return false;
  if (c.subgroups && !rt.device.features.has('subgroups')) return false;
  // Each invocation owns at most 4 vec4 columns of an output row (OC <= 4 in the shader).
  if (dp4Of(d) > c.sr) return false;
  const entries = pass === 'forward' ? (['forward'] as const) : (['grad_q', 'grad_kv'] as const);
  return entries.every((e) => flashSharedBytes(c, e, d) <= lim.maxComputeWorkgroupStorageSize);
}

interface Choice {
  /** chosen candidate name per pass and head-dimension bucket (dp4Of) */
  tuned: Record<AttentionPass, Map<number, string>>;
  /** set by tests and benchmarks: this candidate wherever it fits */
  forced: string | null;
}
const choices = new WeakMap<Runtime, Choice>();
function choiceOf(rt: Runtime): Choice {
  let c = choices.get(rt);
  if (!c) choices.set(rt, (c = { tuned: { forward: new Map(), backward: new Map() }, forced: null }));
  return c;
}

/**
 * Runs `name` wherever it fits (else the usual choice), or null to go back to the usual choice. For
 * tests and benchmarks that compare candidates.
 */
export function forceAttentionCandidate(rt: Runtime, name: string | null): void {
  if (name !== null) attentionCandidate(name);
  choiceOf(rt).forced = name;
}

/** The tuned choice as plain data (to cache, e.g. on disk per adapter), and back. */
export type AttentionChoiceRecord = Record<AttentionPass, Record<string, string>>;
export function getAttentionChoice(rt: Runtime): AttentionChoiceRecord {
  const t = choiceOf(rt).tuned;
  return { forward: Object.fromEntries(t.forward), backward: Object.fromEntries(t.backward) };
}
/** Replaces the tuned choice (an empty record goes back to the untuned default). */
export function setAttentionChoice(rt: Runtime, rec: AttentionChoiceRecord): void {
  const t = choiceOf(rt).tuned;
  for (const pass of ['forward', 'backward'] as const) {
    t[pass].clear();
    for (const [dp4, name] of Object.entries(rec[pass] ?? {})) {
      attentionCandidate(name);
      t[pass].set(Number(dp4), name);
    }
  }
}

/**
 * Before tuning: the largest flash tiling that fits, with workgroup-memory reductions, else 'rows4'.
 * Not a guess about the adapter: the engine is written for GPUs, and tuneAttention replaces this with
 * what it measured. The subgroup path runs only once measured, as the tuner has then also checked its
 * output: it assumes invocations are numbered into subgroups in order, which the spec leaves open.
 */
function defaultCandidate(rt: Runtime, pass: AttentionPass, d: number): AttentionCandidate {
  for (const [hr, sr] of FLASH_TILES) {
    const c = flash(hr, sr, false);
    if (fits(rt, c, pass, d)) return c;
  }
  return ROWS4;
}

/** The candidate that runs `pass` at head dimension d on this runtime: forced, else tuned, else the default. */
export function chooseAttention(rt: Runtime, pass: AttentionPass, d: number): AttentionCandidate {
  const ch = choiceOf(rt);
  if (ch.forced) {
    const c = attentionCandidate(ch.forced);
    if (fits(rt, c, pass, d)) return c;
  }
  // Tuned at this head-dimension bucket, else at the nearest tuned one: a measurement at D = 64 that
  // found 'rows4' fastest (a CPU emulator) holds for D = 16 too, and one that found a flash tiling
  // fastest carries its tiling over where it fits.
  const dp4 = dp4Of(d);
  const near = [...ch.tuned[pass]].sort(([a], [b]) => Math.abs(Math.log2(a / dp4)) - Math.abs(Math.log2(b / dp4)) || b - a)[0];
  if (near) {
    const c = attentionCandidate(near[1]);
    if (fits(rt, c, pass, d)) return c;
  }
  return defaultCandidate(rt, pass, d);
}

// ------------------------------------------------------------------ dispatch

const rows4Kernel = new Kernel('attention', source);
const flashKernels = new Map<string, Kernel>();
/** The flash module for this head dimension (vec4 or scalar access) and reduction path. */
function flashKernel(d: number, subgroups: boolean): Kernel {
  const io = d % 4 === 0 ? 'io4' : 'io1';
  const key = `attention_flash_${io}_${subgroups ? 'sg' : 'wg'}`;
  let k = flashKernels.get(key);
  if (!k) {
    // `enable subgroups;` must come first in the module, hence the reduction part first.
    k = new Kernel(key, (subgroups ? flashRowSg : flashRowWg) + '\n' + (io === 'io4' ? flashIo4 : flashIo1) + '\n' + flashBody);
    flashKernels.set(key, k);
  }
  return k;
}
function flashConstants(c: AttentionCandidate, d: number) {
  return { HR: c.hr, SR: c.sr, DP4: dp4Of(d) };
}

/** Rows each invocation of 'rows4' owns (unrolled by hand in the shader). */
const ROWS = 4;

/**
 * 'rows4' pipeline variant for head dimension d and `rows` rows to own (Lq for forward and grad_q, Lk
 * for grad_kv). The two workgroup tiles hold BT rows of 4·DVMAX floats each within 16 KiB
 * (2 · BT · DVMAX · 16 bytes), so narrower heads stream longer tiles (fewer barriers). A workgroup
 * of WG invocations owns 4·WG rows: 16 (64 rows) unless 8 wastes much less on a short sequence
 * (Lk = 77 pads to 96 rather than 128).
 */
function variant(d: number, rows: number): { WG: number; BT: number; DVMAX: number } {
  const padded = (wg: number) => Math.ceil(rows / (ROWS * wg)) * ROWS * wg;
  const WG = padded(8) < 0.8 * padded(16) ? 8 : 16;
  if (d <= 32) return { WG, BT: 64, DVMAX: 8 };
  if (d <= 64) return { WG, BT: 32, DVMAX: 16 };
  return { WG, BT: 16, DVMAX: 32 };
}

interface Dims {
  bh: number;
  lq: number;
  lk: number;
  d: number;
}

function dimsOf(q: DeviceArray, k: DeviceArray): Dims {
  const [b, h, lq, d] = q.shape as [number, number, number, number];
  return { bh: b * h, lq, lk: k.shape[2]!, d };
}

function uniforms(x: Dims, scale: number) {
  return { lq: x.lq, lk: x.lk, d: x.d, dv: Math.ceil(x.d / 4), scale, scale2: scale * Math.LOG2E, _pad0: 0, _pad1: 0 };
}

/** Runs the forward with candidate c into o and lse. */
function forwardWith(c: AttentionCandidate, q: DeviceArray, k: DeviceArray, v: DeviceArray, o: DeviceArray, lse: DeviceArray, scale: number): void {
  const x = dimsOf(q, k);
  if (c.kind === 'flash') {
    q.rt.dispatch(flashKernel(x.d, c.subgroups), 'flash_forward', {
      bindings: { q, k, v, o, lse },
      uniforms: uniforms(x, scale),
      workgroups: [Math.ceil(x.lq / c.hr), x.bh],
      constants: flashConstants(c, x.d),
    });
    return;
  }
  const t = variant(x.d, x.lq);
  q.rt.dispatch(rows4Kernel, 'forward', {
    bindings: { q, k, v, o, lse },
    uniforms: uniforms(x, scale),
    workgroups: [Math.ceil(x.lq / (ROWS * t.WG)), x.bh],
    constants: t,
  });
}

/** Runs the backward with candidate c: dq and delta, then (if dk is given) dk and dv. */
function backwardWith(
  c: AttentionCandidate, q: DeviceArray, k: DeviceArray, v: DeviceArray, o: DeviceArray, lse: DeviceArray, go: DeviceArray, scale: number,
  delta: DeviceArray, dq: DeviceArray, dk: DeviceArray | null, dvv: DeviceArray | null,
): void {
  const rt = q.rt;
  const x = dimsOf(q, k);
  const u = uniforms(x, scale);
  const flashy = c.kind === 'flash';
  const kernel = flashy ? flashKernel(x.d, c.subgroups) : rows4Kernel;
  const t = (rows: number) => (flashy ? flashConstants(c, x.d) : variant(x.d, rows));
  const groups = (rows: number) => Math.ceil(rows / (flashy ? c.hr : ROWS * variant(x.d, rows).WG));
  if (dq.size > 0) {
    rt.dispatch(kernel, flashy ? 'flash_grad_q' : 'grad_q', {
      bindings: { q, k, v, o, go, lse, delta, dq },
      uniforms: u,
      workgroups: [groups(x.lq), x.bh],
      constants: t(x.lq),
    });
  }
  if (!dk || !dvv || dk.size === 0) return;
  if (x.lq === 0) {
    // No queries: nothing flows back to the keys and values.
    rt.fillValue(dk, 0);
    rt.fillValue(dvv, 0);
    return;
  }
  rt.dispatch(kernel, flashy ? 'flash_grad_kv' : 'grad_kv', {
    bindings: { q, k, v, go, lse, delta, dk, dvv },
    uniforms: u,
    workgroups: [groups(x.lk), x.bh],
    constants: t(x.lk),
  });
}

/**
 * o = softmax(q kᵀ · scale) v for q [B, H, Lq, D], k and v [B, H, Lk, D] (shapes already checked,
 * D <= MAX_HEAD_DIM, Lk >= 1). Also returns lse [B, H, Lq], the log-sum-exp of each row of scores,
 * which the backward needs.
 */
export function attentionForward(q: DeviceArray, k: DeviceArray, v: DeviceArray, scale: number): { o: DeviceArray; lse: DeviceArray } {
  const rt = q.rt;
  const o = rt.alloc(q.shape, 'f32', 'attention');
  const lse = rt.alloc(q.shape.slice(0, 3), 'f32', 'attention');
  if (o.size === 0) return { o, lse };
  forwardWith(chooseAttention(rt, 'forward', q.shape[3]!), q, k, v, o, lse, scale);
  return { o, lse };
}

/**
 * Gradients of attention for the upstream gradient go (FlashAttention-2 backward): grad_q computes
 * delta = rowsum(go ∘ o) and dq per query block; grad_kv then computes dk, dv per key block, both
 * recomputing the probabilities from lse. `needKV` false skips the second kernel.
 */
export function attentionBackward(
  q: DeviceArray, k: DeviceArray, v: DeviceArray, o: DeviceArray, lse: DeviceArray, go: DeviceArray, scale: number, needKV = true,
): { dq: DeviceArray; dk: DeviceArray | null; dv: DeviceArray | null } {
  const rt = q.rt;
  const dq = rt.alloc(q.shape, 'f32', 'attention backward');
  const delta = rt.alloc(lse.shape, 'f32', 'attention backward');
  const dk = needKV ? rt.alloc(k.shape, 'f32', 'attention backward') : null;
  const dvv = needKV ? rt.alloc(v.shape, 'f32', 'attention backward') : null;
  backwardWith(chooseAttention(rt, 'backward', q.shape[3]!), q, k, v, o, lse, go, scale, delta, dq, dk, dvv);
  rt.dispose(delta); // safe: later users of the buffer are ordered after these dispatches
  return { dq, dk, dv: dvv };
}

// ------------------------------------------------------------------ tuning

export interface AttentionTiming {
  name: string;
  /** ms per launch, or why the candidate was not timed */
  ms: number | null;
  note?: string;
}
export interface AttentionTuneResult {
  pass: AttentionPass;
  d: number;
  /** the shape measured: [B·H, L, L, D] */
  shape: [number, number, number, number];
  timings: AttentionTiming[];
  chosen: string;
}

/** Seeded normal numbers, for tuning inputs. */
function normals(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 4294967296;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

/**
 * ms per launch: the fastest of `blocks` blocks, each of as many launches as it takes to last minMs
 * (the fastest, not the median: other work on the machine only ever adds time).
 */
async function timeLaunch(rt: Runtime, launch: () => void, minMs: number, blocks = 3): Promise<number> {
  const block = async (n: number) => {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) launch();
    await rt.sync();
    return (performance.now() - t0) / n;
  };
  let n = 1;
  let ms = await block(n);
  while (ms * n < minMs && n < 1024) {
    n = Math.min(1024, Math.max(2 * n, Math.ceil(minMs / Math.max(ms, 1e-3))));
    ms = await block(n);
  }
  const ts = [ms];
  while (ts.length < blocks) ts.push(await block(n));
  return Math.min(...ts);
}

const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);
const maxAbs = (a: Float32Array) => a.reduce((m, x) => Math.max(m, Math.abs(x)), 0);

/**
 * Measures every candidate that fits, forward and backward, at each head dimension in `d` (default 64),
 * and keeps the fastest per pass and head-dimension bucket for this runtime (chooseAttention). Each
 * candidate's outputs are first checked against 'rows4' on the same inputs (max |difference| within
 * 2e-4 of the output's largest magnitude: f32 summation in another order errs by ~1e-6 of it, a wrong
 * lane mapping or mask by far more), and one that disagrees is dropped. The
 * shape is [B·H, L, L, D] with B·H = 4 and L = 64, grown (L to 2048, then B·H) until the untuned
 * default takes `minMs` (2 ms): a CPU emulator stays at the smallest, a large GPU gets enough
 * workgroups to fill it. `shape` fixes it instead (a benchmark tunes at the shape it times).
 */
export async function tuneAttention(
  rt: Runtime,
  opts: {
    d?: readonly number[];
    minMs?: number;
    shape?: { bh: number; l: number };
    /** only these (default: all that fit); 'rows4' is always run, as the reference */
    candidates?: readonly string[];
    log?: (line: string) => void;
  } = {},
): Promise<AttentionTuneResult[]> {
  const minMs = opts.minMs ?? 2;
  const results: AttentionTuneResult[] = [];
  const saved = choiceOf(rt).forced;
  choiceOf(rt).forced = null;
  try {
    for (const d of opts.d ?? [64]) {
      let { bh, l } = opts.shape ?? { bh: 4, l: 64 };
      const make = () => {
        const up = (seed: number, shape: number[]) => rt.upload(normals(shape.reduce((a, b) => a * b, 1), seed), shape);
        const shape = [1, bh, l, d];
        return { q: up(1, shape), k: up(2, shape), v: up(3, shape), go: up(4, shape), o: rt.alloc(shape), lse: rt.alloc([1, bh, l]) };
      };
      let x = make();
      const scale = 1 / Math.sqrt(d);
      const fwd = (c: AttentionCandidate) => () => forwardWith(c, x.q, x.k, x.v, x.o, x.lse, scale);
      if (!opts.shape) {
        for (;;) {
          const ms = await timeLaunch(rt, fwd(defaultCandidate(rt, 'forward', d)), 0);
          if (ms >= minMs || bh >= 64) break;
          if (l < 2048) l *= 2;
          else bh *= 2;
          Object.values(x).forEach((a) => rt.dispose(a));
          x = make();
        }
      }
      opts.log?.(`attention D=${d}: tuning at B·H = ${bh}, L = ${l}`);
      const grads = () => ({ delta: rt.alloc([1, bh, l]), dq: rt.alloc(x.q.shape), dk: rt.alloc(x.k.shape), dv: rt.alloc(x.v.shape) });
      for (const pass of ['forward', 'backward'] as const) {
        const g = grads();
        const run = (c: AttentionCandidate) =>
          pass === 'forward' ? fwd(c)() : backwardWith(c, x.q, x.k, x.v, x.o, x.lse, x.go, scale, g.delta, g.dq, g.dk, g.dv);
        const outputs = async () => (pass === 'forward' ? [x.o, x.lse] : [g.dq, g.dk, g.dv]);
        const read = async () => Promise.all((await outputs()).map((a) => rt.read(a) as Promise<Float32Array>));
        forwardWith(ROWS4, x.q, x.k, x.v, x.o, x.lse, scale);
        run(ROWS4);
        const ref = await read();
        const timings: AttentionTiming[] = [];
        const pool = opts.candidates?.map(attentionCandidate) ?? ATTENTION_CANDIDATES;
        for (const c of pool.filter((c) => fits(rt, c, pass, d))) {
          if (pass === 'backward') forwardWith(ROWS4, x.q, x.k, x.v, x.o, x.lse, scale); // its o and lse, from the reference
          for (const a of await outputs()) rt.fillValue(a, NaN);
          run(c);
          const outs = await read();
          const bad = outs.findIndex((y, i) => !(maxDiff(y, ref[i]!) <= 2e-4 * maxAbs(ref[i]!) + 1e-6));
          if (bad >= 0) {
            timings.push({ name: c.name, ms: null, note: `output ${bad} differs from rows4's by ${maxDiff(outs[bad]!, ref[bad]!)}` });
            continue;
          }
          timings.push({ name: c.name, ms: await timeLaunch(rt, () => run(c), minMs, 1) });
        }
        // Successive halving: one timed block each above, then 3 more for the few within 1.5x of the best.
        const first = Math.min(...timings.map((t) => t.ms ?? Infinity));
        for (const t of timings.filter((t) => t.ms !== null && t.ms <= 1.5 * first).sort((a, b) => a.ms! - b.ms!).slice(0, 3)) {
          t.ms = await timeLaunch(rt, () => run(attentionCandidate(t.name)), minMs);
        }
        const best = timings.filter((t) => t.ms !== null).sort((a, b) => a.ms! - b.ms!)[0]!;
        choiceOf(rt).tuned[pass].set(dp4Of(d), best.name);
        const r: AttentionTuneResult = { pass, d, shape: [bh, l, l, d], timings, chosen: best.name };
        results.push(r);
        opts.log?.(`attention ${pass} D=${d} [${r.shape.join(', ')}]: ${timings.map((t) => `${t.name} ${t.ms === null ? t.note : t.ms.toFixed(3) + ' ms'}`).join(', ')} -> ${best.name}`);
        Object.values(g).forEach((a) => rt.dispose(a));
      }
      Object.values(x).forEach((a) => rt.dispose(a));
    }
  } finally {
    choiceOf(rt).forced = saved;
  }
  return results;
}

// ------------------------------------------------------------------ float64 references (tests only)

export interface AttnShape {
  b: number;
  h: number;
  lq: number;
  lk: number;
  d: number;
}

/** Row-wise softmax probabilities P [BH, Lq, Lk] in float64 (max-subtracted, so large logits are exact). */
function probsRef(q: Float64Array, k: Float64Array, s: AttnShape, scale: number): Float64Array {
  const { lq, lk, d } = s;
  const bh = s.b * s.h;
  const P = new Float64Array(bh * lq * lk);
  for (let g = 0; g < bh; g++) {
    for (let i = 0; i < lq; i++) {
      const row = P.subarray((g * lq + i) * lk, (g * lq + i + 1) * lk);
      let m = -Infinity;
      for (let j = 0; j < lk; j++) {
        let acc = 0;
        for (let t = 0; t < d; t++) acc += q[(g * lq + i) * d + t]! * k[(g * lk + j) * d + t]!;
        row[j] = acc * scale;
        m = Math.max(m, row[j]!);
      }
      let sum = 0;
      for (let j = 0; j < lk; j++) sum += (row[j] = Math.exp(row[j]! - m));
      for (let j = 0; j < lk; j++) row[j]! /= sum;
    }
  }
  return P;
}

/** softmax(q kᵀ · scale) v in float64. */
export function attentionRef(q: Float64Array, k: Float64Array, v: Float64Array, s: AttnShape, scale: number): Float64Array {
  const { lq, lk, d } = s;
  const bh = s.b * s.h;
  const P = probsRef(q, k, s, scale);
  const o = new Float64Array(bh * lq * d);
  for (let g = 0; g < bh; g++) {
    for (let i = 0; i < lq; i++) {
      for (let j = 0; j < lk; j++) {
        const pij = P[(g * lq + i) * lk + j]!;
        for (let t = 0; t < d; t++) o[(g * lq + i) * d + t] += pij * v[(g * lk + j) * d + t]!;
      }
    }
  }
  return o;
}

/**
 * Vector-Jacobian product of attentionRef for upstream gradient go, in float64, by the analytic rule:
 * dv = Pᵀ go, dP = go vᵀ, dS = P ∘ (dP - rowsum(dP ∘ P)), dq = scale · dS k, dk = scale · dSᵀ q.
 */
export function attentionVjpRef(
  q: Float64Array, k: Float64Array, v: Float64Array, go: Float64Array, s: AttnShape, scale: number,
): [Float64Array, Float64Array, Float64Array] {
  const { lq, lk, d } = s;
  const bh = s.b * s.h;
  const P = probsRef(q, k, s, scale);
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  const dP = new Float64Array(lk);
  for (let g = 0; g < bh; g++) {
    for (let i = 0; i < lq; i++) {
      const qi = (g * lq + i) * d;
      let rs = 0;
      for (let j = 0; j < lk; j++) {
        let acc = 0;
        for (let t = 0; t < d; t++) acc += go[qi + t]! * v[(g * lk + j) * d + t]!;
        dP[j] = acc;
        rs += acc * P[(g * lq + i) * lk + j]!;
      }
      for (let j = 0; j < lk; j++) {
        const pij = P[(g * lq + i) * lk + j]!;
        const ds = pij * (dP[j]! - rs) * scale;
        const kj = (g * lk + j) * d;
        for (let t = 0; t < d; t++) {
          dv[kj + t] += pij * go[qi + t]!;
          dq[qi + t] += ds * k[kj + t]!;
          dk[kj + t] += ds * q[qi + t]!;
        }
      }
    }
  }
  return [dq, dk, dv];
}
