import { Command, FuseInfo, FuseLeaf } from '../runtime/capture.js';
import { Kernel } from '../runtime/kernel.js';
import { DeviceArray, Runtime, Storage } from '../runtime/runtime.js';
import { ELEMENTWISE_OPS_WGSL } from '../../kernels/elementwise.js';
import { numel, stridesOf } from '../../kernels/shape.js';

/** A leaf of a fused expression: element i of the iteration space reads array[offset + Σ c_d·strides_d]. */
interface Leaf extends FuseLeaf {
  /** The shape over which i is unravelled into coordinates c (that of the op that read it). */
  shape: readonly number[];
}

type Expr = { leaf: Leaf } | { kind: FuseInfo['kind']; op: number; alpha: number; beta: number; args: Expr[] };

const isLeaf = (e: Expr): e is { leaf: Leaf } => 'leaf' in e;

/** Reads element i of a contiguous iteration space at element i (so a producer can be inlined). */
function isLinear(l: Leaf): boolean {
  const st = stridesOf(l.shape);
  return l.offset === 0 && l.array.byteOffset === 0 && l.array.size === numel(l.shape) && l.shape.every((d, k) => d === 1 || l.strides[k] === st[k]);
}

function leavesOf(e: Expr, out: Leaf[] = []): Leaf[] {
  if (isLeaf(e)) out.push(e.leaf);
  else for (const a of e.args) leavesOf(a, out);
  return out;
}

const leafKey = (l: Leaf) => l.array.storage;

/** Two arrays in one storage, or in one GPU buffer (storage placed by the memory plan or another view). */
const sameMemory = (a: DeviceArray, b: DeviceArray) => a.storage === b.storage || (a.storage.buffer !== null && a.storage.buffer === b.storage.buffer);

/**
 * Commands a producer may be inlined across when that keeps an intermediate alive longer (see
 * fuseElementwise). Chains within a layer's forward or backward sit closer than this.
 */
const FUSE_REACH = 16;

export interface FusionResult {
  commands: Command[];
  /** Generated kernels, and how many elementwise dispatches they replaced. */
  fusedKernels: number;
  fusedOps: number;
}

/**
 * Fuses chains of elementwise dispatches into generated kernels. A producer is inlined into its
 * consumer when its result is an intermediate (virtual, not an output) that only the consumer reads,
 * read element for element (no broadcast), nothing between the two writes the producer's
 * operands, and the two are close (FUSE_REACH) or inlining keeps no intermediate alive longer. The fused kernel evaluates the whole expression per element, so the intermediates are
 * never written to memory. Storage bindings stay within the device's per-stage limit.
 */
export function fuseElementwise(rt: Runtime, commands: Command[], pinned: Set<Storage>, virtual: Set<Storage>): FusionResult {
  const users = new Map<Storage, number[]>();
  const writers = new Map<Storage, number[]>();
  commands.forEach((c, k) => {
    for (const b of c.bindings) {
      const s = b.array.storage;
      const u = users.get(s) ?? [];
      if (u[u.length - 1] !== k) u.push(k);
      users.set(s, u);
      if (b.write) writers.set(s, [...(writers.get(s) ?? []), k]);
    }
  });
  const maxLeaves = rt.limits.maxStorageBuffersPerShaderStage - 1;
  const exprs = new Map<number, Expr>();
  const inlined = new Set<number>();

  const writtenBetween = (s: Storage, from: number, to: number) => (writers.get(s) ?? []).some((w) => w > from && w < to);
  const lastUse = (s: Storage) => users.get(s)!.at(-1)!;

  commands.forEach((c, k) => {
    const f = c.fuse;
    if (!f) return;
    const args: Expr[] = f.inputs.map((inp) => {
      const leaf: Leaf = { ...inp, shape: f.shape };
      const s = inp.array.storage;
      const ws = writers.get(s) ?? [];
      const us = users.get(s) ?? [];
      const p = ws[0]!;
      if (!virtual.has(s) || pinned.has(s) || ws.length !== 1 || us.length !== 2 || us[0] !== p || us[1] !== k) return { leaf };
      const producer = exprs.get(p);
      const pf = commands[p]!.fuse;
      if (!producer || !pf || !isLinear(leaf) || pf.out.size !== numel(f.shape) || pf.out.byteOffset !== 0) return { leaf };
      // The producer's operands must still hold the same values when the consumer runs.
      if (leavesOf(producer).some((l) => writtenBetween(leafKey(l), p, k))) return { leaf };
      // Inlining moves the producer's reads to the consumer: an intermediate it reads that would
      // otherwise die at the producer stays alive until the consumer. Far apart (a running sum of
      // gradients added at the end of a step with N micro-batches), that holds memory across the
      // commands between them — every micro-batch's gradients at once — so the two stay apart.
      if (k - p > FUSE_REACH && leavesOf(producer).some((l) => virtual.has(leafKey(l)) && !pinned.has(leafKey(l)) && lastUse(leafKey(l)) < k)) return { leaf };
      // A kernel may not read the memory it writes: WebGPU refuses a buffer bound read-only and
      // read-write in one dispatch (an update in place, ops.assign(acc, ops.add(acc, g)), stays two).
      if (leavesOf(producer).some((l) => sameMemory(l.array, f.out))) return { leaf };
      inlined.add(p);
      return producer;
    });
    let e: Expr = { kind: f.kind, op: f.op, alpha: f.alpha, beta: f.beta, args };
    if (new Set(leavesOf(e).map(leafKey)).size > maxLeaves) {
      // Too many operands for one kernel: keep this op unfused (its producers stay as they were).
      args.forEach((a, i) => {
        if (!isLeaf(a)) {
          const inp = f.inputs[i]!;
          const p = writers.get(inp.array.storage)![0]!;
          inlined.delete(p);
          args[i] = { leaf: { ...inp, shape: f.shape } };
        }
      });
      e = { kind: f.kind, op: f.op, alpha: f.alpha, beta: f.beta, args };
    }
    exprs.set(k, e);
  });

  let fusedKernels = 0;
  let fusedOps = 0;
  const out: Command[] = [];
  commands.forEach((c, k) => {
    if (inlined.has(k)) return;
    const e = exprs.get(k);
    if (!e || isLeaf(e) || e.args.every(isLeaf)) {
      out.push(c);
      return;
    }
    fusedKernels++;
    fusedOps += countOps(e);
    out.push(fusedCommand(rt, e, c.fuse!));
  });
  return { commands: out, fusedKernels, fusedOps };
}

