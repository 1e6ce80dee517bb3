// Runs the smoke checks in the browser against the same float64 references as in Node, and reports
// each result on the page and in window.__results for the headless test to read.
import { createDevice } from '../../src/index.js';
import { checkOp, SEED } from '../check.js';
import { smokeChecks } from '../smoke-checks.js';
import { randomDraw } from '../random-draw.js';

interface Result {
  name: string;
  ok: boolean;
  error?: string;
}
declare global {
  interface Window {
    __results?: Result[];
    __adapter?: string;
    __error?: string;
    /** u32 bits of the fixed random draw (test/random-draw.ts), for comparison with Node. */
    __random?: { normal: number[]; uniform: number[] };
  }
}

async function main() {
  const dev = await createDevice();
  dev.rt.poison = true;
  window.__adapter = `${dev.adapter.vendor} ${dev.adapter.architecture}`;
  document.getElementById('adapter')!.textContent = `adapter: ${window.__adapter}`;
  const list = document.getElementById('results')!;
  const results: Result[] = [];
  for (const c of smokeChecks(SEED)) {
    const li = document.createElement('li');
    try {
      await checkOp(dev, c);
      results.push({ name: c.name, ok: true });
      li.textContent = `✓ ${c.name}`;
      li.className = 'ok';
    } catch (e) {
      results.push({ name: c.name, ok: false, error: String((e as Error).message) });
      li.textContent = `✗ ${c.name}: ${(e as Error).message}`;
      li.className = 'fail';
    }
    list.appendChild(li);
  }
  window.__random = await randomDraw(dev);
  window.__results = results;
}

main().catch((e) => {
  window.__error = String((e as Error).stack ?? e);
  document.body.append(`error: ${window.__error}`);
});
