import { Tensor, noGrad } from '../graph/tensor.js';
import { ShapeError, fmtShape } from '../runtime/errors.js';
import { compileStep } from '../graph/compile.js';
import { VQGAN, VQGANConfig } from './vqgan.js';
import type { Device } from '../graph/device.js';
import { Init, parameterShapes } from '../nn/module.js';
import { ParameterSet } from '../nn/params.js';
import { checkCheckpointTensors, type CheckpointData } from '../io/checkpoint.js';

/** Runs a compiled map over a dataset in batches; the last partial batch is padded with copies of its last item. */
async function mapBatches(
  vqgan: VQGAN, fn: (x: Tensor) => Tensor, data: Float32Array, shape: readonly number[], batch: number, outItem: readonly number[], what: string,
): Promise<Float32Array> {
  const [n, ...item] = shape as [number, ...number[]];
  const inSize = item.reduce((a, b) => a * b, 1);
  if (shape.length !== 4 || data.length !== n * inSize) throw new ShapeError(what, `data has ${data.length} values for shape ${fmtShape(shape)}; expected [N, C, H, W] with N·C·H·W values`);
  if (!Number.isInteger(batch) || batch < 1) throw new ShapeError(what, `batch must be an integer >= 1, got ${batch}`);
  const b = Math.min(batch, n);
  const outSize = outItem.reduce((a, c) => a * c, 1);
  const out = new Float32Array(n * outSize);
  if (n === 0) return out;
  const rt = vqgan.lastLayer.rt;
  const step = await compileStep(rt, (x: Tensor) => noGrad(() => fn(x)), [{ shape: [b, ...item] }]);
  const buf = new Float32Array(b * inSize);
  try {
    for (let at = 0; at < n; at += b) {
      const m = Math.min(b, n - at);
      buf.set(data.subarray(at * inSize, (at + m) * inSize));
      for (let i = m; i < b; i++) buf.copyWithin(i * inSize, (m - 1) * inSize, m * inSize);
      const y = (await step.run(buf).read()) as Float32Array;
      out.set(y.subarray(0, m * outSize), at * outSize);
    }
  } finally {
    step.destroy();
  }
  return out;
}

/**
 * Pre-quantisation latents z [N, D, H/f, W/f] of images [N, C, H, W] (in [-1, 1]), as LDM trains its
 * diffusion model on: one compiled encoder step run over batches of `batch`. Returns the latents and
 * their shape.
 */
export async function encodeDataset(vqgan: VQGAN, images: Float32Array, shape: readonly number[], batch = 16): Promise<{ latents: Float32Array; shape: number[] }> {
  const zShape = vqgan.latentShape(shape);
  const latents = await mapBatches(vqgan, (x) => vqgan.encode(x), images, shape, batch, zShape.slice(1), 'encodeDataset');
  return { latents, shape: zShape };
}

/**
 * Images [N, C, H·f, W·f] from latents [N, D, H, W]: quantised to the nearest codes first (unless
 * `quantize: false`), then decoded, in batches of `batch` with one compiled step.
 */
export async function decodeLatents(
  vqgan: VQGAN, latents: Float32Array, shape: readonly number[], batch = 16, opts: { quantize?: boolean } = {},
): Promise<{ images: Float32Array; shape: number[] }> {
  const d = vqgan.config.embedDim;
  const f = vqgan.factor;
  if (shape.length !== 4 || shape[1] !== d) throw new ShapeError('decodeLatents', `latents have shape ${fmtShape(shape)}, expected [N, ${d}, h, w]`);
  const imShape = [shape[0]!, vqgan.config.outChannels, shape[2]! * f, shape[3]! * f];
  const images = await mapBatches(vqgan, (z) => vqgan.decode(z, opts), latents, shape, batch, imShape.slice(1), 'decodeLatents');
  return { images, shape: imShape };
}

/**
 * A VQ-GAN for encoding and decoding, from a checkpoint written by VQGANTrainer.state(): the
 * weight EMA when the checkpoint has one (and `ema` is not false), else the trained weights; the
 * codebook as trained (in EMA-codebook mode it is stored beside the weights).
 */
export function loadVQGAN(dev: Device, ck: CheckpointData, opts: { ema?: boolean } = {}): VQGAN {
  const c = ck.config as { kind?: string; vqgan?: Partial<VQGANConfig> };
  if (!c.vqgan) throw new ShapeError('load', `this checkpoint is not a VQ-GAN (its config has ${c.kind ? `kind '${c.kind}'` : 'no vqgan section'}); write one with wgd train-vqgan`);
  const useEma = opts.ema !== false;
  const pick = (n: string) => (useEma ? ck.tensors.get(`ema.${n}`) : undefined) ?? ck.tensors.get(n);
  // Checked against the config's model before that model is built (see parameterShapes).
  checkCheckpointTensors(ck, parameterShapes(dev, (init) => new VQGAN(init, c.vqgan!)), 'VQ-GAN checkpoint', pick);
  const vqgan = new VQGAN(new Init(dev, 0), c.vqgan);
  vqgan.eval();
  const params = new ParameterSet(vqgan.namedParameters());
  const values = new Map<string, { shape: readonly number[]; data: Float32Array }>();
  for (const n of params.names) {
    const t = (useEma ? ck.tensors.get(`ema.${n}`) : undefined) ?? ck.tensors.get(n);
    if (t && t.data instanceof Float32Array) values.set(n, { shape: t.shape, data: t.data });
  }
  params.write(values, params.flat, 'VQ-GAN checkpoint');
  return vqgan;
}
