import { Tensor, noGrad } from '../graph/tensor.js';
import * as ops from '../graph/ops/index.js';
import { Init, Module, ModuleList } from '../nn/module.js';
import { ShapeError, assertKnownKeys, fmtShape } from '../runtime/errors.js';

/**
 * A PatchGAN discriminator (Isola et al., 2017) in the shape of taming-transformers'
 * NLayerDiscriminator: conv 4x4 stride 2 + LeakyReLU(0.2), then `layers − 1` blocks of conv 4x4
 * stride 2 + norm + LeakyReLU with channels doubling up to 8x, one conv 4x4 stride 1 + norm +
 * LeakyReLU, and a conv 4x4 stride 1 to one logit per patch.
 *
 * The engine has no batch norm: `norm: 'group'` uses group norm in its place (per-sample statistics,
 * the same [C] weight and bias, so taming's BatchNorm weight and bias load by name; its running
 * statistics are not used), `norm: 'none'` uses no norm and gives those convolutions a bias.
 */
export interface DiscriminatorConfig {
  inChannels: number;
  /** Channels of the first layer (taming's ndf). */
  channels: number;
  /** Strided layers (taming's n_layers): the output shrinks by about 2^layers. */
  layers: number;
  norm: 'group' | 'none';
  normGroups: number;
}

export const DISCRIMINATOR_DEFAULTS: DiscriminatorConfig = { inChannels: 3, channels: 64, layers: 3, norm: 'group', normGroups: 32 };

export function resolveDiscriminatorConfig(c: Partial<DiscriminatorConfig>): DiscriminatorConfig {
  assertKnownKeys('PatchDiscriminator', c, Object.keys(DISCRIMINATOR_DEFAULTS));
  const cfg: DiscriminatorConfig = { ...DISCRIMINATOR_DEFAULTS, ...c };
  const bad = (field: string, why: string) => new ShapeError('PatchDiscriminator', `config.${field} = ${JSON.stringify((cfg as unknown as Record<string, unknown>)[field])}: ${why}`);
  for (const f of ['inChannels', 'channels', 'layers', 'normGroups'] as const) {
    if (!Number.isInteger(cfg[f]) || cfg[f] < 1) throw bad(f, 'must be an integer >= 1');
  }
  if (!['group', 'none'].includes(cfg.norm)) throw bad('norm', "allowed values: 'group', 'none' (there is no batch norm; group norm takes its place)");
  if (cfg.norm === 'group') {
    for (const ch of discriminatorWidths(cfg).slice(1, -1)) {
      if (ch % cfg.normGroups !== 0) throw bad('normGroups', `must divide the channels of every normalised layer (${discriminatorWidths(cfg).slice(1, -1).join(', ')})`);
    }
  }
  return cfg;
}

/** Output channels of each conv: ndf, then ndf·min(2^n, 8) for n = 1..layers, then 1. */
function discriminatorWidths(cfg: DiscriminatorConfig): number[] {
  const w = [cfg.channels];
  for (let n = 1; n <= cfg.layers; n++) w.push(cfg.channels * Math.min(2 ** n, 8));
  w.push(1);
  return w;
}

/** A 4x4 convolution initialised as taming's weights_init: N(0, 0.02) weights, zero bias. */
export class PatchConv extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(init: Init, cin: number, cout: number, readonly stride: number, bias: boolean) {
    super();
    this.weight = this.param('weight', init.normal([cout, cin, 4, 4], 0.02));
    this.bias = bias ? this.param('bias', init.constant([cout], 0)) : null;
  }
  forward(x: Tensor): Tensor {
    return ops.conv2d(x, this.weight, this.bias, { stride: this.stride, padding: 1 });
  }
}

/** Group norm in batch norm's place, with taming's BatchNorm init: weight N(1, 0.02), bias 0. */
export class PatchNorm extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(init: Init, readonly groups: number, ch: number) {
    super();
    const w = noGrad(() => ops.affine(init.normal([ch], 0.02), 1, 1));
    this.weight = this.param('weight', new Tensor(w.data, true));
    this.bias = this.param('bias', init.constant([ch], 0));
  }
  forward(x: Tensor): Tensor {
    return ops.groupNorm(x, this.groups, this.weight, this.bias);
  }
}

/** LeakyReLU(0.2) = 0.2·x + 0.8·relu(x); no parameters (it holds a place in `main`, as in taming). */
export class LeakyReLU extends Module {
  forward(x: Tensor): Tensor {
    return leakyRelu(x, 0.2);
  }
}

export function leakyRelu(x: Tensor, slope: number): Tensor {
  return ops.add(ops.scale(x, slope), ops.scale(ops.relu(x), 1 - slope));
}

export class PatchDiscriminator extends Module {
  readonly config: DiscriminatorConfig;
  /** taming's `main` Sequential: conv, LeakyReLU, (conv, norm, LeakyReLU)×layers, conv. */
  readonly main = this.child('main', new ModuleList<Module>());
  private readonly layers: { forward(x: Tensor): Tensor }[] = [];

  constructor(init: Init, config: Partial<DiscriminatorConfig> = {}) {
    super();
    const cfg = (this.config = resolveDiscriminatorConfig(config));
    const w = discriminatorWidths(cfg);
    const norm = cfg.norm === 'group';
    const add = <M extends Module & { forward(x: Tensor): Tensor }>(m: M) => this.layers.push(this.main.push(m) as M);
    add(new PatchConv(init, cfg.inChannels, w[0]!, 2, true));
    add(new LeakyReLU());
    for (let n = 1; n <= cfg.layers; n++) {
      add(new PatchConv(init, w[n - 1]!, w[n]!, n < cfg.layers ? 2 : 1, !norm));
      if (norm) add(new PatchNorm(init, cfg.normGroups, w[n]!));
      add(new LeakyReLU());
    }
    add(new PatchConv(init, w[cfg.layers]!, 1, 1, true));
  }

  /** The side of the logit map for images of side s (each 4x4 conv with padding 1: stride 2 halves, stride 1 takes one away). */
  outputSize(s: number): number {
    for (let n = 0; n < this.config.layers; n++) s = Math.floor((s + 2 - 4) / 2) + 1;
    return s - 2;
  }

  /** Logits [B, 1, h', w'], one per patch: positive for "real". */
  forward(x: Tensor): Tensor {
    const [, c, h, w] = x.shape as [number, number, number, number];
    if (x.shape.length !== 4 || c !== this.config.inChannels) throw new ShapeError('PatchDiscriminator', `x has shape ${fmtShape(x.shape)}, expected [B, ${this.config.inChannels}, H, W]`);
    if (this.outputSize(Math.min(h, w)) < 1) {
      throw new ShapeError('PatchDiscriminator', `images of ${h}x${w} are too small for ${this.config.layers} layers (the logit map would be empty); use fewer layers or larger images`);
    }
    let y = x;
    for (const l of this.layers) y = l.forward(y);
    return y;
  }
}

/** Hinge loss of the discriminator (taming's hinge_d_loss): ½·(mean(relu(1 − real)) + mean(relu(1 + fake))). */
export function hingeDiscriminatorLoss(logitsReal: Tensor, logitsFake: Tensor): Tensor {
  const real = ops.mean(ops.relu(ops.affine(logitsReal, -1, 1)));
  const fake = ops.mean(ops.relu(ops.affine(logitsFake, 1, 1)));
  return ops.scale(ops.add(real, fake), 0.5);
}

/** The generator's adversarial loss: −mean(D(fake)). */
export function generatorLoss(logitsFake: Tensor): Tensor {
  return ops.scale(ops.mean(logitsFake), -1);
}