function countOps(e: Expr): number {
  return isLeaf(e) ? 0 : 1 + e.args.reduce((s, a) => s + countOps(a), 0);
}

const generated = new Map<string, Kernel>();

/** Generates (or reuses) the kernel for an expression and records its dispatch. */
function fusedCommand(rt: Runtime, e: Expr, root: FuseInfo): Command {
  const arrays: DeviceArray[] = [];
  const bindingOf = (a: DeviceArray) => {
    let i = arrays.findIndex((b) => b.storage === a.storage && b.byteOffset === a.byteOffset);
    if (i < 0) i = arrays.push(a) - 1;
    return i;
  };
  const coef: number[] = [];
  const geo: number[] = [];
  const body: string[] = [];
  let v = 0;
  const emit = (x: Expr): string => {
    if (isLeaf(x)) {
      const l = x.leaf;
      const b = bindingOf(l.array);
      const name = `v${v++}`;
      if (isLinear(l)) {
        body.push(`  let ${name} = in${b}[i];`);
        return name;
      }
      // Unravel i over the leaf's shape (size-1 axes dropped) with sizes and strides from the uniform.
      const axes = l.shape.map((d, k) => k).filter((k) => l.shape[k] !== 1);
      const g = geo.length;
      geo.push(l.offset, ...axes.map((k) => l.shape[k]!), ...axes.map((k) => l.strides[k]!));
      const r = axes.length;
      body.push(`  var r${name} = i;`, `  var ix${name} = geo(${g}u);`);
      for (let d = r - 1; d >= 0; d--) {
        body.push(`  ix${name} += (r${name} % geo(${g + 1 + d}u)) * geo(${g + 1 + r + d}u); r${name} = r${name} / geo(${g + 1 + d}u);`);
      }
      body.push(`  let ${name} = in${b}[ix${name}];`);
      return name;
    }
    const args = x.args.map(emit);
    const name = `v${v++}`;
    if (x.kind === 'unary') {
      const c = coef.length;
      coef.push(x.alpha, x.beta);
      body.push(`  let ${name} = coef(${c}u) * unary_f(${x.op}u, ${args[0]}) + coef(${c + 1}u);`);
    } else if (x.kind === 'unaryGrad') {
      body.push(`  let ${name} = ${args[1]} * unary_df(${x.op}u, ${args[0]});`);
    } else {
      body.push(`  let ${name} = binary_f(${x.op}u, ${args[0]}, ${args[1]});`);
    }
    return name;
  };
  const result = emit(e);
  const nCoef = Math.max(1, Math.ceil(coef.length / 4));
  const nGeo = Math.max(1, Math.ceil(geo.length / 4));
  const bindings = arrays.map((_, b) => `@group(0) @binding(${b + 1}) var<storage, read> in${b}: array<f32>;`);
  const source = `${ELEMENTWISE_OPS_WGSL}
struct Params { n: u32, _p0: u32, _p1: u32, _p2: u32, coef: array<vec4<f32>, ${nCoef}>, geo: array<vec4<u32>, ${nGeo}> }
@group(0) @binding(0) var<uniform> p: Params;
${bindings.join('\n')}
@group(0) @binding(${arrays.length + 1}) var<storage, read_write> out: array<f32>;
fn coef(k: u32) -> f32 { return p.coef[k / 4u][k % 4u]; }
fn geo(k: u32) -> u32 { return p.geo[k / 4u][k % 4u]; }

@compute @workgroup_size(256)
fn fused(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
${body.join('\n')}
  out[i] = ${result};
}
`;
  let kernel = generated.get(source);
  if (!kernel) generated.set(source, (kernel = new Kernel(`fused${generated.size}`, source)));
  const n = numel(root.shape);
  const uniform = new Uint8Array(kernel.uniformSize);
  kernel.packUniforms({ n, _p0: 0, _p1: 0, _p2: 0, coef, geo }, new DataView(uniform.buffer));
  const [x, y] = rt.grid1d(n, 256);
  return {
    kernel,
    entry: 'fused',
    pipeline: rt.pipeline(kernel, 'fused'),
    bindings: [...arrays.map((array, b) => ({ binding: b + 1, array, write: false })), { binding: arrays.length + 1, array: root.out, write: true }],
    uniform,
    uniformBinding: 0,
    workgroups: [x, y, 1],
  };
}
