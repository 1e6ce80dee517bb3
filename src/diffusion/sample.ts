// The one loop that runs every sampler: each kind of step is traced once into a compiled step
// (denoiser, update and noise in one command buffer), and the host only writes each step's levels and
// coefficients, then replays. Nothing is read back between steps.
import type { Device } from '../graph/device.js';
import type { CompiledStep } from '../graph/compile.js';
import { Tensor, noGrad } from '../graph/tensor.js';
import * as ops from '../graph/ops/index.js';
import { ShapeError, fmtShape } from '../runtime/errors.js';
import { Denoiser } from './denoiser.js';
import { Sampler, StepPlan } from './samplers/types.js';

/** Stream of the initial noise; steps draw from streams 1, 2, ... with the key's counter advanced each step. */
const INIT_STREAM = 0x7fff0000;

export interface SampleRunOptions {
  /** Seed of the noise (initial and per step): the same seed gives the same samples. */
  seed?: number;
  /** Start from this x_T instead of drawing it (e.g. the output of DDIM inversion). */
  xT?: Tensor;
  /** Keep a copy of x̂0 every this many steps (and after the last one), for strips and live views. */
  snapshotEvery?: number;
  /** Called when each step has finished on the device, with its index and the number of steps (for progress bars). */
  onStep?: (i: number, n: number) => void;
  /**
   * Called with each snapshot as it is taken, and awaited before the next step is submitted: a live
   * view reads `x0` here (the loop then waits for the GPU to reach that step; without it, every step
   * is submitted at once and nothing can be shown until the end).
   */
  onSnapshot?: (snap: { step: number; x0: Tensor }, n: number) => void | Promise<void>;
}

export interface SampleResult {
  x: Tensor;
  /** x̂0 after step `step` (0-based), when snapshotEvery was set. */
  snapshots: { step: number; x0: Tensor }[];
  /** Host milliseconds spent encoding and submitting steps, the steps run, and their GPU dispatches. */
  hostMs: number;
  steps: number;
  dispatches: number;
}

type StepOut = Record<string, Tensor>;

export class SamplingLoop {
  private readonly compiled = new Map<string, Promise<CompiledStep<StepOut>>>();
  private key: Tensor | null = null;

  constructor(
    readonly dev: Device,
    readonly sampler: Sampler,
    readonly denoiser: Denoiser,
    readonly shape: readonly number[],
  ) {
    if (shape.length < 2) throw new ShapeError('sample', `shape ${fmtShape(shape)} needs a batch axis and at least one more`);
  }

  get batch(): number {
    return this.shape[0]!;
  }

  /** The compiled step for one kind, traced on first use. */
  private stepFor(p: StepPlan, key: Tensor): Promise<CompiledStep<StepOut>> {
    const id = `${p.kind}/${p.levels.length}/${p.coef.length}`;
    let c = this.compiled.get(id);
    if (!c) {
      const S = this.sampler.stateSize;
      const B = this.batch;
      const E = p.levels.length;
      const K = p.coef.length;
      const fn = (x: Tensor, lv: Tensor, coef: Tensor, ...state: Tensor[]): StepOut => {
        const rows = lv.reshape([E * 3, B]);
        const levels = Array.from({ length: E }, (_, j) => ({
          a: ops.slice(rows, 3 * j, 1, 0).reshape([B]),
          b: ops.slice(rows, 3 * j + 1, 1, 0).reshape([B]),
          time: ops.slice(rows, 3 * j + 2, 1, 0).reshape([B]),
        }));
        const coefs = Array.from({ length: K }, (_, i) => ops.slice(coef, i, 1, 0));
        let stream = 1;
        const r = this.sampler.step(p.kind, {
          x,
          state,
          coef: (i) => {
            if (i < 0 || i >= K) throw new Error(`sampler '${this.sampler.name}': step '${p.kind}' asked for coefficient ${i} of ${K}`);
            return coefs[i]!;
          },
          eps: (j, xx) => this.denoiser(xx, levels[j]!),
          noise: () => ops.randn(x.shape, key, stream++),
        });
        ops.advanceKey(key);
        const out: StepOut = { x: r.x, x0: r.x0 };
        (r.state ?? []).forEach((t, i) => (out[`s${i}`] = t));
        if ((r.state ?? []).length !== S) throw new Error(`sampler '${this.sampler.name}': step '${p.kind}' returned ${(r.state ?? []).length} state tensors, expected ${S}`);
        return out;
      };
      const specs = [{ shape: this.shape }, { shape: [E * 3 * B] }, { shape: [K] }, ...Array.from({ length: S }, () => ({ shape: this.shape }))];
      c = noGrad(() => this.dev.compile(fn, specs));
      this.compiled.set(id, c);
    }
    return c;
  }

