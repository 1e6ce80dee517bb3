// The package as a dependency: `npm pack` (which builds dist/ through prepack), then a separate project
// in a temporary folder installs the tarball, imports it in Node and runs an op, type-checks against
// its shipped types, and bundles it for the browser with esbuild and runs the bundle in headless
// Chromium. Also checks what the tarball holds and which runtime dependencies it declares.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import type { Browser } from 'puppeteer-core';
import { launchChromium, ROOT } from './lab/chromium.js';

interface PackInfo {
  filename: string;
  size: number;
  unpackedSize: number;
  files: { path: string; size: number }[];
}

let tmp: string;
let pack: PackInfo;
let consumer: string;
let browser: Browser | undefined;

const npm = (args: string[], cwd: string) => execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, npm_config_fund: 'false', npm_config_audit: 'false', npm_config_update_notifier: 'false' } });

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'wgd-pack-'));
  // --json prints the pack report after prepack's build output: take the JSON array at the end.
  const out = npm(['pack', '--json', '--pack-destination', tmp], ROOT);
  pack = (JSON.parse(out.slice(out.lastIndexOf('\n[') + 1)) as PackInfo[])[0]!;
  console.log(`npm pack: ${pack.filename}, ${(pack.size / 1024).toFixed(0)} KiB packed, ${(pack.unpackedSize / 1024).toFixed(0)} KiB unpacked, ${pack.files.length} files`);
  consumer = join(tmp, 'consumer');
  mkdirSync(consumer);
  writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'wgd-consumer', private: true, type: 'module' }));
  // From npm's cache when it has the dependencies (it does after this project's own install).
  npm(['install', '--prefer-offline', '--no-audit', '--no-fund', join(tmp, pack.filename)], consumer);
}, 600_000);

