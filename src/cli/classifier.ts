// `wgd train-classifier` and `wgd eval-samples`: a letter (or colour) classifier trained by the engine,
// evaluated on data it has not seen (held-out fonts), then used to label generated samples.
import { appendFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Device } from '../graph/device.js';
import { Init, parameterShapes } from '../nn/module.js';
import { ParameterSet } from '../nn/params.js';
import { Classifier, ClassifierConfig, ClassifierTrainer, classify } from '../models/classifier.js';
import { checkCheckpointTensors } from '../io/checkpoint.js';
import { readCheckpointFile } from '../io/checkpoint-file.js';
import { writeFileAtomic } from '../io/file.js';
import { modelFromCheckpoint, samplerDefaults } from '../diffusion/train.js';
import { GuidanceVariants, guidanceRecord } from '../diffusion/denoiser.js';
import { gridPng, viewScale } from '../data/png.js';
import { loadDataset, DatasetSpec } from './datasets.js';
import { linePlotPng } from '../data/plot.js';
import { runTraining } from './loop.js';
import { checkFolder, checkOutputs, removeFiles } from './outputs.js';
import { keepLog, writeRunConfig, type OptionValues, type ResumeRecord } from './resume.js';
import type { StopRequest } from './stop.js';
import { sampleQuality } from '../pipelines/sample-quality.js';

export interface ClassifierCommand {
  data: DatasetSpec;
  steps: number;
  batch: number;
  /** Micro-batches per optimisation step (gradient accumulation; default 1). */
  accumulate?: number;
  lr: number;
  seed: number;
  out: string;
  /** Continue the run in `out` from its classifier.safetensors. */
  resume?: boolean;
  /** Steps between checkpoints (default: only at the end). */
  checkpointEvery?: number;
  /** Replace an earlier run's files in `out` (without it, an existing run is refused). */
  force?: boolean;
  /** The options as given, recorded in classifier-config.json for --resume; a resume's entry for its `resumes`. */
  options?: OptionValues;
  resumed?: ResumeRecord;
  /** Set by a signal: the loop stops after its current step, with a checkpoint. */
  stop?: StopRequest;
}

/**
 * The run's files. Their names say whose they are, so that a classifier can be trained into a
 * diffusion run's folder, where eval-colors finds classifier.safetensors beside the model.
 */
export const CLASSIFIER_FILES = { checkpoint: 'classifier.safetensors', config: 'classifier-config.json', log: 'classifier-log.jsonl', plot: 'classifier-loss.png', eval: 'eval.json' } as const;

/** Where the run goes, checked before any work (main calls this before making the device); returns the run's files. */
export function checkClassifierOutputs(cmd: ClassifierCommand): string[] {
  const ck = join(cmd.out, CLASSIFIER_FILES.checkpoint);
  checkFolder('--out', cmd.out);
  if (existsSync(ck) && !cmd.resume && !cmd.force) throw new Error(`${ck} exists: pass --resume to continue that run, --force to replace it, or choose another --out`);
  if (cmd.resume && !existsSync(ck)) throw new Error(`--resume: ${cmd.out} has no ${CLASSIFIER_FILES.checkpoint} to continue from; drop --resume to start a new run there`);
  const files = Object.values(CLASSIFIER_FILES).map((f) => join(cmd.out, f));
  const dataFolder = existsSync(cmd.data.name) && !['letters', 'colors'].includes(cmd.data.name) ? cmd.data.name : undefined;
  checkOutputs({ files, inputs: [dataFolder], force: Boolean(cmd.force), own: cmd.resume });
  return files;
}

/**
 * Trains into `out` (checkpoint, settings, log, loss plot), resumable and stopped cleanly by a signal
 * like `wgd train`; once the run is complete, evaluates on the held-out split and writes eval.json and
 * the final classifier.safetensors (its header with the evaluation).
 */
export async function trainClassifierCommand(dev: Device, cmd: ClassifierCommand): Promise<{ accuracy: number; path: string; stopped?: string }> {
  const files = checkClassifierOutputs(cmd);
  const path = join(cmd.out, CLASSIFIER_FILES.checkpoint);
  const train = loadDataset({ ...cmd.data, split: 'train' });
  if (!train.labels) throw new Error(`train-classifier: dataset '${cmd.data.name}' has no labels`);
  // Letters: fonts the classifier never saw; colors: images from another seed.
  const test = cmd.data.name === 'letters' ? loadDataset({ ...cmd.data, split: 'heldout', seed: (cmd.data.seed ?? 0) + 1 }) : loadDataset({ ...cmd.data, seed: (cmd.data.seed ?? 0) + 1000, count: 1024 });
  const trainer = new ClassifierTrainer(dev, { images: train.images, labels: train.labels, shape: train.shape, classes: train.classes }, {
    steps: cmd.steps, batch: cmd.batch, lr: cmd.lr, seed: cmd.seed, noise: 0.1, accumulate: cmd.accumulate ?? 1,
  });
  if (cmd.resume) trainer.resume(await readCheckpointFile(path));
  trainer.header = { data: cmd.data };
  if (!cmd.resume) removeFiles(files); // --force: the old run's files go once the new one is known to start
  mkdirSync(cmd.out, { recursive: true });
  await writeRunConfig(join(cmd.out, CLASSIFIER_FILES.config), { ...trainer.checkpointConfig(), step: undefined, parameters: trainer.net.parameterCount }, { ...cmd, resume: Boolean(cmd.resume) }, trainer.steps);
  const logPath = join(cmd.out, CLASSIFIER_FILES.log);
  if (cmd.resume) await writeFileAtomic(logPath, keepLog(logPath, trainer.steps));
  const history: [number, number][] = keepLog(logPath, trainer.steps).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { step: number; loss: number }).map((r) => [r.step, r.loss]);
  const every = cmd.checkpointEvery ?? cmd.steps;
  const { stopped } = await runTraining(dev, trainer, {
    command: 'train-classifier', out: cmd.out, checkpoint: path, total: cmd.steps, stop: cmd.stop,
    logEvery: Math.min(25, every), checkpointEvery: every,
    log: async (s) => {
      const p = await trainer.progress();
      history.push([s, p.loss]);
      appendFileSync(logPath, JSON.stringify({ ...p, time: new Date().toISOString() }) + '\n');
      return { loss: p.loss, lr: p.lr };
    },
    afterCheckpoint: () => writeFileAtomic(join(cmd.out, CLASSIFIER_FILES.plot), linePlotPng(history.map((h) => h[1]), { x: history.map((h) => h[0]), logY: true, smooth: 5 })),
  });
  trainer.dispose();
  if (stopped) return { accuracy: NaN, path, stopped };
  const net = trainer.net.eval();
  const pred = await classify(dev, net, test.images);
  const perClass = train.classes.map(() => ({ n: 0, correct: 0 }));
  pred.labels.forEach((l, i) => {
    const t = test.labels![i]!;
    perClass[t]!.n++;
    if (l === t) perClass[t]!.correct++;
  });
  const accuracy = perClass.reduce((s, c) => s + c.correct, 0) / test.labels!.length;
  const evaluation = { split: cmd.data.name === 'letters' ? 'held-out fonts' : 'another seed', images: test.labels!.length, accuracy, perClass: Object.fromEntries(train.classes.map((c, k) => [c, perClass[k]!.n ? perClass[k]!.correct / perClass[k]!.n : null])) };
  trainer.header = { data: cmd.data, evaluation };
  await writeFileAtomic(path, await trainer.state());
  await writeFileAtomic(join(cmd.out, CLASSIFIER_FILES.eval), JSON.stringify(evaluation, null, 2));
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
