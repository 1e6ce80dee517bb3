/**
 * Train a small VQ-GAN on the `colors` dataset, save a checkpoint, then encode the dataset to latents
 * (as latent diffusion would) and decode them back.
 *
 *   node scripts/run.mjs examples/vqgan-colors.ts [steps=200] [out=runs/vqgan-colors.safetensors] [resume]
 */
import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { createDevice } from '../src/graph/device.js';
import { Init } from '../src/nn/module.js';
import { makeColorsDataset } from '../src/data/colors.js';
import { writeFileAtomic } from '../src/io/file.js';
import { VQGAN } from '../src/models/vqgan.js';
import { VQGANTrainer } from '../src/models/vqgan-trainer.js';
import { encodeDataset, decodeLatents } from '../src/models/vqgan-latents.js';

const steps = Number(process.argv[2] ?? 200);
const out = process.argv[3] ?? 'runs/vqgan-colors.safetensors';
const resume = process.argv[4] === 'resume';

const dev = await createDevice();
const size = 16;
const batch = 4;
const data = makeColorsDataset({ n: 32, size, seed: 1 });
const item = 3 * size * size;

const trainer = resume
  ? await VQGANTrainer.fromCheckpoint(dev, await readFile(out))
  : await VQGANTrainer.create(
      dev,
      new VQGAN(new Init(dev, 0), { blockOutChannels: [8, 16, 16], normGroups: 4, latentChannels: 4, numEmbeddings: 64, codebookUpdate: 'ema', emaDecay: 0.9, restartAfter: 5 }),
      { batchSize: batch, height: size, width: size, lr: 2e-3, discLr: 2e-3, betas: [0.9, 0.999], discStart: Math.floor(steps * 0.8), emaDecay: 0.99, discriminator: { channels: 8, layers: 2, normGroups: 4 } },
    );
const vq = trainer.vqgan;
console.log(`VQ-GAN f = ${vq.factor}, ${vq.parameterCount} parameters; discriminator ${trainer.discriminator.parameterCount}; from step ${trainer.steps}`);

let t0 = performance.now();
for (let i = 0; i < steps; i++) {
  const at = ((trainer.steps * batch) % data.shape[0]) * item;
  trainer.stepOn(data.images.subarray(at, at + batch * item));
  if ((i + 1) % 20 === 0 || i === steps - 1) {
    const s = await trainer.progress(); // the only readback: once per 20 steps
    const ms = (performance.now() - t0) / Math.min(20, i + 1);
    t0 = performance.now();
    const gan = s.lambda === null ? '' : `  λ ${s.lambda.toFixed(3)}  G ${s.gLoss!.toFixed(3)}  D ${s.dLoss!.toFixed(3)}`;
    console.log(`step ${s.step}  L1 ${s.l1.toFixed(4)}  PSNR ${s.psnr.toFixed(2)} dB  q ${s.qloss.toExponential(2)}  perplexity ${s.perplexity.toFixed(1)}  codes ${(100 * s.codesUsed).toFixed(0)}%/${(100 * s.codesRecent).toFixed(0)}%${gan}  ${ms.toFixed(0)} ms/step`);
  }
}
await mkdir(dirname(out), { recursive: true });
await writeFileAtomic(out, await trainer.state());
console.log(`saved ${out}`);

// Latents for latent diffusion, with the EMA weights, and the images decoded back from them.
trainer.useEMA();
const { latents, shape } = await encodeDataset(vq, data.images, data.shape, 8);
const { images } = await decodeLatents(vq, latents, shape, 8);
let se = 0;
for (let i = 0; i < images.length; i++) se += (Math.min(1, Math.max(-1, images[i]!)) - data.images[i]!) ** 2;
console.log(`latents ${JSON.stringify(shape)}; reconstruction PSNR over the dataset (EMA weights) ${(10 * Math.log10(4 / (se / images.length))).toFixed(2)} dB`);
dev.destroy();
