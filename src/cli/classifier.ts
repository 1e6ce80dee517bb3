// `wgd train-classifier` and `wgd eval-samples`: a letter (or colour) classifier trained by the engine,
// evaluated on data it has not seen (held-out fonts), then used to label generated samples.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Device } from '../graph/device.js';
import { Init, parameterShapes } from '../nn/module.js';
import { ParameterSet } from '../nn/params.js';
import { Classifier, ClassifierConfig, classify, trainClassifier } from '../models/classifier.js';
import { checkCheckpointTensors, encodeCheckpoint } from '../io/checkpoint.js';
import { readCheckpointFile } from '../io/checkpoint-file.js';
import { writeFileAtomic } from '../io/file.js';
import { modelFromCheckpoint, samplerDefaults } from '../diffusion/train.js';
import { generate } from '../diffusion/generate.js';
import { GuidanceVariants, guidanceRecord } from '../diffusion/denoiser.js';
import { gridPng, viewScale } from '../data/png.js';
import { loadDataset, DatasetSpec } from './datasets.js';
import { Progress } from './progress.js';
import { checkFolder, checkOutputs } from './outputs.js';

export interface ClassifierCommand {
  data: DatasetSpec;
  steps: number;
  batch: number;
  lr: number;
  seed: number;
  out: string;
  /** Replace classifier.safetensors and eval.json in `out` if they exist. */
  force?: boolean;
}

/** The outputs, checked before any work (main calls this before making the device). */
export function checkClassifierOutputs(cmd: ClassifierCommand): void {
  checkFolder('--out', cmd.out);
  checkOutputs({ files: [join(cmd.out, 'classifier.safetensors'), join(cmd.out, 'eval.json')], force: Boolean(cmd.force) });
}

/** Trains, evaluates on the held-out split, writes classifier.safetensors and eval.json into `out`. */
export async function trainClassifierCommand(dev: Device, cmd: ClassifierCommand): Promise<{ accuracy: number; path: string }> {
  checkClassifierOutputs(cmd);
  const path = join(cmd.out, 'classifier.safetensors');
  const train = loadDataset({ ...cmd.data, split: 'train' });
  if (!train.labels) throw new Error(`train-classifier: dataset '${cmd.data.name}' has no labels`);
  // Letters: fonts the classifier never saw; colors: images from another seed.
  const test = cmd.data.name === 'letters' ? loadDataset({ ...cmd.data, split: 'heldout', seed: (cmd.data.seed ?? 0) + 1 }) : loadDataset({ ...cmd.data, seed: (cmd.data.seed ?? 0) + 1000, count: 1024 });
  const bar = new Progress(cmd.steps, 'train-classifier');
  const net = await trainClassifier(dev, { images: train.images, labels: train.labels, shape: train.shape }, train.classes.length, {
    steps: cmd.steps, batch: cmd.batch, lr: cmd.lr, seed: cmd.seed, noise: 0.1, onProgress: (s, loss) => bar.update(s, { loss }),
  });
  bar.finish(cmd.steps);
  const pred = await classify(dev, net, test.images);
  const perClass = train.classes.map(() => ({ n: 0, correct: 0 }));
  pred.labels.forEach((l, i) => {
    const t = test.labels![i]!;
    perClass[t]!.n++;
    if (l === t) perClass[t]!.correct++;
  });
  const accuracy = perClass.reduce((s, c) => s + c.correct, 0) / test.labels!.length;
  mkdirSync(cmd.out, { recursive: true });
  const params = new ParameterSet(net.namedParameters());
  const evaluation = { split: cmd.data.name === 'letters' ? 'held-out fonts' : 'another seed', images: test.labels!.length, accuracy, perClass: Object.fromEntries(train.classes.map((c, k) => [c, perClass[k]!.n ? perClass[k]!.correct / perClass[k]!.n : null])) };
  await writeFileAtomic(path, await encodeCheckpoint({ params, config: { kind: 'classifier', model: net.config, classes: train.classes, data: cmd.data, train: { steps: cmd.steps, batch: cmd.batch, lr: cmd.lr, seed: cmd.seed }, evaluation } }));
  await writeFileAtomic(join(cmd.out, 'eval.json'), JSON.stringify(evaluation, null, 2));
  return { accuracy, path };
}

