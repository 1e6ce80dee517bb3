import { Kernel } from '../src/runtime/kernel.js';
import { DeviceArray } from '../src/runtime/runtime.js';
import source from '../shaders/gather.wgsl';

const kernel = new Kernel('gather', source);

/** Where element c of source row m lives: (m / inner) * outerStride + (m % inner) * innerStride + c * colStride. */
export interface RowLayout {
  inner: number;
  outerStride: number;
  innerStride: number;
  colStride: number;
}

/** Rows of a row-major [M, E] array. */
export const denseRows = (width: number): RowLayout => ({ inner: 1, outerStride: width, innerStride: 0, colStride: 1 });

/** The spatial vectors (length C) of an NCHW array [N, C, H, W], row m = n * H * W + (h * W + w). */
export const nchwVectors = (shape: readonly number[]): RowLayout => {
  const [, c, h, w] = shape as [number, number, number, number];
  return { inner: h * w, outerStride: c * h * w, innerStride: 1, colStride: h * w };
};

function uniforms(rows: number, tableRows: number, width: number, layout: RowLayout = denseRows(width), alpha = 1, parts = 1, partRows = 0) {
  return {
    rows, table_rows: tableRows, width,
    inner: layout.inner, outer_stride: layout.outerStride, inner_stride: layout.innerStride, col_stride: layout.colStride,
    alpha, parts, part_rows: partRows, _pad0: 0, _pad1: 0,
  };
}

/** Rows each segment-sum thread walks, and the most floats its partial slabs may take together. */
const PART_ROWS = 256;
const MAX_PARTIAL = 1 << 22;

/** out[..., :] = table[indices[...], :]; indices outside [0, V) give rows of zeros. */
export function gatherRows(indices: DeviceArray, table: DeviceArray): DeviceArray {
  const rt = table.rt;
  const [v, e] = table.shape as [number, number];
  const out = rt.alloc([...indices.shape, e], 'f32', 'embedding');
  const n = indices.size * e;
  if (n === 0) return out;
  if (v === 0) {
    rt.fillValue(out, 0);
    return out;
  }
  rt.dispatch(kernel, 'gather', {
    bindings: { indices, table, out },
    uniforms: uniforms(indices.size, v, e),
    workgroups: rt.grid1d(n, 256),
  });
  return out;
}

/**
 * out[v, :] = alpha * sum of (a - b)[m, :] over rows m with indices[m] == v (b optional), for v < tableRows;
 * indices outside [0, tableRows) are skipped. Deterministic without float atomics: runs of rows add into
 * private slabs in a fixed order (pass 1), then the slabs are summed in a fixed order (pass 2).
 * Work O(M * width + parts * tableRows * width), with parts = M / 256 capped so the slabs stay <= 16 MiB.
 */
export function segmentSum(indices: DeviceArray, a: DeviceArray, b: DeviceArray | null, tableRows: number, width: number, layout: RowLayout, alpha = 1): DeviceArray {
  const rt = a.rt;
  const out = rt.alloc([tableRows, width], 'f32', 'segment_sum');
  const n = tableRows * width;
  if (n === 0) return out;
  const rows = indices.size;
  const parts = Math.max(1, Math.min(Math.ceil(rows / PART_ROWS), Math.floor(MAX_PARTIAL / n)));
  const partRows = Math.ceil(rows / parts);
  const partial = rt.alloc([parts, tableRows, width], 'f32', 'segment_sum');
  rt.fillValue(partial, 0);
  const u = uniforms(rows, tableRows, width, layout, alpha, parts, partRows);
  rt.dispatch(kernel, 'segment_scatter', {
    bindings: { indices, a, b: b ?? a, out: partial },
    uniforms: u,
    workgroups: rt.grid1d(parts * Math.ceil(width / 4), 64),
    constants: { SUB_B: b ? 1 : 0 },
  });
  rt.dispatch(kernel, 'segment_reduce', { bindings: { a: partial, out }, uniforms: u, workgroups: rt.grid1d(n, 256) });
  rt.dispose(partial);
  return out;
}
