import { DeviceArray, DType, Runtime } from '../runtime/runtime.js';
import { fmtShape } from '../runtime/errors.js';
import { binary, unary } from '../../kernels/elementwise.js';

/** Computes the gradients of an op's inputs from the gradient of its output (null: no gradient). */
export type BackwardFn = (gy: DeviceArray) => (DeviceArray | null)[];

export interface GradNode {
  op: string;
  inputs: (Tensor | null)[];
  backward: BackwardFn;
}

let gradEnabled = true;

/** Run fn with gradient recording off (as torch.no_grad). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/**
 * A tensor: an array on the device plus what autograd needs. Eager ops record, for each output that
 * depends on a requiresGrad input, the op's backward rule; `backward()` walks that record in reverse.
 */
export class Tensor {
  grad: Tensor | null = null;
  private node: GradNode | null = null;

  constructor(
    private array: DeviceArray,
    readonly requiresGrad = false,
  ) {}

  /** The array on the device that holds the values. */
  get data(): DeviceArray {
    return this.array;
  }

  /**
   * Point this tensor at other memory of the same shape (parameters move into one flat buffer when
   * an optimizer takes them). Ops recorded earlier keep the memory they saw.
   */
  rebind(array: DeviceArray): void {
    if (array.size !== this.size || array.dtype !== this.dtype) throw new Error(`rebind: ${fmtShape(array.shape)} ${array.dtype} does not fit ${this}`);
    this.array = array.shape.length === this.shape.length && array.shape.every((d, i) => d === this.shape[i]) ? array : array.reshape(this.shape);
  }

  get shape(): readonly number[] {
    return this.data.shape;
  }
  get dtype(): DType {
    return this.data.dtype;
  }
  get size(): number {
    return this.data.size;
  }
  get rt(): Runtime {
    return this.data.rt;
  }

  /** The output of an op: records the backward rule when any input needs a gradient. */
  static fromOp(op: string, data: DeviceArray, inputs: (Tensor | null | undefined)[], backward: BackwardFn): Tensor {
    const ins = inputs.map((t) => t ?? null);
    const needs = gradEnabled && ins.some((t) => t?.requiresGrad);
    const t = new Tensor(data, needs);
    if (needs) t.node = { op, inputs: ins, backward };
    return t;
  }

  /** Data to the host: Float32Array, or Int32Array for integer tensors (indices). */
  read(): Promise<Float32Array | Int32Array> {
    return this.rt.read(this.data);
  }

  /** The value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new Error(`item: tensor of shape ${fmtShape(this.shape)} has ${this.size} elements, not 1`);
    return (await this.read())[0]!;
  }

  /** Same data viewed with another shape; gradients flow through. */
  reshape(shape: readonly number[]): Tensor {
    const from = this.shape;
    return Tensor.fromOp('reshape', this.data.reshape(shape), [this], (gy) => [gy.reshape(from)]);
  }

  /** A tensor sharing this data but cut off from the graph (as torch's detach). */
  detach(): Tensor {
    return new Tensor(this.data, false);
  }

  /** Return the memory to the pool now. The tensor must not be used afterwards. */
  dispose(): void {
    this.rt.dispose(this.data);
    this.node = null;
  }

  /**
   * Back-propagate from this tensor. With no argument it must hold one element (a loss) and the seed
   * is 1. Gradients of leaves that require them accumulate into `.grad`, as in PyTorch; the recorded
   * graph is released afterwards. Inside a compiled function use `grad()` instead.
   */
  async backward(gradient?: Tensor): Promise<void> {
    if (this.rt.capture) throw new Error('backward: inside a compiled function use grad(loss, params), which returns the gradients as tensors');
    const grads = backprop(this, gradient ?? null, null);
    noGrad(() => {
      for (const [t, g] of grads) {
        const acc = t.grad ? binary('add', t.grad.data, g) : g;
        t.grad = new Tensor(acc.reshape(t.shape));
      }
    });
    await Promise.resolve();
  }

  /** @internal the recorded op that made this tensor, if any */
  get gradNode(): GradNode | null {
    return this.node;
  }
  /** @internal drop the recorded op (after back-propagation) */
  releaseNode(): void {
    if (this.node) this.released = true;
    this.node = null;
  }
  /** @internal the recorded op was dropped by a backward pass */
  released = false;

