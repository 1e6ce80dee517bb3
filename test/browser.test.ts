// The smoke checks in headless Chromium (puppeteer-core, the system's chromium, WebGPU on SwiftShader),
// on a page served from 127.0.0.1 (WebGPU needs a secure context). A screenshot is saved as an artifact.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser } from 'puppeteer-core';
import { launchChromium } from './lab/chromium.js';
import { bundleForBrowser } from '../examples/lab/server.js';
import { createDevice } from '../src/index.js';
import { randomDraw, RANDOM_DRAW } from './random-draw.js';
import { smokeChecks } from './smoke-checks.js';
import { randomRef } from '../kernels/random.js';

const root = join(import.meta.dirname, '..');
const outDir = join(root, '.cache', 'browser');
const artifacts = join(root, 'test-artifacts');

let server: http.Server;
let browser: Browser;
let base = '';

beforeAll(async () => {
  await bundleForBrowser(join(root, 'test/browser/page.ts'), join(outDir, 'page.js'));
  const files: Record<string, [string, string]> = {
    '/': [join(root, 'test/browser/page.html'), 'text/html'],
    '/page.js': [join(outDir, 'page.js'), 'text/javascript'],
  };
  server = http.createServer((req, res) => {
    const f = files[req.url ?? ''];
    if (!f) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': f[1] }).end(readFileSync(f[0]));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  server?.close();
});

describe('headless Chromium', () => {
  it('runs the smoke checks on WebGPU and matches the float64 references', async () => {
    const page = await browser.newPage();
    const logs: string[] = [];
    page.on('console', (m) => logs.push(m.text()));
    page.on('pageerror', (e) => logs.push(String(e)));
    await page.goto(base + '/');
    await page.waitForFunction('window.__results || window.__error', { timeout: 300_000, polling: 250 });
    const { results, error, adapter } = await page.evaluate(() => ({ results: window.__results, error: window.__error, adapter: window.__adapter }));
    mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: join(artifacts, 'browser-smoke.png'), fullPage: true });
    expect(error, `page error; console: ${logs.join('\n')}`).toBeUndefined();
    expect(adapter).toMatch(/\S/);
    const failed = (results ?? []).filter((r) => !r.ok);
    expect(failed, JSON.stringify(failed, null, 1)).toEqual([]);
    // Every check ran, the fused kernels among them, forward and backward.
    expect(results!.map((r) => r.name)).toEqual(smokeChecks(0).map((c) => c.name));
    for (const k of ['conv2d', 'groupNorm', 'attention', 'codebookLookup']) expect(results!.some((r) => r.name.startsWith(k)), k).toBe(true);
  });

  it('draws the same random numbers as Dawn in Node for one (seed, counter, stream), bit for bit', async () => {
    const page = await browser.newPage();
    await page.goto(base + '/');
    await page.waitForFunction('window.__results || window.__error', { timeout: 300_000, polling: 250 });
    const { random, error, adapter } = await page.evaluate(() => ({ random: window.__random, error: window.__error, adapter: window.__adapter }));
    expect(error).toBeUndefined();
    const dev = await createDevice({ log: () => {} });
    const node = await randomDraw(dev);
    const nodeAdapter = `${dev.adapter.vendor} ${dev.adapter.architecture}`;
    const sameEmulator = dev.rt.adapterChoice.software && nodeAdapter === adapter;
    dev.destroy();
    const { seed, counter, stream, n } = RANDOM_DRAW;
    expect(random!.uniform.length).toBe(n);
    // Uniforms are integer arithmetic and one exact int-to-float conversion: identical bits.
    expect(random!.uniform).toEqual(node.uniform);
    // Normals go through log, sqrt, cos and sin, which WGSL does not require to be correctly rounded
    // (cos/sin: 2^-11 absolute), so two drivers may differ in the last bits. Where both runtimes run
    // SwiftShader (Chromium's, and Node's through VK_ICD_FILENAMES) Tint lowers these builtins to the
    // same GLSL.std.450 instructions, so the bits must agree exactly; where Node has a GPU, both must
    // be within the generator's tolerance of the float64 reference (3e-3, test/random.test.ts).
    const diffs = node.normal.filter((b, i) => b !== random!.normal[i]).length;
    const f32 = (bits: number[]) => new Float32Array(Uint32Array.from(bits).buffer);
    const ref = randomRef(seed, counter, stream, n, 'normal');
    const err = (x: Float32Array) => x.reduce((m, v, i) => Math.max(m, Math.abs(v - ref[i]!)), 0);
    console.log(`Chromium adapter '${adapter}', Node adapter '${nodeAdapter}'; normals: ${diffs} of ${n} differ between Chromium and Node; max |x - float64| Node ${err(f32(node.normal)).toExponential(2)}, Chromium ${err(f32(random!.normal)).toExponential(2)}`);
    if (sameEmulator) expect(random!.normal).toEqual(node.normal);
    else for (const x of [node.normal, random!.normal]) expect(err(f32(x))).toBeLessThan(3e-3);
  });
});
