// Prepares .cache/gpu-kit/ for bench/gpu-check.sh on a GPU machine that has neither this project's
// node_modules nor (perhaps) Node or a Vulkan loader, and cannot download anything: the benchmarks
// bundled by esbuild with tfjs inside (only `webgpu`, a native addon, stays outside), the webgpu
// package's linux-x64 Dawn, this machine's Node binary and Vulkan loader, the large files xz-compressed
// to fit the device tool's 64 MiB. Run here: `bash bench/gpu-check.sh --prepare`.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const kit = join(root, '.cache', 'gpu-kit');
rmSync(kit, { recursive: true, force: true });
mkdirSync(kit, { recursive: true });

for (const entry of ['bench/kernels.ts', 'bench/matmul-variants.ts']) {
  await build({
    entryPoints: [join(root, entry)],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: join(kit, entry.replace(/^bench\//, '').replace(/\.ts$/, '.mjs')),
    loader: { '.wgsl': 'text' },
    external: ['webgpu'],
    logLevel: 'warning',
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  });
}

// The webgpu package as Node resolves it from the bundles (kit/node_modules/webgpu), linux-x64 only.
const wg = join(root, 'node_modules', 'webgpu');
const wgKit = join(kit, 'node_modules', 'webgpu');
mkdirSync(join(wgKit, 'dist', 'linux-x64'), { recursive: true });
for (const f of readdirSync(wg)) if (statSync(join(wg, f)).isFile()) copyFileSync(join(wg, f), join(wgKit, f));
execFileSync('sh', ['-c', `xz -T0 -6 -c "${join(wg, 'dist', 'linux-x64', 'dawn.node')}" > "${join(wgKit, 'dist', 'linux-x64', 'dawn.node.xz')}"`]);

// Node and the Vulkan loader, used there only if the machine has none.
execFileSync('sh', ['-c', `xz -T0 -6 -c "${process.execPath}" > "${join(kit, 'node.xz')}"`]);
mkdirSync(join(kit, 'lib'), { recursive: true });
for (const dir of ['/usr/lib/x86_64-linux-gnu', '/usr/lib64', '/usr/lib']) {
  const f = join(dir, 'libvulkan.so.1');
  if (existsSync(f)) {
    copyFileSync(f, join(kit, 'lib', 'libvulkan.so.1'));
    break;
  }
}
writeFileSync(join(kit, 'VERSION'), `node ${process.version}, built ${new Date().toISOString()} from ${execFileSync('git', ['-C', root, 'rev-parse', '--short', 'HEAD']).toString().trim()}\n`);
const size = execFileSync('du', ['-sm', kit]).toString().split('\t')[0];
console.log(`wrote ${kit} (${size} MiB): run \`bash bench/gpu-check.sh\` on the GPU machine with .cache/gpu-kit carried`);
