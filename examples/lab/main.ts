// The lab page: load a shipped or uploaded checkpoint (a latent model with its VQ-GAN), or train a model
// in the tab (live loss plot, steps/s, progress, pause and resume); sample it with any sampler, showing
// x̂₀ while it denoises (a latent model's decoded by its VQ-GAN, like its samples); download the
// checkpoint and the images. Plain DOM and canvas over the package's public entry.
import {
  createDevice, Device, noGrad, ops, Tensor,
  decodeCheckpoint, loadDiffusionModel, modelFromCheckpoint, samplerDefaults, DiffusionTrainer, UNet, Init, resolveUNetConfig, unetConfigFromCheckpoint, presetConfig, MODEL_PRESETS,
  makeProcess, samplersFor, generate, parseLabel, parseGuidanceInterval, encodePng, makeLetters, makeColorsDataset,
  localStorageStore, loadDiffusersFiles, readSchedulerConfig, parsePythonJson,
} from '../../src/index.js';
import type { NoiseProcess, ImageDataset, DiffusionCheckpointConfig, CheckpointData, LettersMeta, TrainOptions, SamplerOptions, LatentDecoder, LatentInfo } from '../../src/index.js';
import { drawGrid, drawLossPlot, download, gridColumns, toGrid, yieldToUi, Grid } from './view.js';

// ---------------------------------------------------------------- state

/** A model that can be sampled: a loaded checkpoint, or the EMA weights of the run in this tab. */
interface Current {
  source: 'checkpoint' | 'training';
  name: string;
  net: () => UNet;
  process: NoiseProcess;
  classes: readonly string[];
  /** The model's sampler defaults (pixel models clip x̂0; see samplerDefaults). */
  defaults: SamplerOptions;
  /** A loaded checkpoint: its bytes (for download) and decoded form (to continue training from). */
  bytes?: Uint8Array;
  ck?: CheckpointData;
  step: number;
  /** A latent model: what it was trained on, and its VQ-GAN (named, and as the decoder of its samples). */
  latent?: { info: LatentInfo; vqgan: string; decode: LatentDecoder };
}

/** A checkpoint file's bytes and name, as fetched or uploaded. */
interface CheckpointFile {
  name: string;
  bytes: Uint8Array;
}

interface DataSpec {
  name: 'letters' | 'colors';
  size: number;
  count: number;
  seed: number;
}

interface TrainRun {
  trainer: DiffusionTrainer;
  spec: DataSpec;
  total: number;
  running: boolean;
  pauseRequested: boolean;
  /** Steps read back every this many, adapted so the page updates about 4 times a second. */
  readEvery: number;
  /** (time ms, step) pairs of recent readbacks, for steps/s. */
  marks: [number, number][];
}

/** What the headless tests (and the console) can read: window.lab. */
interface LabState {
  adapter: string;
  losses: number[];
  lossSteps: number[];
  model: string | null;
  lastGrid: { width: number; height: number; channels: number } | null;
}

declare global {
  interface Window {
    lab: LabState;
  }
}

let dev: Device | null = null;
let current: Current | null = null;
let run: TrainRun | null = null;
let sampling = false;
let loading = false;
/** The checkpoint loaded last (a run can continue from it even after another model became current). */
let loadedCk: Current | null = null;
let lastGrid: Grid | null = null;
let lastGridName = 'samples.png';
let shipped: { name: string; url: string; bytes: number; vqgan?: { name: string; url: string; bytes: number } }[] = [];
/** A latent model uploaded without its VQ-GAN: a VQ-GAN uploaded next completes it. */
let pendingLatent: { file: CheckpointFile; recorded: string } | null = null;
let glyphs: { glyphsPng: Uint8Array; meta: LettersMeta } | null = null;
const lab: LabState = (window.lab = { adapter: '', losses: [], lossSteps: [], model: null, lastGrid: null });

// ---------------------------------------------------------------- DOM

