import type { Device } from '../graph/device.js';
import { Tensor } from '../graph/tensor.js';
import * as ops from '../graph/ops/index.js';
import { ShapeError, fmtShape } from '../runtime/errors.js';
import type { PredictionType } from './process.js';

/** A noise level per sample, on the device: x = a·x0 + b·ε, and the time the network is given. Each [B]. */
export interface LevelTensors {
  a: Tensor;
  b: Tensor;
  time: Tensor;
}

/** Anything that predicts the noise ε in x at a level: a network, or an analytic optimum in tests. */
export type Denoiser = (x: Tensor, level: LevelTensors) => Tensor;

/** What the training step and the samplers need of a network: its output for (c_in·x, time, labels or a context). */
export interface EpsNetwork {
  forward(x: Tensor, t: Tensor, labels?: Tensor | null, context?: Tensor | null): Tensor;
}

/** [B] -> [B, 1, 1, 1] (for any rank of x) so that per-sample numbers broadcast over a sample. */
export function perSample(v: Tensor, like: Tensor): Tensor {
  return v.reshape([v.shape[0]!, ...like.shape.slice(1).map(() => 1)]);
}

/** The network's raw output on x scaled by c_in = 1/sqrt(a² + b²), with that scaled input and c_in [B]. */
export function networkOutput(net: EpsNetwork, x: Tensor, level: LevelTensors, labels: Tensor | null, context: Tensor | null = null): { out: Tensor; xin: Tensor; cin: Tensor } {
  const cin = ops.exp(ops.scale(ops.log(ops.add(ops.square(level.a), ops.square(level.b))), -0.5));
  const xin = ops.mul(x, perSample(cin, x));
  return { out: context ? net.forward(xin, level.time, labels, context) : net.forward(xin, level.time, labels), xin, cin };
}

/**
 * The network's ε̂ with the input scaled by c_in = 1/sqrt(a² + b²) (1 for variance-preserving
 * processes). A network that predicts v or x0 (`prediction`) has its output turned into ε̂: the
 * scaled input is x_VP = α·x0 + σ·ε with α = a·c_in, σ = b·c_in, so ε̂ = α·v̂ + σ·x_VP for v, and
 * ε̂ = (x − a·x̂0)/b for x0.
 */
export function networkEps(net: EpsNetwork, x: Tensor, level: LevelTensors, labels: Tensor | null, prediction: PredictionType = 'epsilon', context: Tensor | null = null): Tensor {
  const { out, xin, cin } = networkOutput(net, x, level, labels, context);
  if (prediction === 'epsilon') return out;
  if (prediction === 'v_prediction') {
    return ops.add(ops.mul(out, perSample(ops.mul(level.a, cin), x)), ops.mul(xin, perSample(ops.mul(level.b, cin), x)));
  }
  return ops.div(ops.sub(x, ops.mul(out, perSample(level.a, x))), perSample(level.b, x));
}

/** Variants of classifier-free guidance; each left out is plain guidance. */
export interface GuidanceVariants {
  /**
   * Guidance rescale φ in [0, 1] (Lin et al. 2024, diffusers' guidance_rescale): the guided ε̂ is
   * scaled per sample to the standard deviation of the conditional ε̂, and mixed with the plain guided
   * one as φ·rescaled + (1 − φ)·guided. Large scales otherwise push samples past the data (over-
   * saturated colours). 0 (the default) is plain guidance.
   */
  guidanceRescale?: number;
  /**
   * Weight η of the guidance update's part parallel to the conditional x̂0 (adaptive projected
   * guidance, Sadat et al. 2025, without its norm threshold and momentum): the guided x̂0 is
   * x̂0_c + (s − 1)·(Δ⊥ + η·Δ∥), Δ = x̂0_c − x̂0_u split per sample along x̂0_c. The parallel part
   * scales x̂0 itself, which at large s pushes samples past the data (over-saturated colours); the
   * orthogonal part carries the condition. 1 (the default) is plain guidance; 0 drops the parallel part.
   */
  guidanceParallel?: number;
  /**
   * Guide only at noise levels σ = b/a in (lo, hi] (Kynkäänniemi et al. 2024, "Applying guidance in a
   * limited interval"); elsewhere the conditional ε̂ alone (s = 1). Guidance at the noisiest levels
   * drives samples away from the data; at the cleanest it has nothing left to do. σ is in units of the
   * data: EDM2's (0.28, 5.42] was chosen for latents of standard deviation 0.5, so for this engine's
   * unit-variance latents it is (0.56, 10.84]. Default: every level.
   */
  guidanceInterval?: readonly [number, number];
}

/** The variants with their defaults filled in, as a run's record (metrics.json, eval.json) states them. */
export function guidanceRecord(v: GuidanceVariants = {}): { guidanceRescale: number; guidanceParallel: number; guidanceInterval: readonly [number, number] | null } {
  return { guidanceRescale: v.guidanceRescale ?? 0, guidanceParallel: v.guidanceParallel ?? 1, guidanceInterval: v.guidanceInterval ?? null };
}

