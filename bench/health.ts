// Long-run health: device and host memory over a few hundred training steps and sampling batches of
// a tiny model, as the CLI runs them (compiled training step, losses summed on the device and read
// every few steps, two steps in flight, a checkpoint every so often; one compiled sampling loop run
// batch after batch). Memory is read after a forced garbage collection at each mark, so that what is
// measured is what is kept, not what the collector has yet to find. test/health.test.ts requires it
// flat; the bench records it: node scripts/run.mjs bench/health.ts [--steps 300] [--batches 300] [--json FILE]
import { writeFileSync } from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';
import { createDevice, Device, ops } from '../src/index.js';
import { noGrad, Tensor } from '../src/graph/tensor.js';
import { Init } from '../src/nn/module.js';
import { UNet } from '../src/models/unet.js';
import { makeProcess } from '../src/diffusion/process.js';
import { DiffusionTrainer } from '../src/diffusion/train.js';
import { NetworkDenoiser } from '../src/diffusion/denoiser.js';
import { SamplingLoop } from '../src/diffusion/sample.js';
import { makeSampler } from '../src/diffusion/samplers/index.js';
import { mulberry32 } from '../src/data/rng.js';
import { StepWindow } from '../src/cli/progress.js';
import { flag } from './common.js';

/** One mark: memory after `at` steps (or batches) of a phase. */
export interface HealthMark {
  phase: 'train' | 'sample';
  at: number;
  /** Device bytes held by live arrays and by the pool, and buffers created so far (runtime stats). */
  liveBytes: number;
  pooledBytes: number;
  buffersCreated: number;
  /** Host: V8 heap and ArrayBuffer bytes after a collection. */
  heapBytes: number;
  arrayBufferBytes: number;
}

export interface HealthResult {
  model: string;
  trainSteps: number;
  sampleBatches: number;
  marks: HealthMark[];
  /** Wall-clock rates, compile included (SwiftShader's say only how slow an emulated adapter is). */
  trainStepsPerSecond: number;
  sampleBatchesPerSecond: number;
}

const MODEL = { sampleSize: 4, inChannels: 1, outChannels: 1, blockOutChannels: [8], normGroups: 4, attentionHeads: 2, attentionResolutions: [], conditioning: 'class' as const, numClasses: 3 };

