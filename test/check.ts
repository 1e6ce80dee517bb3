// Op checking shared by the vitest suites and the headless-browser page: no vitest imports here.
import type { Device } from '../src/graph/device.js';
import type { Module } from '../src/nn/module.js';
import { Tensor, grad } from '../src/graph/tensor.js';
import { abs, mul, sum } from '../src/graph/ops/elementwise.js';
import { fmtShape } from '../src/runtime/errors.js';

/** Seeded PRNG (mulberry32): inputs are fresh each run (seed from the clock) yet reproducible from the seed printed on failure. */
const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env;
export const SEED = Number(env?.TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
export function rng(seed = SEED): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const defaultRng = rng();
export function randn(n: number, r = defaultRng): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12);
    out[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
  }
  return out;
}
export function uniform(n: number, lo: number, hi: number, r = defaultRng): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * r();
  return out;
}
export const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** Values rounded to f32, so the float64 reference sees exactly what the GPU sees. */
export const f32 = (x: Float64Array): Float64Array => Float64Array.from(Float32Array.from(x));

/** Assert |got - want| <= atol + rtol * |want| elementwise, reporting the worst element. */
export function expectClose(what: string, got: ArrayLike<number>, want: ArrayLike<number>, atol: number, rtol: number): void {
  if (got.length !== want.length) throw new Error(`${what}: ${got.length} elements, expected ${want.length}`);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    const excess = Math.abs(g - w) - (atol + rtol * Math.abs(w));
    if (!(excess <= 0) && (worst < 0 || !(excess <= worstExcess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    const g = got[worst]!;
    const w = want[worst]!;
    throw new Error(`${what}: element ${worst} is ${g}, expected ${w} (|diff| ${Math.abs(g - w)} > atol ${atol} + rtol ${rtol}·|ref|; TEST_SEED=${SEED})`);
  }
}

export interface InputSpec {
  shape: number[];
  /** Values (float64, rounded to f32 before use); random normal if omitted. */
  data?: Float64Array;
  /** Whether to check this input's gradient (default true). */
  grad?: boolean;
}

export interface OpCheck {
  name: string;
  inputs: InputSpec[];
  /** The op on the GPU. */
  run: (xs: Tensor[]) => Tensor;
  /** Float64 forward reference. */
  ref: (xs: Float64Array[]) => Float64Array;
  /** Float64 reference of the vector-Jacobian product: gradient of sum(ref(xs) * gy) per input. */
  refGrad?: (xs: Float64Array[], gy: Float64Array) => (Float64Array | null)[];
  /** Tolerances for GPU vs reference, forward and backward (backward defaults to forward's). */
  atol: number;
  rtol: number;
  gradAtol?: number;
  gradRtol?: number;
  /** Coordinates per input probed by finite differences of `ref` (default 24). */
  fdProbes?: number;
}

/**
 * Checks one op: GPU forward against the float64 reference; GPU backward (gradient of sum(y * r) for a
 * random r) against refGrad; and refGrad itself against central finite differences of ref in float64.
 */
export async function checkOp(dev: Device, c: OpCheck): Promise<void> {
  const xs = c.inputs.map((s) => f32(s.data ?? randn(numel(s.shape))));
  const ts = c.inputs.map((s, i) => dev.tensor(Float32Array.from(xs[i]!), s.shape, { requiresGrad: c.refGrad !== undefined && s.grad !== false }));
  const y = c.run(ts);
  const want = c.ref(xs);
  if (y.size !== want.length) throw new Error(`${c.name}: output ${fmtShape(y.shape)} has ${y.size} elements, reference has ${want.length}`);
  expectClose(`${c.name} forward`, await y.read(), want, c.atol, c.rtol);
  if (!c.refGrad) return;

  const r = f32(randn(want.length));
  const loss = sum(mul(y, dev.tensor(Float32Array.from(r), y.shape)));
  await loss.backward();
  const refGrads = c.refGrad(xs, r);
  for (let i = 0; i < ts.length; i++) {
    if (c.inputs[i]!.grad === false) continue;
    const rg = refGrads[i];
    if (!rg) throw new Error(`${c.name}: refGrad gave no gradient for input ${i}`);
    const g = ts[i]!.grad;
    if (!g) throw new Error(`${c.name}: input ${i} got no gradient`);
    expectClose(`${c.name} grad of input ${i}`, await g.read(), rg, c.gradAtol ?? c.atol, c.gradRtol ?? c.rtol);
  }
  checkRefGradByFiniteDifferences(c, xs, r, refGrads);
}

/**
 * Central differences of L(x) = sum(ref(x) * r) in float64 at random coordinates. Step h = 1e-5 gives
 * truncation error ~h²·|L'''| ≈ 1e-10 and rounding error ~1e-16·|L|/h ≈ 1e-11·|L|: the tolerance
 * 1e-6·(1 + |g|) leaves room for both while catching any wrong term.
 */
export function checkRefGradByFiniteDifferences(c: OpCheck, xs: Float64Array[], r: Float64Array, refGrads: (Float64Array | null)[]): void {
  const L = (inp: Float64Array[]) => {
    const y = c.ref(inp);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += y[i]! * r[i]!;
    return s;
  };
  const pick = rng(SEED + 17);
  const h = 1e-5;
  xs.forEach((x, i) => {
    if (c.inputs[i]!.grad === false) return;
    const g = refGrads[i]!;
    const probes = Math.min(c.fdProbes ?? 24, x.length);
    for (let p = 0; p < probes; p++) {
      const j = Math.floor(pick() * x.length);
      const plus = xs.map((v) => v.slice());
      const minus = xs.map((v) => v.slice());
      plus[i]![j]! += h;
      minus[i]![j]! -= h;
      const fd = (L(plus) - L(minus)) / (2 * h);
      if (!(Math.abs(fd - g[j]!) <= 1e-6 * (1 + Math.abs(g[j]!)))) {
        throw new Error(`${c.name}: reference gradient of input ${i} at ${j} is ${g[j]}, finite differences give ${fd} (TEST_SEED=${SEED})`);
      }
    }
  });
}

/**
 * Checks a module's gradients against finite differences on the GPU: for the input and for every
 * parameter, the directional derivative of L = Σ f(x)·r along a random unit direction d, by central
 * differences (L(θ + h d) - L(θ - h d)) / 2h, against Σ ∇L·d from grad(). In f32, the difference of
 * two losses carries rounding of ~1e-7·Σ|f·r| each, divided by 2h = 2e-2: the tolerance is that
 * noise (times 20) plus 1% of the derivative for the O(h²) truncation. `params` picks the parameters
 * to check (all by default).
 */
export async function checkModule(d: Device, name: string, m: Module, inputs: Tensor[], f: (xs: Tensor[]) => Tensor, opts: { inputGrad?: boolean[]; params?: (name: string) => boolean } = {}) {
  const params = m.namedParameters().filter(([n]) => opts.params?.(n) ?? true);
  const diffable = inputs.map((t, i) => (opts.inputGrad?.[i] ?? t.dtype === 'f32'));
  const xs = inputs.map((t, i) => (diffable[i] ? new Tensor(t.data, true) : t));
  const y0 = f(xs);
  const r = d.tensor(Float32Array.from(randn(y0.size)), y0.shape);
  const lossOf = () => sum(mul(f(xs), r));
  const wrt: [string, Tensor][] = [...xs.map((x, i) => [`input ${i}`, x] as [string, Tensor]).filter((_, i) => diffable[i]), ...params];
  const grads = grad(lossOf(), wrt.map(([, t]) => t));
  const absL = async () => {
    const ay = abs(mul(f(xs), r));
    return (await sum(ay).item()) as number;
  };
  const scale = await absL();
  const h = 1e-2;
  for (let k = 0; k < wrt.length; k++) {
    const [pname, t] = wrt[k]!;
    const base = (await t.read()) as Float32Array;
    const dir = Float64Array.from(randn(t.size));
    const norm = Math.sqrt(dir.reduce((s, v) => s + v * v, 0));
    const g = (await grads[k]!.read()) as Float32Array;
    const analytic = g.reduce((s, v, i) => s + v * (dir[i]! / norm), 0);
    const orig = t.data;
    const at = async (sign: number) => {
      t.rebind(d.tensor(base.map((v, i) => v + (sign * h * dir[i]!) / norm), t.shape).data);
      return (await lossOf().item()) as number;
    };
    const fd = ((await at(1)) - (await at(-1))) / (2 * h);
    t.rebind(orig);
    const tol = (20 * 1.2e-7 * scale) / (2 * h) + 1e-2 * Math.abs(analytic);
    if (!(Math.abs(fd - analytic) <= tol)) {
      throw new Error(`${name}: d/d(${pname}) along a random direction: finite differences ${fd}, grad() ${analytic} (tolerance ${tol.toExponential(2)}; TEST_SEED=${SEED})`);
    }
  }
}

