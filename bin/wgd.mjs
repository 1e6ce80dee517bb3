#!/usr/bin/env node
// The `wgd` command. An installed package runs its built dist/cli.js; a source checkout bundles
// src/cli/wgd.ts with esbuild into .cache/ first (WGSL inlined as text).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const built = join(root, 'dist', 'cli.js');
if (existsSync(join(root, 'src', 'cli', 'wgd.ts'))) {
  const { build } = await import('esbuild');
  const out = join(root, '.cache', 'wgd.mjs');
  await build({
    entryPoints: [join(root, 'src', 'cli', 'wgd.ts')], bundle: true, platform: 'node', format: 'esm', target: 'node20',
    outfile: out, loader: { '.wgsl': 'text' }, external: ['webgpu'], logLevel: 'warning',
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  });
  await import(pathToFileURL(out).href);
} else {
  await import(pathToFileURL(built).href);
}
