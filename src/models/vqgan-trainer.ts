import { Tensor, grad, noGrad } from '../graph/tensor.js';
import * as ops from '../graph/ops/index.js';
import type { Device } from '../graph/device.js';
import { CompiledStep } from '../graph/compile.js';
import { Init, parameterShapes } from '../nn/module.js';
import { ParameterSet } from '../nn/params.js';
import { Adam } from '../optim/adam.js';
import { EMA } from '../optim/ema.js';
import { CheckpointData, checkCheckpointTensors, checkpointTensors, decodeCheckpoint, stageCheckpoint, writeArray } from '../io/checkpoint.js';
import { serializeSafetensors } from '../io/safetensors.js';
import { ShapeError, assertKnownKeys, fmtShape } from '../runtime/errors.js';
import { VQGAN, VQGANConfig } from './vqgan.js';
import { DiscriminatorConfig, PatchDiscriminator, generatorLoss, hingeDiscriminatorLoss } from './discriminator.js';
import type { LPIPS } from './lpips.js';

/** Hyper-parameters of VQ-GAN training (taming-transformers' VQLPIPSWithDiscriminator and its defaults). */
export interface VQGANTrainerOptions {
  /** Images per step and their size: every step takes a [batchSize, C, height, width] batch. */
  batchSize: number;
  height: number;
  width: number;
  /** Adam for the autoencoder and for the discriminator (taming: betas 0.5, 0.9, same rate for both). */
  lr: number;
  discLr: number;
  betas: [number, number];
  /** The GAN loss is off before this step (the discriminator is not trained either). */
  discStart: number;
  /** Scales the adaptive weight λ (taming's disc_weight) and the whole GAN term (disc_factor). */
  discWeight: number;
  discFactor: number;
  /** Weight of the quantizer loss (taming's codebook_weight). */
  codebookWeight: number;
  /** Weight of LPIPS in the reconstruction loss when an LPIPS model is given. */
  perceptualWeight: number;
  /** EMA of the autoencoder's weights (0: off). */
  emaDecay: number;
  /** Seeds the discriminator's initial weights and the random key (code restarts). */
  seed: number;
  discriminator: Partial<DiscriminatorConfig>;
  /**
   * 'all' trains the whole autoencoder. 'decoder' trains post_quant_conv and the decoder only: the
   * encoder, quant_conv and the codebook stay as loaded, so every image keeps its latents and codes
   * and a latent diffusion model trained on them stays valid (as Stable Diffusion's ft-EMA/ft-MSE
   * decoders were fine-tuned). No quantizer loss, no codebook upkeep.
   */
  train: 'all' | 'decoder';
}

export const VQGAN_TRAINER_DEFAULTS: Omit<VQGANTrainerOptions, 'batchSize' | 'height' | 'width'> = {
  lr: 1e-4, discLr: 1e-4, betas: [0.5, 0.9], discStart: 10000, discWeight: 0.8, discFactor: 1, codebookWeight: 1,
  perceptualWeight: 1, emaDecay: 0, seed: 0, discriminator: {}, train: 'all',
};

/** δ in λ = ‖∇L_rec‖ / (‖∇L_GAN‖ + δ), and the clamp of λ, as taming's calculate_adaptive_weight. */
export const ADAPTIVE_DELTA = 1e-4;
export const ADAPTIVE_MAX = 1e4;

export interface VQGANStepOutputs {
  [name: string]: Tensor;
  /** The autoencoder's objective: L_rec + λ·discFactor·L_GAN + codebookWeight·L_q. */
  loss: Tensor;
  l1: Tensor;
  /** 10·log10(4 / MSE) of the batch, reconstructions clipped to [-1, 1] (images span [-1, 1]). */
  psnr: Tensor;
  qloss: Tensor;
  perplexity: Tensor;
  codesUsed: Tensor;
  codesRecent: Tensor;
}

export interface VQGANStats {
  step: number;
  loss: number;
  l1: number;
  psnr: number;
  /** LPIPS term (null without LPIPS). */
  perceptual: number | null;
  /** Quantizer loss: codebook + β·commitment ('gradient'); β·commitment ('ema'). */
  qloss: number;
  perplexity: number;
  /** Share of codes used in the last batch, and within the last max(restartAfter, 1) steps. */
  codesUsed: number;
  codesRecent: number;
  /** Adaptive weight (with discWeight), generator and discriminator losses; null before discStart. */
  lambda: number | null;
  gLoss: number | null;
  dLoss: number | null;
}

