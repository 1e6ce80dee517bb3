import { Tensor } from '../graph/tensor.js';
import * as ops from '../graph/ops/index.js';
import { Init, Module, ModuleList } from '../nn/module.js';
import { Conv2d } from '../nn/layers.js';
import type { Device } from '../graph/device.js';
import { ShapeError, fmtShape } from '../runtime/errors.js';

/**
 * LPIPS (Zhang et al., 2018) with a VGG16 trunk, as taming-transformers uses for its perceptual loss:
 * the scaling layer, VGG16's conv stages up to relu1_2, relu2_2, relu3_3, relu4_3, relu5_3, each
 * feature map unit-normalised over channels, squared differences weighted per channel by the
 * linear heads lin0..lin4 (1x1 convs without bias), averaged over space and summed over stages.
 *
 * Nothing is downloaded: the weights come from safetensors the user supplies (`loadLPIPSWeights`).
 * The widths are configurable only so that tests can run a tiny network; real weights need VGG16's.
 */
export interface LPIPSConfig {
  /** Channels of each stage (VGG16: 64, 128, 256, 512, 512). */
  channels: number[];
  /** 3x3 convs per stage (VGG16: 2, 2, 3, 3, 3). */
  convsPerStage: number[];
}

export const VGG16_LPIPS: LPIPSConfig = { channels: [64, 128, 256, 512, 512], convsPerStage: [2, 2, 3, 3, 3] };

// LPIPS's ScalingLayer: inputs in [-1, 1] become (x − shift) / scale.
const SHIFT = [-0.03, -0.088, -0.188];
const SCALE = [0.458, 0.448, 0.45];

/** Index in torchvision's vgg16().features of each conv, and the stage it belongs to. */
function vggLayout(cfg: LPIPSConfig): { index: number; stage: number; cin: number; cout: number }[] {
  const out: { index: number; stage: number; cin: number; cout: number }[] = [];
  let idx = 0;
  let cin = 3;
  cfg.channels.forEach((ch, s) => {
    if (s > 0) idx++; // the max pool before this stage
    for (let j = 0; j < cfg.convsPerStage[s]!; j++) {
      out.push({ index: idx, stage: s, cin, cout: ch });
      cin = ch;
      idx += 2; // conv, ReLU
    }
  });
  return out;
}

/** 2x2 max pooling with stride 2, from slices and max(a, b) = (a + b)/2 + |a − b|/2 (ties split the gradient). */
export function maxPool2x(x: Tensor): Tensor {
  const [n, c, h, w] = x.shape as [number, number, number, number];
  if (x.shape.length !== 4 || h % 2 !== 0 || w % 2 !== 0) throw new ShapeError('maxPool2x', `x has shape ${fmtShape(x.shape)}, expected [N, C, H, W] with even H and W`);
  const x6 = x.reshape([n, c, h / 2, 2, w / 2, 2]);
  const max = (a: Tensor, b: Tensor) => ops.add(ops.scale(ops.add(a, b), 0.5), ops.scale(ops.abs(ops.sub(a, b)), 0.5));
  const row = (i: number) => max(ops.slice(ops.slice(x6, i, 1, 3), 0, 1, 5), ops.slice(ops.slice(x6, i, 1, 3), 1, 1, 5));
  return max(row(0), row(1)).reshape([n, c, h / 2, w / 2]);
}

/** LPIPS's NetLinLayer: model.0 is dropout (off here), model.1 a 1x1 conv to one channel without bias. */
class NetLinLayer extends Module {
  readonly conv: Conv2d;
  constructor(init: Init, ch: number) {
    super();
    const model = this.child('model', new ModuleList<Module>());
    model.push(new (class extends Module {})());
    this.conv = model.push(new Conv2d(init, ch, 1, 1, { bias: false })) as Conv2d;
  }
}

/** The VGG trunk, its convs named as in LPIPS's vgg16: slice{stage+1}.{index in features}. */
class VGGTrunk extends Module {
  readonly convs: { conv: Conv2d; stage: number; index: number }[] = [];
  constructor(init: Init, cfg: LPIPSConfig) {
    super();
    const slices = cfg.channels.map((_, s) => this.child(`slice${s + 1}`, new SliceModule()));
    for (const l of vggLayout(cfg)) {
      const conv = new Conv2d(init, l.cin, l.cout, 3, { padding: 1 });
      slices[l.stage]!.add(String(l.index), conv);
      this.convs.push({ conv, stage: l.stage, index: l.index });
    }
  }
}

class SliceModule extends Module {
  add(name: string, m: Module): void {
    this.child(name, m);
  }
}

export class LPIPS extends Module {
  readonly config: LPIPSConfig;
  readonly net: VGGTrunk;
  readonly lins: NetLinLayer[] = [];
  private readonly shift: Tensor;
  private readonly scale: Tensor;

  constructor(init: Init, config: LPIPSConfig = VGG16_LPIPS) {
    super();
    if (config.channels.length === 0 || config.channels.length !== config.convsPerStage.length || config.convsPerStage.some((k) => !Number.isInteger(k) || k < 1)) {
      throw new ShapeError('LPIPS', `config has ${config.channels.length} stage widths and ${config.convsPerStage.length} conv counts; expected the same number (>= 1) of each, counts >= 1`);
    }
    this.config = config;
    this.net = this.child('net', new VGGTrunk(init, config));
    config.channels.forEach((ch, s) => this.lins.push(this.child(`lin${s}`, new NetLinLayer(init, ch))));
    this.shift = init.dev.tensor(Float32Array.from(SHIFT), [1, 3, 1, 1]);
    this.scale = init.dev.tensor(Float32Array.from(SCALE.map((v) => 1 / v)), [1, 3, 1, 1]);
  }