const $ = <T extends HTMLElement = HTMLElement>(id: string) => {
  const e = document.getElementById(id);
  if (!e) throw new Error(`lab: element #${id} is missing from index.html`);
  return e as T;
};
const el = {
  adapter: $('adapter'), limitsBox: $('limits-box'), limits: $<HTMLTableElement>('limits'), nogpu: $('nogpu'),
  error: $('error'), errorText: $('error-text'), errorClose: $<HTMLButtonElement>('error-close'),
  ckStatus: $('ck-status'), ckError: $('ck-error'), trError: $('tr-error'), smError: $('sm-error'),
  ckSelect: $<HTMLSelectElement>('ck-select'), ckLoad: $<HTMLButtonElement>('ck-load'), ckFile: $<HTMLInputElement>('ck-file'),
  dfFiles: $<HTMLInputElement>('df-files'), dfFolder: $<HTMLInputElement>('df-folder'), dfProgress: $<HTMLProgressElement>('df-progress'),
  modelInfo: $('model-info'), ckDownload: $<HTMLButtonElement>('ck-download'),
  trFrom: $<HTMLSelectElement>('tr-from'), trModel: $<HTMLSelectElement>('tr-model'), trData: $<HTMLSelectElement>('tr-data'),
  trSize: $<HTMLSelectElement>('tr-size'), trCount: $<HTMLInputElement>('tr-count'), trSteps: $<HTMLInputElement>('tr-steps'),
  trBatch: $<HTMLInputElement>('tr-batch'), trLr: $<HTMLInputElement>('tr-lr'), trEma: $<HTMLInputElement>('tr-ema'),
  trSeed: $<HTMLInputElement>('tr-seed'), trStart: $<HTMLButtonElement>('tr-start'), trPause: $<HTMLButtonElement>('tr-pause'),
  trProgress: $<HTMLProgressElement>('tr-progress'), trStatus: $('tr-status'), trPlot: $<HTMLCanvasElement>('tr-plot'),
  trPreview: $<HTMLCanvasElement>('tr-preview'),
  smSampler: $<HTMLSelectElement>('sm-sampler'), smSteps: $<HTMLInputElement>('sm-steps'), smEta: $<HTMLInputElement>('sm-eta'),
  smEtaLabel: $('sm-eta-label'), smGuidance: $<HTMLInputElement>('sm-guidance'), smRescale: $<HTMLInputElement>('sm-rescale'),
  smParallel: $<HTMLInputElement>('sm-parallel'), smInterval: $<HTMLInputElement>('sm-interval'),
  smLimit: $<HTMLSelectElement>('sm-limit'), smLimitLabel: $('sm-limit-label'), smLabels: $<HTMLInputElement>('sm-labels'),
  smClasses: $<HTMLDataListElement>('sm-classes'), smClassesHint: $('sm-classes-hint'), smCount: $<HTMLInputElement>('sm-count'),
  smCountLabel: $('sm-count-label'), smSeed: $<HTMLInputElement>('sm-seed'), smEvery: $<HTMLInputElement>('sm-every'),
  smRun: $<HTMLButtonElement>('sm-run'), smDownload: $<HTMLButtonElement>('sm-download'), smProgress: $<HTMLProgressElement>('sm-progress'),
  smStatus: $('sm-status'), smLive: $<HTMLCanvasElement>('sm-live'), smLiveCaption: $('sm-live-caption'), smGrid: $<HTMLCanvasElement>('sm-grid'),
};

/** The page-wide banner: for what belongs to no section (the device lost, the page failing to start). */
function showError(message: string): void {
  el.errorText.textContent = message;
  el.error.hidden = false;
  console.error(message);
}
function clearError(): void {
  el.error.hidden = true;
  el.errorText.textContent = '';
}

/** A section of the page: its error line (beside its controls) and its status line. */
type Section = 'ck' | 'tr' | 'sm';
const SECTIONS: Record<Section, { error: () => HTMLElement; status: () => HTMLElement; root: string }> = {
  ck: { error: () => el.ckError, status: () => el.ckStatus, root: 'model-section' },
  tr: { error: () => el.trError, status: () => el.trStatus, root: 'train-section' },
  sm: { error: () => el.smError, status: () => el.smStatus, root: 'sample-section' },
};

/** A bad value in one field: the error names it and the field is marked and focused. */
class FieldError extends Error {
  constructor(readonly input: HTMLElement, message: string) {
    super(message);
  }
}

/**
 * Shows an error where it happened: in the section's error line, beside the controls that caused it
 * (scrolled into view), and in its status line, which so never still says 'done'.
 */
function sectionError(section: Section, e: unknown, prefix = ''): void {
  const text = `${prefix}${message(e)}`;
  const s = SECTIONS[section];
  s.error().textContent = text;
  s.error().hidden = false;
  setStatus(s.status(), `failed: ${text}`, 'error');
  if (e instanceof FieldError) {
    e.input.setAttribute('aria-invalid', 'true');
    e.input.focus();
  }
  s.error().scrollIntoView({ block: 'nearest' });
  console.error(text);
}

function clearSection(section: Section): void {
  const s = SECTIONS[section];
  s.error().hidden = true;
  s.error().textContent = '';
  document.getElementById(s.root)?.querySelectorAll('[aria-invalid]').forEach((n) => n.removeAttribute('aria-invalid'));
}
function setStatus(node: HTMLElement, text: string, state: 'idle' | 'running' | 'paused' | 'done' | 'error'): void {
  node.textContent = text;
  node.dataset.state = state;
}
const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** A number from an input, checked; the error names the field and the allowed range. */
function num(input: HTMLInputElement, name: string, o: { int?: boolean; min?: number; max?: number } = {}): number {
  const v = input.value.trim();
  const x = Number(v);
  if (v === '' || !Number.isFinite(x) || (o.int && !Number.isInteger(x)) || x < (o.min ?? -Infinity) || x > (o.max ?? Infinity)) {
    const range = `${o.int ? 'an integer' : 'a number'}${o.min !== undefined ? ` ≥ ${o.min}` : ''}${o.max !== undefined ? ` and ≤ ${o.max}` : ''}`;
    throw new FieldError(input, `${name} = '${v}': expected ${range}`);
  }
  return x;
}