/** The adaptive weight λ = clamp(‖g_rec‖ / (‖g_gan‖ + δ), 0, 10⁴)·w on the device (no gradient). */
export function adaptiveWeight(gRec: Tensor, gGan: Tensor, weight: number): Tensor {
  const norm = (g: Tensor) => ops.sqrt(ops.sum(ops.square(g)));
  const ratio = ops.div(norm(gRec), ops.affine(norm(gGan), 1, ADAPTIVE_DELTA));
  // ratio >= 0 already; min(ratio, MAX) = ratio − relu(ratio − MAX), exact below MAX (MAX − relu(MAX − ratio)
  // would round ratio to the f32 spacing near 10⁴, ~1e-3).
  return ops.scale(ops.sub(ratio, ops.relu(ops.affine(ratio, 1, -ADAPTIVE_MAX))), weight);
}

/** Clip to [-1, 1]: x − relu(x − 1) + relu(−x − 1). */
function clip1(x: Tensor): Tensor {
  return ops.add(ops.sub(x, ops.relu(ops.affine(x, 1, -1))), ops.relu(ops.affine(x, -1, -1)));
}

/**
 * Trains a VQGAN as taming-transformers does: L1 reconstruction (+ LPIPS when given), the quantizer
 * loss, and from `discStart` a patch discriminator with hinge loss whose generator term is weighted by
 * the adaptive λ taken at the decoder's last layer. Each step is one compiled command buffer with no
 * readback: the autoencoder's and the discriminator's gradients are both taken from the same forward
 * (simultaneous updates; taming alternates, re-running the autoencoder for the discriminator's step),
 * then both Adams, the weight EMA and the codebook upkeep (EMA codes, restarts) run on the device.
 */
export class VQGANTrainer {
  readonly options: VQGANTrainerOptions;
  readonly params: ParameterSet;
  /** Weights the optimizer does not touch but the checkpoint keeps: the EMA codebook; in 'decoder' mode the encoder side too. */
  readonly frozen: [string, Tensor][];
  readonly optimizer: Adam;
  readonly ema: EMA | null;
  readonly discriminator: PatchDiscriminator;
  readonly discParams: ParameterSet;
  readonly discOptimizer: Adam;
  /** The run's random key (seed, counter), advanced every step. */
  readonly key: Tensor;
  /** Steps done so far. */
  steps = 0;
  private warmStep: CompiledStep<VQGANStepOutputs> | null = null;
  private ganStep: CompiledStep<VQGANStepOutputs> | null = null;
  private last: VQGANStepOutputs | null = null;

  private constructor(
    readonly dev: Device,
    readonly vqgan: VQGAN,
    options: Partial<VQGANTrainerOptions> & Pick<VQGANTrainerOptions, 'batchSize' | 'height' | 'width'>,
    readonly lpips: LPIPS | null,
  ) {
    assertKnownKeys('VQGANTrainer', options, [...Object.keys(VQGAN_TRAINER_DEFAULTS), 'batchSize', 'height', 'width']);
    const o = (this.options = { ...VQGAN_TRAINER_DEFAULTS, ...options });
    const bad = (field: string, why: string) => new ShapeError('VQGANTrainer', `options.${field} = ${JSON.stringify((o as unknown as Record<string, unknown>)[field])}: ${why}`);
    for (const f of ['batchSize', 'height', 'width'] as const) if (!Number.isInteger(o[f]) || o[f] < 1) throw bad(f, 'must be an integer >= 1');
    vqgan.latentShape([o.batchSize, vqgan.config.inChannels, o.height, o.width]); // names f if the size does not fit
    for (const f of ['lr', 'discLr'] as const) if (!(o[f] > 0)) throw bad(f, 'must be > 0');
    for (const f of ['discWeight', 'discFactor', 'codebookWeight', 'perceptualWeight'] as const) if (!(o[f] >= 0 && Number.isFinite(o[f]))) throw bad(f, 'must be a finite number >= 0');
    if (!Number.isInteger(o.discStart) || o.discStart < 0) throw bad('discStart', 'must be an integer >= 0 (a step number)');
    if (!(o.emaDecay >= 0 && o.emaDecay < 1)) throw bad('emaDecay', 'must be in [0, 1); 0 turns the weight EMA off');
    if (o.train !== 'all' && o.train !== 'decoder') throw bad('train', "allowed values: 'all', 'decoder'");
    // In EMA mode the codebook is no parameter of the optimizer: its own update writes it.
    const trained = ([n, t]: [string, Tensor]) => o.train === 'decoder'
      ? /^(post_quant_conv|decoder)\./.test(n)
      : !(vqgan.quantizer.ema && t === vqgan.quantizer.codebook);
    const named = vqgan.namedParameters();
    this.params = new ParameterSet(named.filter(trained));
    this.frozen = named.filter((p) => !trained(p));
    this.optimizer = new Adam(this.params, { lr: o.lr, betas: o.betas });
    this.ema = o.emaDecay > 0 ? new EMA(this.params, o.emaDecay) : null;
    this.discriminator = new PatchDiscriminator(new Init(dev, o.seed + 1), { inChannels: vqgan.config.outChannels, ...o.discriminator });
    if (this.discriminator.outputSize(Math.min(o.height, o.width)) < 1) {
      throw new ShapeError('VQGANTrainer', `images of ${o.height}x${o.width} are too small for a discriminator with ${this.discriminator.config.layers} layers; set options.discriminator.layers lower`);
    }
    this.discParams = new ParameterSet(this.discriminator.namedParameters());
    this.discOptimizer = new Adam(this.discParams, { lr: o.discLr, betas: o.betas });
    this.key = dev.randomKey(o.seed + 2);
  }

