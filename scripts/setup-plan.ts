// What first-run setup does on a machine, decided from facts gathered about it (scripts/setup.mjs
// gathers them and carries the plan out). Pure, so that a test can fake any machine.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { WebgpuEnv } from '../src/cli/webgpu-env.js';

export interface MachineFacts {
  platform: NodeJS.Platform;
  isRoot: boolean;
  /** Debian's or Ubuntu's apt-get is there. */
  hasApt: boolean;
  /** The environment in which Dawn in Node finds an adapter (src/cli/webgpu-env.ts), or null. */
  webgpu: WebgpuEnv | null;
  /** A Chrome or Chromium for the browser tests, or null. */
  browser: string | null;
  /** The browser tests will run (npm test), so a browser is wanted. */
  wantBrowser: boolean;
  /** Packages were installed already in this run: do not plan another install. */
  installed?: boolean;
}

export interface SetupPlan {
  /** Debian packages to install first (then the facts are gathered again and planned anew). */
  install: string[];
  /** Lines to print, in order. */
  lines: string[];
  /** 0: Node has an adapter (browser tests may still lack a browser: a warning, not a failure). */
  exitCode: 0 | 1;
}

export function planSetup(f: MachineFacts): SetupPlan {
  const needNode = !f.webgpu;
  const needBrowser = f.wantBrowser && !f.browser;
  if ((needNode || needBrowser) && f.isRoot && f.hasApt && !f.installed) {
    // Debian's chromium brings SwiftShader, which Node's Dawn can use too; libvulkan1 is the loader.
    return { install: needNode ? ['chromium', 'libvulkan1'] : ['chromium'], lines: [], exitCode: 0 };
  }
  const lines: string[] = [];
  if (f.webgpu) {
    const kind = f.webgpu.probe.software ? 'software adapter, CPU-emulated and slow' : 'GPU';
    lines.push(`ready: WebGPU for Node: ${f.webgpu.probe.description} (${kind}; ${f.webgpu.reason})`);
  } else {
    lines.push(`No WebGPU adapter for Node: ${missingAdapterHint(f)}`);
  }
  if (needBrowser) {
    lines.push(
      `browser tests will fail: no Chrome or Chromium found; ${
        f.hasApt ? 'as root: apt-get install chromium; or ' : ''
      }install Chrome or Chromium, or set CHROME_PATH to one (the Node tests do not need it)`,
    );
  } else if (f.wantBrowser) lines.push(`browser tests: ${f.browser}`);
  return { install: [], lines, exitCode: needNode ? 1 : 0 };
}

/** What is missing for Node to get an adapter, and how to get it, in one line. */
function missingAdapterHint(f: MachineFacts): string {
  const swiftshader = 'SwiftShader (no GPU needed): WGD_SWIFTSHADER_ICD=path/to/vk_swiftshader_icd.json, from a Chrome or Chromium install';
  if (f.platform === 'linux' && f.hasApt) {
    return `Dawn found no GPU and no SwiftShader is installed; ${f.isRoot ? 'apt-get failed' : 'as root: apt-get install chromium libvulkan1'} (SwiftShader, no GPU needed), or install your GPU's Vulkan driver.`;
  }
  if (f.platform === 'linux') return `Dawn found no GPU and no SwiftShader; install your GPU's Vulkan driver and the Vulkan loader (libvulkan), or use ${swiftshader}.`;
  if (f.platform === 'darwin') return 'Dawn found no Metal adapter; WebGPU in Node needs macOS on a Mac with Metal.';
  if (f.platform === 'win32') return "Dawn found no D3D12 or Vulkan adapter; update the GPU's driver.";
  return `Dawn found no adapter on ${f.platform}; install a Vulkan driver, or use ${swiftshader}.`;
}

/** Where Chrome and Chromium are usually installed, per platform. */
export function browserCandidates(platform: NodeJS.Platform, env: Record<string, string | undefined>): string[] {
  if (platform === 'darwin') {
    return ['Google Chrome', 'Chromium', 'Google Chrome Canary'].map((a) => `/Applications/${a}.app/Contents/MacOS/${a}`);
  }
  if (platform === 'win32') {
    const roots = [env.PROGRAMFILES, env['PROGRAMFILES(X86)'], env.LOCALAPPDATA].filter((r): r is string => Boolean(r));
    return roots.flatMap((r) => [join(r, 'Google', 'Chrome', 'Application', 'chrome.exe'), join(r, 'Chromium', 'Application', 'chrome.exe')]);
  }
  return ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome', '/usr/bin/google-chrome-stable', '/opt/google/chrome/chrome', '/snap/bin/chromium'];
}

/** A Chrome or Chromium: $CHROME_PATH (or $CHROMIUM_PATH), else the first usual install path that exists. */
export function findBrowser(
  env: Record<string, string | undefined> = process.env,
  platform: NodeJS.Platform = process.platform,
  exists: (p: string) => boolean = existsSync,
): string | null {
  const given = env.CHROME_PATH ?? env.CHROMIUM_PATH;
  if (given) return exists(given) ? given : null;
  return browserCandidates(platform, env).find((p) => exists(p)) ?? null;
}