  /** The normalised feature map of each stage of images x [B, 3, H, W] in [-1, 1]. */
  features(x: Tensor): Tensor[] {
    let h = ops.mul(ops.sub(x, this.shift), this.scale);
    const out: Tensor[] = [];
    let stage = 0;
    for (const { conv, stage: s } of this.net.convs) {
      if (s !== stage) {
        out.push(unitNormalize(h));
        h = maxPool2x(h);
        stage = s;
      }
      h = ops.relu(conv.forward(h));
    }
    out.push(unitNormalize(h));
    return out;
  }

  /** Perceptual distance of each pair of images, [B, 1, 1, 1] (x and y [B, 3, H, W] in [-1, 1]). */
  forward(x: Tensor, y: Tensor): Tensor {
    const stages = this.config.channels.length;
    const [b, c, h, w] = x.shape as [number, number, number, number];
    if (x.shape.length !== 4 || c !== 3 || y.shape.join() !== x.shape.join() || h % 2 ** (stages - 1) !== 0 || w % 2 ** (stages - 1) !== 0) {
      throw new ShapeError('LPIPS', `got ${fmtShape(x.shape)} and ${fmtShape(y.shape)}; expected two [B, 3, H, W] with H and W multiples of ${2 ** (stages - 1)} (${stages} stages)`);
    }
    const fx = this.features(x);
    const fy = this.features(y);
    let total: Tensor | null = null;
    fx.forEach((a, s) => {
      const d = ops.square(ops.sub(a, fy[s]!));
      const v = ops.mean(this.lins[s]!.conv.forward(d), [2, 3], { keepDims: true });
      total = total ? ops.add(total, v) : v;
    });
    return total!.reshape([b, 1, 1, 1]);
  }
}

/**
 * x / (‖x‖ over channels + 1e-10), as LPIPS's normalize_tensor, with the norm taken as
 * sqrt(Σx² + 1e-20): the same value to f32 precision, but a finite gradient where every channel is 0
 * (after a ReLU that happens; sqrt's derivative at 0 would give 0·∞ = NaN, in PyTorch too).
 */
function unitNormalize(x: Tensor): Tensor {
  const norm = ops.sqrt(ops.affine(ops.sum(ops.square(x), 1, { keepDims: true }), 1, 1e-20));
  return ops.div(x, ops.affine(norm, 1, 1e-10));
}

/** A tensor as the loader receives it (safetensors gives these). */
export interface NamedArray {
  shape: readonly number[];
  data: Float32Array | Int32Array;
}

/**
 * Load LPIPS weights by name into `lpips` from one or more maps (e.g. parsed safetensors files).
 * VGG convs are found under torchvision's names (`features.{i}.weight`, `.bias`), LPIPS's
 * (`net.slice{s}.{i}.weight`) or taming's (`perceptual_loss.net.slice{s}.{i}.weight`); the heads under
 * `lin{s}.model.1.weight` (optionally with the `perceptual_loss.` prefix). Every tensor must be there with
 * its exact shape; an error names the tensor, the names tried and both shapes.
 */
export function loadLPIPSWeights(lpips: LPIPS, ...sources: ReadonlyMap<string, NamedArray>[]): void {
  const rt = lpips.lins[0]!.conv.weight.rt;
  const find = (what: string, names: string[], shape: readonly number[]) => {
    for (const n of names) {
      for (const src of sources) {
        const t = src.get(n);
        if (!t) continue;
        if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
          throw new ShapeError('LPIPS', `tensor '${n}' (${what}) has shape ${fmtShape(t.shape)} in the file, the model needs ${fmtShape(shape)}`);
        }
        if (!(t.data instanceof Float32Array)) throw new ShapeError('LPIPS', `tensor '${n}' (${what}) is an integer tensor; expected floats`);
        return t.data;
      }
    }
    throw new ShapeError('LPIPS', `no tensor for ${what} ${fmtShape(shape)}; looked for ${names.map((n) => `'${n}'`).join(', ')}`);
  };
  const set = (t: Tensor, data: Float32Array) => t.rebind(rt.upload(data, t.shape, 'LPIPS'));
  for (const { conv, stage, index } of lpips.net.convs) {
    for (const p of ['weight', 'bias'] as const) {
      const names = [`features.${index}.${p}`, `net.slice${stage + 1}.${index}.${p}`, `perceptual_loss.net.slice${stage + 1}.${index}.${p}`];
      set(conv[p]!, find(`VGG conv ${index} ${p}`, names, conv[p]!.shape));
    }
  }
  lpips.lins.forEach((l, s) => {
    const names = [`lin${s}.model.1.weight`, `perceptual_loss.lin${s}.model.1.weight`];
    set(l.conv.weight, find(`LPIPS head lin${s}`, names, l.conv.weight.shape));
  });
}

/** A frozen LPIPS for the perceptual loss, loaded from user-supplied weights (VGG16 widths by default). */
export function createLPIPS(dev: Device, sources: ReadonlyMap<string, NamedArray>[], config: LPIPSConfig = VGG16_LPIPS): LPIPS {
  const lpips = new LPIPS(new Init(dev, 0), config);
  loadLPIPSWeights(lpips, ...sources);
  return lpips;
}