/** Enables exactly the controls that make sense now. */
function refresh(): void {
  const ready = dev !== null;
  const training = run?.running ?? false;
  const idle = ready && !training && !sampling && !loading;
  el.ckLoad.disabled = !idle || !el.ckSelect.value;
  el.ckSelect.disabled = !idle;
  el.ckFile.disabled = !idle;
  el.dfFiles.disabled = !idle;
  el.dfFolder.disabled = !idle;
  el.ckDownload.disabled = !idle || !current || (current.source === 'checkpoint' && !current.bytes);
  el.trStart.disabled = !idle;
  el.trPause.disabled = !ready || !run || sampling || loading || (!training && run.trainer.steps >= run.total) || (training && run.pauseRequested);
  el.trPause.textContent = run && !training && run.trainer.steps < run.total ? 'Resume' : 'Pause';
  const fromLoaded = el.trFrom.value === 'loaded';
  const fromOption = el.trFrom.options[1] as HTMLOptionElement;
  // Training continues an engine checkpoint (its optimizer state and run): not a diffusers model (wgd
  // import makes it one), nor a latent model, which trains on its VQ-GAN's latents (wgd train --latent).
  const continuable = loadedCk?.ck !== undefined && !loadedCk.latent;
  fromOption.disabled = !continuable;
  const why = !loadedCk || continuable ? '' : loadedCk.latent ? ': a latent model, trained with wgd train --latent' : ': a diffusers model, not an engine checkpoint';
  fromOption.textContent = loadedCk ? `the loaded checkpoint (${loadedCk.name}${why})` : 'the loaded checkpoint';
  if (fromLoaded && !continuable) el.trFrom.value = 'new';
  el.trModel.disabled = el.trFrom.value === 'loaded';
  el.smRun.disabled = !idle || !current;
  el.smDownload.disabled = !lastGrid || sampling;
  const conditional = current ? current.classes.length > 0 : true;
  el.smLabels.disabled = !conditional;
  el.smGuidance.disabled = !conditional;
  el.smRescale.disabled = !conditional;
  el.smParallel.disabled = !conditional;
  el.smInterval.disabled = !conditional;
  el.smCountLabel.firstChild!.textContent = conditional ? 'per label ' : 'images ';
  el.smEtaLabel.hidden = el.smSampler.value !== 'ddim';
  el.smLimitLabel.hidden = !['ddpm', 'ddim', 'plms', 'euler', 'heun', 'dpm++2m'].includes(el.smSampler.value);
}

// ---------------------------------------------------------------- device

async function start(): Promise<void> {
  el.trModel.replaceChildren(...Object.keys(MODEL_PRESETS).map((k) => new Option(k, k, k === 'tiny', k === 'tiny')));
  drawLossPlot(el.trPlot, [], []);
  wire();
  refresh();
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) {
    noWebGpu(
      'This browser has no WebGPU (navigator.gpu is missing), so nothing can run here. Use a recent Chrome or Edge (113+), ' +
        'Safari 26+, or Firefox 141+ on Windows; elsewhere WebGPU may need to be enabled (chrome://flags/#enable-unsafe-webgpu). ' +
        (window.isSecureContext ? '' : 'This page is also not a secure context: open it from https:// or http://localhost / 127.0.0.1.'),
    );
    return;
  }
  try {
    dev = await createDevice({ tune: { store: localStorageStore() } }); // kernel variants measured once per adapter
  } catch (e) {
    noWebGpu(`WebGPU is present but no GPU device could be created: ${message(e)}`);
    return;
  }
  const a = dev.adapter;
  lab.adapter = [a.vendor, a.architecture, a.device, a.description].filter(Boolean).join(' / ') || '(the browser does not describe it)';
  el.adapter.textContent = `WebGPU adapter: ${lab.adapter}`;
  const lim = dev.limits as unknown as Record<string, number>;
  const keys = ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxStorageBuffersPerShaderStage', 'maxComputeWorkgroupStorageSize',
    'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupsPerDimension'];
  el.limits.replaceChildren(...keys.map((k) => {
    const tr = document.createElement('tr');
    tr.append(Object.assign(document.createElement('td'), { textContent: k }), Object.assign(document.createElement('td'), { textContent: fmtLimit(lim[k]) }));
    return tr;
  }));
  el.limitsBox.hidden = false;
  dev.gpu.lost.then((info) => {
    if (info.reason !== 'destroyed') showError(`The GPU device was lost (${info.reason}): ${info.message}. Reload the page to continue.`);
    dev = null;
    refresh();
  });
  try {
    const r = await fetch('./checkpoints/index.json');
    if (r.ok) shipped = (await r.json()) as typeof shipped;
  } catch {
    shipped = [];
  }
  el.ckSelect.replaceChildren(new Option(shipped.length ? '(choose)' : '(none shipped)', ''), ...shipped.map((c, i) => new Option(`${c.name} (${((c.bytes + (c.vqgan?.bytes ?? 0)) / 2 ** 20).toFixed(1)} MiB${c.vqgan ? `, latent, with ${c.vqgan.name}` : ''})`, String(i))));
  // The server lists only models the page can sample, so the first is a good default.
  if (shipped.length) el.ckSelect.value = '0';
  document.body.dataset.ready = 'true';
  refresh();
}

function fmtLimit(v: number | undefined): string {
  if (v === undefined) return '—';
  return v >= 2 ** 20 ? `${v} (${(v / 2 ** 20).toFixed(0)} MiB)` : String(v);
}

