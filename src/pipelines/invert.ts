// DDIM inversion of images, browser-safe: a pixel model inverts the images themselves; a latent model
// encodes them with its VQ-GAN first (the pre-quantisation latents times the checkpoint's latent scale,
// as its training set was made) and inverts the latents. The reconstruction is DDIM sampling from that
// x_T on the same grid, decoded as the model's samples are (its first stage's decoder).
import type { Device } from '../graph/device.js';
import { encodeDataset } from '../models/vqgan-latents.js';
import { ShapeError, fmtShape } from '../runtime/errors.js';
import { generate } from '../diffusion/generate.js';
import { ddimGridOptions, invertDDIM, type InversionResult, type InvertOptions } from '../diffusion/invert.js';
import type { SamplerOptions } from '../diffusion/samplers/index.js';
import type { DiffusionModel, Shape4 } from './latent.js';

/** Images per compiled encode step (as latent.ts uses). */
const BATCH = 32;

/** The images [C, H, W] a model takes: its own samples' shape, or for a latent model the images its VQ-GAN was trained on. */
export function modelImageShape(m: DiffusionModel): [number, number, number] {
  const c = m.net.config;
  return m.config.latent ? [...m.config.latent.imageShape] : [c.inChannels, c.sampleSize, c.sampleSize];
}

/** The DDIM grid both directions use: the model's (a diffusers scheduler's spacing, say), then the caller's. */
const gridOf = (m: DiffusionModel, o: SamplerOptions | undefined): SamplerOptions => ({ ...ddimGridOptions(m.samplerDefaults), ...o });

/**
 * DDIM inversion of images [N, C, H, W] in [-1, 1] with a diffusion model (see invertDDIM): a latent
 * model's images are encoded and scaled first. `xT` and `shape` are the model's x_T (latents for a
 * latent model), `x0` what was inverted (the scaled latents, or the images). The model's sampler
 * defaults give the grid only (their clipping is for sampling from noise, and has no inverse).
 */
export async function invertImages(dev: Device, m: DiffusionModel, images: Float32Array, shape: Shape4, opts: InvertOptions): Promise<InversionResult & { x0: Float32Array }> {
  const want = modelImageShape(m);
  if (shape.length !== 4 || shape.slice(1).some((d, i) => d !== want[i])) {
    throw new ShapeError('invertImages', `images have shape ${fmtShape(shape)}; this model takes images [N, ${want.join(', ')}]`);
  }
  if (images.length !== shape.reduce((a, b) => a * b, 1)) throw new ShapeError('invertImages', `${images.length} values do not fill ${fmtShape(shape)}`);
  let x0 = images;
  if (m.firstStage) {
    const scale = m.config.latent!.scale;
    x0 = (await encodeDataset(m.firstStage.vqgan, images, shape, BATCH)).latents.map((v) => v * scale);
  }
  const r = await invertDDIM(dev, m.net, m.process, x0, { ...opts, samplerOptions: gridOf(m, opts.samplerOptions) });
  return { ...r, x0 };
}

/**
 * DDIM sampling from x_T (as invertImages returned it) with the same steps, labels and guidance, on
 * the same grid, without clipping x̂0 unless `samplerOptions` asks; decoded like the model's samples.
 * `images` and `shape` are images; `samples` what the sampler returned (latents for a latent model).
 */
export async function reconstructImages(
  dev: Device, m: DiffusionModel, xT: Float32Array, opts: Omit<InvertOptions, 'onStep'> & { onStep?: (i: number, n: number) => void },
): Promise<{ images: Float32Array; shape: Shape4; samples: { values: Float32Array; shape: Shape4 } }> {
  const r = await generate(dev, m.net, m.process, { ...opts, sampler: 'ddim', xT, samplerOptions: gridOf(m, opts.samplerOptions) });
  const { images, shape } = await m.decode(r.images, r.shape);
  return { images, shape, samples: { values: r.images, shape: r.shape } };
}
