import { Kernel } from '../src/runtime/kernel.js';
import { DeviceArray } from '../src/runtime/runtime.js';
import source from '../shaders/reduce.wgsl';
import { numel, stridesOf } from './shape.js';
import { contiguous, stridedMap } from './elementwise.js';

const kernel = new Kernel('reduce', source);

/** alpha * sum of x over `axes` (sorted, non-negative); the result keeps size-1 axes where reduced. */
export function sumAxes(x: DeviceArray, axes: readonly number[], alpha = 1): DeviceArray {
  const rt = x.rt;
  const st = stridesOf(x.shape);
  const outShape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const kept = x.shape.map((_, i) => i).filter((i) => !axes.includes(i));
  const red = axes.filter((i) => x.shape[i]! > 1);
  const out = rt.alloc(outShape, 'f32', 'sum');
  if (red.length === 0) {
    // Nothing to add up: a scaled copy.
    stridedMap('identity', x, contiguous(x.shape), out, contiguous(x.shape), alpha);
    return out;
  }
  const nOut = numel(outShape);
  const maxX = rt.limits.maxComputeWorkgroupsPerDimension;
  const gx = Math.min(nOut, maxX);
  rt.dispatch(kernel, 'sum', {
    bindings: { x, out },
    uniforms: {
      n_out: nOut, out_rank: kept.length, red_rank: red.length, red_count: numel(red.map((i) => x.shape[i]!)), alpha,
      _pad0: 0, _pad1: 0, _pad2: 0,
      out_shape: kept.map((i) => x.shape[i]!), out_strides: kept.map((i) => st[i]!),
      red_shape: red.map((i) => x.shape[i]!), red_strides: red.map((i) => st[i]!),
    },
    workgroups: [gx, Math.ceil(nOut / gx)],
  });
  return out;
}

/** Sum a broadcast result back to the shape of the operand that was broadcast. */
export function sumTo(g: DeviceArray, shape: readonly number[]): DeviceArray {
  const lead = g.shape.length - shape.length;
  const axes: number[] = [];
  g.shape.forEach((d, i) => {
    if (i < lead || (shape[i - lead] === 1 && d !== 1)) axes.push(i);
  });
  if (axes.length === 0) return g.shape.length === shape.length ? g : g.reshape(shape);
  return sumAxes(g, axes).reshape(shape);
}