function noWebGpu(text: string): void {
  el.nogpu.textContent = text;
  el.nogpu.hidden = false;
  el.adapter.textContent = 'WebGPU: not available';
  document.body.dataset.ready = 'no-webgpu';
  document.querySelectorAll<HTMLButtonElement | HTMLInputElement | HTMLSelectElement>('main button, main input, main select').forEach((b) => (b.disabled = true));
}

// ---------------------------------------------------------------- model

/** Loads a diffusion model, a latent one with its VQ-GAN (see loadDiffusionModel: a missing or unfitting VQ-GAN is named). */
async function loadModel(model: CheckpointFile, vqgan: CheckpointFile | null): Promise<void> {
  if (!dev) return;
  const ck = decodeCheckpoint(model.bytes, model.name);
  const m = loadDiffusionModel(dev, ck, vqgan ? decodeCheckpoint(vqgan.bytes, vqgan.name) : null, { where: model.name, vqganWhere: vqgan?.name });
  await dev.sync();
  const latent = m.config.latent && vqgan ? { info: m.config.latent, vqgan: vqgan.name, decode: m.decode } : undefined;
  loadedCk = { source: 'checkpoint', name: model.name, net: () => m.net, process: m.process, classes: m.classes, defaults: m.samplerDefaults, bytes: model.bytes, ck, step: m.config.step ?? 0, latent };
  pendingLatent = null;
  setCurrent(loadedCk);
  // A checkpoint imported from diffusers (wgd import) names its scheduler's sampler; its class model may lack a null class.
  if (m.config.sampler && samplersFor(m.process).includes(m.config.sampler.name)) el.smSampler.value = m.config.sampler.name;
  if (!m.net.config.nullClass && m.net.config.conditioning !== 'none') el.smGuidance.value = '1';
  refresh();
}

/**
 * A diffusers model from the files of its folder (or of a pipeline folder: its unet/ is taken). The
 * weights stay Files, read slice by slice as they are written to the GPU, so a file past the browser's
 * 2 GB ArrayBuffer limit loads; the progress bar counts the bytes.
 */
async function loadDiffusersFolder(files: File[]): Promise<void> {
  if (!dev) return;
  const path = (f: File) => (f as File & { webkitRelativePath?: string }).webkitRelativePath || f.name;
  const configs = files.filter((f) => f.name === 'config.json');
  const config = configs.find((f) => /(^|\/)unet\/config\.json$/.test(path(f))) ?? configs[0];
  if (!config) throw new Error(`no config.json among the ${files.length} file(s) chosen; choose a diffusers model folder's files (config.json and diffusion_pytorch_model.safetensors)`);
  const dir = path(config).slice(0, -'config.json'.length);
  const here = files.filter((f) => path(f).slice(0, path(f).length - f.name.length) === dir);
  const weights = here.filter((f) => f.name.endsWith('.safetensors') && f.name !== 'label_context.safetensors');
  const index = here.find((f) => f.name.endsWith('.safetensors.index.json'));
  const labels = here.find((f) => f.name === 'label_context.safetensors');
  const schedulerFile = files.find((f) => f.name === 'scheduler_config.json');
  if (!weights.length) throw new Error(`no .safetensors weights beside ${path(config)}`);
  el.dfProgress.hidden = false;
  el.dfProgress.value = 0;
  const model = await loadDiffusersFiles(dev, {
    config: await config.text(),
    weights: Object.fromEntries(weights.map((f) => [f.name, f])),
    index: index ? await index.text() : undefined,
    labelContext: labels ? new Uint8Array(await labels.arrayBuffer()) : undefined,
    where: dir || config.name,
    onProgress: (p) => {
      el.dfProgress.value = p.done / p.total;
      setStatus(el.ckStatus, `reading ${(p.done / 2 ** 20).toFixed(1)} of ${(p.total / 2 ** 20).toFixed(1)} MiB…`, 'running');
    },
  });
  if (!(model.module instanceof UNet)) throw new Error(`this is a ${model.className}; the page samples UNets`);
  const net = model.module;
  if (net.config.conditioning === 'context') throw new Error('this UNet2DConditionModel attends to encoder_hidden_states (a text encoder\'s output), which the page cannot make; sample it from the library with a context');
  const scheduler = schedulerFile ? readSchedulerConfig(parsePythonJson(await schedulerFile.text(), schedulerFile.name), schedulerFile.name) : null;
  const process = makeProcess(scheduler?.process ?? { kind: 'ddpm' });
  const own = (model.config._webgpu_diffusion ?? {}) as { classes?: string[] };
  const n = net.config.conditioning === 'none' ? 0 : net.config.numClasses;
  const classes = Array.isArray(own.classes) && own.classes.length === n ? own.classes : Array.from({ length: n }, (_, i) => String(i));
  await dev.sync();
  const name = `${dir || 'diffusers model'} (${model.className}${scheduler ? `, ${scheduler.className}` : ''})`;
  loadedCk = { source: 'checkpoint', name, net: () => net, process, classes, defaults: { ...samplerDefaults({}), ...scheduler?.samplerOptions }, step: 0 };
  setCurrent(loadedCk);
  if (scheduler) el.smSampler.value = scheduler.sampler;
  // A class-conditional model from diffusers has no null class for guidance.
  if (!net.config.nullClass && n > 0) el.smGuidance.value = '1';
  refresh();
}

/**
 * Uploaded files: one diffusion model, with its VQ-GAN when it is a latent model (both chosen together,
 * or the VQ-GAN next, after a latent model uploaded alone).
 */