  /** A trainer for `vqgan` with compiled steps ready; pass an LPIPS model to add the perceptual loss. */
  static async create(
    dev: Device, vqgan: VQGAN,
    options: Partial<VQGANTrainerOptions> & Pick<VQGANTrainerOptions, 'batchSize' | 'height' | 'width'>,
    extras: { lpips?: LPIPS | null } = {},
  ): Promise<VQGANTrainer> {
    const t = new VQGANTrainer(dev, vqgan, options, extras.lpips ?? null);
    const spec = [{ shape: t.batchShape }];
    // The step before discStart has no discriminator at all; compile only the steps that will run.
    if (t.options.discStart > 0) t.warmStep = await dev.compile((x: Tensor) => t.trace(x, false), spec);
    t.ganStep = await dev.compile((x: Tensor) => t.trace(x, true), spec);
    return t;
  }

  /** A trainer (and its VQGAN) rebuilt from a checkpoint's config and loaded from it. */
  static async fromCheckpoint(dev: Device, data: Uint8Array | CheckpointData, extras: { lpips?: LPIPS | null } = {}): Promise<VQGANTrainer> {
    const ck = data instanceof Uint8Array ? decodeCheckpoint(data) : data;
    const c = ck.config as { vqgan?: Partial<VQGANConfig>; trainer?: VQGANTrainerOptions };
    if (!c.vqgan || !c.trainer) throw new Error('VQGANTrainer.fromCheckpoint: the checkpoint has no vqgan/trainer config in its header (was it written by VQGANTrainer.checkpoint()?)');
    // The autoencoder's weights are checked against the config before anything is built or compiled.
    checkCheckpointTensors(ck, parameterShapes(dev, (init) => new VQGAN(init, c.vqgan!)), 'VQ-GAN checkpoint');
    const vqgan = new VQGAN(new Init(dev, 0), c.vqgan);
    const t = await VQGANTrainer.create(dev, vqgan, c.trainer, extras);
    t.load(ck);
    return t;
  }

  get batchShape(): number[] {
    const o = this.options;
    return [o.batchSize, this.vqgan.config.inChannels, o.height, o.width];
  }

