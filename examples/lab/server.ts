// The lab's static server (Node): builds the page (main.ts, with esbuild) and serves it, the letters
// sprite sheet and the shipped checkpoints (a latent model with its VQ-GAN), bound to 127.0.0.1 (WebGPU needs a secure context, which
// a page from localhost is). `npm run lab` runs it through serve.ts; the headless tests start it here.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { parseSafetensorsHeader, safetensorsHeaderLength } from '../../src/io/safetensors.js';
import { parseConfig } from '../../src/io/checkpoint.js';
import { resolveVQGANPath } from '../../src/pipelines/latent-node.js';

/** A checkpoint offered in the page's list. */
export interface ShippedCheckpoint {
  name: string;
  path: string;
  /** A latent model's VQ-GAN; default: where its header says, as wgd sample finds it (see resolveVQGANPath). */
  vqgan?: string;
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

/** The JSON config in a safetensors file's header; only the header is read. */
function headerConfig(path: string): Record<string, unknown> {
  const fd = openSync(path, 'r');
  try {
    const size = statSync(path).size;
    const first = Buffer.alloc(Math.min(8, size));
    readSync(fd, first, 0, first.length, 0);
    const n = safetensorsHeaderLength(first, size);
    const head = Buffer.alloc(8 + n);
    readSync(fd, head, 0, head.length, 0);
    return parseConfig(parseSafetensorsHeader(head, size).metadata, path);
  } finally {
    closeSync(fd);
  }
}

/**
 * What the page needs to sample a checkpoint: `{ vqgan }` (the VQ-GAN file for a latent model, null
 * for a pixel-space one), or `{ why }` it cannot. VQ-GANs and classifiers are no diffusion models; a
 * latent model needs its VQ-GAN (`vqgan` when given, else found as wgd sample finds it), which must be
 * a VQ-GAN checkpoint. Only headers are read.
 */
export function samplingNeeds(path: string, vqgan?: string): { vqgan: string | null; why?: undefined } | { why: string } {
  let config: { kind?: unknown; latent?: { vqgan?: unknown } };
  try {
    config = headerConfig(path) as typeof config;
  } catch (e) {
    return { why: `it cannot be read (${(e as Error).message.slice(0, 200)})` };
  }
  if (config.kind !== 'diffusion') return { why: `it is ${config.kind ? `a ${String(config.kind)} checkpoint` : 'no checkpoint of wgd'}, not a diffusion model` };
  if (!config.latent) return { vqgan: null };
  const recorded = String(config.latent.vqgan);
  let found: string;
  try {
    found = vqgan ?? resolveVQGANPath(recorded, path);
  } catch {
    return { why: `it is a latent diffusion model and its VQ-GAN (its header names '${recorded}') was not found beside it; put that file next to it, or name it (serve.ts: --checkpoint NAME=PATH,VQGAN)` };
  }
  let kind: unknown;
  try {
    kind = headerConfig(found).kind;
  } catch (e) {
    return { why: `its VQ-GAN ${found} cannot be read (${(e as Error).message.slice(0, 200)})` };
  }
  if (kind !== 'vqgan') return { why: `its VQ-GAN ${found} is ${kind ? `a ${String(kind)} checkpoint` : 'no checkpoint of wgd'}, not a VQ-GAN` };
  return { vqgan: found };
}

/** Why the page cannot sample a checkpoint (see samplingNeeds), or null when it can. */
export function cannotSample(path: string, vqgan?: string): string | null {
  return samplingNeeds(path, vqgan).why ?? null;
}

/** Every examples/checkpoints/<folder>/<file>.safetensors that the page can sample (a latent model with its VQ-GAN), named folder/file. */
export function shippedCheckpoints(root = projectRoot()): ShippedCheckpoint[] {
  const dir = join(root, 'examples', 'checkpoints');
  if (!existsSync(dir)) return [];
  const out: ShippedCheckpoint[] = [];
  for (const sub of readdirSync(dir).sort()) {
    const p = join(dir, sub);
    if (!statSync(p).isDirectory()) continue;
    for (const f of readdirSync(p).sort()) {
      if (!f.endsWith('.safetensors')) continue;
      const need = samplingNeeds(join(p, f));
      if (need.why === undefined) out.push({ name: `${sub}/${basename(f, '.safetensors')}`, path: join(p, f), ...(need.vqgan ? { vqgan: need.vqgan } : {}) });
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
  const vqgans = checkpoints.map((c) => {
    if (!existsSync(c.path)) throw new Error(`lab: checkpoint '${c.name}' not found at ${c.path}`);
    if (c.vqgan && !existsSync(c.vqgan)) throw new Error(`lab: the VQ-GAN of checkpoint '${c.name}' not found at ${c.vqgan}`);
    const need = samplingNeeds(c.path, c.vqgan);
    if (need.why !== undefined) throw new Error(`lab: checkpoint '${c.name}' (${c.path}) cannot be sampled in the page: ${need.why}`);
    return need.vqgan;
  });
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
  // A latent model's entry names its VQ-GAN, served beside it, which the page fetches with it.
  const index = JSON.stringify(checkpoints.map((c, i) => {
    const vq = vqgans[i];
    return {
      name: c.name, url: `/checkpoints/${i}/${basename(c.path)}`, bytes: statSync(c.path).size,
      ...(vq ? { vqgan: { name: basename(vq), url: `/checkpoints/${i}/vqgan/${basename(vq)}`, bytes: statSync(vq).size } } : {}),
    };
  }));
  checkpoints.forEach((c, i) => {
    files[`/checkpoints/${i}/${basename(c.path)}`] = c.path;
    const vq = vqgans[i];
    if (vq) files[`/checkpoints/${i}/vqgan/${basename(vq)}`] = vq;
  });

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
