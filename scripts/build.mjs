// Builds the package into dist/: index.js (the browser-safe entry), node.js ('webgpu-diffusion/node':
// file checkpoints, datasets on disk, the CLI's commands) and cli.js (the `wgd` command), ESM with the
// code they share split into chunks (so a model made through one entry is the same class in the
// other), WGSL inlined as text; the runtime dependencies and node:* stay imports. Then the .d.ts types.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const deps = [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.optionalDependencies ?? {})];
rmSync(join(root, 'dist'), { recursive: true, force: true });
await build({
  entryPoints: { index: join(root, 'src/index.ts'), node: join(root, 'src/node.ts'), cli: join(root, 'src/cli/wgd.ts') },
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'neutral',
  target: 'es2022',
  outdir: join(root, 'dist'),
  chunkNames: 'chunks/[name]-[hash]',
  loader: { '.wgsl': 'text' },
  external: ['node:*', ...deps, ...deps.map((d) => `${d}/*`)],
  sourcemap: true,
  logLevel: 'warning',
});
execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
// The types name WebGPU's (GPUDevice, ...): @webgpu/types declares them, and comes with `webgpu`.
const gpuTypes = '/// <reference types="@webgpu/types" />\n';
writeFileSync(join(root, 'dist/index.d.ts'), `${gpuTypes}export * from './types/src/index.js';\n`);
writeFileSync(join(root, 'dist/node.d.ts'), `${gpuTypes}export * from './types/src/node.js';\n`);
console.log('built dist/index.js, dist/node.js, dist/cli.js and their types');
