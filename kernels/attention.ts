import { Kernel } from '../src/runtime/kernel.js';
import { DeviceArray, Runtime } from '../src/runtime/runtime.js';
import source from '../shaders/attention.wgsl';
import flashBody from '../shaders/attention_flash.wgsl';
import flashIo4 from '../shaders/attention_flash_io4.wgsl';
import flashIo1 from '../shaders/attention_flash_io1.wgsl';
import flashRowWg from '../shaders/attention_flash_rowwg.wgsl';
import flashRowSg from '../shaders/attention_flash_rowsg.wgsl';
import { fnv1a, tunedChoice, tuningOf, type TuneProblem, type TuneWorkload } from '../src/runtime/autotune.js';
import { tuneInput } from './tune-input.js';

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
 * Which runs on an adapter is measured by the autotuner (ATTENTION_TUNE), per pass.
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

/** Set by tests and benchmarks that compare candidates: this one wherever it fits. */
const forcedCandidate = new WeakMap<Runtime, string>();

/** Runs `name` wherever it fits (else the usual choice), or null to go back to the usual choice. */
export function forceAttentionCandidate(rt: Runtime, name: string | null): void {
  if (name === null) forcedCandidate.delete(rt);
  else forcedCandidate.set(rt, attentionCandidate(name).name);
}

/**
 * Before tuning: the largest flash tiling that fits, with workgroup-memory reductions, else 'rows4'.
 * Not a guess about the adapter: the engine is written for GPUs, and the autotuner replaces this with
 * what it measured. The subgroup path runs only where it measured faster: it assumes invocations are
 * numbered into subgroups in order (as every implementation does; the spec does not promise it), which
 * test/attention.test.ts checks on its adapter and the bench checks, against tfjs, on a GPU.
 */
function defaultCandidate(rt: Runtime, pass: AttentionPass, d: number): AttentionCandidate {
  for (const [hr, sr] of FLASH_TILES) {
    const c = flash(hr, sr, false);
    if (fits(rt, c, pass, d)) return c;
  }
  return ROWS4;
}

/**
 * The candidate that runs `pass` at head dimension d on this runtime: forced, else the autotuner's
 * choice (measured at D = 64) where it fits this D, else the default. A measurement that found
 * 'rows4' fastest (a CPU emulator) holds for every D; one that found a flash tiling carries the
 * tiling over where it fits, and the untuned default stands in where it does not.
 */
export function chooseAttention(rt: Runtime, pass: AttentionPass, d: number): AttentionCandidate {
  const forced = forcedCandidate.get(rt);
  if (forced) {
    const c = attentionCandidate(forced);
    if (fits(rt, c, pass, d)) return c;
  }
  const c = attentionCandidate(tunedChoice(rt, ATTENTION_TUNE[pass]));
  return fits(rt, c, pass, d) ? c : defaultCandidate(rt, pass, d);
}

/** What runs `pass` at head dimension d on this adapter, and why: 'flash 64x32 sg (measured)'. */
export function attentionRunName(rt: Runtime, pass: AttentionPass, d: number): string {
  const c = chooseAttention(rt, pass, d);
  const rec = tuningOf(rt)[ATTENTION_TUNE[pass].key];
  const why = forcedCandidate.get(rt) === c.name ? 'forced' : rec?.choice === c.name ? rec.source : 'default';
  return `${c.name} (${why})`;
}

// ------------------------------------------------------------------ tuning

/** The head dimension the choice is measured at (the one diffusion models use most). */
const TUNE_D = 64;

function attentionWorkload(pass: AttentionPass, bh: number, l: number): TuneWorkload {
  return {
    label: `[${bh}, ${l}, ${l}, ${TUNE_D}]`,
    work: bh * l * l,
    setup(rt) {
      const shape = [1, bh, l, TUNE_D];
      const [q, k, v, go] = [0, 1, 2, 3].map(() => tuneInput(rt, shape)) as [DeviceArray, DeviceArray, DeviceArray, DeviceArray];
      const o = rt.alloc(shape, 'f32', 'autotune');
      const lse = rt.alloc([1, bh, l], 'f32', 'autotune');
      const scale = 1 / Math.sqrt(TUNE_D);
      const grads = pass === 'backward' ? [rt.alloc([1, bh, l]), rt.alloc(shape), rt.alloc(shape), rt.alloc(shape)] : [];
      if (pass === 'backward') forwardWith(defaultCandidate(rt, 'forward', TUNE_D), q, k, v, o, lse, scale);
      return {
        run: (name) => {
          const c = attentionCandidate(name);
          if (pass === 'forward') forwardWith(c, q, k, v, o, lse, scale);
          else backwardWith(c, q, k, v, o, lse, go, scale, grads[0]!, grads[1]!, grads[2]!, grads[3]!);
        },
        dispose: () => [q, k, v, go, o, lse, ...grads].forEach((x) => rt.dispose(x)),
      };
    },
  };
}

/**
 * Candidate names, the untuned default first (the largest flash tiling), then 'rows4', then the other
 * tilings: a tuning pass cut short by its time budget has at least compared the two kinds of kernel.
 */
const FLASH_TUNE = [...ATTENTION_CANDIDATES.filter((c) => c.kind === 'flash' && !c.subgroups), ...ATTENTION_CANDIDATES.filter((c) => c.subgroups)];
const TUNE_CANDIDATES = [FLASH_TUNE[0]!, ROWS4, ...FLASH_TUNE.slice(1)].map((c) => c.name);

function attentionProblem(pass: AttentionPass): TuneProblem {
  return {
    key: `attention-${pass}`,
    candidates: TUNE_CANDIDATES,
    revision: fnv1a([source, flashBody, flashIo4, flashIo1, flashRowWg, flashRowSg].join('\n')),
    // A CPU emulator stops at the first, the quick bench's shape (the tuner's launch budget; its time
    // budget may also cut the candidates short there). A smaller first workload misleads it: at
    // [2, 64] a flash tiling beat rows4 by 8% on SwiftShader and then ran L = 256 1.4x slower. A
    // large GPU reaches B·H = 16 at L = 2048, enough workgroups to fill it.
    workloads: [[4, 256], [8, 512], [16, 1024], [16, 2048]].map(([bh, l]) => attentionWorkload(pass, bh!, l!)),
    usable: (rt, name) => fits(rt, attentionCandidate(name), pass, TUNE_D),
  };
}

/**
 * The attention kernels' tuning problems (src/graph/tune.ts): forward, and backward (grad_q and
 * grad_kv together), each measured at D = 64 among every candidate that fits the device.
 */
export const ATTENTION_TUNE: Record<AttentionPass, TuneProblem> = { forward: attentionProblem('forward'), backward: attentionProblem('backward') };

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
/** Every attention module (tests: binding counts). */
export function attentionKernels(): Kernel[] {
  return [rows4Kernel, ...[4, 3].flatMap((d) => [flashKernel(d, false), flashKernel(d, true)])];
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
