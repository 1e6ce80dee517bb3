// Starting anywhere WebGPU exists: the setup plan on faked machines (a GPU and no browser; no adapter
// and not root; root with apt; macOS), the setup script itself on those facts, the finders of a
// browser and of SwiftShader, the environment a launcher resolves, createDevice's adapter modes, and
// the `wgd` launcher re-running itself with SwiftShader when the process started without it.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { planSetup, findBrowser, MachineFacts } from '../scripts/setup-plan.js';
import { findSwiftShaderIcd, resolveWebgpuEnv, ProbeResult, SWIFTSHADER_ICD_PATHS } from '../src/cli/webgpu-env.js';
import { createDevice, NoAdapterError } from '../src/index.js';

const ROOT = join(import.meta.dirname, '..');
const GPU: ProbeResult = { ok: true, software: false, description: 'nvidia / hopper / NVIDIA H200' };
const SOFT: ProbeResult = { ok: true, software: true, description: 'google / swiftshader / SwiftShader driver 5.0.0' };
const NONE: ProbeResult = { ok: false, software: false, description: 'Dawn found no adapter' };

const machine = (f: Partial<MachineFacts>): MachineFacts => ({
  platform: 'linux', isRoot: false, hasApt: true, webgpu: null, browser: null, wantBrowser: true, ...f,
});

