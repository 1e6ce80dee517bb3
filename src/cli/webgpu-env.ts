// Node-only, for launchers (the `wgd` command, the npm scripts, the test runner): finds out whether
// Dawn sees an adapter, and if it does not, the environment that makes it see SwiftShader. The
// library itself never touches process.env: the Vulkan loader reads VK_ICD_FILENAMES once, when Dawn
// creates its instance, so the variable belongs to the environment a process is started with.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** Where SwiftShader's Vulkan ICD manifest is installed by the usual Chromium and Chrome packages. */
export const SWIFTSHADER_ICD_PATHS: readonly string[] = [
  '/usr/lib/chromium/vk_swiftshader_icd.json', // Debian and Ubuntu: apt-get install chromium
  '/usr/lib/chromium-browser/vk_swiftshader_icd.json',
  '/usr/lib64/chromium-browser/vk_swiftshader_icd.json', // Fedora
  '/opt/google/chrome/vk_swiftshader_icd.json', // Google Chrome on Linux
];

type Env = Record<string, string | undefined>;

/** The SwiftShader ICD manifest to use: $WGD_SWIFTSHADER_ICD if set, else the first of the usual paths that exists. */
export function findSwiftShaderIcd(env: Env = process.env, exists: (p: string) => boolean = existsSync): string | null {
  if (env.WGD_SWIFTSHADER_ICD) return exists(env.WGD_SWIFTSHADER_ICD) ? env.WGD_SWIFTSHADER_ICD : null;
  return SWIFTSHADER_ICD_PATHS.find((p) => exists(p)) ?? null;
}

/**
 * The variables to add to a child's environment so that Dawn in it finds SwiftShader: the ICD, and a
 * private runtime directory where there is none (SwiftShader, built with Wayland support, otherwise
 * complains on every start).
 */
export function swiftshaderEnv(icd: string, env: Env = process.env): Record<string, string> {
  const add: Record<string, string> = { VK_ICD_FILENAMES: icd };
  if (!env.XDG_RUNTIME_DIR && process.platform === 'linux') {
    const dir = join(tmpdir(), `webgpu-diffusion-runtime-${process.getuid?.() ?? 0}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    add.XDG_RUNTIME_DIR = dir;
  }
  return add;
}

export interface ProbeResult {
  ok: boolean;
  /** The adapter is a software (CPU-emulated) one. */
  software: boolean;
  /** vendor / architecture / description of the adapter, or why there is none. */
  description: string;
}

/** Asks Dawn for an adapter in a child process started with `env` (the loader reads it only at start). */
export function probeAdapter(env: Env = process.env): ProbeResult {
  let url: string;
  try {
    url = pathToFileURL(createRequire(import.meta.url).resolve('webgpu')).href;
  } catch {
    return { ok: false, software: false, description: "the optional dependency 'webgpu' is not installed" };
  }
  const code = `
    const { create, globals } = await import(${JSON.stringify(url)});
    Object.assign(globalThis, globals);
    const a = await create([]).requestAdapter();
    const i = a?.info;
    console.log('PROBE ' + JSON.stringify(a ? { ok: true, software: Boolean(i.isFallbackAdapter), description: [i.vendor, i.architecture, i.description].filter(Boolean).join(' / ') } : { ok: false, software: false, description: 'Dawn found no adapter' }));
    process.exit(0);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { env: env as NodeJS.ProcessEnv, encoding: 'utf8', timeout: 60_000 });
  const line = (r.stdout ?? '').split('\n').find((l) => l.startsWith('PROBE '));
  if (!line) return { ok: false, software: false, description: `the probe failed: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n').slice(-1)[0]}` };
  return JSON.parse(line.slice(6)) as ProbeResult;
}

export interface WebgpuEnv {
  /** Variables to add to a child's environment ({} when Dawn already finds an adapter). */
  env: Record<string, string>;
  probe: ProbeResult;
  /** Why this environment: printed by the setup script and `wgd info`. */
  reason: string;
}

/**
 * The environment in which Dawn finds an adapter: the current one if it does (a GPU, or a
 * VK_ICD_FILENAMES already set), else SwiftShader's if it is installed; null when neither works.
 */
export function resolveWebgpuEnv(env: Env = process.env, probe: (e: Env) => ProbeResult = probeAdapter): WebgpuEnv | null {
  const first = probe(env);
  if (first.ok) return { env: {}, probe: first, reason: env.VK_ICD_FILENAMES ? `VK_ICD_FILENAMES=${env.VK_ICD_FILENAMES} was set` : 'Dawn found it as the process started' };
  const icd = findSwiftShaderIcd(env);
  if (!icd || env.VK_ICD_FILENAMES) return null;
  const add = swiftshaderEnv(icd, env);
  const second = probe({ ...env, ...add });
  return second.ok ? { env: add, probe: second, reason: `no GPU adapter; SwiftShader from ${icd}` } : null;
}
