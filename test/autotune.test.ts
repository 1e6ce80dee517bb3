import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  adapterKey, autotune, clearTuneMemory, memoryStore, problemSignature, setChoice, tunedChoice, tuningOf, useDefaults,
  type TuneProblem, type TuneWorkload,
} from '../src/runtime/autotune.js';
import { autotuneFileStore, defaultAutotunePath } from '../src/io/autotune-file.js';
import type { Runtime } from '../src/runtime/runtime.js';
import { createDevice } from '../src/graph/device.js';
import { TUNED_PROBLEMS } from '../src/graph/tune.js';
import { MATMUL_TUNE, defaultVariant } from '../kernels/matmul.js';
import { GROUPNORM_TUNE, groupNormWorkgroup } from '../kernels/groupnorm.js';
import { useDevice } from './helpers.js';

const dev = useDevice();

/** A stand-in runtime: the tuner only reads its identity (info, limits, features) when timing is injected. */
function fakeRuntime(description: string, workgroupStorage = 16384): Runtime {
  return {
    adapterInfo: { vendor: 'test', architecture: 'fake', device: '', description },
    limits: { maxComputeWorkgroupStorageSize: workgroupStorage, maxComputeInvocationsPerWorkgroup: 256 },
    device: { features: new Set<string>() },
  } as unknown as Runtime;
}

const workload = (label: string, work: number): TuneWorkload => ({ label, work, setup: () => { throw new Error('not used with injected timing'); } });

function problem(key: string, revision = 'r1'): TuneProblem {
  return { key, candidates: ['dflt', 'fast', 'slow'], revision, workloads: [workload('small', 1), workload('large', 100)] };
}

/** Injected timing: ms per launch by candidate and workload, recording every call. */
function fakeTimes(times: Record<string, Record<string, number>>) {
  const calls: string[] = [];
  return {
    calls,
    measure: async (_p: TuneProblem, w: TuneWorkload, c: string) => {
      calls.push(`${w.label}:${c}`);
      return times[w.label]![c]!;
    },
  };
}

