import { Kernel } from '../src/runtime/kernel.js';
import { DeviceArray, Runtime } from '../src/runtime/runtime.js';
import source from '../shaders/softmax.wgsl';
import { numel } from './shape.js';
import { fnv1a, tunedChoice, type TuneProblem, type TuneWorkload } from '../src/runtime/autotune.js';
import { tuneInput } from './tune-input.js';

const kernel = new Kernel('softmax', source);

/** x viewed as [outer, len, inner] around the softmax axis. */
export interface SoftmaxDims {
  outer: number;
  len: number;
  inner: number;
}

export function softmaxDims(shape: readonly number[], axis: number): SoftmaxDims {
  return { outer: numel(shape.slice(0, axis)), len: shape[axis]!, inner: numel(shape.slice(axis + 1)) };
}

const WG = 64; // threads per workgroup (the shader's WG)

/**
 * Threads per row at most, chosen per adapter by measurement (src/runtime/autotune.ts): 4 (one
 * SwiftShader subgroup; each barrier there costs a fibre switch per 4-lane subgroup, and 64 threads
 * per row of 256 measured 6-10x slower than 1 or 4) or the whole workgroup (GPUs). The first
 * candidate is the fixed default.
 */
export const SOFTMAX_TUNE: TuneProblem = {
  key: 'softmax',
  candidates: ['cap64', 'cap4'],
  revision: fnv1a(source),
  workloads: [smWorkload([128, 1024]), smWorkload([256, 4096])],
};

function smWorkload(shape: [number, number]): TuneWorkload {
  return {
    label: `[${shape.join(', ')}]`,
    work: shape[0] * shape[1],
    setup(rt) {
      const x = tuneInput(rt, shape);
      const d = softmaxDims(shape, 1);
      let out: DeviceArray | null = null;
      return {
        run: (cand) => {
          if (out) rt.dispose(out);
          out = rt.alloc(shape, 'f32', 'softmax');
          launch(rt, 'forward', d, { x, out }, rowThreads(Number(cand.slice(3)), d.len));
        },
        dispose: () => rt.dispose(x),
      };
    },
  };
}

/**
 * Threads per row: one per row up to 64 elements (no barriers), then enough that each thread has at
 * most 64 elements, up to `cap`.
 */
function rowThreads(cap: number, len: number): number {
  let t = 1;
  while (t < cap && len > 64 * t) t *= 2;
  return t;
}

/** Threads per row on this adapter for rows of `len`: see SOFTMAX_TUNE. */
export function threadsPerRow(rt: Runtime, len: number): number {
  return rowThreads(Number(tunedChoice(rt, SOFTMAX_TUNE).slice(3)), len);
}

function launch(rt: Runtime, entry: string, d: SoftmaxDims, bindings: Record<string, DeviceArray>, t = threadsPerRow(rt, d.len)): void {
  const rows = d.outer * d.inner;
  if (rows === 0 || d.len === 0) return;
  const groups = Math.ceil(rows / (WG / t));
  const gx = Math.min(groups, rt.limits.maxComputeWorkgroupsPerDimension);
  rt.dispatch(kernel, entry, {
    bindings,
    uniforms: { rows, len: d.len, inner: d.inner, _pad0: 0 },
    workgroups: [gx, Math.ceil(groups / gx)],
    constants: { T: t },
  });
}

/** softmax of x along `axis` (non-negative; validated by the op); `threads` per row: see threadsPerRow. */
export function softmaxForward(x: DeviceArray, axis: number, threads?: number): DeviceArray {
  const out = x.rt.alloc(x.shape, 'f32', 'softmax');
  launch(x.rt, 'forward', softmaxDims(x.shape, axis), { x, out }, threads);
  return out;
}

/** dx = y * (dy - sum(dy * y)) along `axis`, from the forward's output y. */
export function softmaxBackward(y: DeviceArray, dy: DeviceArray, axis: number, threads?: number): DeviceArray {
  const out = y.rt.alloc(y.shape, 'f32', 'softmax');
  launch(y.rt, 'backward', softmaxDims(y.shape, axis), { y, dy, out }, threads);
  return out;
}