async function loadUploads(files: CheckpointFile[]): Promise<void> {
  const kinds = files.map((f) => ({ f, config: decodeCheckpoint(f.bytes, f.name).config as { kind?: unknown; latent?: LatentInfo } }));
  const vqgans = kinds.filter((k) => k.config.kind === 'vqgan');
  const models = kinds.filter((k) => k.config.kind !== 'vqgan');
  if (models.length > 1 || vqgans.length > 1) throw new Error(`${files.map((f) => f.name).join(', ')}: choose one diffusion model, and with a latent model its VQ-GAN`);
  const model = models[0];
  const vqgan = vqgans[0]?.f ?? null;
  if (!model) {
    if (pendingLatent) return loadModel(pendingLatent.file, vqgan);
    throw new Error(`${vqgan!.name} is a VQ-GAN, not a diffusion model: upload it together with a latent diffusion model trained on its latents`);
  }
  if (model.config.kind === 'diffusion' && model.config.latent && !vqgan) {
    // Kept, so that uploading its VQ-GAN next completes it.
    pendingLatent = { file: model.f, recorded: String(model.config.latent.vqgan) };
    throw new Error(`${model.f.name} is a latent diffusion model: its samples are latents that the VQ-GAN it was trained with decodes (its header names '${pendingLatent.recorded}'). Upload that VQ-GAN file now, or choose both files together`);
  }
  await loadModel(model.f, vqgan);
}

async function withLoading(what: string, f: () => Promise<void>): Promise<void> {
  clearSection('ck');
  loading = true;
  refresh();
  setStatus(el.ckStatus, `loading ${what}…`, 'running');
  const before = current;
  try {
    await f();
    setStatus(el.ckStatus, `loaded ${what}`, 'done');
  } catch (e) {
    sectionError('ck', e, `Could not load ${what}: `);
    current = before;
    describeModel();
  } finally {
    loading = false;
    refresh();
  }
}

function setCurrent(c: Current): void {
  current = c;
  const samplers = samplersFor(c.process);
  const was = el.smSampler.value;
  el.smSampler.replaceChildren(...samplers.map((s) => new Option(s, s)));
  el.smSampler.value = samplers.includes(was) ? was : samplers.includes('ddim') ? 'ddim' : samplers[0]!;
  el.smClasses.replaceChildren(new Option('all'), ...c.classes.map((n) => new Option(n)));
  if (c.classes.length) {
    const valid = el.smLabels.value.trim() !== '' && el.smLabels.value.split(',').every((l) => l.trim() === 'all' || safeLabel(l.trim(), c.classes));
    if (!valid) el.smLabels.value = c.classes.slice(0, Math.min(4, c.classes.length)).join(',');
    el.smClassesHint.textContent = `classes: ${c.classes.join(' ')} (names or indices 0..${c.classes.length - 1}, comma-separated, or 'all')`;
  } else {
    el.smLabels.value = '';
    el.smClassesHint.textContent = 'unconditional model: no labels';
  }
  describeModel();
  refresh();
}

function safeLabel(l: string, classes: readonly string[]): boolean {
  try {
    parseLabel(l, classes);
    return true;
  } catch {
    return false;
  }
}

function describeModel(): void {
  if (!current) {
    el.modelInfo.textContent = 'No model yet: load a checkpoint or train one below.';
    lab.model = null;
    return;
  }
  const net = current.net();
  const c = net.config;
  const cond = c.conditioning === 'none' ? 'unconditional' : `${c.conditioning}-conditional on ${current.classes.length} classes`;
  const step = current.source === 'training' && run ? run.trainer.steps : current.step;
  const lt = current.latent;
  const space = lt
    ? `latent: ${lt.info.latentShape.join('×')} latents, decoded by the VQ-GAN ${lt.vqgan} to images ${lt.info.imageShape[1]}×${lt.info.imageShape[2]}×${lt.info.imageShape[0]}`
    : `images ${c.sampleSize}×${c.sampleSize}×${c.inChannels}`;
  lab.model = current.name;
  el.modelInfo.textContent =
    `${current.name}${current.source === 'training' ? ' (EMA weights of the run in this tab)' : ''}\n` +
    `U-Net ${c.blockOutChannels.join('-')} channels, ${net.parameterCount.toLocaleString('en')} parameters, ${space}, ${cond}\n` +
    `process ${current.process.kind}, trained ${step} steps`;
}

// ---------------------------------------------------------------- data

async function loadData(spec: DataSpec): Promise<ImageDataset> {
  if (spec.name === 'letters') {
    if (!glyphs) {
      const [png, meta] = await Promise.all([fetch('./data/letters/glyphs.png'), fetch('./data/letters/glyphs.json')]);
      if (!png.ok || !meta.ok) throw new Error(`the letters sprite sheet could not be fetched (HTTP ${png.status} / ${meta.status}) from ./data/letters/`);
      glyphs = { glyphsPng: new Uint8Array(await png.arrayBuffer()), meta: (await meta.json()) as LettersMeta };
    }
    if (spec.size !== 16 && spec.size !== 32) throw new Error(`letters: size ${spec.size}; allowed values: 16, 32`);
    const d = makeLetters({ ...glyphs, size: spec.size, perGlyph: spec.count, seed: spec.seed, split: 'train' });
    return { images: d.images, labels: d.labels, shape: d.shape, classes: glyphs.meta.letters.split('') };
  }
  const d = makeColorsDataset({ n: spec.count, size: spec.size, seed: spec.seed });
  return { images: d.images, labels: d.labels, shape: d.shape, classes: d.classes };
}

