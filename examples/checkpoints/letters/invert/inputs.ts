// Writes the letters that `wgd invert` is measured on (docs/results.md, "Embedding: DDIM inversion"):
// 8 letters of the held-out fonts and 8 of the training fonts, 16×16 grey PNGs, one variant per
// (font, weight, letter) from seed 0, every N/8-th of each split (8 different letters). Prints
// the labels in file order (the --label of the commands).
//   node scripts/run.mjs examples/checkpoints/letters/invert/inputs.ts
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadDataset } from '../../../../src/cli/datasets.js';
import { encodePng } from '../../../../src/data/png.js';

// scripts/run.mjs runs this bundled in the project's .cache/: the project root is its parent.
const here = join(dirname(fileURLToPath(import.meta.url)), '..', 'examples', 'checkpoints', 'letters', 'invert');
for (const split of ['heldout', 'train'] as const) {
  const ds = loadDataset({ name: 'letters', size: 16, split, count: 1, seed: 0 });
  const n = ds.shape[0];
  const dir = join(here, 'inputs', split);
  mkdirSync(dir, { recursive: true });
  const labels: string[] = [];
  for (let k = 0; k < 8; k++) {
    // Every N/8-th image, moved on to the next one while its letter was already taken: 8 letters.
    let i = (k * Math.floor(n / 8)) % n;
    while (labels.includes(ds.classes[ds.labels![i]!]!)) i = (i + 1) % n;
    const letter = ds.classes[ds.labels![i]!]!;
    const px = Uint8Array.from(ds.images.subarray(i * 256, (i + 1) * 256), (v) => Math.round(((v + 1) / 2) * 255));
    writeFileSync(join(dir, `${k}-${letter}.png`), encodePng(px, 16, 16, 1));
    labels.push(letter);
  }
  console.log(`${split}: ${n} images; --image ${join('examples', 'checkpoints', 'letters', 'invert', 'inputs', split)} --label ${labels.join(',')}`);
}
