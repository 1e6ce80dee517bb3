// The lab page (examples/lab) driven through its controls in headless Chromium (WebGPU on SwiftShader),
// served by the same server as `npm run lab`. Screenshots go to test-artifacts/lab-*.png.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { Browser, Page } from 'puppeteer-core';
import { createDevice, Device, decodeCheckpoint, decodePng, generate, imagesToGrid, modelFromCheckpoint, samplerDefaults, parseLabel, parseSafetensors, serializeSafetensors, loadDiffusionModel, sampleImages } from '../src/index.js';
import { startLabServer, LabServer, shippedCheckpoints, cannotSample } from '../examples/lab/server.js';
import { gridColumns } from '../examples/lab/view.js';
import { launchChromium, newPage, screenshot, ROOT } from './lab/chromium.js';
import { labCheckpoint, LabCheckpoint } from './lab/checkpoint.js';

let dev: Device;
let ck: LabCheckpoint;
/** The shipped latent colours model (16x16 images from 4x4x4 latents) and its VQ-GAN, beside it. */
const LATENT = { name: 'colors/latent', path: join(ROOT, 'examples', 'checkpoints', 'colors', 'latent.safetensors') };
const LATENT_VQGAN = join(ROOT, 'examples', 'checkpoints', 'colors', 'vqgan.safetensors');
let lab: LabServer;
let browser: Browser;

beforeAll(async () => {
  dev = await createDevice({ log: () => {} });
  ck = await labCheckpoint(dev);
  // The letters model first (the tests' default, entry 0), the latent model second.
  lab = await startLabServer({ checkpoints: [{ name: ck.name, path: ck.path }, LATENT] });
  browser = await launchChromium();
}, 600_000);

afterAll(async () => {
  await browser?.close();
  await lab?.close();
  dev?.destroy();
});

// ---------------------------------------------------------------- helpers

async function open(): Promise<{ page: Page; logs: string[] }> {
  const p = await newPage(browser);
  await p.page.goto(lab.url);
  await p.page.waitForFunction(() => document.body.dataset.ready, { timeout: 60_000 });
  return p;
}

async function setValue(page: Page, selector: string, value: string): Promise<void> {
  await page.$eval(
    selector,
    (e, v) => {
      (e as HTMLInputElement | HTMLSelectElement).value = v;
      e.dispatchEvent(new Event('input', { bubbles: true }));
      e.dispatchEvent(new Event('change', { bubbles: true }));
    },
    value,
  );
}

/** Waits until a status element reaches one of the states; returns the state. */
async function waitState(page: Page, selector: string, states: string[], timeout: number): Promise<string> {
  await page.waitForFunction((s, st) => st.includes(document.querySelector<HTMLElement>(s)?.dataset.state ?? ''), { timeout, polling: 200 }, selector, states);
  return page.$eval(selector, (e) => (e as HTMLElement).dataset.state!);
}

const text = (page: Page, selector: string) => page.$eval(selector, (e) => e.textContent ?? '');
/** Whether any error shows: the page's banner or a section's error line. */
const errorShown = (page: Page) => page.$$eval('#error, .inline-error', (es) => es.some((e) => !(e as HTMLElement).hidden));
const errorText = (page: Page) => page.$$eval('#error, .inline-error', (es) => es.filter((e) => !(e as HTMLElement).hidden).map((e) => e.textContent).join(' | '));

async function loadShipped(page: Page): Promise<void> {
  await setValue(page, '#ck-select', '0');
  await page.click('#ck-load');
  await page.waitForFunction(() => !(document.querySelector('#sm-run') as HTMLButtonElement).disabled || !(document.querySelector('#ck-error') as HTMLElement).hidden, { timeout: 60_000 });
  expect(await errorShown(page), await errorText(page)).toBe(false);
  expect(await text(page, '#model-info')).toContain(ck.name);
}

async function canvasRgba(page: Page, selector: string): Promise<{ width: number; height: number; data: number[] }> {
  return page.$eval(selector, (c) => {
    const canvas = c as HTMLCanvasElement;
    const d = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
    return { width: d.width, height: d.height, data: Array.from(d.data) };
  });
}

/** Lets the page's downloads land in a fresh folder; returns it. */
async function downloadsTo(page: Page): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'wgd-lab-dl-'));
  const cdp = await page.createCDPSession();
  await cdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: dir });
  return dir;
}

