import { DeviceArray, DType, Runtime } from '../runtime/runtime.js';
import { fmtShape } from '../runtime/errors.js';
import { binary, unary } from '../../kernels/elementwise.js';

/** Computes the gradients of an op's inputs from the gradient of its output (null: no gradient). */
export type BackwardFn = (gy: DeviceArray) => (DeviceArray | null)[];

interface Node {
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
  private node: Node | null = null;

  constructor(
    readonly data: DeviceArray,
    readonly requiresGrad = false,
  ) {}

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
   * graph is released afterwards.
   */
  async backward(gradient?: Tensor): Promise<void> {
    if (!this.requiresGrad) throw new Error('backward: this tensor does not depend on any tensor with requiresGrad: true');
    let seed: DeviceArray;
    if (gradient) {
      if (gradient.size !== this.size) throw new Error(`backward: gradient of shape ${fmtShape(gradient.shape)} does not match ${fmtShape(this.shape)}`);
      seed = gradient.data.reshape(this.shape);
    } else {
      if (this.size !== 1) throw new Error(`backward: tensor of shape ${fmtShape(this.shape)} is not a scalar; pass the gradient`);
      seed = this.rt.alloc(this.shape, 'f32', 'backward');
      this.rt.fillValue(seed, 1);
    }
    // Reverse topological order by depth-first search from the output.
    const order: Tensor[] = [];
    const seen = new Set<Tensor>();
    const stack: [Tensor, boolean][] = [[this, false]];
    while (stack.length) {
      const [t, done] = stack.pop()!;
      if (done) {
        order.push(t);
        continue;
      }
      if (seen.has(t)) continue;
      seen.add(t);
      stack.push([t, true]);
      for (const i of t.node?.inputs ?? []) if (i?.requiresGrad && !seen.has(i)) stack.push([i, false]);
    }
    const grads = new Map<Tensor, DeviceArray>([[this, seed]]);
    noGrad(() => {
      for (let k = order.length - 1; k >= 0; k--) {
        const t = order[k]!;
        const g = grads.get(t);
        if (!g) continue;
        if (!t.node) {
          // A leaf: accumulate into .grad.
          const acc = t.grad ? binary('add', t.grad.data, g) : g === seed ? unary('identity', g) : g;
          t.grad = new Tensor(acc.reshape(t.shape));
          continue;
        }
        const ins = t.node.inputs;
        const gs = t.node.backward(g);
        grads.delete(t);
        ins.forEach((inp, i) => {
          const gi = gs[i];
          if (!inp?.requiresGrad || !gi) return;
          const prev = grads.get(inp);
          // A tensor used twice receives the sum of both gradients.
          grads.set(inp, prev ? binary('add', prev, gi) : gi);
        });
        t.node = null;
      }
    });
    await Promise.resolve();
  }

  toString(): string {
    return `Tensor(${fmtShape(this.shape)}, ${this.dtype}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }
}