  /** One training step (traced once per variant). */
  private trace(x: Tensor, gan: boolean): VQGANStepOutputs {
    const o = this.options;
    const vq = this.vqgan;
    const decoderOnly = o.train === 'decoder';
    // A frozen encoder and codebook need no graph: the decoder's gradients start at the (fixed) codes.
    const z = decoderOnly ? noGrad(() => vq.encode(x)) : vq.encode(x);
    const q = decoderOnly ? noGrad(() => vq.quantize(z)) : vq.quantize(z);
    const xrec = vq.decode(q.zq, { quantize: false });
    const l1 = ops.mean(ops.abs(ops.sub(x, xrec)));
    let nll = l1;
    let perceptual: Tensor | null = null;
    if (this.lpips && o.perceptualWeight > 0) {
      perceptual = ops.mean(this.lpips.forward(x, xrec));
      nll = ops.add(l1, ops.scale(perceptual, o.perceptualWeight));
    }
    // The quantizer loss moves only the encoder and the codebook: no term in 'decoder' mode.
    const withQ = (t: Tensor) => (decoderOnly ? t : ops.add(t, ops.scale(q.loss, o.codebookWeight)));
    const out: Record<string, Tensor> = {};
    let gradsG: Tensor[];
    let gradsD: Tensor[] | null = null;
    if (!gan) {
      const loss = withQ(nll);
      gradsG = grad(loss, this.params.tensors);
      out.loss = loss;
    } else {
      const logitsFake = this.discriminator.forward(xrec);
      const gLoss = generatorLoss(logitsFake);
      // λ from the gradients of L_rec and L_GAN at the decoder's last layer: first each loss's gradient
      // at xrec (L_GAN's through the discriminator, once), then the last conv's weight gradient of each.
      const keep = { retainGraph: true };
      const [gxRec] = grad(nll, [xrec], keep);
      const [gxGan] = grad(gLoss, [xrec], keep);
      const [gwRec] = grad(xrec, [vq.lastLayer], { ...keep, gradOutput: gxRec! });
      const [gwGan] = grad(xrec, [vq.lastLayer], { ...keep, gradOutput: gxGan! });
      const lambda = adaptiveWeight(gwRec!, gwGan!, o.discWeight);
      // The discriminator's gradients reuse D(xrec)'s graph: D's weights get no gradient from the
      // generator's loss, and xrec none from the discriminator's.
      const logitsReal = this.discriminator.forward(x);
      const dLoss = ops.scale(hingeDiscriminatorLoss(logitsReal, logitsFake), o.discFactor);
      gradsD = grad(dLoss, this.discParams.tensors, keep);
      // Σ xrec·sg(g_rec + λ·f·g_gan) + L_q has the autoencoder's gradient of L_rec + λ·f·L_GAN + L_q:
      // one backward through the decoder (and the encoder, unless it is frozen).
      const gx = ops.add(gxRec!, ops.mul(gxGan!, ops.scale(lambda, o.discFactor)));
      gradsG = grad(withQ(ops.sum(ops.mul(xrec, gx))), this.params.tensors);
      Object.assign(out, {
        loss: withQ(ops.add(nll, ops.scale(ops.mul(lambda, gLoss), o.discFactor))),
        lambda, gLoss, dLoss,
      });
    }
    this.optimizer.step(gradsG);
    if (gradsD) this.discOptimizer.step(gradsD);
    this.ema?.update();
    const counts = decoderOnly
      ? noGrad(() => ops.codebookStats(q.indices, z, vq.config.numEmbeddings).counts)
      : vq.quantizer.update(z, q.indices, this.key);
    ops.advanceKey(this.key);
    const usage = vq.quantizer.usage(counts, q.indices.size);
    const mse = ops.mean(ops.square(ops.sub(x, clip1(xrec))));
    const qloss = vq.quantizer.ema ? ops.scale(q.loss, vq.config.beta / (1 + vq.config.beta)) : q.loss;
    return {
      ...out,
      loss: out.loss!,
      l1,
      psnr: ops.affine(ops.log(mse), -10 / Math.LN10, 10 * Math.log10(4)),
      qloss,
      perplexity: usage.perplexity,
      codesUsed: usage.used,
      // A frozen codebook keeps no ages: its recent use is this batch's.
      codesRecent: decoderOnly ? usage.used : usage.recent,
      ...(perceptual ? { perceptual } : {}),
    };
  }

  /**
   * One step on a batch [batchSize, C, height, width] in [-1, 1] (host array or device tensor). Returns
   * the step's loss tensors (overwritten by the next step); nothing is read back.
   */
  step(images: Float32Array | Tensor): VQGANStepOutputs {
    const shape = this.batchShape;
    const n = shape.reduce((a, b) => a * b, 1);
    if (!(images instanceof Tensor) && images.length !== n) throw new ShapeError('VQGANTrainer.step', `the batch has ${images.length} values, expected ${fmtShape(shape)} (${n})`);
    if (images instanceof Tensor && images.size !== n) throw new ShapeError('VQGANTrainer.step', `the batch has shape ${fmtShape(images.shape)}, expected ${fmtShape(shape)}`);
    const s = this.steps < this.options.discStart ? this.warmStep! : this.ganStep!;
    this.last = s.run(images);
    this.steps++;
    return this.last;
  }

