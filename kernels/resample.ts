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

// ------------------------------------------------------------------ float64 references (tests only)

/** Nearest 2x upsampling of NCHW x. */
export function upsample2xRef(x: Float64Array, shape: readonly number[]): Float64Array {
  const [n, c, h, w] = shape as [number, number, number, number];
  const out = new Float64Array(n * c * 4 * h * w);
  for (let p = 0; p < n * c; p++)
    for (let i = 0; i < 2 * h; i++)
      for (let j = 0; j < 2 * w; j++) out[(p * 2 * h + i) * 2 * w + j] = x[(p * h + (i >> 1)) * w + (j >> 1)]!;
  return out;
}

/** VJP of upsample2xRef: the sum over each 2x2 block of gy. */
export function upsample2xGradRef(gy: Float64Array, shape: readonly number[]): Float64Array {
  const [n, c, h, w] = shape as [number, number, number, number];
  const out = new Float64Array(n * c * h * w);
  for (let p = 0; p < n * c; p++)
    for (let i = 0; i < 2 * h; i++)
      for (let j = 0; j < 2 * w; j++) out[(p * h + (i >> 1)) * w + (j >> 1)] += gy[(p * 2 * h + i) * 2 * w + j]!;
  return out;
}

/** 2x2 average pooling, stride 2, of NCHW x with even H, W. */
export function downsample2xRef(x: Float64Array, shape: readonly number[]): Float64Array {
  const [n, c, h, w] = shape as [number, number, number, number];
  return upsample2xGradRef(x, [n, c, h / 2, w / 2]).map((v) => v / 4);
}

/** VJP of downsample2xRef: gy / 4 spread over each 2x2 block. */
export function downsample2xGradRef(gy: Float64Array, shape: readonly number[]): Float64Array {
  const [n, c, h, w] = shape as [number, number, number, number];
  return upsample2xRef(gy, [n, c, h / 2, w / 2]).map((v) => v / 4);
}