export async function loadClassifier(dev: Device, path: string): Promise<{ net: Classifier; classes: string[] }> {
  const ck = await readCheckpointFile(path);
  const c = ck.config as { kind?: string; model?: ClassifierConfig; classes?: string[] };
  if (c.kind !== 'classifier' || !c.model) throw new Error(`${path} is not a classifier checkpoint (written by wgd train-classifier)`);
  checkCheckpointTensors(ck, parameterShapes(dev, (init) => new Classifier(init, c.model!)), `classifier ${path}`);
  const net = new Classifier(new Init(dev, 0), c.model).eval();
  const params = new ParameterSet(net.namedParameters());
  const values = new Map<string, { shape: readonly number[]; data: Float32Array }>();
  for (const [n, t] of ck.tensors) if (t.data instanceof Float32Array) values.set(n, { shape: t.shape, data: t.data });
  params.write(values, params.flat, path);
  return { net, classes: c.classes ?? [] };
}

export interface EvalSamplesCommand {
  checkpoint: string;
  classifier: string;
  samplers: string[];
  guidance: number[];
  /** Variants of guidance (rescale, parallel weight, interval); omitted: plain guidance. */
  guidanceVariants?: GuidanceVariants;
  steps: number;
  /** Samples per class. */
  count: number;
  seed: number;
  out: string;
  /** Replace existing grids and eval.json in `out`. */
  force?: boolean;
}

export interface EvalRow {
  sampler: string;
  guidance: number;
  accuracy: number;
  perClass: Record<string, number>;
  seconds: number;
}

/** The outputs, checked before any work (main calls this before making the device). */
export function checkEvalSamplesOutputs(cmd: EvalSamplesCommand): void {
  checkFolder('--out', cmd.out);
  const files = [...cmd.samplers.flatMap((sm) => cmd.guidance.map((g) => join(cmd.out, `samples-${sm}-s${g}.png`))), join(cmd.out, 'eval.json')];
  checkOutputs({ files, inputs: [cmd.checkpoint, cmd.classifier], force: Boolean(cmd.force) });
}

/** Samples every class under each sampler and guidance scale and reports how many the classifier labels as asked. */
export async function evalSamplesCommand(dev: Device, cmd: EvalSamplesCommand): Promise<EvalRow[]> {
  checkEvalSamplesOutputs(cmd);
  const grid = (sampler: string, g: number) => join(cmd.out, `samples-${sampler}-s${g}.png`);
  const ck = await readCheckpointFile(cmd.checkpoint);
  const { net, process: noise, config } = modelFromCheckpoint(dev, ck);
  const clf = await loadClassifier(dev, cmd.classifier);
  const classes = config.classes;
  if (clf.classes.join() !== classes.join()) throw new Error(`the classifier's classes (${clf.classes.join(', ')}) differ from the model's (${classes.join(', ')})`);
  const labels = classes.flatMap((_, k) => Array<number>(cmd.count).fill(k));
  mkdirSync(cmd.out, { recursive: true });
  const rows: EvalRow[] = [];
  for (const sampler of cmd.samplers) {
    for (const g of cmd.guidance) {
      const t0 = performance.now();
      const r = await generate(dev, net, noise, { sampler, steps: cmd.steps, labels, guidance: g, ...cmd.guidanceVariants, seed: cmd.seed, samplerOptions: samplerDefaults(config) });
      const seconds = (performance.now() - t0) / 1000;
      const pred = await classify(dev, clf.net, r.images);
      const hits = classes.map(() => 0);
      pred.labels.forEach((l, i) => l === labels[i] && hits[labels[i]!]!++);
      const accuracy = hits.reduce((a, b) => a + b, 0) / labels.length;
      rows.push({ sampler, guidance: g, accuracy, perClass: Object.fromEntries(classes.map((c, k) => [c, hits[k]! / cmd.count])), seconds });
      await writeFileAtomic(grid(sampler, g), gridPng(r.images, r.shape, { cols: cmd.count, scale: viewScale(r.shape[2]) }));
      console.log(`${sampler.padEnd(15)} guidance ${String(g).padEnd(4)} accuracy ${(100 * accuracy).toFixed(1)}% (${labels.length} samples, ${seconds.toFixed(0)} s)`);
    }
  }
  await writeFileAtomic(join(cmd.out, 'eval.json'), JSON.stringify({ checkpoint: cmd.checkpoint, classifier: cmd.classifier, steps: cmd.steps, ...guidanceRecord(cmd.guidanceVariants), count: cmd.count, seed: cmd.seed, rows }, null, 2));
  return rows;
}