  /** The last step's figures, read back (one sync). */
  async stats(): Promise<VQGANStats> {
    const o = this.last;
    if (!o) throw new Error('VQGANTrainer.stats: no step has run yet');
    const names = Object.keys(o);
    const values = await Promise.all(names.map((k) => o[k]!.item()));
    const v = Object.fromEntries(names.map((k, i) => [k, values[i]!]));
    return {
      step: this.steps, loss: v.loss!, l1: v.l1!, psnr: v.psnr!, perceptual: v.perceptual ?? null, qloss: v.qloss!,
      perplexity: v.perplexity!, codesUsed: v.codesUsed!, codesRecent: v.codesRecent!,
      lambda: v.lambda ?? null, gLoss: v.gLoss ?? null, dLoss: v.dLoss ?? null,
    };
  }

  /** Tensors that are state but not in a parameter set: the quantizer's, and the frozen weights. */
  private extraState(): [string, Tensor][] {
    return [...this.vqgan.quantizer.stateTensors('quantize.'), ...this.frozen];
  }

  /**
   * Everything needed to resume exactly, as safetensors: the autoencoder's weights under diffusers'
   * VQModel names (a VQModel state dict), `ema.`, `optimizer.` and `rng.key` as in encodeCheckpoint,
   * the quantizer's state under `quantize.`, the discriminator and its Adam under `loss.discriminator.`
   * (taming's prefix); the configs and the step count in the header.
   */
  async checkpoint(): Promise<Uint8Array> {
    const tensors = await checkpointTensors({ params: this.params, ema: this.ema, optimizer: this.optimizer, key: this.key });
    for (const [n, t] of await checkpointTensors({ params: this.discParams, optimizer: this.discOptimizer })) tensors.set(`loss.discriminator.${n}`, t);
    for (const [n, t] of this.extraState()) tensors.set(n, { shape: t.shape, data: (await t.read()) as Float32Array });
    const config = { kind: 'vqgan', vqgan: this.vqgan.config, discriminator: this.discriminator.config, trainer: this.options, step: this.steps };
    return serializeSafetensors(tensors, { format: 'webgpu-diffusion', config: JSON.stringify(config) });
  }

  /** Load a checkpoint written by `checkpoint()` (same configs); training continues bit for bit. */
  load(data: Uint8Array | CheckpointData): void {
    const ck = data instanceof Uint8Array ? decodeCheckpoint(data) : data;
    // Every part is checked before any is written: a failed load leaves the trainer as it was.
    const writes = [stageCheckpoint(ck, { params: this.params, ema: this.ema, optimizer: this.optimizer, key: this.key })];
    const prefix = 'loss.discriminator.';
    const disc = new Map([...ck.tensors].filter(([n]) => n.startsWith(prefix)).map(([n, t]) => [n.slice(prefix.length), t]));
    writes.push(stageCheckpoint({ tensors: disc, config: {} }, { params: this.discParams, optimizer: this.discOptimizer }));
    for (const [n, t] of this.extraState()) {
      const v = ck.tensors.get(n);
      if (!v || v.data.length !== t.size || !(v.data instanceof Float32Array)) {
        throw new ShapeError('load', `checkpoint ${v ? `has '${n}' of shape ${fmtShape(v.shape)} (${v.dtype})` : `has no tensor '${n}'`}, expected F32 ${fmtShape(t.shape)}`);
      }
      const data = v.data;
      writes.push(() => writeArray(t.rt, t.data, data));
    }
    for (const w of writes) w();
    const step = ck.config.step;
    this.steps = typeof step === 'number' ? step : 0;
  }

  /** Point the autoencoder at its EMA weights (for encoding or sampling); `useTrained()` goes back. */
  useEMA(): void {
    if (!this.ema) throw new Error('VQGANTrainer.useEMA: the trainer keeps no weight EMA (options.emaDecay is 0)');
    this.params.use(this.ema.flat);
  }
  useTrained(): void {
    this.params.use(this.params.flat);
  }
}