// ---------------------------------------------------------------- training

async function startTraining(): Promise<void> {
  if (!dev) return;
  const steps = num(el.trSteps, 'steps', { int: true, min: 1 });
  const batch = num(el.trBatch, 'batch', { int: true, min: 1, max: 1024 });
  const lr = num(el.trLr, 'learning rate', { min: 0, max: 1 });
  const ema = num(el.trEma, 'EMA', { min: 0, max: 1 });
  const seed = num(el.trSeed, 'seed', { int: true });
  const spec: DataSpec = {
    name: el.trData.value as DataSpec['name'], size: Number(el.trSize.value), count: num(el.trCount, 'count', { int: true, min: 1 }), seed,
  };
  setStatus(el.trStatus, `making the ${spec.name} dataset…`, 'running');
  const data = await loadData(spec);
  drawGrid(el.trPreview, toGrid(data.images.subarray(0, 16 * data.shape[1] * data.shape[2] * data.shape[3]), [Math.min(16, data.shape[0]), data.shape[1], data.shape[2], data.shape[3]], 4), 160, 160);

  const fromCk = el.trFrom.value === 'loaded' ? loadedCk : null;
  let net: UNet;
  let process: NoiseProcess;
  if (fromCk) {
    const cfg = fromCk.ck!.config as unknown as DiffusionCheckpointConfig;
    net = new UNet(new Init(dev, seed), unetConfigFromCheckpoint(cfg.model));
    process = makeProcess(cfg.process);
  } else {
    const [, channels, size] = data.shape;
    net = new UNet(new Init(dev, seed), resolveUNetConfig(presetConfig(el.trModel.value, size, channels, 'class', data.classes.length)));
    process = makeProcess('ddpm');
  }
  const startStep = fromCk ? fromCk.step : 0;
  const total = startStep + steps;
  const opts: TrainOptions = { batch, lr, steps: total, warmupSteps: Math.min(100, Math.floor(steps / 10)), schedule: 'constant', emaDecay: ema, guidanceDropout: 0.1, seed };
  const trainer = new DiffusionTrainer(dev, net, process, data, opts);
  trainer.header = { data: { ...spec } }; // recorded in the checkpoint a download gives
  if (fromCk) {
    // Weights, EMA, Adam moments, key and step; batch, lr and seed are this page's.
    trainer.resume(fromCk.ck!);
  }
  run = { trainer, spec, total, running: false, pauseRequested: false, readEvery: 1, marks: [] };
  lab.losses = [];
  lab.lossSteps = [];
  drawLossPlot(el.trPlot, [], []);
  const name = `${spec.name} ${spec.size}×${spec.size}, ${fromCk ? `continued from ${fromCk.name}` : `new '${el.trModel.value}' model`}`;
  setCurrent({ source: 'training', name, net: () => trainer.emaModel(), process, classes: data.classes, defaults: samplerDefaults({}), step: startStep });
  await trainLoop(run);
}

async function trainLoop(r: TrainRun): Promise<void> {
  r.running = true;
  r.pauseRequested = false;
  r.marks = [];
  refresh();
  const t = r.trainer;
  if (current?.source !== 'training') setCurrent({ source: 'training', name: `${r.spec.name} ${r.spec.size}×${r.spec.size} run`, net: () => t.emaModel(), process: t.process, classes: t.data.classes, defaults: samplerDefaults({}), step: t.steps });
  setStatus(el.trStatus, `step ${t.steps}/${r.total}: compiling the training step…`, 'running');
  const pending: Tensor[] = [];
  try {
    while (!r.pauseRequested && t.steps < r.total) {
      const loss = await t.step();
      // The step's loss buffer is overwritten by the next step: keep a copy until it is read.
      pending.push(noGrad(() => ops.affine(loss, 1, 0)));
      if (pending.length >= r.readEvery || t.steps >= r.total || r.pauseRequested) {
        const values = await Promise.all(pending.map((p) => p.item()));
        const first = t.steps - values.length + 1;
        values.forEach((v, i) => {
          lab.losses.push(v);
          lab.lossSteps.push(first + i);
        });
        pending.forEach((p) => p.dispose());
        pending.length = 0;
        showProgress(r);
        await yieldToUi();
      }
    }
    setStatus(el.trStatus, statusText(r, t.steps >= r.total ? 'done' : 'paused'), t.steps >= r.total ? 'done' : 'paused');
  } catch (e) {
    sectionError('tr', e, `Training stopped at step ${t.steps}: `);
  } finally {
    r.running = false;
    describeModel();
    refresh();
  }
}

function showProgress(r: TrainRun): void {
  const now = performance.now();
  r.marks.push([now, r.trainer.steps]);
  while (r.marks.length > 2 && now - r.marks[0]![0] > 5000) r.marks.shift();
  const sps = stepsPerSecond(r);
  // Aim for about four readbacks a second: each one waits for the GPU to drain.
  if (Number.isFinite(sps)) r.readEvery = Math.max(1, Math.min(50, Math.round(sps / 4)));
  el.trProgress.value = r.trainer.steps / r.total;
  setStatus(el.trStatus, statusText(r, 'running'), 'running');
  drawLossPlot(el.trPlot, lab.lossSteps, lab.losses);
}

