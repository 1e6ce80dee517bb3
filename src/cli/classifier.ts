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
import { GuidanceVariants, guidanceRecord } from '../diffusion/denoiser.js';
import { gridPng, viewScale } from '../data/png.js';
import { loadDataset, DatasetSpec } from './datasets.js';
import { sampleQuality } from '../pipelines/sample-quality.js';
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
  /** Step counts: every sampler runs at each (a quality-vs-steps table when there are several). */
  steps: number[];
  /** Samples per class. */
  count: number;
  seed: number;
  out: string;
  /** Replace existing grids and eval.json in `out`. */
  force?: boolean;
}

export interface EvalRow {
  sampler: string;
  steps: number;
  /** Network evaluations per sample (Heun: 2n − 1; PLMS: n + 1), before guidance doubles the batch. */
  evaluations: number;
  guidance: number;
  accuracy: number;
  /** Fréchet distance of the samples' classifier features to the training images' (null without the model's dataset). */
  frechet: number | null;
  perClass: Record<string, number>;
  seconds: number;
}

/** A cell's grid: samples-SAMPLER-sG.png, with -nSTEPS when several step counts are run. */
function gridPath(cmd: EvalSamplesCommand, sampler: string, steps: number, g: number): string {
  return join(cmd.out, `samples-${sampler}${cmd.steps.length > 1 ? `-n${steps}` : ''}-s${g}.png`);
}

/** The outputs, checked before any work (main calls this before making the device). */
export function checkEvalSamplesOutputs(cmd: EvalSamplesCommand): void {
  checkFolder('--out', cmd.out);
  const files = [...cmd.samplers.flatMap((sm) => cmd.steps.flatMap((n) => cmd.guidance.map((g) => gridPath(cmd, sm, n, g)))), join(cmd.out, 'eval.json')];
  checkOutputs({ files, inputs: [cmd.checkpoint, cmd.classifier], force: Boolean(cmd.force) });
}

/**
 * Samples every class under each sampler, step count and guidance scale; reports how many samples
 * the classifier labels as asked and, when the model's dataset can be made, the Fréchet distance of
 * the samples' classifier features to the training images' (pipelines/sample-quality.ts).
 */
export async function evalSamplesCommand(dev: Device, cmd: EvalSamplesCommand): Promise<EvalRow[]> {
  checkEvalSamplesOutputs(cmd);
  const ck = await readCheckpointFile(cmd.checkpoint);
  const { net, process: noise, config } = modelFromCheckpoint(dev, ck);
  const clf = await loadClassifier(dev, cmd.classifier);
  const classes = config.classes;
  if (clf.classes.join() !== classes.join()) throw new Error(`the classifier's classes (${clf.classes.join(', ')}) differ from the model's (${classes.join(', ')})`);
  // The reference for the Fréchet distance: the model's own training images, when its header says which.
  let real: Float32Array | null = null;
  let reference = 'none (the checkpoint does not name its dataset)';
  if (config.data && typeof config.data.name === 'string') {
    const data = loadDataset(config.data as unknown as DatasetSpec);
    real = (await classify(dev, clf.net, data.images)).features;
    reference = `training images (${config.data.name}, ${data.shape[0]})`;
  }
  mkdirSync(cmd.out, { recursive: true });
  const rows: EvalRow[] = [];
  for (const g of cmd.guidance) {
    await sampleQuality(dev, net, noise, clf.net, real, {
      samplers: cmd.samplers, steps: cmd.steps, guidance: g, guidanceVariants: cmd.guidanceVariants, count: cmd.count, seed: cmd.seed, samplerOptions: samplerDefaults(config),
      onCell: async (c) => {
        rows.push({ sampler: c.sampler, steps: c.steps, evaluations: c.evaluations, guidance: g, accuracy: c.accuracy, frechet: c.frechet, perClass: Object.fromEntries(classes.map((name, k) => [name, c.perClass[k]!])), seconds: c.seconds });
        await writeFileAtomic(gridPath(cmd, c.sampler, c.steps, g), gridPng(c.images, c.shape, { cols: cmd.count, scale: viewScale(c.shape[2]) }));
        console.log(`${c.sampler.padEnd(15)} ${String(c.steps).padStart(4)} steps (${String(c.evaluations).padStart(4)} evaluations)  guidance ${String(g).padEnd(4)} accuracy ${(100 * c.accuracy).toFixed(1).padStart(5)}%  Fréchet ${c.frechet === null ? '—' : c.frechet.toFixed(3)}  (${c.samples} samples, ${c.seconds.toFixed(0)} s)`);
      },
    });
  }
  const steps = cmd.steps.length === 1 ? cmd.steps[0] : cmd.steps;
  await writeFileAtomic(join(cmd.out, 'eval.json'), JSON.stringify({ checkpoint: cmd.checkpoint, classifier: cmd.classifier, reference, steps, ...guidanceRecord(cmd.guidanceVariants), count: cmd.count, seed: cmd.seed, rows }, null, 2));
  return rows;
}
