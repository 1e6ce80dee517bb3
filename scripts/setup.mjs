// First-run setup for `npm run demo` and `npm test` on a fresh machine: installs the npm packages if
// they are missing, then makes sure Node can get a WebGPU adapter: a GPU as it is, else SwiftShader
// (which Debian's chromium ships; as root it is installed with apt-get). With --browser (npm test) it
// also looks for a Chrome or Chromium for the browser tests; without one those tests fail with a line
// saying what to install, and the Node tests still run. What it decides is in scripts/setup-plan.ts.
// WGD_SETUP_FACTS='{"...": ...}' replaces the facts gathered about the machine (tests fake machines).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const say = (s) => console.log(`[setup] ${s}`);
const run = (cmd, args, opts = {}) => spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts });
const wantBrowser = process.argv.includes('--browser');
const fake = process.env.WGD_SETUP_FACTS ? JSON.parse(process.env.WGD_SETUP_FACTS) : null;

// 1. npm packages: installed when node_modules was not made from this package-lock.json (by content,
// so that a checkout touching files does not reinstall).
const lock = join(root, 'package-lock.json');
const stamp = join(root, 'node_modules', '.wgd-setup-lock');
const want = existsSync(lock) ? createHash('sha256').update(readFileSync(lock)).digest('hex') : 'no-lock';
if (!fake && (!existsSync(stamp) || readFileSync(stamp, 'utf8') !== want)) {
  say('installing npm packages (npm ci)...');
  const r = run('npm', [existsSync(lock) ? 'ci' : 'install', '--no-audit', '--no-fund']);
  if (r.status !== 0) {
    console.error('[setup] npm install failed; see the output above.');
    process.exit(1);
  }
  writeFileSync(stamp, want);
}

// 2. The plan's TypeScript (and the probe it needs), bundled by esbuild, which step 1 installed.
const { build } = await import('esbuild');
mkdirSync(join(root, '.cache'), { recursive: true });
const lib = join(root, '.cache', 'setup-lib.mjs');
await build({
  stdin: { contents: "export * from './scripts/setup-plan.ts'; export * from './src/cli/webgpu-env.ts';", resolveDir: root, loader: 'ts' },
  bundle: true, platform: 'node', format: 'esm', target: 'node20', outfile: lib, logLevel: 'warning',
});
const { planSetup, findBrowser, resolveWebgpuEnv } = await import(pathToFileURL(lib).href);

function facts(installed) {
  if (fake) return { wantBrowser, installed, ...fake };
  return {
    platform: process.platform,
    isRoot: process.getuid?.() === 0,
    hasApt: existsSync('/usr/bin/apt-get'),
    webgpu: resolveWebgpuEnv(),
    browser: findBrowser(),
    wantBrowser,
    installed,
  };
}

let plan = planSetup(facts(false));
if (plan.install.length) {
  say(`installing Debian packages ${plan.install.join(' and ')} (SwiftShader WebGPU for Node and headless Chromium)...`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  // apt's own output is shown only when it fails.
  const quiet = { env, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' };
  const failed = fake ? null : [['update', '-qq'], ['install', '-y', '-qq', ...plan.install]].map((a) => run('apt-get', a, quiet)).find((r) => r.status !== 0);
  if (failed) console.error(failed.stdout, failed.stderr);
  else say(`installed ${plan.install.join(' and ')}`);
  plan = planSetup(facts(true));
}
for (const line of plan.lines) (plan.exitCode ? console.error : console.log)(`[setup] ${line}`);
process.exit(plan.exitCode);
