// `npm run demo`: samples letters from the class-conditional model shipped in
// examples/checkpoints/letters/ (trained by this engine's `wgd train`; the command and its log are
// beside it) with DDIM at 50 steps, in one batch: a grid with a row per letter at guidance 2, and a
// guidance sweep s = 1, 2, 5. Writes PNGs under runs/demo/ and says where.
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { createDevice } from '../src/index.js';
import { autotuneFileStore } from '../src/io/autotune-file.js';
import { loadDiffusionModelFile } from '../src/pipelines/latent-node.js';
import { sampleImages } from '../src/pipelines/latent.js';
import { parseLabel } from '../src/diffusion/generate.js';
import { gridPng, viewScale } from '../src/data/png.js';
import { Progress } from '../src/cli/progress.js';

const CHECKPOINT = 'examples/checkpoints/letters/letters.safetensors';
const GRID_LETTERS = ['A', 'B', 'E', 'G', 'K', 'R', 'S', 'W'];
const PER_ROW = 4;
const SWEEP_LETTERS = ['A', 'G', 'R'];
const SWEEP_SCALES = [1, 2, 5];
const PER_SCALE = 3;
const OUT = 'runs/demo';

const t0 = performance.now();
const dev = await createDevice({ tune: { store: autotuneFileStore() } }); // kernel variants measured once per adapter, then cached
const a = dev.adapter;
console.log(`adapter: ${[a.vendor, a.architecture, a.description].filter(Boolean).join(' / ')}`);
if (!existsSync(CHECKPOINT)) throw new Error(`${CHECKPOINT} is missing; it is part of the repository (see examples/checkpoints/letters/README.md for the command that trains it)`);
// The pipeline loads any diffusion checkpoint (a latent one with its VQ-GAN) and samples it to images.
const model = await loadDiffusionModelFile(dev, CHECKPOINT);
const { net, config } = model;
console.log(`model: ${CHECKPOINT}: U-Net ${JSON.stringify(config.model.blockOutChannels)}, ${net.parameterCount} parameters, ${config.process.kind} process, trained ${config.step} steps on ${config.classes.length} letters`);

// One batch: the grid (a row per letter, guidance 2), then the sweep (a row per letter and scale).
const labels: number[] = [];
const guidance: number[] = [];
for (const l of GRID_LETTERS) for (let i = 0; i < PER_ROW; i++) labels.push(parseLabel(l, config.classes)), guidance.push(2);
for (const l of SWEEP_LETTERS) for (const s of SWEEP_SCALES) for (let i = 0; i < PER_SCALE; i++) labels.push(parseLabel(l, config.classes)), guidance.push(s);
const steps = 50;
const bar = new Progress(steps, `DDIM ${steps} steps, ${labels.length} images`);
const r = await sampleImages(dev, model, { sampler: 'ddim', steps, labels, guidance, seed: 1, onStep: (i) => bar.update(i + 1) });
bar.finish(steps);

mkdirSync(OUT, { recursive: true });
const [, c, h, w] = r.shape;
const per = c * h * w;
const nGrid = GRID_LETTERS.length * PER_ROW;
const grid = join(OUT, 'letters.png');
const sweep = join(OUT, 'guidance-sweep.png');
writeFileSync(grid, gridPng(r.images.subarray(0, nGrid * per), [nGrid, c, h, w], { cols: PER_ROW, scale: viewScale(h) }));
writeFileSync(sweep, gridPng(r.images.subarray(nGrid * per), [labels.length - nGrid, c, h, w], { cols: PER_SCALE, scale: viewScale(h) }));
console.log(`wrote ${grid}: rows ${GRID_LETTERS.join(', ')} (guidance 2), ${PER_ROW} samples each`);
console.log(`wrote ${sweep}: rows ${SWEEP_LETTERS.flatMap((l) => SWEEP_SCALES.map((s) => `${l}@${s}`)).join(', ')}`);
console.log(`done in ${((performance.now() - t0) / 1000).toFixed(0)} s (DDIM with classifier-free guidance in one batched forward per step; seed 1)`);
dev.destroy();
process.exit(0);
