// The lab's static server (Node): builds the page (main.ts, with esbuild) and serves it, the letters
// sprite sheet and the shipped checkpoints, bound to 127.0.0.1 (WebGPU needs a secure context, which
// a page from localhost is). `npm run lab` runs it through serve.ts; the headless tests start it here.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { parseSafetensorsHeader, safetensorsHeaderLength } from '../../src/io/safetensors.js';
import { parseConfig } from '../../src/io/checkpoint.js';

/** A checkpoint offered in the page's list. */
export interface ShippedCheckpoint {
  name: string;
  path: string;
}

export interface LabServerOptions {
  /** 0 picks a free port. */
  port?: number;
  /** Checkpoints offered in the page; default: every examples/checkpoints/<name>/*.safetensors. */
  checkpoints?: ShippedCheckpoint[];
}

export interface LabServer {
  url: string;
  close(): Promise<void>;
}

/** The project root: the first folder above this file holding examples/lab/index.html (works from
 * examples/lab/ and from the bundle that scripts/run.mjs writes into .cache/). */
export function projectRoot(from = dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'examples', 'lab', 'index.html'))) return dir;
    if (dirname(dir) === dir) throw new Error(`lab: examples/lab/index.html not found above ${from}`);
  }
}

/**
 * Why the page cannot sample a checkpoint, or null when it can: it samples pixel-space diffusion
 * models. VQ-GANs and classifiers are no diffusion models, and a latent model's samples need its VQ-GAN
 * to decode them, which the page does not do. Only the header is read.
 */
export function cannotSample(path: string): string | null {
  const fd = openSync(path, 'r');
  try {
    const size = statSync(path).size;
    const first = Buffer.alloc(Math.min(8, size));
    readSync(fd, first, 0, first.length, 0);
    const n = safetensorsHeaderLength(first, size);
    const head = Buffer.alloc(8 + n);
    readSync(fd, head, 0, head.length, 0);
    const config = parseConfig(parseSafetensorsHeader(head, size).metadata, path) as { kind?: unknown; latent?: unknown };
    if (config.kind !== 'diffusion') return `it is ${config.kind ? `a ${String(config.kind)} checkpoint` : 'no checkpoint of wgd'}, not a diffusion model`;
    if (config.latent) return 'it is a latent diffusion model, whose samples need its VQ-GAN to decode (use wgd sample)';
    return null;
  } catch (e) {
    return `it cannot be read (${(e as Error).message.slice(0, 200)})`;
  } finally {
    closeSync(fd);
  }
}

/** Every examples/checkpoints/<folder>/<file>.safetensors that the page can sample, named folder/file. */
export function shippedCheckpoints(root = projectRoot()): ShippedCheckpoint[] {
  const dir = join(root, 'examples', 'checkpoints');
  if (!existsSync(dir)) return [];
  const out: ShippedCheckpoint[] = [];
  for (const sub of readdirSync(dir).sort()) {
    const p = join(dir, sub);
    if (!statSync(p).isDirectory()) continue;
    for (const f of readdirSync(p).sort()) {
      if (f.endsWith('.safetensors') && !cannotSample(join(p, f))) out.push({ name: `${sub}/${basename(f, '.safetensors')}`, path: join(p, f) });
    }
  }
  return out;
}

/** Bundles a page's entry for the browser (ES modules, WGSL as text) into `outfile`. */
export async function bundleForBrowser(entry: string, outfile: string, opts: { sourcemap?: boolean } = {}): Promise<void> {
  await build({
    entryPoints: [entry],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    outfile,
    loader: { '.wgsl': 'text' },
    // Never reached in a browser: the engine imports these only when it runs in Node.
    external: ['webgpu', 'node:*'],
    sourcemap: opts.sourcemap ?? false,
    logLevel: 'warning',
  });
}

/** Bundles the page into .cache/lab/ and returns the output folder. */
export async function buildLabPage(root = projectRoot()): Promise<string> {
  const out = join(root, '.cache', 'lab');
  await bundleForBrowser(join(root, 'examples', 'lab', 'main.ts'), join(out, 'main.js'), { sourcemap: true });
  return out;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.map': 'application/json', '.css': 'text/css',
  '.json': 'application/json', '.png': 'image/png', '.safetensors': 'application/octet-stream',
};

export async function startLabServer(opts: LabServerOptions = {}): Promise<LabServer> {
  const root = projectRoot();
  const built = await buildLabPage(root);
  const checkpoints = opts.checkpoints ?? shippedCheckpoints(root);
  for (const c of checkpoints) {
    if (!existsSync(c.path)) throw new Error(`lab: checkpoint '${c.name}' not found at ${c.path}`);
    const why = cannotSample(c.path);
    if (why) throw new Error(`lab: checkpoint '${c.name}' (${c.path}) cannot be sampled in the page: ${why}`);
  }
  const lab = join(root, 'examples', 'lab');
  const files: Record<string, string> = {
    '/': join(lab, 'index.html'),
    '/index.html': join(lab, 'index.html'),
    '/lab.css': join(lab, 'lab.css'),
    '/main.js': join(built, 'main.js'),
    '/main.js.map': join(built, 'main.js.map'),
    '/data/letters/glyphs.png': join(root, 'data', 'letters', 'glyphs.png'),
    '/data/letters/glyphs.json': join(root, 'data', 'letters', 'glyphs.json'),
  };
  const index = JSON.stringify(checkpoints.map((c, i) => ({ name: c.name, url: `/checkpoints/${i}/${basename(c.path)}`, bytes: statSync(c.path).size })));
  checkpoints.forEach((c, i) => (files[`/checkpoints/${i}/${basename(c.path)}`] = c.path));

  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0]!;
    if (req.method !== 'GET' && req.method !== 'HEAD') return void res.writeHead(405).end();
    if (url === '/favicon.ico') return void res.writeHead(204).end();
    if (url === '/checkpoints/index.json') {
      return void res.writeHead(200, { 'content-type': TYPES['.json']!, 'cache-control': 'no-store' }).end(index);
    }
    const f = files[url];
    if (!f || !existsSync(f)) return void res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${url}`);
    const ext = f.slice(f.lastIndexOf('.'));
    const body = readFileSync(f);
    res.writeHead(200, { 'content-type': TYPES[ext] ?? 'application/octet-stream', 'content-length': body.length, 'cache-control': 'no-store' }).end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', resolve);
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return {
    url,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** For log lines: a path relative to the project when it is inside it. */
export function shortPath(p: string, root = projectRoot()): string {
  const r = relative(root, p);
  return r.startsWith('..') ? p : r;
}