/** A collection on demand: V8's gc(), reached through a flag set at run time. */
function collector(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

export async function measureHealth(dev: Device, opts: { trainSteps?: number; sampleBatches?: number; every?: number } = {}): Promise<HealthResult> {
  const trainSteps = opts.trainSteps ?? 300;
  const sampleBatches = opts.sampleBatches ?? 300;
  const every = opts.every ?? 50;
  const gc = collector();
  const marks: HealthMark[] = [];
  const mark = async (phase: HealthMark['phase'], at: number) => {
    await dev.sync();
    gc();
    // FinalizationRegistry callbacks (which return buffers to the pool) run in tasks after the collection.
    await new Promise((r) => setTimeout(r, 20));
    const s = dev.rt.stats;
    const m = process.memoryUsage();
    marks.push({ phase, at, liveBytes: s.liveBytes, pooledBytes: s.pooledBytes, buffersCreated: s.buffersCreated, heapBytes: m.heapUsed, arrayBufferBytes: m.arrayBuffers });
  };

  const r = mulberry32(7);
  const n = 12;
  const data = { images: Float32Array.from({ length: n * 16 }, () => r() * 2 - 1), labels: Int32Array.from({ length: n }, (_, i) => i % 3), shape: [n, 1, 4, 4] as [number, number, number, number], classes: ['a', 'b', 'c'] };
  const trainer = new DiffusionTrainer(dev, new UNet(new Init(dev, 1), MODEL), makeProcess('ddpm'), data, { batch: 2, lr: 1e-3, steps: trainSteps, seed: 1 });
  const window = new StepWindow(dev);
  let acc: Tensor | null = null;
  const t0 = performance.now();
  for (let s = 1; s <= trainSteps; s++) {
    const loss = await trainer.runStep();
    acc = noGrad(() => (acc ? ops.add(acc, loss) : ops.affine(loss, 1, 0)));
    await window.submitted(s);
    if (s % 25 === 0) {
      await acc.item();
      acc = null;
    }
    if (s % 100 === 0) await trainer.encode(); // a checkpoint's readback, as the CLI writes one
    if (s % every === 0) await mark('train', s);
  }
  const trainSeconds = (performance.now() - t0) / 1000;

  const net = trainer.emaModel();
  const labels = Int32Array.of(0, 1, 2, 0);
  const den = new NetworkDenoiser(dev, net, labels.length, { labels, nullClass: MODEL.numClasses, guidance: 2 });
  const loop = new SamplingLoop(dev, makeSampler('ddim', trainer.process, {}), den.denoise, [labels.length, 1, 4, 4]);
  const t1 = performance.now();
  try {
    for (let b = 1; b <= sampleBatches; b++) {
      const res = await loop.run(1, { seed: b });
      await res.x.read();
      if (b % every === 0) await mark('sample', b);
    }
  } finally {
    loop.destroy();
  }
  const sampleSeconds = (performance.now() - t1) / 1000;
  return {
    model: `UNet 1 level of 8 channels, 1×4×4 images, 3 classes; batch 2 (training), 4 with guidance 2, DDIM 1 step (sampling)`,
    trainSteps, sampleBatches, marks,
    trainStepsPerSecond: trainSteps / trainSeconds, sampleBatchesPerSecond: sampleBatches / sampleSeconds,
  };
}

/** The largest rise of each figure over a phase, from its first mark (after warm-up) on. */
export function growth(marks: readonly HealthMark[], phase: HealthMark['phase']): Record<'liveBytes' | 'pooledBytes' | 'buffersCreated' | 'heapBytes' | 'arrayBufferBytes', number> {
  const ms = marks.filter((m) => m.phase === phase);
  const first = ms[0]!;
  const keys = ['liveBytes', 'pooledBytes', 'buffersCreated', 'heapBytes', 'arrayBufferBytes'] as const;
  return Object.fromEntries(keys.map((k) => [k, Math.max(...ms.map((m) => m[k] - first[k]))])) as Record<(typeof keys)[number], number>;
}

// Standalone: node scripts/run.mjs bench/health.ts [--steps N] [--batches N] [--json FILE]
if (process.argv[1]?.endsWith('health.mjs')) {
  const args = process.argv.slice(2);
  const dev = await createDevice();
  const h = await measureHealth(dev, { trainSteps: Number(flag(args, '--steps') ?? 300), sampleBatches: Number(flag(args, '--batches') ?? 300) });
  const kib = (b: number) => `${(b / 1024).toFixed(1)} KiB`;
  console.log(`adapter: ${dev.adapter.vendor} ${dev.adapter.description}`.trim());
  console.log(`${h.model}\n${h.trainSteps} training steps (${h.trainStepsPerSecond.toFixed(2)}/s), ${h.sampleBatches} sampling batches (${h.sampleBatchesPerSecond.toFixed(2)}/s)`);
  console.log('| phase | at | device live | device pooled | buffers created | host heap | host ArrayBuffers |\n|---|---:|---:|---:|---:|---:|---:|');
  for (const m of h.marks) console.log(`| ${m.phase} | ${m.at} | ${kib(m.liveBytes)} | ${kib(m.pooledBytes)} | ${m.buffersCreated} | ${(m.heapBytes / 2 ** 20).toFixed(1)} MiB | ${kib(m.arrayBufferBytes)} |`);
  for (const p of ['train', 'sample'] as const) console.log(`${p}: largest rise after the first mark ${JSON.stringify(growth(h.marks, p))}`);
  const json = flag(args, '--json');
  if (json) {
    writeFileSync(json, JSON.stringify({ adapter: `${dev.adapter.vendor} ${dev.adapter.description}`.trim(), health: h }, null, 2));
    console.log(`wrote ${json}`);
  }
  dev.destroy();
  process.exit(0);
}