  toString(): string {
    return `Tensor(${fmtShape(this.shape)}, ${this.dtype}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }
}

/**
 * Reverse-mode differentiation from `root`: walks the recorded ops in reverse topological order and
 * applies each op's backward rule (which records more ops, so under compile the backward becomes part
 * of the traced graph). Returns the gradient of each tensor in `wrt` (every requiresGrad leaf when
 * `wrt` is null) that root depends on. A tensor used twice receives the sum of both gradients.
 * With `wrt`, only ops on a path from root to a tensor of `wrt` are differentiated (a backward rule
 * may still compute gradients of its other inputs; a compiled step drops that unused work). The
 * recorded ops are released afterwards unless `retain` (to take another gradient through them).
 */
function backprop(root: Tensor, gradient: Tensor | null, wrt: Set<Tensor> | null, retain = false): Map<Tensor, DeviceArray> {
  if (!root.requiresGrad) throw new Error('backward: this tensor does not depend on any tensor with requiresGrad: true');
  const rt = root.rt;
  let seed: DeviceArray;
  if (gradient) {
    if (gradient.size !== root.size) throw new Error(`backward: gradient of shape ${fmtShape(gradient.shape)} does not match ${fmtShape(root.shape)}`);
    seed = gradient.data.reshape(root.shape);
  } else {
    if (root.size !== 1) throw new Error(`backward: tensor of shape ${fmtShape(root.shape)} is not a scalar; pass the gradient`);
    seed = rt.alloc(root.shape, 'f32', 'backward');
    rt.fillValue(seed, 1);
  }
  // Reverse topological order by depth-first search from the output.
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  const stack: [Tensor, boolean][] = [[root, false]];
  while (stack.length) {
    const [t, done] = stack.pop()!;
    if (done) {
      order.push(t);
      continue;
    }
    if (seen.has(t)) continue;
    seen.add(t);
    stack.push([t, true]);
    for (const i of t.gradNode?.inputs ?? []) if (i?.requiresGrad && !seen.has(i)) stack.push([i, false]);
  }
  // `order` lists inputs before the ops that use them: one forward pass finds the tensors whose
  // gradient leads to a tensor of `wrt`. A tensor whose record was released might have led there:
  // it counts as needed, so that a gradient reaching it raises the error below.
  const needed = new Set<Tensor>();
  for (const t of order) {
    if (!wrt || wrt.has(t) || t.released || t.gradNode?.inputs.some((i) => i && needed.has(i))) needed.add(t);
  }
  const grads = new Map<Tensor, DeviceArray>([[root, seed]]);
  const result = new Map<Tensor, DeviceArray>();
  noGrad(() => {
    for (let k = order.length - 1; k >= 0; k--) {
      const t = order[k]!;
      const g = grads.get(t);
      if (!g) continue;
      const node = t.gradNode;
      if (wrt ? wrt.has(t) : !node) {
        // A leaf's gradient must not be the caller's own `gradient` tensor.
        result.set(t, g === seed ? unary('identity', g) : g);
      }
      grads.delete(t);
      if (!node && t.released && !wrt?.has(t)) {
        throw new Error(`backward: the gradient reached ${t}, whose op was released by an earlier backward pass; pass { retainGraph: true } to the earlier grad() to take several gradients through one graph`);
      }
      if (!node || !node.inputs.some((i) => i?.requiresGrad && needed.has(i))) continue;
      const gs = node.backward(g);
      node.inputs.forEach((inp, i) => {
        const gi = gs[i];
        if (!inp?.requiresGrad || !gi || !needed.has(inp)) return;
        const prev = grads.get(inp);
        grads.set(inp, prev ? binary('add', prev, gi) : gi);
      });
      if (!retain) t.releaseNode();
    }
  });
  return result;
}

export interface GradOptions {
  /**
   * Keep the recorded ops so that another grad() can run through them (torch's retain_graph): e.g.
   * the gradients of two losses with respect to one layer, then of their weighted sum. Default false.
   */
  retainGraph?: boolean;
  /** The gradient of a non-scalar `output` to back-propagate (a vector-Jacobian product); default 1 for a scalar. */
  gradOutput?: Tensor;
}

/**
 * Gradients of a scalar `loss` (or of Σ output·gradOutput) with respect to each tensor in `wrt`, as
 * new tensors (zeros for one that the loss does not depend on). Works eagerly and inside a compiled
 * function, where it adds the backward graph to the trace. Only the part of the graph between the
 * loss and `wrt` is differentiated. The graph is released afterwards unless `retainGraph`.
 */
export function grad(loss: Tensor, wrt: readonly Tensor[], opts: GradOptions = {}): Tensor[] {
  const grads = backprop(loss, opts.gradOutput ?? null, new Set(wrt), opts.retainGraph ?? false);
  return wrt.map((t) => {
    const g = grads.get(t);
    if (g) return new Tensor(g.reshape(t.shape));
    const z = t.rt.alloc(t.shape, 'f32', 'grad');
    t.rt.fillValue(z, 0);
    return new Tensor(z);
  });
}
