// One fixed draw of the counter-based generator, made unchanged on Dawn in Node (test/browser.test.ts)
// and in headless Chromium (test/browser/page.ts), so the two runtimes can be compared bit for bit.
import { ops, Device } from '../src/index.js';

/** The key and stream of the draw; odd n, so the last pair's second half is cut off in both. */
export const RANDOM_DRAW = { seed: 0x9e3779b9, counter: 41, stream: 5, n: 4099 } as const;

/** The u32 bit patterns of n normals and n uniforms for RANDOM_DRAW (plain arrays: they cross page.evaluate). */
export async function randomDraw(dev: Device): Promise<{ normal: number[]; uniform: number[] }> {
  const { seed, counter, stream, n } = RANDOM_DRAW;
  const key = dev.randomKey(seed, counter);
  const bits = async (f: typeof ops.randn) => {
    const x = (await f([n], key, stream).read()) as Float32Array;
    return Array.from(new Uint32Array(x.buffer, x.byteOffset, x.length));
  };
  return { normal: await bits(ops.randn), uniform: await bits(ops.rand) };
}