async function waitForFile(dir: string, suffix: string, timeout = 30_000): Promise<string> {
  const end = Date.now() + timeout;
  while (Date.now() < end) {
    const f = readdirSync(dir).find((n) => n.endsWith(suffix));
    if (f) return join(dir, f);
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`no *${suffix} downloaded into ${dir} within ${timeout} ms (found: ${readdirSync(dir).join(', ') || 'nothing'})`);
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

// ---------------------------------------------------------------- tests

describe('lab server (npm run lab)', () => {
  it('prints its 127.0.0.1 address and serves the page, the sprite sheet and the checkpoint list', async () => {
    const child = spawn(process.execPath, [join(ROOT, 'scripts', 'run.mjs'), 'examples/lab/serve.ts', '--port', '0', '--checkpoint', `${ck.name}=${ck.path}`, '--checkpoint', `latent=${LATENT.path},${LATENT_VQGAN}`], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise((resolve) => child.on('exit', resolve));
    let url = '';
    try {
      let out = '';
      url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no address printed within 60 s; output: ${out}`)), 60_000);
        child.stdout.on('data', (b: Buffer) => {
          out += b.toString();
          const m = /webgpu-diffusion lab: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
          if (m) {
            clearTimeout(timer);
            resolve(m[1]!);
          }
        });
        child.stderr.on('data', (b: Buffer) => (out += b.toString()));
        child.on('exit', (code) => reject(new Error(`server exited with ${code}: ${out}`)));
      });
      expect(await (await fetch(url)).text()).toContain('<title>webgpu-diffusion lab</title>');
      expect((await fetch(url + 'main.js')).status).toBe(200);
      expect((await fetch(url + 'data/letters/glyphs.png')).headers.get('content-type')).toBe('image/png');
      const list = (await (await fetch(url + 'checkpoints/index.json')).json()) as { name: string; url: string; bytes: number; vqgan?: { name: string; url: string; bytes: number } }[];
      expect(list.map((c) => c.name)).toEqual([ck.name, 'latent']);
      expect((await fetch(new URL(list[0]!.url, url))).headers.get('content-length')).toBe(String(list[0]!.bytes));
      // A latent model's entry names its VQ-GAN, served beside it (the page fetches the two together).
      expect(list[0]!.vqgan).toBeUndefined();
      expect(list[1]!.vqgan?.name).toBe('vqgan.safetensors');
      const vq = await fetch(new URL(list[1]!.vqgan!.url, url));
      expect(new Uint8Array(await vq.arrayBuffer())).toEqual(new Uint8Array(readFileSync(LATENT_VQGAN)));
      expect((await fetch(url + '../package.json')).status).toBe(404);
    } finally {
      child.kill();
    }
    // Stopping the wrapper stops the server it runs (scripts/run.mjs passes the signal on).
    await exited;
    await expect(fetch(url)).rejects.toThrow();
  }, 120_000);
});

describe('lab checkpoints', () => {
  it('offers only the models the page can sample: no VQ-GANs or classifiers; a latent model with its VQ-GAN, refused without it', async () => {
    const all = readdirSync(join(ROOT, 'examples', 'checkpoints'), { recursive: true }).map(String).filter((f) => f.endsWith('.safetensors'));
    const listed = shippedCheckpoints();
    // The shipped folder holds classifiers and VQ-GANs (the old default was colors/classifier).
    expect(all.some((f) => /classifier/.test(f)) && all.some((f) => /vqgan/.test(f))).toBe(true);
    expect(listed.length).toBeGreaterThan(0);
    expect(listed.length).toBeLessThan(all.length);
    for (const f of all) {
      const path = join(ROOT, 'examples', 'checkpoints', f);
      const config = decodeCheckpoint(new Uint8Array(readFileSync(path)), path).config as { kind?: string; latent?: unknown };
      // Every shipped latent model has its VQ-GAN beside it, so every diffusion model is listed.
      const entry = listed.find((c) => c.path === path);
      expect(Boolean(entry), f).toBe(config.kind === 'diffusion');
      if (entry) expect([f, entry.vqgan !== undefined]).toEqual([f, Boolean(config.latent)]);
    }
    expect(listed.find((c) => c.name === 'colors/latent')).toEqual({ ...LATENT, vqgan: LATENT_VQGAN });
    expect(cannotSample(join(ROOT, 'examples', 'checkpoints', 'letters', 'classifier.safetensors'))).toMatch(/a classifier checkpoint, not a diffusion model/);
    await expect(startLabServer({ checkpoints: [{ name: 'clf', path: join(ROOT, 'examples', 'checkpoints', 'letters', 'classifier.safetensors') }] })).rejects.toThrow(/checkpoint 'clf' .* cannot be sampled in the page: it is a classifier checkpoint/);
    // A latent model copied away from its VQ-GAN is not offered, and the reason names the file it needs.
    const alone = join(mkdtempSync(join(tmpdir(), 'wgd-lab-latent-')), 'latent.safetensors');
    writeFileSync(alone, readFileSync(LATENT.path));
    expect(cannotSample(alone)).toMatch(/^it is a latent diffusion model and its VQ-GAN \(its header names '\.\.\/colors-vqgan\/vqgan\.safetensors'\) was not found beside it/);
    await expect(startLabServer({ checkpoints: [{ name: 'alone', path: alone }] })).rejects.toThrow(/checkpoint 'alone' .* cannot be sampled in the page: it is a latent diffusion model and its VQ-GAN/);
    // Given by hand, the VQ-GAN must be one.
    const clf = join(ROOT, 'examples', 'checkpoints', 'colors', 'classifier.safetensors');
    expect(cannotSample(alone, clf)).toMatch(/its VQ-GAN .*classifier\.safetensors is a classifier checkpoint, not a VQ-GAN/);
    expect(cannotSample(alone, LATENT_VQGAN)).toBeNull();
  });
});

describe('lab page in headless Chromium', () => {
  it('shows each error beside the control that caused it and in that section\'s status line, never only in a banner out of view', async () => {
    const { page } = await open();
    await loadShipped(page);
    const inView = (sel: string) => page.$eval(sel, (e) => {
      const r = e.getBoundingClientRect();
      return !(e as HTMLElement).hidden && r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight;
    });
    const state = (sel: string) => page.$eval(sel, (e) => (e as HTMLElement).dataset.state);
    const invalid = (sel: string) => page.$eval(sel, (e) => e.getAttribute('aria-invalid'));
    // A bad field: named beside the sampler's controls, the field marked, the status line says failed.
    await setValue(page, '#sm-steps', '0');
    await page.click('#sm-run');
    await page.waitForFunction(() => !(document.querySelector('#sm-error') as HTMLElement).hidden, { timeout: 30_000 });
    expect(await text(page, '#sm-error')).toMatch(/^steps = '0': expected an integer ≥ 1/);
    expect(await invalid('#sm-steps')).toBe('true');
    expect(await state('#sm-status')).toBe('error');
    expect(await text(page, '#sm-status')).toMatch(/^failed: steps = '0'/);
    expect(await inView('#sm-error')).toBe(true);
    expect(await page.$eval('#error', (e) => (e as HTMLElement).hidden)).toBe(true);
    await screenshot(page, 'lab-field-error.png');
    // A label the model lacks: the labels field this time; the earlier mark is gone.
    await setValue(page, '#sm-steps', '2');
    await setValue(page, '#sm-labels', 'A,ZZ');
    await page.click('#sm-run');
    await page.waitForFunction(() => /ZZ/.test(document.querySelector('#sm-error')!.textContent ?? ''), { timeout: 30_000 });
    expect(await text(page, '#sm-error')).toMatch(/label 'ZZ' is not a class of this model/);
    expect([await invalid('#sm-labels'), await invalid('#sm-steps')]).toEqual(['true', null]);
    expect(await state('#sm-status')).toBe('error');
    // Training's own errors go to the training section.
    await setValue(page, '#tr-steps', '-1');
    await page.click('#tr-start');
    await page.waitForFunction(() => !(document.querySelector('#tr-error') as HTMLElement).hidden, { timeout: 30_000 });
    expect(await text(page, '#tr-error')).toMatch(/^steps = '-1'/);
    expect(await state('#tr-status')).toBe('error');
    // An uploaded classifier is named as such beside the upload control; the loaded model stays.
    const before = await text(page, '#model-info');
    const input = await page.$('#ck-file');
    await (input as unknown as { uploadFile(p: string): Promise<void> }).uploadFile(join(ROOT, 'examples', 'checkpoints', 'letters', 'classifier.safetensors'));
    await page.waitForFunction(() => !(document.querySelector('#ck-error') as HTMLElement).hidden, { timeout: 30_000 });
    expect(await text(page, '#ck-error')).toMatch(/^Could not load classifier\.safetensors: .*not a diffusion model \(its config has kind 'classifier'\)/);
    expect(await state('#ck-status')).toBe('error');
    expect(await text(page, '#model-info')).toBe(before);
    expect(await inView('#ck-error')).toBe(true);
    await page.close();
  }, 300_000);

  it('loads: shows the adapter and its limits and lists the shipped checkpoint', async () => {
    const { page, logs } = await open();
    expect(await page.evaluate(() => document.body.dataset.ready)).toBe('true');
    expect(await text(page, '#adapter')).toMatch(/^WebGPU adapter: \S/);
    const limits = await page.$$eval('#limits tr', (rows) => rows.map((r) => [r.children[0]!.textContent, r.children[1]!.textContent]));
    const binding = limits.find(([k]) => k === 'maxStorageBufferBindingSize');
    expect(binding?.[1], JSON.stringify(limits)).toMatch(/^\d+/);
    expect(Number(binding![1]!.split(' ')[0])).toBeGreaterThanOrEqual(128 * 2 ** 20); // WebGPU's default minimum
    const options = await page.$$eval('#ck-select option', (o) => o.map((x) => x.textContent ?? ''));
    expect(options.some((o) => o.startsWith(ck.name))).toBe(true);
    expect(await page.$eval('#tr-start', (b) => (b as HTMLButtonElement).disabled)).toBe(false);
    expect(await errorShown(page)).toBe(false);
    await screenshot(page, 'lab-loaded.png');
    expect(logs.filter((l) => /^(error|pageerror)/.test(l))).toEqual([]);
    await page.close();
  }, 60_000);

  it('says clearly that WebGPU is missing in a browser without it, and disables the controls', async () => {
    const { page } = await newPage(browser);
    await page.evaluateOnNewDocument(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined, configurable: true }));
    await page.goto(lab.url);
    await page.waitForFunction(() => document.body.dataset.ready, { timeout: 30_000 });
    expect(await page.evaluate(() => document.body.dataset.ready)).toBe('no-webgpu');
    expect(await page.$eval('#nogpu', (e) => (e as HTMLElement).hidden)).toBe(false);
    expect(await text(page, '#nogpu')).toMatch(/no WebGPU/);
    const enabled = await page.$$eval('main button, main input, main select', (els) => els.filter((e) => !(e as HTMLButtonElement).disabled).map((e) => e.id));
    expect(enabled).toEqual([]);
    await screenshot(page, 'lab-no-webgpu.png');
    await page.close();
  }, 60_000);

  it('samples a grid from the shipped checkpoint, live, and its pixels match Node for the same seed (within 2/255)', async () => {
    const { page, logs } = await open();
    await loadShipped(page);
    const ckData = decodeCheckpoint(new Uint8Array(readFileSync(ck.path)), ck.path);
    const classes = ((ckData.config as { classes?: string[] }).classes ?? []) as string[];
    const names = ['W', 'E', 'B', 'G', 'P', 'U'].filter((n) => classes.includes(n));
    const labelText = names.length === 6 ? names.join(',') : '0,1,2,3';
    const labels = labelText.split(',').map((l) => parseLabel(l, classes));
    // With both guidance variants set, so the page is checked to pass them on (Node gets the same).
    const opts = { sampler: 'ddim', steps: 10, guidance: 2, seed: 7, eta: 0, guidanceParallel: 0.5, guidanceInterval: [0.5, 50] as [number, number] };
    await setValue(page, '#sm-sampler', opts.sampler);
    await setValue(page, '#sm-steps', String(opts.steps));
    await setValue(page, '#sm-eta', String(opts.eta));
    await setValue(page, '#sm-guidance', String(opts.guidance));
    await setValue(page, '#sm-parallel', String(opts.guidanceParallel));
    await setValue(page, '#sm-interval', opts.guidanceInterval.join(','));
    await setValue(page, '#sm-labels', labelText);
    await setValue(page, '#sm-count', '1');
    await setValue(page, '#sm-seed', String(opts.seed));
    await setValue(page, '#sm-every', '2');
    const t0 = performance.now();
    await page.click('#sm-run');
    // The live view shows an intermediate x̂0 before the end.
    await page.waitForFunction(() => /after step \d+ of 10/.test(document.querySelector('#sm-live-caption')!.textContent ?? ''), { timeout: 300_000, polling: 100 });
    const firstLive = await text(page, '#sm-live-caption');
    expect(await waitState(page, '#sm-status', ['done', 'error'], 300_000), `${await text(page, '#sm-status')}\n${logs.join('\n')}`).toBe('done');
    const browserSeconds = (performance.now() - t0) / 1000;
    await screenshot(page, 'lab-sample.png');
    expect(await text(page, '#sm-live-caption')).toBe('x̂₀ after step 10 of 10');

    const got = await canvasRgba(page, '#sm-grid');
    const n = labels.length;
    const { net, process } = modelFromCheckpoint(dev, ckData);
    const r = await generate(dev, net, process, { sampler: opts.sampler, steps: opts.steps, labels, guidance: opts.guidance, guidanceParallel: opts.guidanceParallel, guidanceInterval: opts.guidanceInterval, seed: opts.seed, samplerOptions: { ...samplerDefaults(ckData.config), eta: opts.eta } });
    const want = imagesToGrid(r.images, r.shape, { cols: gridColumns(n, 1, true) });
    expect([got.width, got.height]).toEqual([want.width, want.height]);
    expect(want.channels).toBe(1);
    let maxDiff = 0;
    let differ = 0;
    const values: number[] = [];
    for (let i = 0; i < want.width * want.height; i++) {
      const [R, G, B, A] = got.data.slice(4 * i, 4 * i + 4) as [number, number, number, number];
      expect([G, B, A]).toEqual([R, R, 255]); // grey, opaque
      const d = Math.abs(R - want.pixels[i]!);
      maxDiff = Math.max(maxDiff, d);
      if (d) differ++;
      values.push(R);
    }
    console.log(`lab sample: ${n} images, ddim 10 steps in ${browserSeconds.toFixed(1)} s in Chromium; first live view '${firstLive}'; max |browser - Node| = ${maxDiff}/255, ${differ} of ${values.length} pixels differ; checkpoint ${ck.shipped ? 'shipped' : 'stand-in'} (${ck.path})`);
    // Same SwiftShader, same WGSL, same counter-based noise: the two runtimes compute the same floats;
    // 2/255 leaves room for a different rounding of transcendental builtins on another driver.
    expect(maxDiff).toBeLessThanOrEqual(2);
    // Not blank: every tile of the canvas (the black 2-pixel padding between tiles left out) varies.
    // A letter on its background has a standard deviation near 100 grey levels; a uniform tile, 0.
    const [, , H, W] = r.shape;
    const cols = gridColumns(n, 1, true);
    const stds = labels.map((_, k) => {
      const x0 = 2 + (k % cols) * (W + 2);
      const y0 = 2 + Math.floor(k / cols) * (H + 2);
      const tile: number[] = [];
      for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) tile.push(values[(y0 + y) * got.width + x0 + x]!);
      const m = mean(tile);
      return Math.sqrt(mean(tile.map((v) => (v - m) ** 2)));
    });
    console.log(`lab sample: per-tile standard deviations ${stds.map((s) => s.toFixed(0)).join(', ')} (grey levels)`);
    for (const s of stds) expect(s).toBeGreaterThan(10);

    // The PNG download holds the canvas's pixels.
    const dir = await downloadsTo(page);
    await page.click('#sm-download');
    const png = decodePng(new Uint8Array(readFileSync(await waitForFile(dir, '.png'))));
    expect([png.width, png.height, png.channels]).toEqual([got.width, got.height, 1]);
    expect(Array.from(png.data)).toEqual(values);
    await page.close();
  }, 300_000);

  it('samples the shipped latent colours model through its VQ-GAN: decoded grid and live view, matching Node within 2/255; an upload without the VQ-GAN asks for it', async () => {
    const { page, logs } = await open();
    await setValue(page, '#ck-select', '1');
    expect(await page.$eval('#ck-select', (s) => (s as HTMLSelectElement).selectedOptions[0]!.textContent)).toMatch(/^colors\/latent \(.* MiB, latent, with vqgan\.safetensors\)$/);
    await page.click('#ck-load');
    await page.waitForFunction(() => !(document.querySelector('#sm-run') as HTMLButtonElement).disabled || !(document.querySelector('#ck-error') as HTMLElement).hidden, { timeout: 60_000 });
    expect(await errorShown(page), await errorText(page)).toBe(false);
    expect(await text(page, '#model-info')).toMatch(/^colors\/latent\n.*latent: 4×4×4 latents, decoded by the VQ-GAN vqgan\.safetensors to images 16×16×3/);
    const labelText = 'orange,green,blue,purple';
    const opts = { sampler: 'ddim', steps: 4, guidance: 2, seed: 7, eta: 0 };
    for (const [sel, v] of [['#sm-sampler', opts.sampler], ['#sm-steps', String(opts.steps)], ['#sm-eta', '0'], ['#sm-guidance', String(opts.guidance)], ['#sm-labels', labelText], ['#sm-count', '1'], ['#sm-seed', String(opts.seed)], ['#sm-every', '2']] as const) {
      await setValue(page, sel, v);
    }
    const t0 = performance.now();
    await page.click('#sm-run');
    expect(await waitState(page, '#sm-status', ['done', 'error'], 300_000), `${await text(page, '#sm-status')}\n${logs.join('\n')}`).toBe('done');
    const seconds = (performance.now() - t0) / 1000;
    await screenshot(page, 'lab-sample-latent.png');
    // The live view shows x̂₀ as images too: decoded, at the grid's size (latents would be 4x4 tiles).
    expect(await text(page, '#sm-live-caption')).toBe('x̂₀ after step 4 of 4, decoded by the VQ-GAN');
    const live = await canvasRgba(page, '#sm-live');
    const got = await canvasRgba(page, '#sm-grid');
    expect([live.width, live.height]).toEqual([got.width, got.height]);

    // Node, through the same pipeline: the model with its VQ-GAN from the same bytes, sampled and decoded.
    const ckData = decodeCheckpoint(new Uint8Array(readFileSync(LATENT.path)), LATENT.path);
    const classes = (ckData.config as { classes: string[] }).classes;
    const labels = labelText.split(',').map((l) => parseLabel(l, classes));
    const m = loadDiffusionModel(dev, ckData, decodeCheckpoint(new Uint8Array(readFileSync(LATENT_VQGAN))));
    const r = await sampleImages(dev, m, { sampler: opts.sampler, steps: opts.steps, labels, guidance: opts.guidance, guidanceRescale: 0, guidanceParallel: 1, seed: opts.seed, samplerOptions: { eta: opts.eta } });
    expect(r.shape).toEqual([4, 3, 16, 16]);
    const cols = gridColumns(labels.length, 1, true);
    const want = imagesToGrid(r.images, r.shape, { cols });
    expect([got.width, got.height, want.channels]).toEqual([want.width, want.height, 3]);
    let maxDiff = 0;
    let differ = 0;
    for (let i = 0; i < want.width * want.height; i++) {
      expect(got.data[4 * i + 3]).toBe(255);
      for (let ch = 0; ch < 3; ch++) {
        const dv = Math.abs(got.data[4 * i + ch]! - want.pixels[3 * i + ch]!);
        maxDiff = Math.max(maxDiff, dv);
        if (dv) differ++;
      }
    }
    // Not blank, and the labels show: each tile's mean colour (the 2-pixel black padding left out) is
    // far from black and from every other tile's (the four classes are distinct hues).
    const [, , H, W] = r.shape;
    const means = labels.map((_, k) => {
      const x0 = 2 + (k % cols) * (W + 2), y0 = 2 + Math.floor(k / cols) * (H + 2);
      const sum = [0, 0, 0];
      for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) for (let ch = 0; ch < 3; ch++) sum[ch]! += got.data[4 * ((y0 + y) * got.width + x0 + x) + ch]!;
      return sum.map((v) => v / (H * W));
    });
    console.log(`lab latent sample: ${labels.length} images, ddim ${opts.steps} steps and the VQ-GAN decode in ${seconds.toFixed(1)} s in Chromium; max |browser - Node| = ${maxDiff}/255, ${differ} of ${3 * want.width * want.height} values differ; tile mean colours ${means.map((c) => c.map((v) => v.toFixed(0)).join('/')).join(', ')}`);
    // As for the pixel model: the same SwiftShader, WGSL and counter-based noise compute the same
    // floats; 2/255 leaves room for another driver's rounding of transcendentals. The VQ-GAN's nearest-
    // code lookup could turn a tiny latent difference into a different code; it did not here.
    expect(maxDiff).toBeLessThanOrEqual(2);
    for (const c of means) expect(Math.max(...c)).toBeGreaterThan(60);
    for (let a = 0; a < means.length; a++) for (let b = a + 1; b < means.length; b++) {
      expect(Math.hypot(...means[a]!.map((v, ch) => v - means[b]![ch]!)), `tiles ${a} and ${b}`).toBeGreaterThan(40);
    }

    // Uploaded alone, a latent model is not loaded: the error names the VQ-GAN it needs; uploading that
    // file next completes it.
    const input = await page.$('#ck-file');
    const upload = (p: string) => (input as unknown as { uploadFile(p: string): Promise<void> }).uploadFile(p);
    const before = await text(page, '#model-info');
    await upload(LATENT.path);
    await page.waitForFunction(() => !(document.querySelector('#ck-error') as HTMLElement).hidden, { timeout: 30_000 });
    expect(await text(page, '#ck-error')).toMatch(/^Could not load latent\.safetensors: latent\.safetensors is a latent diffusion model: .*\(its header names '\.\.\/colors-vqgan\/vqgan\.safetensors'\)\. Upload that VQ-GAN file now, or choose both files together$/);
    expect(await text(page, '#model-info')).toBe(before);
    await upload(LATENT_VQGAN);
    // The status still shows the first upload's error until this one ends.
    await page.waitForFunction(() => {
      const st = document.querySelector<HTMLElement>('#ck-status')!;
      return st.dataset.state === 'done' || (st.dataset.state === 'error' && !/Upload that VQ-GAN/.test(st.textContent ?? ''));
    }, { timeout: 60_000, polling: 100 });
    expect(await errorShown(page), await errorText(page)).toBe(false);
    expect(await text(page, '#model-info')).toMatch(/^latent\.safetensors\n.*decoded by the VQ-GAN vqgan\.safetensors/);
    // A latent model does not continue training in the page (its panel trains on images).
    expect(await page.$eval('#tr-from option[value=loaded]', (o) => (o as HTMLOptionElement).disabled)).toBe(true);
    await page.close();
  }, 300_000);

  it('trains in the tab: live loss, steps/s and progress, pause and resume; the loss falls; the checkpoint downloads', async () => {
    const { page, logs } = await open();
    for (const [sel, v] of [['#tr-from', 'new'], ['#tr-model', 'tiny'], ['#tr-data', 'letters'], ['#tr-size', '16'], ['#tr-count', '1'], ['#tr-steps', '16'], ['#tr-batch', '4'], ['#tr-lr', '0.002'], ['#tr-ema', '0.9'], ['#tr-seed', '0']] as const) {
      await setValue(page, sel, v);
    }
    const t0 = performance.now();
    await page.click('#tr-start');
    // Pause once a few steps are in, check that it stays paused, then resume.
    await page.waitForFunction(() => window.lab.losses.length >= 4, { timeout: 300_000, polling: 100 });
    expect(await text(page, '#tr-status')).toMatch(/step \d+\/16 · loss \d\.\d+ .* · \d+\.\d+ steps\/s/);
    await page.click('#tr-pause');
    expect(await waitState(page, '#tr-status', ['paused', 'error', 'done'], 120_000), await text(page, '#tr-status')).toBe('paused');
    const pausedAt = await page.evaluate(() => window.lab.losses.length);
    expect(pausedAt).toBeLessThan(16);
    await new Promise((r) => setTimeout(r, 2000));
    expect(await page.evaluate(() => window.lab.losses.length)).toBe(pausedAt);
    expect(await page.$eval('#tr-pause', (b) => b.textContent)).toBe('Resume');
    await screenshot(page, 'lab-train-paused.png');
    await page.click('#tr-pause');
    // The page stays responsive while it trains: over 2 s, the longest the main thread is kept from
    // running a timer (the training loop yields at every readback; the GPU works in its own process).
    const gapMs = await page.evaluate(async () => {
      let max = 0;
      let last = performance.now();
      const end = last + 2000;
      while (performance.now() < end) {
        await new Promise((r) => setTimeout(r, 0));
        const now = performance.now();
        max = Math.max(max, now - last);
        last = now;
      }
      return max;
    });
    expect(await page.evaluate(() => document.querySelector<HTMLElement>('#tr-status')!.dataset.state)).toBe('running');
    expect(gapMs).toBeLessThan(1000);
    expect(await waitState(page, '#tr-status', ['done', 'error'], 600_000), `${await text(page, '#tr-status')}\n${logs.join('\n')}`).toBe('done');
    const seconds = (performance.now() - t0) / 1000;
    const { losses, lossSteps } = await page.evaluate(() => ({ losses: window.lab.losses, lossSteps: window.lab.lossSteps }));
    expect(lossSteps).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
    expect(await page.$eval('#tr-progress', (p) => (p as HTMLProgressElement).value)).toBe(1);
    const first = mean(losses.slice(0, 4));
    const last = mean(losses.slice(-4));
    console.log(`lab training: 16 steps of batch 4 in ${seconds.toFixed(1)} s (paused after ${pausedAt}; longest main-thread stall while training ${gapMs.toFixed(0)} ms); loss over steps 1-4 ${first.toFixed(3)}, over 13-16 ${last.toFixed(3)}; status '${await text(page, '#tr-status')}'`);
    // The first step's loss is the untrained network's: its prediction does not depend on ε, so the
    // ε-MSE is E[ε²] = 1 plus the prediction's mean square (the mean over 4·256 values of ε² has a
    // standard deviation of about 0.04). Adam at lr 2e-3 takes it far below that within 16 steps on
    // letters (measured: steps 1-4 0.76, steps 13-16 0.24); weights that did not learn would leave
    // every step near 1.
    expect(losses[0]).toBeGreaterThan(0.8);
    expect(last).toBeLessThan(0.75 * first);
    await screenshot(page, 'lab-train.png');

    // The run's checkpoint downloads and loads in Node as a model trained for 16 steps.
    const dir = await downloadsTo(page);
    await page.click('#ck-download');
    const bytes = new Uint8Array(readFileSync(await waitForFile(dir, '.safetensors')));
    const c = decodeCheckpoint(bytes, 'downloaded');
    expect((c.config as { step?: number }).step).toBe(16);
    const { config } = modelFromCheckpoint(dev, c);
    expect(config.classes.length).toBe(26);
    await page.close();
  }, 600_000);

  it("loads a diffusers model from its folder's files (weights read slice by slice, with progress), takes its scheduler, and samples it", async () => {
    const { page } = await open();
    const fixture = join(ROOT, 'test', 'fixtures', 'diffusers', 'unet2d-class');
    const folder = mkdtempSync(join(tmpdir(), 'lab-diffusers-'));
    const sched = join(folder, 'scheduler_config.json');
    writeFileSync(sched, JSON.stringify({ _class_name: 'EulerDiscreteScheduler', use_karras_sigmas: true }));
    const input = await page.$('#df-files');
    await (input as unknown as { uploadFile(...p: string[]): Promise<void> }).uploadFile(join(fixture, 'config.json'), join(fixture, 'diffusion_pytorch_model.safetensors'), sched);
    expect(await waitState(page, '#ck-status', ['done', 'error'], 120_000), await errorText(page)).toBe('done');
    expect(await text(page, '#model-info')).toMatch(/UNet2DModel, EulerDiscreteScheduler[\s\S]*class-conditional on 26 classes/);
    expect(await page.$eval('#df-progress', (e) => (e as HTMLProgressElement).value)).toBe(1);
    // Its scheduler's sampler, and guidance 1: a diffusers class model has no null class.
    expect(await page.$eval('#sm-sampler', (e) => (e as HTMLSelectElement).value)).toBe('euler');
    expect(await page.$eval('#sm-guidance', (e) => (e as HTMLInputElement).value)).toBe('1');
    await setValue(page, '#sm-steps', '2');
    await setValue(page, '#sm-labels', '0,25');
    await setValue(page, '#sm-count', '1');
    await page.click('#sm-run');
    expect(await waitState(page, '#sm-status', ['done', 'error'], 300_000), await errorText(page)).toBe('done');
    expect(await page.evaluate(() => window.lab.lastGrid)).toMatchObject({ channels: 1 });
    // Files without a config.json are refused, naming what to choose.
    await (input as unknown as { uploadFile(...p: string[]): Promise<void> }).uploadFile(sched);
    expect(await waitState(page, '#ck-status', ['error'], 30_000)).toBe('error');
    expect(await text(page, '#ck-error')).toMatch(/no config\.json among the 1 file\(s\) chosen/);
  }, 600_000);

  it('shows an error for a malformed uploaded checkpoint, keeps the loaded model, and keeps working', async () => {
    const { page } = await open();
    await loadShipped(page);
    const before = await text(page, '#model-info');
    const dir = mkdtempSync(join(tmpdir(), 'wgd-lab-bad-'));
    const good = new Uint8Array(readFileSync(ck.path));
    const { tensors, metadata } = parseSafetensors(good);
    // A weight of the wrong shape in an otherwise valid checkpoint.
    const reshaped = new Map<string, { shape: readonly number[]; data: Float32Array | Int32Array }>();
    for (const [name, t] of tensors) reshaped.set(name, { shape: t.shape, data: t.data as Float32Array | Int32Array });
    const victim = [...tensors.keys()].find((k) => k.endsWith('conv_in.weight'))!;
    const v = tensors.get(victim)!;
    reshaped.set(victim, { shape: [v.data.length], data: v.data as Float32Array });
    reshaped.set(`ema.${victim}`, { shape: [v.data.length], data: v.data as Float32Array });
    const cases: [string, Uint8Array, RegExp][] = [
      ['garbage.safetensors', Uint8Array.from({ length: 4096 }, (_, i) => (i * 2654435761) >>> 24), /garbage\.safetensors/],
      ['truncated.safetensors', good.subarray(0, Math.floor(good.length / 2)), /truncated\.safetensors/],
      ['wrong-shape.safetensors', serializeSafetensors(reshaped, metadata), /conv_in\.weight/],
    ];
    for (const [name, bytes, pattern] of cases) {
      const path = join(dir, name);
      writeFileSync(path, bytes);
      const input = await page.$('#ck-file');
      await (input as unknown as { uploadFile(p: string): Promise<void> }).uploadFile(path);
      // The error shows beside the upload control, in the model section's status line, not in the banner.
      await page.waitForFunction(() => !(document.querySelector('#ck-error') as HTMLElement).hidden, { timeout: 30_000, polling: 100 });
      const err = await text(page, '#ck-error');
      console.log(`lab upload ${name}: ${err}`);
      expect(err).toMatch(/^Could not load /);
      expect(err).toMatch(pattern);
      expect(await page.$eval('#ck-status', (e) => (e as HTMLElement).dataset.state)).toBe('error');
      expect(await page.$eval('#error', (e) => (e as HTMLElement).hidden)).toBe(true);
      expect(await text(page, '#model-info')).toBe(before);
      if (name === 'wrong-shape.safetensors') await screenshot(page, 'lab-bad-checkpoint.png');
    }
    // Still working: the loaded model samples.
    await setValue(page, '#sm-steps', '2');
    await setValue(page, '#sm-labels', '0,1');
    await setValue(page, '#sm-count', '1');
    await page.click('#sm-run');
    expect(await waitState(page, '#sm-status', ['done', 'error'], 300_000), await text(page, '#sm-status')).toBe('done');
    // The last upload's error stays beside the upload control; sampling shows none of its own.
    expect(await page.$$eval('#error, #sm-error', (es) => es.every((e) => (e as HTMLElement).hidden))).toBe(true);
    expect(existsSync(ck.path)).toBe(true);
    await page.close();
  }, 300_000);
});
