/**
 * Which kernel variant runs on an adapter, decided by measuring a few candidates once and caching the
 * answer per adapter — never by matching the adapter's name.
 *
 * When: ops record dispatches synchronously (kernels call rt.dispatch), so a measurement, which must
 * await the GPU, cannot happen inside an op. Tuning is an async phase of its own, run by createDevice
 * before any op (and again by `dev.tune()` on request): every step traced later sees one fixed choice,
 * so a compiled step, its replays and a resumed run use the same kernels and give the same bits.
 * Device creation stays fast where it matters: a choice found in the memory cache (per process) or in
 * the store (a JSON file for the CLI, see io/autotune-file.ts) costs nothing, `tune: false` (or `pin`)
 * fixes the choices without measuring (the first candidate of each problem is its fixed default), and
 * a measurement scales its work to the adapter (see measureProblem), so a CPU emulator is not asked
 * for GPU-sized shapes.
 *
 * A problem is declared by the kernel that owns it (kernels/*.ts): its candidates, a few workloads
 * from small to large, and a revision string that changes with the kernels' code, so a cached choice
 * made for other code is measured again. This module imports no kernel and nothing from node:*.
 */
import type { Runtime } from './runtime.js';

/** One launch of a candidate on inputs made once: what the tuner times. */
export interface TuneBench {
  /** Record one launch of `candidate` (dispatches only; no reads, no awaits). */
  run(candidate: string): void;
  dispose(): void;
  /**
   * What `candidate` runs on this workload (e.g. its pipeline's constants), if candidates can run the
   * same thing (tile caps that all step down to one tile on a small product): those are timed once.
   */
  runs?(candidate: string): string;
}

export interface TuneWorkload {
  /** e.g. '256x256x256'; part of the problem's signature. */
  label: string;
  /** Relative cost (FLOPs or bytes): a workload is measured only if the last one's best time, scaled by this ratio, stays within the launch budget. */
  work: number;
  setup(rt: Runtime): TuneBench;
}

export interface TuneProblem {
  /** e.g. 'matmul'; what kernels look their choice up by. */
  key: string;
  /** Candidate names; the first is the fixed default (used untuned, and kept unless another is clearly faster). */
  candidates: readonly string[];
  /** Smallest first. */
  workloads: readonly TuneWorkload[];
  /** Changes whenever what the candidates compute or how fast changes (e.g. a hash of their WGSL). */
  revision: string;
  /** Candidates this device can run at all (limits); default: all. */
  usable?(rt: Runtime, candidate: string): boolean;
}

/** What was decided for one problem on one adapter. */
export interface TuneRecord {
  choice: string;
  /** Problem signature (key, revision, candidates, workloads) the choice was made for. */
  signature: string;
  /** 'measured' here, 'cached' (memory or store), 'pinned' (an option), 'default' (tune: false). */
  source: 'measured' | 'cached' | 'pinned' | 'default';
  /** Milliseconds per launch, by workload label then candidate (measured records only). */
  ms?: Record<string, Record<string, number>>;
  /** How it was timed: GPU timestamps, or wall time of launches ended by one wait. */
  timer?: 'timestamp' | 'wall';
  at?: string;
  /** Usable candidates left out because the tuning budget was spent (see TuneOptions.budgetMs). */
  unmeasured?: string[];
}

/** The store's content: records by adapter key, then problem key. */
export interface TuneCache {
  version: 1;
  adapters: Record<string, { adapter?: string; problems: Record<string, TuneRecord> }>;
}

/** Where choices persist between processes (a JSON file in Node, localStorage in a browser, ...). */
export interface TuneStore {
  load(): Promise<TuneCache | null>;
  save(cache: TuneCache): Promise<void>;
}

