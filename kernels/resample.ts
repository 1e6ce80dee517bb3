import { Kernel } from '../src/runtime/kernel.js';
import { DeviceArray } from '../src/runtime/runtime.js';
import source from '../shaders/resample.wgsl';

const kernel = new Kernel('resample', source);

/** [N, C, H, W] -> [N, C, 2H, 2W], each element copied to its 2x2 block and scaled. */
export function expand2x(x: DeviceArray, scale: number, op: string): DeviceArray {
  const rt = x.rt;
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const out = rt.alloc([n, c, 2 * h, 2 * w], 'f32', op);
  if (x.size === 0) return out;
  rt.dispatch(kernel, 'expand2x', {
    bindings: { coarse_in: x, fine_out: out },
    uniforms: { n: x.size, wc: w, scale, _pad0: 0 },
    workgroups: rt.grid1d(x.size, 256),
  });
  return out;
}

/** [N, C, 2H, 2W] -> [N, C, H, W], the sum of each 2x2 block, scaled. H and W of the input must be even. */
export function pool2x(x: DeviceArray, scale: number, op: string): DeviceArray {
  const rt = x.rt;
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const out = rt.alloc([n, c, h / 2, w / 2], 'f32', op);
  if (out.size === 0) return out;
  rt.dispatch(kernel, 'pool2x', {
    bindings: { fine_in: x, coarse_out: out },
    uniforms: { n: out.size, wc: w / 2, scale, _pad0: 0 },
    workgroups: rt.grid1d(out.size, 256),
  });
  return out;
}