function stepsPerSecond(r: TrainRun): number {
  if (r.marks.length < 2) return NaN;
  const [t0, s0] = r.marks[0]!;
  const [t1, s1] = r.marks[r.marks.length - 1]!;
  return ((s1 - s0) * 1000) / (t1 - t0);
}

function statusText(r: TrainRun, what: 'running' | 'paused' | 'done'): string {
  const s = r.trainer.steps;
  const n = lab.losses.length;
  const recent = lab.losses.slice(Math.max(0, n - 10));
  const loss = recent.length ? (recent.reduce((a, b) => a + b, 0) / recent.length).toFixed(4) : '—';
  const sps = stepsPerSecond(r);
  const rate = Number.isFinite(sps) ? `${sps.toFixed(sps < 10 ? 2 : 1)} steps/s` : '— steps/s';
  const eta = Number.isFinite(sps) && sps > 0 && what === 'running' ? `, ${fmtTime((r.total - s) / sps)} left` : '';
  const head = what === 'paused' ? 'paused at ' : what === 'done' ? 'done: ' : '';
  return `${head}step ${s}/${r.total} · loss ${loss} (last ${recent.length}) · ${rate}${eta}`;
}

function fmtTime(s: number): string {
  return s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;
}

// ---------------------------------------------------------------- sampling

async function runSampling(): Promise<void> {
  if (!dev || !current) return;
  const c = current;
  const sampler = el.smSampler.value;
  const steps = num(el.smSteps, 'steps', { int: true, min: 1, max: 10_000 });
  const count = num(el.smCount, c.classes.length ? 'per label' : 'images', { int: true, min: 1, max: 256 });
  const seed = num(el.smSeed, 'seed', { int: true });
  const every = num(el.smEvery, 'live every', { int: true, min: 1 });
  const guidance = c.classes.length ? num(el.smGuidance, 'guidance', { min: 0 }) : 1;
  const eta = sampler === 'ddim' ? num(el.smEta, 'eta', { min: 0, max: 1 }) : undefined;
  const guidanceRescale = c.classes.length ? num(el.smRescale, 'rescale φ', { min: 0, max: 1 }) : 0;
  const guidanceParallel = c.classes.length ? num(el.smParallel, 'parallel η', { min: 0, max: 1 }) : 1;
  const guidanceInterval = c.classes.length && el.smInterval.value.trim() ? field(el.smInterval, () => parseGuidanceInterval(el.smInterval.value.trim(), 'interval σ')) : undefined;
  // x̂0 within the model's range (its default clip bound, 1 for pixel models): the default, none, or dynamic thresholding.
  const limit = el.smLimit.value;
  const samplerOptions: SamplerOptions = { ...c.defaults, ...(eta !== undefined ? { eta } : {}) };
  if (limit === 'off') samplerOptions.clipSample = false;
  if (limit === 'threshold') samplerOptions.thresholdRatio = 0.995;
  let labels: number[] | null = null;
  if (c.classes.length) {
    const names = el.smLabels.value.split(',').map((s) => s.trim()).filter(Boolean);
    if (!names.length) throw new FieldError(el.smLabels, `labels: give class names or indices (${c.classes.join(', ')}) or 'all'`);
    const picked = names.includes('all') ? c.classes.map((_, i) => i) : names.map((l) => field(el.smLabels, () => parseLabel(l, c.classes)));
    labels = picked.flatMap((l) => Array<number>(count).fill(l));
  }
  const n = labels ? labels.length : count;
  if (n > 512) throw new Error(`${n} images at once is more than this page allows (512): fewer labels or fewer per label`);
  const cols = gridColumns(n, count, labels !== null);
  sampling = true;
  refresh();
  el.smProgress.value = 0;
  setStatus(el.smStatus, `compiling the ${sampler} step…`, 'running');
  const t0 = performance.now();
  try {
    const r = await generate(dev, c.net(), c.process, {
      sampler, steps, labels, count, guidance, guidanceRescale, guidanceParallel, guidanceInterval, seed, samplerOptions, snapshotEvery: every,
      onSnapshot: async (snap, total) => {
        const shape = [n, ...snap.x0.shape.slice(1)] as [number, number, number, number];
        const x0 = (await snap.x0.read()) as Float32Array;
        snap.x0.dispose();
        // A latent model's x̂₀ is latents: shown as the VQ-GAN decodes them, as its samples are.
        const live = c.latent ? await c.latent.decode(x0, shape) : { images: x0, shape };
        drawGrid(el.smLive, toGrid(live.images, live.shape, cols));
        el.smLiveCaption.textContent = `x̂₀ after step ${snap.step + 1} of ${total}${c.latent ? ', decoded by the VQ-GAN' : ''}`;
        el.smProgress.value = (snap.step + 1) / total;
        setStatus(el.smStatus, `step ${snap.step + 1}/${total} · ${((performance.now() - t0) / 1000).toFixed(1)} s`, 'running');
        await yieldToUi();
      },
    });
    r.x.dispose();
    const out = c.latent ? await c.latent.decode(r.images, r.shape) : r;
    lastGrid = toGrid(out.images, out.shape, cols);
    drawGrid(el.smGrid, lastGrid);
    lab.lastGrid = { width: lastGrid.width, height: lastGrid.height, channels: lastGrid.channels };
    lastGridName = `samples-${sampler}-${steps}steps-seed${seed}.png`;
    el.smProgress.value = 1;
    setStatus(el.smStatus, `done: ${n} images, ${sampler}, ${r.steps} steps, guidance ${guidance}, seed ${seed}, in ${((performance.now() - t0) / 1000).toFixed(1)} s`, 'done');
  } finally {
    sampling = false;
    refresh();
  }
}