describe('setup plan', () => {
  it('adapter present, no chromium: Node is ready as it is; the browser tests get one line saying what to install', () => {
    for (const isRoot of [false]) {
      const p = planSetup(machine({ isRoot, webgpu: { env: {}, probe: GPU, reason: 'Dawn found it as the process started' } }));
      expect(p.install).toEqual([]);
      expect(p.exitCode).toBe(0);
      expect(p.lines[0]).toMatch(/^ready: WebGPU for Node: nvidia .*\(GPU;/);
      expect(p.lines).toHaveLength(2);
      expect(p.lines[1]).toMatch(/^browser tests will fail: no Chrome or Chromium found; .*apt-get install chromium.*CHROME_PATH/);
    }
    // npm run demo does not want a browser: nothing about one.
    const demo = planSetup(machine({ wantBrowser: false, webgpu: { env: {}, probe: GPU, reason: 'x' } }));
    expect(demo).toEqual({ install: [], lines: [expect.stringMatching(/^ready/)], exitCode: 0 });
  });

  it('no adapter, not root: one line naming what to install, exit 1; nothing installed', () => {
    const p = planSetup(machine({ isRoot: false }));
    expect(p.install).toEqual([]);
    expect(p.exitCode).toBe(1);
    expect(p.lines[0]).toMatch(/^No WebGPU adapter for Node: .*as root: apt-get install chromium libvulkan1/);
    // Not Debian either: the loader and a driver, or a SwiftShader from a Chrome install.
    const other = planSetup(machine({ hasApt: false, wantBrowser: false }));
    expect(other.lines).toHaveLength(1);
    expect(other.lines[0]).toMatch(/Vulkan driver and the Vulkan loader .*WGD_SWIFTSHADER_ICD/);
    expect(planSetup(machine({ platform: 'darwin', hasApt: false, wantBrowser: false })).lines[0]).toMatch(/Metal/);
  });

  it('root with apt: installs chromium (and the Vulkan loader only when Node lacks an adapter), then plans again', () => {
    expect(planSetup(machine({ isRoot: true })).install).toEqual(['chromium', 'libvulkan1']);
    expect(planSetup(machine({ isRoot: true, webgpu: { env: {}, probe: GPU, reason: 'x' } })).install).toEqual(['chromium']);
    expect(planSetup(machine({ isRoot: true, webgpu: { env: {}, probe: GPU, reason: 'x' }, browser: '/usr/bin/chromium' })).install).toEqual([]);
    // After an install that did not help, no second install: the line says what failed.
    const after = planSetup(machine({ isRoot: true, installed: true }));
    expect(after.install).toEqual([]);
    expect(after.exitCode).toBe(1);
  });

  it('the setup script carries the plan out on faked facts (exit code and lines)', () => {
    const run = (facts: Partial<MachineFacts>) =>
      spawnSync(process.execPath, [join(ROOT, 'scripts/setup.mjs'), '--browser'], { encoding: 'utf8', env: { ...process.env, WGD_SETUP_FACTS: JSON.stringify(machine(facts)) } });
    const gpu = run({ webgpu: { env: {}, probe: GPU, reason: 'Dawn found it as the process started' } });
    expect(gpu.status, gpu.stderr).toBe(0);
    expect(gpu.stdout).toMatch(/\[setup\] ready: WebGPU for Node: nvidia/);
    expect(gpu.stdout).toMatch(/\[setup\] browser tests will fail/);
    const none = run({ isRoot: false });
    expect(none.status).toBe(1);
    expect(none.stderr.trim().split('\n')).toHaveLength(2);
    expect(none.stderr).toMatch(/^\[setup\] No WebGPU adapter for Node: .*apt-get install chromium libvulkan1/);
  });
});

describe('finding a browser and SwiftShader', () => {
  it('CHROME_PATH first, then the usual paths of the platform; null when none exists', () => {
    const has = (...ps: string[]) => (p: string) => ps.includes(p);
    expect(findBrowser({ CHROME_PATH: '/x/chrome' }, 'linux', has('/x/chrome', '/usr/bin/chromium'))).toBe('/x/chrome');
    expect(findBrowser({ CHROME_PATH: '/x/missing' }, 'linux', has('/usr/bin/chromium'))).toBeNull();
    expect(findBrowser({}, 'linux', has('/opt/google/chrome/chrome'))).toBe('/opt/google/chrome/chrome');
    expect(findBrowser({}, 'darwin', has('/Applications/Chromium.app/Contents/MacOS/Chromium'))).toBe('/Applications/Chromium.app/Contents/MacOS/Chromium');
    expect(findBrowser({ PROGRAMFILES: 'C:\\PF' }, 'win32', has(join('C:\\PF', 'Google', 'Chrome', 'Application', 'chrome.exe')))).toMatch(/chrome\.exe$/);
    expect(findBrowser({}, 'linux', has())).toBeNull();
  });

  it('WGD_SWIFTSHADER_ICD first, then the usual paths', () => {
    expect(findSwiftShaderIcd({ WGD_SWIFTSHADER_ICD: '/my/icd.json' }, (p) => p === '/my/icd.json')).toBe('/my/icd.json');
    expect(findSwiftShaderIcd({}, (p) => p === SWIFTSHADER_ICD_PATHS[3])).toBe(SWIFTSHADER_ICD_PATHS[3]);
    expect(findSwiftShaderIcd({}, () => false)).toBeNull();
  });

  it('a launcher adds nothing when Dawn finds an adapter, SwiftShader when it does not, and gives up when neither works', () => {
    const seen: Record<string, string | undefined>[] = [];
    const gpuFirst = resolveWebgpuEnv({}, (e) => (seen.push(e), GPU));
    expect(gpuFirst?.env).toEqual({});
    expect(seen).toHaveLength(1);
    const icd = findSwiftShaderIcd();
    if (icd) {
      const soft = resolveWebgpuEnv({ XDG_RUNTIME_DIR: '/run/x' }, (e) => (e.VK_ICD_FILENAMES ? SOFT : NONE));
      expect(soft?.env).toEqual({ VK_ICD_FILENAMES: icd });
      expect(soft?.reason).toMatch(/no GPU adapter; SwiftShader from/);
    }
    // A VK_ICD_FILENAMES the user set is theirs: not replaced.
    expect(resolveWebgpuEnv({ VK_ICD_FILENAMES: '/theirs.json' }, () => NONE)).toBeNull();
    expect(resolveWebgpuEnv({ WGD_SWIFTSHADER_ICD: '/nowhere.json' }, () => NONE)).toBeNull();
  });
});

describe('createDevice adapter modes', () => {
  it('auto and swiftshader take the adapter there is; gpu refuses a software one by name; process.env is left alone', async () => {
    const before = JSON.stringify(process.env);
    const dev = await createDevice({ log: () => {} });
    const software = dev.rt.adapterChoice.software;
    expect(dev.rt.adapterChoice.mode).toBe('auto');
    expect(dev.rt.adapterChoice.reason).toMatch(software ? /only the software fallback/ : /GPU adapter was offered first/);
    dev.destroy();
    if (software) {
      const sw = await createDevice({ adapter: 'swiftshader', log: () => {} });
      expect(sw.rt.adapterChoice).toMatchObject({ mode: 'swiftshader', software: true });
      sw.destroy();
      await expect(createDevice({ adapter: 'gpu' })).rejects.toThrow(NoAdapterError);
      await expect(createDevice({ adapter: 'gpu' })).rejects.toThrow(/--adapter gpu: the only adapter available to Node is a software one/);
    }
    await expect(createDevice({ adapter: 'tpu' as never })).rejects.toThrow(/adapter 'tpu' is not one of auto, gpu, swiftshader/);
    expect(JSON.stringify(process.env)).toBe(before);
  });

  it('no file under src/ assigns to process.env', () => {
    const files = (dir: string): string[] =>
      readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? files(join(dir, f)) : f.endsWith('.ts') ? [join(dir, f)] : []));
    const writes = files(join(ROOT, 'src')).filter((f) => /\benv(\.[A-Za-z_]+|\[[^\]]+\])\s*(=[^=]|\?\?=)|Object\.assign\(\s*(process\.)?env\b/.test(readFileSync(f, 'utf8')));
    expect(writes).toEqual([]);
  });
});