  /** Run `steps` steps of the sampler from fresh noise (or xT); returns the final sample. */
  async run(steps: number, opts: SampleRunOptions = {}): Promise<SampleResult> {
    const plan = this.sampler.plan(steps);
    const B = this.batch;
    const key = (this.key ??= this.dev.randomKey(0));
    resetKey(this.dev, key, opts.seed ?? 0);
    const ready = new Map<StepPlan, CompiledStep<StepOut>>();
    for (const p of plan) ready.set(p, await this.stepFor(p, key));

    let x: Tensor = opts.xT ?? noGrad(() => ops.scale(ops.randn(this.shape, key, INIT_STREAM), this.sampler.initialStd(steps)));
    if (opts.xT && (opts.xT.shape.length !== this.shape.length || opts.xT.shape.some((d, i) => d !== this.shape[i]))) {
      throw new ShapeError('sample', `xT has shape ${fmtShape(opts.xT.shape)}, expected ${fmtShape(this.shape)}`);
    }
    let state: Tensor[] = Array.from({ length: this.sampler.stateSize }, () => this.dev.zeros(this.shape));
    const snapshots: SampleResult['snapshots'] = [];
    let hostMs = 0;
    let dispatches = 0;
    let out: StepOut | null = null;
    // Two steps in flight: the device always has the next step queued, and the host learns when each
    // one is done (for progress) without ever reading anything back.
    const inFlight: { step: number; done: Promise<void> }[] = [];
    const retire = async (keep: number) => {
      while (inFlight.length > keep) {
        const f = inFlight.shift()!;
        await f.done;
        opts.onStep?.(f.step, plan.length);
      }
    };
    for (let i = 0; i < plan.length; i++) {
      const p = plan[i]!;
      const t0 = performance.now();
      const levels = new Float32Array(p.levels.length * 3 * B);
      p.levels.forEach((l, j) => {
        levels.fill(l.a, (3 * j) * B, (3 * j + 1) * B);
        levels.fill(l.b, (3 * j + 1) * B, (3 * j + 2) * B);
        levels.fill(l.time, (3 * j + 2) * B, (3 * j + 3) * B);
      });
      const step = ready.get(p)!;
      out = step.run(x, levels, Float32Array.from(p.coef), ...state);
      dispatches += step.stats.dispatches;
      x = out.x!;
      state = state.map((_, k) => out![`s${k}`]!);
      hostMs += performance.now() - t0;
      inFlight.push({ step: i, done: this.dev.submitted() });
      await retire(1);
      const every = opts.snapshotEvery ?? 0;
      if (every > 0 && (i % every === every - 1 || i === plan.length - 1)) {
        const snap = { step: i, x0: copy(out.x0!) };
        snapshots.push(snap);
        await opts.onSnapshot?.(snap, plan.length);
      }
    }
    await retire(0);
    // The step's output buffers are overwritten by its next run: hand the caller its own copy.
    return { x: copy(x), snapshots, hostMs, steps: plan.length, dispatches };
  }

  destroy(): void {
    for (const c of this.compiled.values()) void c.then((s) => s.destroy());
    this.compiled.clear();
  }
}

function copy(t: Tensor): Tensor {
  return noGrad(() => ops.affine(t, 1, 0));
}

/** Point a key at (seed, 0) on the device. */
function resetKey(dev: Device, key: Tensor, seed: number): void {
  const rt = dev.rt;
  rt.flush();
  rt.device.queue.writeBuffer(key.data.buffer, key.data.byteOffset, new Uint32Array([seed >>> 0, 0]));
}

/** Sample once: build a loop, run it, free its steps. For repeated sampling keep a SamplingLoop. */
export async function sample(dev: Device, sampler: Sampler, denoiser: Denoiser, shape: readonly number[], steps: number, opts: SampleRunOptions = {}): Promise<SampleResult> {
  const loop = new SamplingLoop(dev, sampler, denoiser, shape);
  try {
    return await loop.run(steps, opts);
  } finally {
    await dev.sync();
    loop.destroy();
  }
}
