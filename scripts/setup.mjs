// First-run setup for `npm run demo` and `npm test` on a fresh machine: installs the npm packages if
// they are missing, then makes sure Node can get a WebGPU adapter. Without a GPU that needs a Vulkan
// loader and SwiftShader, which Debian ships in `libvulkan1` and `chromium`; as root they are installed
// with apt-get, otherwise this stops and says what to install. Headless-browser tests need chromium too.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const say = (s) => console.log(`[setup] ${s}`);
const run = (cmd, args, opts = {}) => spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts });

// 1. npm packages: installed when node_modules was not made from this package-lock.json (by content,
// so that a checkout touching files does not reinstall).
const lock = join(root, 'package-lock.json');
const stamp = join(root, 'node_modules', '.wgd-setup-lock');
const want = existsSync(lock) ? createHash('sha256').update(readFileSync(lock)).digest('hex') : 'no-lock';
if (!existsSync(stamp) || readFileSync(stamp, 'utf8') !== want) {
  say('installing npm packages (npm ci)...');
  const r = run('npm', [existsSync(lock) ? 'ci' : 'install', '--no-audit', '--no-fund']);
  if (r.status !== 0) {
    console.error('[setup] npm install failed; see the output above.');
    process.exit(1);
  }
  writeFileSync(stamp, want);
}

// 2. a WebGPU adapter for Node
const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
function probe() {
  const code = `
    const { create, globals } = await import('webgpu');
    Object.assign(globalThis, globals);
    let a = await create([]).requestAdapter();
    if (!a && !process.env.VK_ICD_FILENAMES && (await import('node:fs')).existsSync('${SWIFTSHADER_ICD}')) {
      process.env.VK_ICD_FILENAMES = '${SWIFTSHADER_ICD}';
      a = await create([]).requestAdapter();
    }
    console.log(a ? 'ADAPTER ' + a.info.vendor + ' ' + a.info.architecture : 'NO-ADAPTER');
    process.exit(0);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { cwd: root, encoding: 'utf8' });
  return /ADAPTER /.test(r.stdout ?? '') && !/NO-ADAPTER/.test(r.stdout ?? '');
}

const needChromium = !existsSync('/usr/bin/chromium') || !existsSync(SWIFTSHADER_ICD);
if (!probe() || needChromium) {
  const isRoot = process.getuid?.() === 0;
  const hasApt = existsSync('/usr/bin/apt-get');
  if (isRoot && hasApt) {
    say('installing Debian packages chromium and libvulkan1 (SwiftShader WebGPU for Node and headless Chromium)...');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    // apt's own output goes to a log; only failures are shown.
    const quiet = { env, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' };
    const steps = [['update', '-qq'], ['install', '-y', '-qq', 'chromium', 'libvulkan1']];
    const failed = steps.map((a) => run('apt-get', a, quiet)).find((r) => r.status !== 0);
    if (failed) {
      console.error(failed.stdout, failed.stderr);
      console.error('[setup] apt-get failed; install chromium and libvulkan1 by hand.');
      process.exit(1);
    }
    say('installed chromium and libvulkan1');
  } else {
    console.error(
      '[setup] No WebGPU adapter is available to Node, and packages cannot be installed automatically here.\n' +
        '        On Debian/Ubuntu, as root: apt-get install chromium libvulkan1 (SwiftShader, no GPU needed);\n' +
        '        or use a machine with a GPU and a Vulkan driver.',
    );
    process.exit(1);
  }
  if (!probe()) {
    console.error('[setup] Still no WebGPU adapter after installing chromium and libvulkan1.');
    process.exit(1);
  }
}
say('ready: WebGPU adapter available to Node');