afterAll(async () => {
  await browser?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('npm package', () => {
  it('holds the build, its types, the letters sheet, the CLI and the README, and no tests, runs or caches', () => {
    const paths = pack.files.map((f) => f.path);
    for (const p of ['package.json', 'README.md', 'dist/index.js', 'dist/index.d.ts', 'dist/node.js', 'dist/node.d.ts', 'dist/cli.js', 'dist/types/src/index.d.ts', 'data/letters/glyphs.png', 'data/letters/glyphs.json', 'bin/wgd.mjs']) {
      expect(paths, p).toContain(p);
    }
    const allowed = /^(package\.json|README\.md|LICENSE(\.md)?|bin\/wgd\.mjs|data\/letters\/glyphs\.(png|json)|dist\/.*\.(js|d\.ts|js\.map))$/;
    expect(paths.filter((p) => !allowed.test(p))).toEqual([]);
    const forbidden = /(^|\/)(test|tests|runs|\.cache|test-artifacts|examples|bench|node_modules|src)\/|\.(jsonl|safetensors|tgz|log)$/;
    expect(paths.filter((p) => forbidden.test(p) && !p.startsWith('dist/types/src/'))).toEqual([]);
    expect(pack.size).toBeLessThan(2 * 2 ** 20);
    // The README reports the size: keep it within 15% of what npm pack measures.
    const said = /tarball is about (\d+) KiB/.exec(readFileSync(join(ROOT, 'README.md'), 'utf8'))?.[1];
    expect(said, "README.md should say 'The packed tarball is about N KiB'").toBeTruthy();
    expect(Math.abs(Number(said) - pack.size / 1024) / (pack.size / 1024)).toBeLessThan(0.15);
  });

  it('declares only the named runtime dependencies, webgpu optional', () => {
    const pkg = JSON.parse(readFileSync(join(consumer, 'node_modules', 'webgpu-diffusion', 'package.json'), 'utf8')) as Record<string, Record<string, string>>;
    expect(Object.keys(pkg.dependencies ?? {}).sort()).toEqual(['fast-png', 'gl-matrix', 'wgsl_reflect']);
    expect(Object.keys(pkg.optionalDependencies ?? {})).toEqual(['webgpu']);
    expect(pkg.peerDependencies).toBeUndefined();
  });

  it('imports in Node from another project and runs an op; the Node entry finds the letters sheet', () => {
    writeFileSync(join(consumer, 'node-test.mjs'), `
      import { createDevice, ops } from 'webgpu-diffusion';
      import { loadLettersGlyphs } from 'webgpu-diffusion/node';
      const dev = await createDevice({ log: () => {} });
      const a = dev.tensor([1, 2, 3, 4], [2, 2]);
      const y = await ops.add(ops.matmul(a, a), a).read();
      const { meta } = loadLettersGlyphs();
      console.log(JSON.stringify({ y: Array.from(y), letters: meta.letters }));
      dev.destroy();
      process.exit(0);
    `);
    const r = spawnSync(process.execPath, ['node-test.mjs'], { cwd: consumer, encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const got = JSON.parse(r.stdout.trim().split('\n').pop()!) as { y: number[]; letters: string };
    // [[1,2],[3,4]]² + itself = [[7,10],[15,22]] + [[1,2],[3,4]]
    expect(got.y).toEqual([8, 12, 18, 26]);
    expect(got.letters).toBe('ABCDEFGHIJKLMNOPQRSTUVWXYZ');
  });

  it('installs the wgd command, which runs from the built dist/cli.js', () => {
    const r = spawnSync(process.execPath, [join(consumer, 'node_modules', '.bin', 'wgd'), 'help'], { cwd: consumer, encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^usage: wgd <command>/);
    expect(r.stdout).toContain('wgd sample:');
  });

  it('type-checks a TypeScript consumer and the README example against the shipped types', () => {
    writeFileSync(join(consumer, 'types-test.ts'), `
      import { createDevice, ops, Tensor, UNet, DiffusionTrainer, generate, type UNetConfig } from 'webgpu-diffusion';
      import { readCheckpointFile } from 'webgpu-diffusion/node';
      const dev = await createDevice();
      const t: Tensor = ops.add(dev.tensor([1], [1]), dev.tensor([2], [1]));
      const size: number = t.size;
      const cfg: Partial<UNetConfig> = { sampleSize: 16 };
      export { size, cfg, UNet, DiffusionTrainer, generate, readCheckpointFile };
      // @ts-expect-error: a wrong argument type must be an error, so the types are really read
      ops.add(1, 2);
    `);
    // The README's training-and-sampling example, as printed.
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const example = /### Train and sample in ten lines[^\n]*\n+```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(example, 'README.md has no ten-line example').toBeTruthy();
    writeFileSync(join(consumer, 'readme-example.ts'), example!);
    writeFileSync(join(consumer, 'tsconfig.json'), JSON.stringify({
      compilerOptions: {
        // skipLibCheck off: the shipped .d.ts must themselves check (WebGPU's types come from @webgpu/types).
        target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: false, lib: ['ES2022', 'DOM'],
        types: ['node'], typeRoots: [join(ROOT, 'node_modules', '@types')],
      },
      files: ['types-test.ts', 'readme-example.ts'],
    }));
    const r = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', consumer], { cwd: consumer, encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });

  it('bundles for the browser with esbuild, and the bundle runs an op in headless Chromium', async () => {
    writeFileSync(join(consumer, 'browser.mjs'), `
      import { createDevice, ops } from 'webgpu-diffusion';
      try {
        const dev = await createDevice();
        const a = dev.tensor([1, 2, 3, 4], [2, 2]);
        window.__result = Array.from(await ops.add(ops.matmul(a, a), a).read());
      } catch (e) {
        window.__error = String(e && e.stack || e);
      }
    `);
    const r = await build({ entryPoints: [join(consumer, 'browser.mjs')], absWorkingDir: consumer, bundle: true, platform: 'browser', format: 'esm', target: 'es2022', outfile: join(consumer, 'out', 'bundle.js'), logLevel: 'silent', metafile: true });
    expect(r.errors).toEqual([]);
    const inputs = Object.keys(r.metafile!.inputs);
    // The Dawn bindings and node:* stay out of a browser bundle.
    expect(inputs.filter((p) => /node_modules\/webgpu\/|^node:/.test(p))).toEqual([]);
    const bundleKiB = readFileSync(join(consumer, 'out', 'bundle.js')).length / 1024;
    const html = '<!doctype html><meta charset="utf-8"><script type="module" src="/bundle.js"></script>';
    const server = http.createServer((req, res) => {
      if (req.url === '/') return void res.writeHead(200, { 'content-type': 'text/html' }).end(html);
      if (req.url === '/bundle.js') return void res.writeHead(200, { 'content-type': 'text/javascript' }).end(readFileSync(join(consumer, 'out', 'bundle.js')));
      res.writeHead(404).end();
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    try {
      browser = await launchChromium();
      const page = await browser.newPage();
      await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
      await page.waitForFunction('window.__result || window.__error', { timeout: 120_000 });
      const got = await page.evaluate(() => ({ result: (window as unknown as { __result?: number[] }).__result, error: (window as unknown as { __error?: string }).__error }));
      console.log(`browser bundle of the installed package: ${bundleKiB.toFixed(0)} KiB`);
      expect(got.error).toBeUndefined();
      expect(got.result).toEqual([8, 12, 18, 26]);
    } finally {
      server.close();
    }
  });
});