describe('wgd launcher', () => {
  const wgd = (args: string[], env: Record<string, string | undefined>) =>
    spawnSync(process.execPath, [join(ROOT, 'bin/wgd.mjs'), ...args], { encoding: 'utf8', env: env as NodeJS.ProcessEnv, timeout: 120_000 });

  it('wgd info names the adapter and why it was chosen; started without SwiftShader in its environment it runs again with it', () => {
    const { VK_ICD_FILENAMES, ...bare } = process.env;
    const probe = resolveWebgpuEnv(bare);
    const r = wgd(['info'], bare);
    if (!probe) {
      expect(r.status).toBe(1);
      return;
    }
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^adapter: /m);
    if (probe.probe.software) {
      expect(r.stdout).toMatch(/^chosen: --adapter auto: software \(CPU-emulated\), because no GPU adapter was offered, only the software fallback; wgd ran itself again with VK_ICD_FILENAMES=\S+/m);
      const gpu = wgd(['info', '--adapter', 'gpu'], bare);
      expect(gpu.status).toBe(1);
      // Dawn may print its own warnings first (e.g. refusing Mesa's lavapipe); wgd's is one line, the last.
      const lines = gpu.stderr.trim().split('\n');
      expect(lines.filter((l) => l.startsWith('wgd:'))).toHaveLength(1);
      expect(lines.at(-1)).toMatch(/^wgd: No WebGPU adapter is available to Node/);
      const sw = wgd(['info', '--adapter=swiftshader'], bare);
      expect(sw.status, sw.stderr).toBe(0);
      expect(sw.stdout).toMatch(/^chosen: --adapter swiftshader: software/m);
    } else {
      expect(r.stdout).toMatch(/^chosen: --adapter auto: GPU/m);
    }
    void VK_ICD_FILENAMES;
    const bad = wgd(['info', '--adapter', 'npu'], process.env);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/--adapter = 'npu' is not allowed; allowed values: auto, gpu, swiftshader/);
  });
});