/** A guidance interval written 'lo,hi' (noise levels σ = b/a); errors name the option (`name`). */
export function parseGuidanceInterval(text: string, name: string): [number, number] {
  const parts = text.split(',').map((x) => x.trim());
  const [lo, hi] = parts.map(Number);
  if (parts.length !== 2 || parts.some((x) => x === '') || !(lo! >= 0 && hi! > lo!)) {
    throw new Error(`${name} = '${text}': expected LO,HI with 0 <= LO < HI (noise levels sigma = b/a)`);
  }
  return [lo!, hi!];
}

export interface GuidedDenoiserOptions extends GuidanceVariants {
  /** What the network predicts (the process's predictionType); ε by default. */
  prediction?: PredictionType;
  /**
   * A context for a model conditioned on one (UNet conditioning 'context', diffusers'
   * encoder_hidden_states): [B, L, D], or [1, L, D] for the whole batch; with guidance, `uncond` is the
   * unconditional context (e.g. the empty prompt's), the same shape.
   */
  context?: { cond: Tensor; uncond?: Tensor | null } | null;
  /** Class labels of the batch (host data, B of them); omit for an unconditional model. */
  labels?: Int32Array | null;
  /** The null class of classifier-free guidance (the model's numClasses). */
  nullClass?: number;
  /**
   * Guidance scale s: ε̂ = ε̂_u + s·(ε̂_c - ε̂_u); 1 is the conditional model alone. One number for
   * the batch, or one per sample (a sweep of scales in a single run).
   */
  guidance?: number | readonly number[];
}

/**
 * A network as a sampler's denoiser. With labels and guidance ≠ 1 the conditional and unconditional
 * predictions come from one batched forward of 2B samples (Ho & Salimans 2022). The guidance scale
 * lives in a device tensor so `setGuidance` changes it without recompiling.
 */
export class NetworkDenoiser {
  private readonly labels: Tensor | null;
  private readonly labels2: Tensor | null;
  private readonly scale: Tensor;
  private readonly rescale: number;
  private readonly parallel: number;
  private readonly interval: readonly [number, number] | null;
  private readonly prediction: PredictionType;
  private readonly context: Tensor | null;
  private readonly context2: Tensor | null;
  readonly guided: boolean;
  constructor(
    readonly dev: Device,
    readonly net: EpsNetwork,
    readonly batch: number,
    opts: GuidedDenoiserOptions = {},
  ) {
    const labels = opts.labels ?? null;
    if (labels && labels.length !== batch) throw new ShapeError('sample', `got ${labels.length} labels for a batch of ${batch}`);
    const g = opts.guidance ?? 1;
    const scales = typeof g === 'number' ? new Array<number>(batch).fill(g) : [...g];
    if (scales.length !== batch) throw new ShapeError('sample', `got ${scales.length} guidance scales for a batch of ${batch}`);
    this.prediction = opts.prediction ?? 'epsilon';
    const ctx = opts.context ?? null;
    this.guided = (labels !== null || ctx !== null) && scales.some((s) => s !== 1);
    if (this.guided && labels && opts.nullClass === undefined) throw new Error('sample: classifier-free guidance needs the null class');
    if (this.guided && ctx && !ctx.uncond) throw new Error('sample: classifier-free guidance with a context needs the unconditional context (context.uncond)');
    const fit = (t: Tensor, n: number) => (t.shape[0] === n ? t : ops.concat(Array.from({ length: n }, () => t), 0));
    if (ctx && !(ctx.cond.shape.length === 3 && (ctx.cond.shape[0] === 1 || ctx.cond.shape[0] === batch))) {
      throw new ShapeError('sample', `the context has shape ${fmtShape(ctx.cond.shape)}, expected [${batch}, L, D] or [1, L, D]`);
    }
    this.context = ctx ? fit(ctx.cond, batch) : null;
    this.context2 = ctx && this.guided ? ops.concat([this.context!, fit(ctx.uncond!, batch)], 0) : null;
    this.labels = labels ? dev.tensor(labels, [batch]) : null;
    this.labels2 = this.guided && labels ? dev.tensor(Int32Array.from([...labels, ...new Array<number>(batch).fill(opts.nullClass!)]), [2 * batch]) : null;
    this.scale = dev.tensor(Float32Array.from(scales), [batch]);
    this.rescale = opts.guidanceRescale ?? 0;
    if (!(this.rescale >= 0 && this.rescale <= 1)) throw new ShapeError('sample', `guidance rescale = ${opts.guidanceRescale} must be in [0, 1]`);
    this.parallel = opts.guidanceParallel ?? 1;
    if (!(this.parallel >= 0 && this.parallel <= 1)) throw new ShapeError('sample', `guidance parallel weight η = ${opts.guidanceParallel} must be in [0, 1]`);
    this.interval = opts.guidanceInterval ?? null;
    if (this.interval && !(this.interval.length === 2 && this.interval[0] >= 0 && this.interval[1] > this.interval[0])) {
      throw new ShapeError('sample', `guidance interval [${this.interval.join(', ')}] must be two noise levels σ = b/a with 0 <= lo < hi`);
    }
  }

