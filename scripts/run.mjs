// Runs a TypeScript entry point (bench, demo, examples): bundles it with esbuild, loading .wgsl as text,
// into .cache/ inside the project so that `webgpu` resolves from node_modules, then runs it with the
// remaining arguments, in an environment where Dawn finds an adapter (SwiftShader's when there is no
// GPU: see src/cli/webgpu-env.ts).
import { build } from 'esbuild';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { basename, join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const [entry, ...args] = process.argv.slice(2);
if (!entry) {
  console.error('usage: node scripts/run.mjs <entry.ts> [args...]');
  process.exit(2);
}
mkdirSync(join(root, '.cache'), { recursive: true });
const out = join(root, '.cache', basename(entry).replace(/\.ts$/, '.mjs'));
await build({
  entryPoints: [join(root, entry)],
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  outfile: out,
  loader: { '.wgsl': 'text' },
  external: ['webgpu', '@tensorflow/*', 'puppeteer-core', 'esbuild'],
  logLevel: 'warning',
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
});
// A signal to this wrapper (a test stopping `npm run lab`, a supervisor) goes on to the program, which
// would otherwise be left running on its own.
const envLib = join(root, '.cache', 'webgpu-env.mjs');
await build({ entryPoints: [join(root, 'src', 'cli', 'webgpu-env.ts')], bundle: true, platform: 'node', format: 'esm', target: 'node20', outfile: envLib, logLevel: 'warning' });
const { resolveWebgpuEnv } = await import(pathToFileURL(envLib).href);
const webgpu = resolveWebgpuEnv();
const child = spawn(process.execPath, [out, ...args], { stdio: 'inherit', env: { ...process.env, ...(webgpu?.env ?? {}) } });
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 + (signal === 'SIGINT' ? 2 : signal === 'SIGHUP' ? 1 : 15) : 1)));
