import { Kernel } from '../src/runtime/kernel.js';
import { DeviceArray } from '../src/runtime/runtime.js';
import source from '../shaders/reduce.wgsl';
import { mergeAxes, numel, stridesOf } from './shape.js';
import { contiguous, stridedMap } from './elementwise.js';

const kernel = new Kernel('reduce', source);

/** A thread per output unless the sums are long and the outputs few (then a workgroup each). */
const LONG_SUM = 256;
const MANY_OUTPUTS = 16384;

/** alpha * sum of x over `axes` (sorted, non-negative); the result keeps size-1 axes where reduced. */
export function sumAxes(x: DeviceArray, axes: readonly number[], alpha = 1): DeviceArray {
  const rt = x.rt;
  const outShape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  // Merged together with the output's strides (0 on reduced axes), a kept axis never merges with a
  // reduced one; merged axes are reduced where their output stride is 0.
  const outStrides = stridesOf(outShape).map((s, i) => (axes.includes(i) ? 0 : s));
  const m = mergeAxes(x.shape, [stridesOf(x.shape), outStrides]);
  const dims = m.shape.map((size, i) => ({ size, stride: m.strides[0]![i]!, reduced: m.strides[1]![i] === 0 }));
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
  // Packed as the kernel reads them (shaders/reduce.wgsl): the runs' axis and each outermost axis
  // apart, the other axes innermost first.
  const runs = red[red.length - 1]!;
  const others = red.slice(0, -1);
  const packed = (ds: typeof dims) => ({ shape: ds.slice(1).reverse().map((d) => d.size), strides: ds.slice(1).reverse().map((d) => d.stride) });
  const o = packed(kept);
  const r = packed(others);
  rt.dispatch(kernel, each ? 'sum_each' : 'sum_wg', {
    bindings: { x, out },
    uniforms: {
      n_out: nOut, red_count: count, inner: runs.size, inner_stride: runs.stride, alpha,
      out_outer: kept[0]?.stride ?? 0, red_outer: others[0]?.stride ?? 0, _pad0: 0,
      out_shape: o.shape, out_strides: o.strides, red_shape: r.shape, red_strides: r.strides,
    },
    workgroups: [gx, Math.ceil(groups / gx)],
    constants: { OUT_RANK: kept.length, RED_RANK: red.length },
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
