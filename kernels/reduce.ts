import { Kernel } from '../src/runtime/kernel.js';
import { DeviceArray } from '../src/runtime/runtime.js';
import source from '../shaders/reduce.wgsl';
import { numel, stridesOf } from './shape.js';
import { contiguous, stridedMap } from './elementwise.js';

const kernel = new Kernel('reduce', source);

interface Axis {
  size: number;
  stride: number;
  reduced: boolean;
}

/** Drops size-1 axes and merges neighbours that are both kept or both reduced and whose strides chain. */
export function mergeAxes(shape: readonly number[], reduced: (axis: number) => boolean): Axis[] {
  const st = stridesOf(shape);
  const out: Axis[] = [];
  shape.forEach((size, i) => {
    if (size === 1) return;
    const prev = out[out.length - 1];
    const red = reduced(i);
    if (prev && prev.reduced === red && prev.stride === st[i]! * size) {
      prev.size *= size;
      prev.stride = st[i]!;
    } else out.push({ size, stride: st[i]!, reduced: red });
  });
  return out;
}

/** A thread per output unless the sums are long and the outputs few (then a workgroup each). */
const LONG_SUM = 256;
const MANY_OUTPUTS = 16384;

/** alpha * sum of x over `axes` (sorted, non-negative); the result keeps size-1 axes where reduced. */
export function sumAxes(x: DeviceArray, axes: readonly number[], alpha = 1): DeviceArray {
  const rt = x.rt;
  const outShape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const dims = mergeAxes(x.shape, (i) => axes.includes(i));
  const kept = dims.filter((d) => !d.reduced);
  const red = dims.filter((d) => d.reduced);
  const out = rt.alloc(outShape, 'f32', 'sum');
  if (red.length === 0) {
    // Nothing to add up: a scaled copy.
    stridedMap('identity', x, contiguous(x.shape), out, contiguous(x.shape), alpha);
    return out;
  }
  const nOut = numel(outShape);
  const count = numel(red.map((d) => d.size));
  const each = count <= LONG_SUM || nOut >= MANY_OUTPUTS;
  const maxX = rt.limits.maxComputeWorkgroupsPerDimension;
  const groups = each ? Math.ceil(nOut / 64) : nOut;
  const gx = Math.min(groups, maxX);
  rt.dispatch(kernel, each ? 'sum_each' : 'sum_wg', {
    bindings: { x, out },
    uniforms: {
      n_out: nOut, out_rank: kept.length, red_rank: red.length, red_count: count, alpha,
      _pad0: 0, _pad1: 0, _pad2: 0,
      out_shape: kept.map((d) => d.size), out_strides: kept.map((d) => d.stride),
      red_shape: red.map((d) => d.size), red_strides: red.map((d) => d.stride),
    },
    workgroups: [gx, Math.ceil(groups / gx)],
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
