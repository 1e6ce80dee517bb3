import { Kernel } from '../src/runtime/kernel.js';
import { DeviceArray } from '../src/runtime/runtime.js';
import source from '../shaders/random.wgsl';

const kernel = new Kernel('random', source);

export type Distribution = 'normal' | 'uniform';

/**
 * Random numbers of `shape` from the counter-based generator: `key` is an i32/u32 array [2] holding
 * (seed, counter) on the device; `stream` separates independent uses of one key.
 */
export function random(key: DeviceArray, shape: readonly number[], stream: number, dist: Distribution): DeviceArray {
  const rt = key.rt;
  const out = rt.alloc(shape, 'f32', 'random');
  const pairs = Math.ceil(out.size / 2);
  rt.dispatch(kernel, 'generate', {
    bindings: { key, out },
    uniforms: { n: out.size, stream: stream >>> 0, kind: dist === 'normal' ? 0 : 1, _pad: 0 },
    workgroups: rt.grid1d(pairs, 256),
  });
  return out;
}

/** key[1] += 1 on the device. */
export function advanceKey(key: DeviceArray): void {
  key.rt.dispatch(kernel, 'advance', { bindings: { counter: key }, workgroups: [1] });
}
