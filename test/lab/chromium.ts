// Headless Chrome or Chromium for the browser, lab and package tests, through puppeteer-core: the one
// $CHROME_PATH names, else one from the usual install paths (scripts/setup-plan.ts), with WebGPU on
// its SwiftShader so that every machine computes the same pixels. Screenshots go to test-artifacts/.
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer, { Browser, Page } from 'puppeteer-core';
import { findBrowser } from '../../scripts/setup-plan.js';

export const CHROMIUM = findBrowser();
export const ROOT = join(import.meta.dirname, '..', '..');
export const ARTIFACTS = join(ROOT, 'test-artifacts');

export async function launchChromium(): Promise<Browser> {
  if (!CHROMIUM || !existsSync(CHROMIUM)) throw new Error('browser tests need Chrome or Chromium: install one (Debian, as root: apt-get install chromium) or set CHROME_PATH');
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: mkdtempSync(join(tmpdir(), 'wgd-chromium-')),
    args: [
      '--no-sandbox', '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-webgpu-adapter=swiftshader',
      '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

/** A new page that collects its console and errors (for failure messages). */
export async function newPage(browser: Browser, viewport = { width: 1200, height: 1300 }): Promise<{ page: Page; logs: string[] }> {
  const page = await browser.newPage();
  await page.setViewport(viewport);
  const logs: string[] = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${String(e)}`));
  return { page, logs };
}

export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, name);
  await page.screenshot({ path, fullPage: true });
  return path;
}
