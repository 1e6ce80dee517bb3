import { describe, expect, it } from 'vitest';
import { useDevice, randn, f32, expectClose } from './helpers.js';
import { grad, ops, Tensor } from '../src/index.js';

const dev = useDevice();

/**
 * y = tanh(x·W1)·W2 with x [4, 3], W1 [3, 5], W2 [5, 2]; two losses of y: L1 = Σ y², L2 = Σ y·r.
 * Float64 gradients of each with respect to W2 and W1, by the chain rule written out.
 */
function reference(x: Float64Array, w1: Float64Array, w2: Float64Array, r: Float64Array) {
  const h = new Float64Array(4 * 5);
  const y = new Float64Array(4 * 2);
  for (let i = 0; i < 4; i++) for (let j = 0; j < 5; j++) {
    let s = 0;
    for (let k = 0; k < 3; k++) s += x[i * 3 + k]! * w1[k * 5 + j]!;
    h[i * 5 + j] = Math.tanh(s);
  }
  for (let i = 0; i < 4; i++) for (let j = 0; j < 2; j++) {
    let s = 0;
    for (let k = 0; k < 5; k++) s += h[i * 5 + k]! * w2[k * 2 + j]!;
    y[i * 2 + j] = s;
  }
  const grads = (gy: Float64Array) => {
    const gw2 = new Float64Array(10);
    const gh = new Float64Array(20);
    for (let i = 0; i < 4; i++) for (let k = 0; k < 5; k++) for (let j = 0; j < 2; j++) {
      gw2[k * 2 + j]! += h[i * 5 + k]! * gy[i * 2 + j]!;
      gh[i * 5 + k]! += w2[k * 2 + j]! * gy[i * 2 + j]!;
    }
    const gw1 = new Float64Array(15);
    for (let i = 0; i < 4; i++) for (let j = 0; j < 5; j++) {
      const gs = gh[i * 5 + j]! * (1 - h[i * 5 + j]! ** 2);
      for (let k = 0; k < 3; k++) gw1[k * 5 + j]! += x[i * 3 + k]! * gs;
    }
    return { gw1, gw2 };
  };
  return { l1: grads(y.map((v) => 2 * v)), l2: grads(r) };
}

function setup() {
  const d = dev();
  const x = f32(randn(12)), w1 = f32(randn(15)), w2 = f32(randn(10)), r = f32(randn(8));
  const W1 = d.tensor(Float32Array.from(w1), [3, 5], { requiresGrad: true });
  const W2 = d.tensor(Float32Array.from(w2), [5, 2], { requiresGrad: true });
  const R = d.tensor(Float32Array.from(r), [4, 2]);
  const forward = (X: Tensor) => {
    const y = ops.matmul(ops.tanh(ops.matmul(X, W1)), W2);
    return { y, l1: ops.sum(ops.square(y)), l2: ops.sum(ops.mul(y, R)) };
  };
  return { d, x, w1, w2, r, W1, W2, R, forward, ref: reference(x, w1, w2, r) };
}

// Sums of at most 5 products of values of order 1 in f32: 1e-5 absolute and relative.
const TOL = [1e-5, 1e-5] as const;

describe('grad: retainGraph, gradOutput and pruning', () => {
  it('two gradients through one graph with retainGraph, then of their sum, match float64', async () => {
    const s = setup();
    const { l1, l2 } = s.forward(s.d.tensor(Float32Array.from(s.x), [4, 3]));
    const [a] = grad(l1, [s.W2], { retainGraph: true });
    const [b] = grad(l2, [s.W2], { retainGraph: true });
    const [c1, c2] = grad(ops.add(l1, l2), [s.W1, s.W2]);
    expectClose('dL1/dW2', await a!.read(), s.ref.l1.gw2, ...TOL);
    expectClose('dL2/dW2', await b!.read(), s.ref.l2.gw2, ...TOL);
    expectClose('d(L1+L2)/dW1', await c1!.read(), s.ref.l1.gw1.map((v, i) => v + s.ref.l2.gw1[i]!), ...TOL);
    expectClose('d(L1+L2)/dW2', await c2!.read(), s.ref.l1.gw2.map((v, i) => v + s.ref.l2.gw2[i]!), ...TOL);
  });

  it('a second gradient through a released graph is an error that names the fix', () => {
    const s = setup();
    const { l1, l2 } = s.forward(s.d.tensor(Float32Array.from(s.x), [4, 3]));
    grad(l1, [s.W2]);
    expect(() => grad(l2, [s.W2])).toThrow(/retainGraph: true/);
  });

  it('gradOutput back-propagates a given gradient of a non-scalar output', async () => {
    const s = setup();
    const { y } = s.forward(s.d.tensor(Float32Array.from(s.x), [4, 3]));
    const [g1, g2] = grad(y, [s.W1, s.W2], { gradOutput: s.R });
    expectClose('VJP W1', await g1!.read(), s.ref.l2.gw1, ...TOL);
    expectClose('VJP W2', await g2!.read(), s.ref.l2.gw2, ...TOL);
  });

  it('compiled: the gradient of the last layer only drops the unused backward work and stays exact', async () => {
    const s = setup();
    const full = await s.d.compile((X: Tensor) => {
      const { l1 } = s.forward(X);
      return grad(l1, [s.W1, s.W2]);
    }, [{ shape: [4, 3] }]);
    const last = await s.d.compile((X: Tensor) => grad(s.forward(X).l1, [s.W2]), [{ shape: [4, 3] }]);
    // W2's gradient needs no backward through tanh or the first matmul; the rule of the second
    // matmul also computes d/dh, which nothing reads: dead-code elimination removes it.
    expect(last.stats.eliminated).toBeGreaterThan(0);
    expect(last.stats.dispatches).toBeLessThan(full.stats.dispatches);
    expectClose('dL1/dW2 (last only)', await last.run(Float32Array.from(s.x))[0]!.read(), s.ref.l1.gw2, ...TOL);
    const two = await s.d.compile((X: Tensor) => {
      const { l1, l2 } = s.forward(X);
      const [a] = grad(l1, [s.W2], { retainGraph: true });
      const [b] = grad(l2, [s.W2]);
      return [a!, b!];
    }, [{ shape: [4, 3] }]);
    const [a, b] = two.run(Float32Array.from(s.x));
    expectClose('dL1/dW2', await a!.read(), s.ref.l1.gw2, ...TOL);
    expectClose('dL2/dW2', await b!.read(), s.ref.l2.gw2, ...TOL);
    const [g1, g2] = full.run(Float32Array.from(s.x));
    expectClose('dL1/dW1', await g1!.read(), s.ref.l1.gw1, ...TOL);
    expectClose('dL1/dW2 (full)', await g2!.read(), s.ref.l1.gw2, ...TOL);
  });
});