export interface TuneOptions {
  /** Persist choices here (besides the per-process memory cache). */
  store?: TuneStore | null;
  /** Fixed choices by problem key (e.g. { matmul: 'regs' }): not measured, not stored. */
  pin?: Record<string, string>;
  /** Measure again even when a cached choice exists (the new one replaces it). */
  force?: boolean;
  /**
   * Milliseconds a tuning pass may spend measuring (default 10 000). A problem not begun when they are
   * spent keeps its default for now and is not stored, so a later pass measures it; a problem under way
   * measures no further candidates or workloads and decides among those it has (its record lists the
   * rest as `unmeasured`). Pipeline compilation dominates on a CPU emulator (seconds per attention
   * kernel in Chromium's SwiftShader), so without a bound a first page load could tune for minutes.
   */
  budgetMs?: number;
  /** Longest a single launch may be expected to take for a workload to be measured (default 4 ms). */
  maxLaunchMs?: number;
  /** A timed sample lasts at least this long, in launches of one candidate (default 2 ms). */
  minSampleMs?: number;
  /** Timed samples per candidate and workload; the fastest counts (default 3). */
  reps?: number;
  /** A candidate replaces the default only if its mean time relative to the best is this much lower (default 0.05). */
  margin?: number;
  /** 'wall' times by the wall clock even where GPU timestamps exist (tests; default: timestamps where the adapter has them). */
  timer?: 'timestamp' | 'wall';
  /** Replaces the GPU timing (tests): ms per launch of `candidate` on `workload`. */
  measure?: (problem: TuneProblem, workload: TuneWorkload, candidate: string) => Promise<number>;
  /** One line per decision (default: silent). */
  log?: (line: string) => void;
}

export const TUNE_CACHE_VERSION = 1;
/** Below this many milliseconds per launch a timing measures dispatch overhead more than the kernel. */
const LAUNCH_BOUND_MS = 0.02;

// ---------------------------------------------------------------- choices

const CHOICES = new WeakMap<Runtime, Map<string, TuneRecord>>();
/** Per-process cache: adapter key -> problem key -> record. */
const MEMORY = new Map<string, Map<string, TuneRecord>>();

/** The candidate `problem` runs on this runtime: the tuned or pinned one, else the fixed default. */
export function tunedChoice(rt: Runtime, problem: Pick<TuneProblem, 'key' | 'candidates'>): string {
  return CHOICES.get(rt)?.get(problem.key)?.choice ?? problem.candidates[0]!;
}

/** Every decision made on this runtime, by problem key. */
export function tuningOf(rt: Runtime): Record<string, TuneRecord> {
  return Object.fromEntries(CHOICES.get(rt) ?? []);
}

/** Fix a choice on this runtime now (tests, benchmarks): later ops use it; steps already compiled keep theirs. */
export function setChoice(rt: Runtime, problem: Pick<TuneProblem, 'key' | 'candidates'>, candidate: string, source: TuneRecord['source'] = 'pinned', record?: TuneRecord): void {
  if (!problem.candidates.includes(candidate)) {
    throw new Error(`autotune: '${candidate}' is not a candidate of ${problem.key} (candidates: ${problem.candidates.join(', ')})`);
  }
  let m = CHOICES.get(rt);
  if (!m) CHOICES.set(rt, (m = new Map()));
  m.set(problem.key, { ...record, choice: candidate, signature: record?.signature ?? '', source });
}

/** Forget the in-memory cache of this process (tests). */
export function clearTuneMemory(): void {
  MEMORY.clear();
}

// ---------------------------------------------------------------- keys

/** 32-bit FNV-1a of a string, as 8 hex digits: for revisions and signatures, not for security. */
export function fnv1a(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, '0');
}

/** The limits a kernel's speed or feasibility can depend on; all of them go into the adapter key. */
const KEY_LIMITS = [
  'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupSizeY',
  'maxStorageBufferBindingSize', 'maxStorageBuffersPerShaderStage', 'minStorageBufferOffsetAlignment', 'minUniformBufferOffsetAlignment',
  'maxComputeWorkgroupsPerDimension',
] as const;

/**
 * Identifies the adapter for the cache: its info strings as given (used only as an identity, never
 * interpreted), the device's limits and its features. A driver update that changes any of them gives
 * a new key, hence a new measurement.
 */
export function adapterKey(rt: Pick<Runtime, 'adapterInfo' | 'limits' | 'device'>): string {
  const i = rt.adapterInfo;
  const lim = rt.limits as unknown as Record<string, number>;
  const limits = KEY_LIMITS.map((k) => `${k}=${lim[k] ?? ''}`).join(',');
  const features = [...(rt.device?.features ?? [])].sort().join(',');
  const name = [i.vendor, i.architecture, i.device, i.description].join('|');
  return `${name}#${fnv1a(`${limits};${features}`)}`;
}