/** A check of one field's text that throws its own error: a FieldError of that field. */
function field<T>(input: HTMLElement, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw new FieldError(input, message(e));
  }
}

// ---------------------------------------------------------------- wiring

/** Runs a control's action; an error shows in that control's section (see sectionError). */
function action(section: Section, f: () => Promise<void>): () => void {
  return () => {
    clearSection(section);
    f().catch((e) => {
      sectionError(section, e);
      refresh();
    });
  };
}

function wire(): void {
  el.errorClose.onclick = clearError;
  el.ckSelect.onchange = refresh;
  // count means variants per (font, letter) for letters (1: 286 images) and images for colors.
  el.trData.onchange = () => (el.trCount.value = el.trData.value === 'colors' ? '512' : '1');
  el.trFrom.onchange = () => {
    // Continuing a checkpoint: its own dataset, when its header names one this page can make.
    const data = (loadedCk?.ck?.config as { data?: Partial<DataSpec> } | undefined)?.data;
    if (el.trFrom.value === 'loaded' && data && (data.name === 'letters' || data.name === 'colors')) {
      el.trData.value = data.name;
      if (data.size) el.trSize.value = String(data.size);
      if (data.count) el.trCount.value = String(data.count);
    }
    refresh();
  };
  el.smSampler.onchange = refresh;
  el.ckLoad.onclick = action('ck', async () => {
    const c = shipped[Number(el.ckSelect.value)];
    if (!c) return;
    await withLoading(c.name, async () => {
      const get = async (url: string, name: string): Promise<CheckpointFile> => {
        const r = await fetch(url);
        if (!r.ok) throw new Error(`HTTP ${r.status} for ${url}`);
        return { name, bytes: new Uint8Array(await r.arrayBuffer()) };
      };
      const [model, vqgan] = await Promise.all([get(c.url, c.name), c.vqgan ? get(c.vqgan.url, c.vqgan.name) : null]);
      await loadModel(model, vqgan);
    });
  });
  const diffusersInput = (input: HTMLInputElement) => action('ck', async () => {
    const files = Array.from(input.files ?? []);
    if (!files.length) return;
    await withLoading('the diffusers model', async () => loadDiffusersFolder(files));
    input.value = ''; // choosing the same files again loads them again
  });
  el.dfFiles.onchange = diffusersInput(el.dfFiles);
  el.dfFolder.onchange = diffusersInput(el.dfFolder);
  el.ckFile.onchange = action('ck', async () => {
    const files = Array.from(el.ckFile.files ?? []);
    if (!files.length) return;
    const name = files.map((f) => f.name).join(' + ');
    await withLoading(name, async () => loadUploads(await Promise.all(files.map(async (f) => ({ name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) })))));
    el.ckFile.value = ''; // choosing the same file again loads it again
  });
  el.ckDownload.onclick = action('ck', async () => {
    if (!current) return;
    if (current.source === 'training' && run) {
      const bytes = await run.trainer.state();
      download(bytes, `lab-${run.spec.name}${run.spec.size}-step${run.trainer.steps}.safetensors`, 'application/octet-stream');
    } else if (current.bytes) {
      download(current.bytes, current.name.replace(/^.*\//, '').replace(/(\.safetensors)?$/, '.safetensors'), 'application/octet-stream');
    }
  });
  el.trStart.onclick = action('tr', async () => {
    if (run && !run.running && run.trainer.steps < run.total && !confirmNewRun()) return;
    await startTraining();
  });
  el.trPause.onclick = action('tr', async () => {
    if (!run) return;
    if (run.running) {
      run.pauseRequested = true;
      setStatus(el.trStatus, `pausing after step ${run.trainer.steps + 1}…`, 'running');
      refresh();
    } else {
      await trainLoop(run);
    }
  });
  el.smRun.onclick = action('sm', runSampling);
  el.smDownload.onclick = () => {
    if (lastGrid) download(encodePng(lastGrid.pixels, lastGrid.width, lastGrid.height, lastGrid.channels), lastGridName, 'image/png');
  };
  window.addEventListener('unhandledrejection', (e) => showError(message(e.reason)));
  window.addEventListener('error', (e) => showError(e.message));
}

/** A paused run is replaced only when the user says so (headless tests answer through a dialog handler). */
function confirmNewRun(): boolean {
  return window.confirm(`Start a new run? The paused run (step ${run!.trainer.steps} of ${run!.total}) will be discarded; download its checkpoint first to keep it.`);
}

start().catch((e) => showError(`The lab failed to start: ${message(e)}`));
