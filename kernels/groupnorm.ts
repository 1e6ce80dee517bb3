import { Kernel } from '../src/runtime/kernel.js';
import { DeviceArray, Runtime } from '../src/runtime/runtime.js';
import source from '../shaders/groupnorm.wgsl';
import { numel } from './shape.js';
import { fnv1a, tunedChoice, type TuneProblem, type TuneWorkload } from '../src/runtime/autotune.js';
import { tuneInput } from './tune-input.js';

const kernel = new Kernel('groupnorm', source);

/**
 * Threads per (n, group) block, chosen per adapter by measurement (src/runtime/autotune.ts). On CPU
 * emulation (SwiftShader) a workgroup with barriers runs its 4-lane subgroups as fibres, and at
 * [8, 64, 32, 32] one subgroup per block (4 threads) measured 1.5-7x faster than 8 to 64 threads; a
 * GPU wants 64 or more threads to hide memory latency, and 256 when there are few blocks (2 x 32
 * groups at [2, 320, 64, 64]). The first candidate is the fixed default (untuned devices).
 */
export const GROUPNORM_TUNE: TuneProblem = {
  key: 'groupNorm',
  candidates: ['wg64', 'wg256', 'wg4'],
  revision: fnv1a(source),
  workloads: [gnWorkload([4, 64, 16, 16], 32), gnWorkload([8, 64, 32, 32], 32), gnWorkload([2, 320, 64, 64], 32)],
  usable: (rt, c) => wgOf(c) <= rt.limits.maxComputeInvocationsPerWorkgroup,
};

const wgOf = (candidate: string) => Number(candidate.slice(2));

function gnWorkload(shape: number[], groups: number): TuneWorkload {
  return {
    label: `[${shape.join(', ')}] / ${groups}`,
    work: numel(shape),
    setup(rt) {
      const x = tuneInput(rt, shape);
      const c = shape[1]!;
      const gamma = tuneInput(rt, [c]);
      const beta = tuneInput(rt, [c]);
      let out: GroupNormForward | null = null;
      const drop = () => out && (rt.dispose(out.y), rt.dispose(out.stats));
      return {
        run: (cand) => {
          drop();
          out = groupNormForward(x, groups, gamma, beta, 1e-5, true, wgOf(cand));
        },
        dispose: () => [x, gamma, beta].forEach((a) => rt.dispose(a)),
      };
    },
  };
}

/** Threads per (n, group) block on this adapter: see GROUPNORM_TUNE. */
export function groupNormWorkgroup(rt: Runtime): number {
  return wgOf(tunedChoice(rt, GROUPNORM_TUNE));
}

/** Sizes of x [N, C, ...spatial] split into groups. */
export interface GroupNormDims {
  n: number;
  c: number;
  s: number;
  groups: number;
}

export function groupNormDims(shape: readonly number[], groups: number): GroupNormDims {
  return { n: shape[0]!, c: shape[1]!, s: numel(shape.slice(2)), groups };
}

function uniforms(d: GroupNormDims, blocks: number, eps: number) {
  return { blocks, groups: d.groups, cpg: d.c / d.groups, spatial: d.s, channels: d.c, batch: d.n, eps, _pad0: 0 };
}

/**
 * The vec4 entries (and their vec4 bindings, named with a 4) when a vec4 never straddles two
 * channels: `v('x')` is 'x4' then.
 */
const vec4Names = (d: GroupNormDims) => (name: string) => (d.s % 4 === 0 ? name + '4' : name);

function grid(rt: Runtime, blocks: number): [number, number] {
  const gx = Math.min(blocks, rt.limits.maxComputeWorkgroupsPerDimension);
  return [gx, Math.ceil(blocks / gx)];
}

/** gamma, or ones when absent (and beta, or zeros): one pipeline serves affine and plain. */
function orFill(rt: Runtime, a: DeviceArray | null, c: number, value: number): DeviceArray {
  if (a) return a;
  const out = rt.alloc([c], 'f32', 'groupNorm');
  rt.fillValue(out, value);
  return out;
}

