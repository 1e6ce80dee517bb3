// The checkpoint the lab tests sample from, named in one place: $LAB_CHECKPOINT when set (to try
// another one); else the shipped demo checkpoint (examples/checkpoints/letters/letters.safetensors)
// when it exists; otherwise a stand-in of the same
// kind (class-conditional 16x16 letters, 'tiny' U-Net, DDPM), trained briefly here in Node and kept in
// .cache/lab/ for later runs. The stand-in samples noise-like images, not letters.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Device, DiffusionTrainer, Init, UNet, decodeCheckpoint, makeProcess, makeLetters, modelFromCheckpoint, presetConfig, resolveUNetConfig } from '../../src/index.js';
import { loadLettersGlyphs, writeFileAtomic } from '../../src/node.js';
import { ROOT } from './chromium.js';

export const SHIPPED_CHECKPOINT = join(ROOT, 'examples', 'checkpoints', 'letters', 'letters.safetensors');
const STAND_IN = join(ROOT, '.cache', 'lab', 'stand-in-letters-tiny-20steps.safetensors');

export interface LabCheckpoint {
  name: string;
  path: string;
  shipped: boolean;
}

export async function labCheckpoint(dev: Device): Promise<LabCheckpoint> {
  const chosen = process.env.LAB_CHECKPOINT;
  if (chosen) {
    if (!existsSync(chosen)) throw new Error(`LAB_CHECKPOINT=${chosen}: no such file`);
    return { name: 'env/LAB_CHECKPOINT', path: chosen, shipped: true };
  }
  if (existsSync(SHIPPED_CHECKPOINT)) return { name: 'letters/letters', path: SHIPPED_CHECKPOINT, shipped: true };
  if (!existsSync(STAND_IN) || !loads(dev, STAND_IN)) {
    const { glyphsPng, meta } = loadLettersGlyphs();
    const d = makeLetters({ glyphsPng, meta, size: 16, perGlyph: 1, seed: 0, split: 'train' });
    const data = { images: d.images, labels: d.labels, shape: d.shape, classes: meta.letters.split('') };
    const net = new UNet(new Init(dev, 0), resolveUNetConfig(presetConfig('tiny', 16, 1, 'class', 26)));
    const trainer = new DiffusionTrainer(dev, net, makeProcess('ddpm'), data, { batch: 8, lr: 2e-3, steps: 20, emaDecay: 0.5, seed: 0 });
    for (let i = 0; i < 20; i++) await trainer.step();
    mkdirSync(join(ROOT, '.cache', 'lab'), { recursive: true });
    trainer.header = { data: { name: 'letters', size: 16, count: 1, seed: 0 } };
    await writeFileAtomic(STAND_IN, await trainer.state());
  }
  return { name: 'stand-in/letters-tiny', path: STAND_IN, shipped: false };
}

/** Whether a cached stand-in still fits this engine's U-Net (parameter names and shapes). */
function loads(dev: Device, path: string): boolean {
  try {
    modelFromCheckpoint(dev, decodeCheckpoint(new Uint8Array(readFileSync(path)), path));
    return true;
  } catch {
    return false;
  }
}
