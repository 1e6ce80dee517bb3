// Builds the package: dist/index.js (ESM, WGSL inlined as text, `webgpu` left as an optional runtime
// import) and dist/*.d.ts types.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
rmSync(join(root, 'dist'), { recursive: true, force: true });
await build({
  entryPoints: [join(root, 'src/index.ts')],
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  target: 'es2022',
  outfile: join(root, 'dist/index.js'),
  loader: { '.wgsl': 'text' },
  external: ['webgpu', 'node:*'],
  sourcemap: true,
  logLevel: 'warning',
  mainFields: ['module', 'main'],
});
execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
writeFileSync(join(root, 'dist/index.d.ts'), "export * from './types/src/index.js';\n");
console.log('built dist/index.js and dist/index.d.ts');