/** A problem's signature: a cached choice is valid only for the same candidates, workloads and code. */
export function problemSignature(p: TuneProblem): string {
  return fnv1a(JSON.stringify([p.key, p.revision, p.candidates, p.workloads.map((w) => w.label)]));
}

// ---------------------------------------------------------------- stores

/** A store in memory (tests; or to share choices between devices without persisting them). */
export function memoryStore(initial: TuneCache | null = null): TuneStore & { data: TuneCache | null } {
  const s = {
    data: initial,
    async load() { return s.data ? (JSON.parse(JSON.stringify(s.data)) as TuneCache) : null; },
    async save(c: TuneCache) { s.data = JSON.parse(JSON.stringify(c)) as TuneCache; },
  };
  return s;
}

/** A store in the browser's localStorage under `name`; a no-op store where there is none. */
export function localStorageStore(name = 'webgpu-diffusion:autotune'): TuneStore {
  const ls = (globalThis as { localStorage?: { getItem(k: string): string | null; setItem(k: string, v: string): void } }).localStorage;
  return {
    async load() {
      const text = ls?.getItem(name);
      return text ? parseTuneCache(text) : null;
    },
    async save(c) { ls?.setItem(name, JSON.stringify(c)); },
  };
}

/** Parses a store's text; anything not a version-1 cache reads as empty (it will be measured again). */
export function parseTuneCache(text: string): TuneCache | null {
  try {
    const c = JSON.parse(text) as TuneCache;
    return c && c.version === TUNE_CACHE_VERSION && typeof c.adapters === 'object' ? c : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------- timing

/** Milliseconds per launch of `candidate`, from `n`-launch samples timed on the GPU or by the wall clock. */
class Timing {
  private readonly query: GPUQuerySet | null;
  private readonly resolve: GPUBuffer | null;
  private readonly staging: GPUBuffer | null;
  readonly kind: 'timestamp' | 'wall';

  constructor(private readonly rt: Runtime, kind?: 'timestamp' | 'wall') {
    const dev = rt.device;
    if (dev.features.has('timestamp-query') && kind !== 'wall') {
      this.query = dev.createQuerySet({ type: 'timestamp', count: 2, label: 'autotune' });
      this.resolve = dev.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
      this.staging = dev.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      this.kind = 'timestamp';
    } else {
      this.query = this.resolve = this.staging = null;
      this.kind = 'wall';
    }
  }

  /** Total ms of `n` launches of `run`. */
  async sample(run: () => void, n: number): Promise<number> {
    const rt = this.rt;
    if (!this.query) {
      await rt.sync();
      const t0 = performance.now();
      for (let i = 0; i < n; i++) run();
      await rt.sync();
      return performance.now() - t0;
    }
    rt.timestampPass({ querySet: this.query, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 }, () => {
      for (let i = 0; i < n; i++) run();
    });
    const enc = rt.getEncoder();
    enc.resolveQuerySet(this.query, 0, 2, this.resolve!, 0);
    enc.copyBufferToBuffer(this.resolve!, 0, this.staging!, 0, 16);
    await rt.sync();
    await this.staging!.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(this.staging!.getMappedRange().slice(0));
    this.staging!.unmap();
    return t[1]! > t[0]! ? Number(t[1]! - t[0]!) / 1e6 : 0;
  }

  destroy(): void {
    this.query?.destroy();
    this.resolve?.destroy();
    this.staging?.destroy();
  }
}

/** Launches per timed sample at most: a sample must stay in one compute pass (the runtime splits at 256 dispatches). */
const MAX_SAMPLE_LAUNCHES = 64;

/**
 * Times every usable candidate on one workload. Candidates that run the same kernel there
 * (TuneBench.runs) are timed once. A first launch of each compiles its pipelines (a candidate that
 * throws or makes the device report an error is dropped) and, timed, sets its launches per sample; a
 * candidate over twice as slow as the best there cannot win and is not sampled again (on a CPU
 * emulator a poor candidate's launch can take a second). The rest are sampled `reps` times in
 * rotating order; the fastest sample counts.
 */
async function timeWorkload(rt: Runtime, p: TuneProblem, w: TuneWorkload, candidates: string[], o: TuneOptions, timing: Timing | null, deadline: number): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  if (o.measure) {
    for (const c of candidates) {
      if (out.size && performance.now() > deadline) break;
      out.set(c, await o.measure(p, w, c));
    }
    return out;
  }
  const bench = w.setup(rt);
  try {
    const rep = new Map<string, string>();
    const same = new Map<string, string>();
    for (const c of candidates) {
      const id = bench.runs?.(c) ?? c;
      if (!rep.has(id)) rep.set(id, c);
      same.set(c, rep.get(id)!);
    }
    const times = await timeDistinct(rt, p, w, [...rep.values()], bench, o, timing!, deadline);
    for (const c of candidates) if (times.has(same.get(c)!)) out.set(c, times.get(same.get(c)!)!);
    return out;
  } finally {
    bench.dispose();
    await rt.sync().catch(() => {});
  }
}

async function timeDistinct(rt: Runtime, p: TuneProblem, w: TuneWorkload, candidates: string[], bench: TuneBench, o: TuneOptions, timing: Timing, deadline: number): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const first = new Map<string, number>();
  for (const c of candidates) {
    if (first.size && performance.now() > deadline) break;
    try {
      // GPU timestamps leave out the pipeline compilation done while recording; the wall clock needs a warm-up.
      if (timing.kind === 'wall') {
        bench.run(c);
        await rt.sync();
      }
      first.set(c, await timing.sample(() => bench.run(c), 1));
    } catch (e) {
      o.log?.(`autotune ${p.key}: candidate ${c} failed on ${w.label} and is skipped: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  if (!first.size) return out;
  const best1 = Math.min(...first.values());
  for (const [c, t] of first) if (t > 2 * best1 && t > 0.05) out.set(c, t);
  const ok = candidates.filter((c) => first.has(c) && !out.has(c));
  const per = new Map(ok.map((c) => [c, Math.max(1, Math.min(MAX_SAMPLE_LAUNCHES, Math.ceil((o.minSampleMs ?? 2) / Math.max(first.get(c)!, 1e-3))))]));
  for (let r = 0; r < (o.reps ?? 3); r++) {
    for (let j = 0; j < ok.length; j++) {
      const c = ok[(j + r) % ok.length]!;
      const n = per.get(c)!;
      const ms = (await timing.sample(() => bench.run(c), n)) / n;
      if (ms > 0 && !(ms >= (out.get(c) ?? Infinity))) out.set(c, ms);
    }
  }
  // A timer that reads 0 (coarse timestamps on a very short sample) times nothing: keep a positive floor.
  for (const c of ok) if (!out.has(c)) out.set(c, 1e-6);
  return out;
}

/**
 * Measures one problem: workloads from small to large, each only while the last one's best time,
 * scaled by the ratio of their work, stays within maxLaunchMs (so a CPU emulator stops at the small
 * one and a large GPU reaches the large one). A candidate's score is its mean time relative to the
 * best candidate over the measured workloads; the default stays unless another scores `margin` lower.
 */
async function measureProblem(rt: Runtime, p: TuneProblem, o: TuneOptions = {}, timing: Timing | null = null, deadline = Infinity): Promise<TuneRecord> {
  const usable = p.candidates.filter((c) => !p.usable || p.usable(rt, c));
  let candidates = usable;
  if (!candidates.length) throw new Error(`autotune ${p.key}: no candidate is usable on this device`);
  const ms: Record<string, Record<string, number>> = {};
  let last: { best: number; work: number } | null = null;
  for (const w of p.workloads) {
    if (last && (last.best * w.work) / last.work > (o.maxLaunchMs ?? 4)) break;
    if (last && performance.now() > deadline) break;
    const t = await timeWorkload(rt, p, w, candidates, o, timing, deadline);
    if (!t.size) break;
    candidates = candidates.filter((c) => t.has(c));
    ms[w.label] = Object.fromEntries(t);
    last = { best: Math.min(...t.values()), work: w.work };
  }
  let measured = Object.values(ms);
  if (!measured.length) throw new Error(`autotune ${p.key}: every candidate failed`);
  // A workload whose best launch is shorter than LAUNCH_BOUND_MS times launch overhead, not the kernel:
  // it decides only when nothing larger was measured (a CPU emulator stops at the smallest workload).
  const telling = measured.filter((t) => Math.min(...Object.values(t)) >= LAUNCH_BOUND_MS);
  if (telling.length) measured = telling;
  const score = (c: string) => measured.reduce((s, t) => s + t[c]! / Math.min(...Object.values(t)), 0) / measured.length;
  let choice = candidates.reduce((a, c) => (score(c) < score(a) ? c : a));
  const dflt = p.candidates[0]!;
  if (candidates.includes(dflt) && score(dflt) <= score(choice) * (1 + (o.margin ?? 0.05))) choice = dflt;
  const unmeasured = usable.filter((c) => !candidates.includes(c));
  return { choice, signature: problemSignature(p), source: 'measured', ms, timer: o.measure ? undefined : timing?.kind, at: new Date().toISOString(), ...(unmeasured.length ? { unmeasured } : {}) };
}

// ---------------------------------------------------------------- the tuning pass

/**
 * Decides every problem for this runtime: pinned, else cached (memory, then store) for the same
 * adapter key and problem signature, else measured (and then cached). Returns the decisions.
 */
export async function autotune(rt: Runtime, problems: readonly TuneProblem[], o: TuneOptions = {}): Promise<Record<string, TuneRecord>> {
  const key = adapterKey(rt);
  let mem = MEMORY.get(key);
  if (!mem) MEMORY.set(key, (mem = new Map()));
  let stored: TuneCache | null | undefined;
  const fresh: [string, TuneRecord][] = [];
  let timing: Timing | null = null;
  const deadline = performance.now() + (o.budgetMs ?? 10_000);
  try {
    for (const p of problems) {
      const pinned = o.pin?.[p.key];
      if (pinned !== undefined) {
        setChoice(rt, p, pinned, 'pinned');
        continue;
      }
      const sig = problemSignature(p);
      const valid = (r: TuneRecord | undefined) => (r && r.signature === sig && p.candidates.includes(r.choice) && (!p.usable || p.usable(rt, r.choice)) ? r : undefined);
      let rec = o.force ? undefined : valid(mem.get(p.key));
      if (!rec && !o.force && o.store) {
        if (stored === undefined) stored = await o.store.load().catch((e) => (o.log?.(`autotune: cannot read the store (${(e as Error).message}); measuring`), null));
        rec = valid(stored?.adapters[key]?.problems[p.key]);
        if (rec) mem.set(p.key, rec);
      }
      if (rec) {
        setChoice(rt, p, rec.choice, 'cached', rec);
        continue;
      }
      if (performance.now() > deadline) {
        setChoice(rt, p, p.candidates[0]!, 'default');
        o.log?.(`autotune ${p.key}: ${p.candidates[0]} (default: the tuning budget is spent; a later pass measures it)`);
        continue;
      }
      if (!o.measure) timing ??= new Timing(rt, o.timer);
      rec = await measureProblem(rt, p, o, timing, deadline);
      mem.set(p.key, rec);
      fresh.push([p.key, rec]);
      setChoice(rt, p, rec.choice, 'measured', rec);
      o.log?.(`autotune ${p.key}: ${rec.choice} (${Object.entries(rec.ms ?? {}).map(([w, t]) => `${w}: ${Object.entries(t).map(([c, v]) => `${c} ${v.toPrecision(3)}`).join(', ')} ms`).join('; ')}${rec.unmeasured ? `; not measured, budget spent: ${rec.unmeasured.join(', ')}` : ''})`);
    }
  } finally {
    timing?.destroy();
  }
  if (fresh.length && o.store) {
    // Read again just before writing, so choices another process stored meanwhile are kept.
    const latest = (await o.store.load().catch(() => null)) ?? { version: TUNE_CACHE_VERSION, adapters: {} };
    const i = rt.adapterInfo;
    const entry = (latest.adapters[key] ??= { problems: {} });
    entry.adapter = [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(' ');
    for (const [k, r] of fresh) entry.problems[k] = { ...r, source: 'measured' };
    await o.store.save(latest).catch((e) => o.log?.(`autotune: cannot write the store (${(e as Error).message})`));
  }
  return tuningOf(rt);
}

/** Fix every problem to its default without measuring (createDevice({ tune: false })). */
export function useDefaults(rt: Runtime, problems: readonly TuneProblem[], pin: Record<string, string> = {}): void {
  for (const p of problems) setChoice(rt, p, pin[p.key] ?? p.candidates[0]!, pin[p.key] !== undefined ? 'pinned' : 'default');
}