export interface GroupNormForward {
  y: DeviceArray;
  /** [N, groups, 4]: (mean as hi + lo, rstd, unused) of each group, saved for the backward. */
  stats: DeviceArray;
}

/**
 * y = act((x - mean_g) * rstd_g * gamma + beta) with act = SiLU or identity. Shapes are validated by
 * the op. `wg` (threads per block) defaults to the adapter's best; tests also run the other one.
 */
export function groupNormForward(
  x: DeviceArray, groups: number, gamma: DeviceArray | null, beta: DeviceArray | null, eps: number, silu: boolean,
  wg = groupNormWorkgroup(x.rt),
): GroupNormForward {
  const rt = x.rt;
  const d = groupNormDims(x.shape, groups);
  const y = rt.alloc(x.shape, 'f32', 'groupNorm');
  const stats = rt.alloc([d.n, groups, 4], 'f32', 'groupNorm');
  if (x.size === 0) return { y, stats };
  const blocks = d.n * groups;
  const v = vec4Names(d);
  rt.dispatch(kernel, v('forward'), {
    bindings: { [v('x')]: x, [v('y')]: y, gamma: orFill(rt, gamma, d.c, 1), beta: orFill(rt, beta, d.c, 0), stats },
    uniforms: uniforms(d, blocks, eps),
    workgroups: grid(rt, blocks),
    constants: { WG: wg, SILU: silu ? 1 : 0 },
  });
  return { y, stats };
}

export interface GroupNormGrads {
  dx: DeviceArray | null;
  dgamma: DeviceArray | null;
  dbeta: DeviceArray | null;
}

/** Gradients of x, gamma and beta (each only when asked for) from dy and the forward's stats. */
export function groupNormBackward(
  x: DeviceArray, dy: DeviceArray, groups: number, gamma: DeviceArray | null, beta: DeviceArray | null,
  stats: DeviceArray, silu: boolean, want: { x: boolean; gamma: boolean; beta: boolean }, wg = groupNormWorkgroup(x.rt),
): GroupNormGrads {
  const rt = x.rt;
  const d = groupNormDims(x.shape, groups);
  const g = orFill(rt, gamma, d.c, 1);
  const b = orFill(rt, beta, d.c, 0);
  const constants = { WG: wg, SILU: silu ? 1 : 0 };
  const out: GroupNormGrads = { dx: null, dgamma: null, dbeta: null };
  const v = vec4Names(d);
  if (want.x) {
    const dx = rt.alloc(x.shape, 'f32', 'groupNorm');
    const blocks = d.n * groups;
    if (x.size > 0) {
      rt.dispatch(kernel, v('backward_dx'), {
        bindings: { [v('x')]: x, [v('dy')]: dy, [v('dx')]: dx, gamma: g, beta: b, saved: stats },
        uniforms: uniforms(d, blocks, 0),
        workgroups: grid(rt, blocks),
        constants,
      });
    }
    out.dx = dx;
  }
  if (want.gamma || want.beta) {
    const dgamma = rt.alloc([d.c], 'f32', 'groupNorm');
    const dbeta = rt.alloc([d.c], 'f32', 'groupNorm');
    if (x.size > 0) {
      rt.dispatch(kernel, v('backward_dgamma'), {
        bindings: { [v('x')]: x, [v('dy')]: dy, gamma: g, beta: b, saved: stats, dgamma, dbeta },
        uniforms: uniforms(d, d.c, 0),
        workgroups: grid(rt, d.c),
        constants,
      });
    } else {
      rt.fillValue(dgamma, 0);
      rt.fillValue(dbeta, 0);
    }
    if (want.gamma) out.dgamma = dgamma;
    if (want.beta) out.dbeta = dbeta;
  }
  return out;
}