describe('autotune with injected timing', () => {
  it('chooses the fastest candidate, measuring the large workload only when the small one predicts it fits the budget', async () => {
    clearTuneMemory();
    // small: 'fast' 0.01 ms, so the large one (100x the work) is expected at 1 ms <= 4 ms: measured too.
    const t = fakeTimes({ small: { dflt: 0.02, fast: 0.01, slow: 0.05 }, large: { dflt: 2, fast: 1, slow: 5 } });
    const rt = fakeRuntime('gpu-like');
    const rec = await autotune(rt, [problem('p')], { measure: t.measure });
    expect(rec.p!.choice).toBe('fast');
    expect(rec.p!.source).toBe('measured');
    expect(tunedChoice(rt, problem('p'))).toBe('fast');
    expect(t.calls).toEqual(['small:dflt', 'small:fast', 'small:slow', 'large:dflt', 'large:fast', 'large:slow']);
  });

  it('stops at the small workload on a slow device, and keeps the default unless another is clearly faster', async () => {
    clearTuneMemory();
    // small: the best takes 1 ms, so the large one would take ~100 ms: not measured. 'fast' is 3% faster
    // than the default, inside the 5% margin: the default stays.
    const t = fakeTimes({ small: { dflt: 1.03, fast: 1, slow: 3 }, large: {} });
    const rt = fakeRuntime('cpu-like');
    const rec = await autotune(rt, [problem('p')], { measure: t.measure });
    expect(rec.p!.choice).toBe('dflt');
    expect(t.calls.every((c) => c.startsWith('small:'))).toBe(true);
    // With no margin the 3% faster one wins.
    clearTuneMemory();
    expect((await autotune(fakeRuntime('cpu-like'), [problem('p')], { measure: t.measure, margin: 0 })).p!.choice).toBe('fast');
  });

  it('a workload whose best launch is overhead-bound (< 0.02 ms) does not vote when a larger one was measured', async () => {
    clearTuneMemory();
    // small: 'slow' wins by 2x at 5 us a launch (noise at that size); large: 'fast' wins by 1.5x. Averaged,
    // 'slow' would score 0.5*(1 + 1.5) = 1.25 vs 'fast' 0.5*(2 + 1) = 1.5; counting only the large one, 'fast'.
    const t = fakeTimes({ small: { dflt: 0.012, fast: 0.01, slow: 0.005 }, large: { dflt: 3, fast: 1, slow: 1.5 } });
    expect((await autotune(fakeRuntime('gpu-like-2'), [problem('p')], { measure: t.measure })).p!.choice).toBe('fast');
    // Where nothing larger was measured, the small workload decides.
    clearTuneMemory();
    const only = fakeTimes({ small: { dflt: 0.012, fast: 0.01, slow: 0.005 }, large: { dflt: 1e3, fast: 1e3, slow: 1e3 } });
    expect((await autotune(fakeRuntime('gpu-like-3'), [problem('p')], { measure: only.measure, maxLaunchMs: 0.1 })).p!.choice).toBe('slow');
  });

  it('stops measuring when the budget is spent: the problem under way decides among what it measured, later ones keep their defaults unstored', async () => {
    clearTuneMemory();
    const calls: string[] = [];
    // Every measurement takes 40 ms of wall time; the budget is 60 ms.
    const measure = async (p: TuneProblem, w: TuneWorkload, c: string) => {
      calls.push(`${p.key}:${w.label}:${c}`);
      await new Promise((r) => setTimeout(r, 40));
      return { dflt: 3, fast: 1, slow: 2 }[c]!;
    };
    const store = memoryStore();
    const rt = fakeRuntime('budget');
    const rec = await autotune(rt, [problem('a'), problem('b')], { measure, budgetMs: 60, store });
    // a: dflt (t = 40 ms), fast (80 ms, over budget after it): 'slow' and the large workload are left out.
    expect(calls).toEqual(['a:small:dflt', 'a:small:fast']);
    expect(rec.a).toMatchObject({ choice: 'fast', source: 'measured', unmeasured: ['slow'] });
    expect(rec.b).toMatchObject({ choice: 'dflt', source: 'default' });
    const saved = await store.load();
    expect(Object.keys(saved!.adapters[adapterKey(rt)]!.problems)).toEqual(['a']);
    // The next pass takes 'a' from the store and measures 'b'.
    calls.length = 0;
    clearTuneMemory();
    const next = await autotune(fakeRuntime('budget'), [problem('a'), problem('b')], { measure, budgetMs: 60, store });
    expect(next.a!.source).toBe('cached');
    expect(next.b!.source).toBe('measured');
    expect(calls.every((c) => c.startsWith('b:'))).toBe(true);
  });

  it('caches per adapter key: the same adapter is not measured twice, another adapter or another revision is', async () => {
    clearTuneMemory();
    const t = fakeTimes({ small: { dflt: 3, fast: 1, slow: 2 }, large: {} });
    await autotune(fakeRuntime('A'), [problem('p')], { measure: t.measure });
    const n = t.calls.length;
    const again = fakeRuntime('A');
    const rec = await autotune(again, [problem('p')], { measure: t.measure });
    expect(t.calls.length).toBe(n);
    expect(rec.p!.source).toBe('cached');
    expect(tunedChoice(again, problem('p'))).toBe('fast');
    // Another adapter (a different description, or the same one with other limits) is measured.
    await autotune(fakeRuntime('B'), [problem('p')], { measure: t.measure });
    expect(t.calls.length).toBe(2 * n);
    expect(adapterKey(fakeRuntime('A', 32768))).not.toBe(adapterKey(fakeRuntime('A')));
    await autotune(fakeRuntime('A', 32768), [problem('p')], { measure: t.measure });
    expect(t.calls.length).toBe(3 * n);
    // Changed kernel code (revision) invalidates the cached choice; so does `force`.
    expect(problemSignature(problem('p', 'r2'))).not.toBe(problemSignature(problem('p')));
    await autotune(fakeRuntime('A'), [problem('p', 'r2')], { measure: t.measure });
    expect(t.calls.length).toBe(4 * n);
    await autotune(fakeRuntime('A'), [problem('p', 'r2')], { measure: t.measure, force: true });
    expect(t.calls.length).toBe(5 * n);
  });

  it('pins are honoured without measuring, and an unknown candidate is an error naming the candidates', async () => {
    clearTuneMemory();
    const t = fakeTimes({ small: { dflt: 3, fast: 1, slow: 2 }, large: {} });
    const rt = fakeRuntime('pinned');
    const rec = await autotune(rt, [problem('p'), problem('q')], { measure: t.measure, pin: { p: 'slow' } });
    expect(rec.p).toMatchObject({ choice: 'slow', source: 'pinned' });
    expect(rec.q).toMatchObject({ choice: 'fast', source: 'measured' });
    expect(t.calls.some((c) => c.includes('p'))).toBe(false);
    await expect(autotune(rt, [problem('p')], { measure: t.measure, pin: { p: 'nope' } })).rejects.toThrow(/'nope' is not a candidate of p \(candidates: dflt, fast, slow\)/);
    // Defaults (tune: false) and a later explicit choice.
    const rt2 = fakeRuntime('defaults');
    useDefaults(rt2, [problem('p')]);
    expect(tuningOf(rt2).p).toMatchObject({ choice: 'dflt', source: 'default' });
    setChoice(rt2, problem('p'), 'fast');
    expect(tunedChoice(rt2, problem('p'))).toBe('fast');
  });

  it('skips candidates the device cannot run', async () => {
    clearTuneMemory();
    const t = fakeTimes({ small: { dflt: 3, fast: 1, slow: 2 }, large: {} });
    const p = { ...problem('p'), usable: (_rt: Runtime, c: string) => c !== 'fast' };
    expect((await autotune(fakeRuntime('limited'), [p], { measure: t.measure })).p!.choice).toBe('slow');
    expect(t.calls).not.toContain('small:fast');
  });

  it('a store round-trips through a JSON file and is read by a new process (an empty memory cache)', async () => {
    clearTuneMemory();
    const dir = mkdtempSync(join(tmpdir(), 'wgd-autotune-'));
    try {
      const path = join(dir, 'sub', 'autotune.json');
      const t = fakeTimes({ small: { dflt: 3, fast: 1, slow: 2 }, large: {} });
      await autotune(fakeRuntime('stored'), [problem('p')], { measure: t.measure, store: autotuneFileStore(path) });
      const file = JSON.parse(readFileSync(path, 'utf8'));
      expect(file.version).toBe(1);
      const entry = file.adapters[adapterKey(fakeRuntime('stored'))];
      expect(entry.problems.p).toMatchObject({ choice: 'fast', signature: problemSignature(problem('p')), ms: { small: { dflt: 3, fast: 1, slow: 2 } } });
      clearTuneMemory();
      const never = async () => { throw new Error('measured although the store has the choice'); };
      const rt = fakeRuntime('stored');
      const rec = await autotune(rt, [problem('p')], { measure: never, store: autotuneFileStore(path) });
      expect(rec.p).toMatchObject({ choice: 'fast', source: 'cached' });
      // A second adapter's choices are added beside the first's.
      await autotune(fakeRuntime('other'), [problem('p')], { measure: t.measure, store: autotuneFileStore(path) });
      expect(Object.keys(JSON.parse(readFileSync(path, 'utf8')).adapters)).toHaveLength(2);
      // A corrupt file reads as empty: measured again, and rewritten whole.
      writeFileSync(path, '{ not json');
      clearTuneMemory();
      const n = t.calls.length;
      expect((await autotune(fakeRuntime('stored'), [problem('p')], { measure: t.measure, store: autotuneFileStore(path) })).p!.source).toBe('measured');
      expect(t.calls.length).toBeGreaterThan(n);
      expect(JSON.parse(readFileSync(path, 'utf8')).adapters[adapterKey(fakeRuntime('stored'))].problems.p.choice).toBe('fast');
      // The in-memory store copies what it holds.
      const s = memoryStore();
      await s.save({ version: 1, adapters: {} });
      expect(await s.load()).toEqual({ version: 1, adapters: {} });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(defaultAutotunePath({ WGD_AUTOTUNE_CACHE: '/x/y.json' })).toBe('/x/y.json');
    expect(defaultAutotunePath({ XDG_CACHE_HOME: '/c' })).toBe('/c/webgpu-diffusion/autotune.json');
  });
});

describe('autotune on the device', () => {
  it('times real launches (GPU timestamps where the adapter has them) and picks the cheaper candidate', async () => {
    clearTuneMemory();
    const rt = dev().rt;
    // 'one' fills 4 Ki floats once; 'many' fills 1 Mi floats 8 times: over 100x the work.
    const p: TuneProblem = {
      key: 'fill-test', candidates: ['many', 'one'], revision: 'r', workloads: [{
        label: 'fill', work: 1,
        setup: (r) => {
          const small = r.alloc([4096]);
          const big = r.alloc([1 << 20]);
          return {
            run: (c) => {
              if (c === 'one') r.fillValue(small, 1);
              else for (let i = 0; i < 8; i++) r.fillValue(big, 2);
            },
            dispose: () => { r.dispose(small); r.dispose(big); },
          };
        },
      }],
    };
    const rec = await autotune(rt, [p], {});
    expect(rec['fill-test']).toMatchObject({ choice: 'one', source: 'measured', timer: rt.device.features.has('timestamp-query') ? 'timestamp' : 'wall' });
    const ms = rec['fill-test']!.ms!.fill!;
    expect(ms.one!).toBeLessThan(ms.many!);
    // The wall-clock timer (adapters without timestamp queries): blocks of launches ended by one wait.
    const wall = await autotune(rt, [p], { timer: 'wall', force: true });
    expect(wall['fill-test']).toMatchObject({ choice: 'one', timer: 'wall' });
  });

  it('createDevice({ tune: false }) takes every fixed default; pinned choices reach the kernels', async () => {
    const d = await createDevice({ log: () => {}, tune: false });
    try {
      for (const p of TUNED_PROBLEMS) expect(d.tuning[p.key]).toMatchObject({ choice: p.candidates[0], source: 'default' });
      expect(defaultVariant(d.rt)).toBe(MATMUL_TUNE.candidates[0]);
    } finally {
      d.destroy();
    }
    const e = await createDevice({ log: () => {}, tune: { pin: Object.fromEntries(TUNED_PROBLEMS.map((p) => [p.key, p.candidates[p.candidates.length - 1]!])) } });
    try {
      expect(defaultVariant(e.rt)).toBe(MATMUL_TUNE.candidates[MATMUL_TUNE.candidates.length - 1]);
      expect(groupNormWorkgroup(e.rt)).toBe(Number(GROUPNORM_TUNE.candidates[GROUPNORM_TUNE.candidates.length - 1]!.slice(2)));
      expect(e.tuning.matmul!.source).toBe('pinned');
    } finally {
      e.destroy();
    }
  });
});