  /** Change the guidance scales used by steps compiled with this denoiser (only when it was built guided). */
  setGuidance(s: number | readonly number[]): void {
    if (!this.guided) throw new Error('setGuidance: this denoiser was built without guidance (labels and a scale ≠ 1)');
    const values = typeof s === 'number' ? new Float32Array(this.batch).fill(s) : Float32Array.from(s);
    if (values.length !== this.batch) throw new ShapeError('setGuidance', `got ${values.length} scales for a batch of ${this.batch}`);
    const rt = this.dev.rt;
    rt.flush();
    rt.device.queue.writeBuffer(this.scale.data.buffer, this.scale.data.byteOffset, values);
  }

  /** s − 1 per sample [B]: zero outside the guidance interval. */
  private excess(level: LevelTensors): Tensor {
    const excess = ops.affine(this.scale, 1, -1);
    if (!this.interval) return excess;
    const [lo, hi] = this.interval;
    const sigma = ops.div(level.b, level.a);
    // (σ > lo)·(1 − (σ > hi)): σ in (lo, hi].
    const inside = ops.mul(ops.step(ops.affine(sigma, 1, -lo)), ops.affine(ops.step(ops.affine(sigma, 1, -hi)), -1, 1));
    return ops.mul(excess, inside);
  }

  /** The guidance update ε̂_c − ε̂_u, its part along x̂0_c weighted by η when η ≠ 1. */
  private update(ec: Tensor, eu: Tensor, x: Tensor, level: LevelTensors): Tensor {
    const delta = ops.sub(ec, eu);
    return this.parallel === 1 ? delta : projectedUpdate(delta, x, ec, level.b, this.parallel);
  }

  readonly denoise: Denoiser = (x, level) => {
    if (x.shape[0] !== this.batch) throw new ShapeError('sample', `x has shape ${fmtShape(x.shape)}, expected a batch of ${this.batch}`);
    if (!this.guided) return networkEps(this.net, x, level, this.labels, this.prediction, this.context);
    const two = (t: Tensor) => ops.concat([t, t], 0);
    const e = networkEps(this.net, two(x), { a: two(level.a), b: two(level.b), time: two(level.time) }, this.labels2, this.prediction, this.context2);
    const ec = ops.slice(e, 0, this.batch, 0);
    const eu = ops.slice(e, this.batch, this.batch, 0);
    // Plain guidance keeps the form ε̂_u + s·(ε̂_c − ε̂_u) (its rounding, so earlier results reproduce);
    // the variants are written as ε̂_c + (s − 1)·update.
    const guided = this.parallel === 1 && !this.interval
      ? ops.add(eu, ops.mul(ops.sub(ec, eu), perSample(this.scale, x)))
      : ops.add(ec, ops.mul(this.update(ec, eu, x, level), perSample(this.excess(level), x)));
    if (this.rescale === 0) return guided;
    // φ·guided·σ_c/σ_g + (1 − φ)·guided, with σ the standard deviation over each sample.
    const ratio = ops.div(sampleStd(ec), sampleStd(guided));
    return ops.mul(guided, ops.affine(ratio, this.rescale, 1 - this.rescale));
  };
}

/**
 * The ε-space guidance update δ = ε̂_c − ε̂_u with its part along x̂0_c weighted by η. In x̂0 space the
 * update is Δ = −(b/a)·δ and x̂0_c = (x − b·ε̂_c)/a, so splitting Δ along x̂0_c is splitting δ along
 * x − b·ε̂_c (the factors b/a and 1/a drop out of a projection): δ − (1 − η)·⟨δ, u⟩·u with u the unit
 * vector of x − b·ε̂_c, per sample.
 */
function projectedUpdate(delta: Tensor, x: Tensor, ec: Tensor, b: Tensor, eta: number): Tensor {
  const axes = x.shape.map((_, i) => i).slice(1);
  const dir = ops.sub(x, ops.mul(ec, perSample(b, x)));
  const dot = ops.sum(ops.mul(delta, dir), axes, { keepDims: true });
  // 1e-12 keeps 0/0 away where x̂0_c is zero (then there is no parallel part to drop).
  const norm2 = ops.affine(ops.sum(ops.square(dir), axes, { keepDims: true }), 1, 1e-12);
  return ops.sub(delta, ops.mul(dir, ops.scale(ops.div(dot, norm2), 1 - eta)));
}

/** Standard deviation over all axes but the first, kept as [B, 1, ...] (1e-12 under the root keeps 0/0 away). */
function sampleStd(t: Tensor): Tensor {
  const axes = t.shape.map((_, i) => i).slice(1);
  const centred = ops.sub(t, ops.mean(t, axes, { keepDims: true }));
  return ops.sqrt(ops.affine(ops.mean(ops.square(centred), axes, { keepDims: true }), 1, 1e-12));
}
