import { describe, expect, it } from 'vitest';
import { useDevice, randn, f32, expectClose } from './helpers.js';
import { grad, ops, Tensor } from '../src/index.js';

const dev = useDevice();

/** Wraps the device so that a test can count GPU objects created. */
function countCreates(gpu: GPUDevice) {
  const counts = { createBuffer: 0, createBindGroup: 0, createComputePipeline: 0 };
  const restore: (() => void)[] = [];
  for (const k of Object.keys(counts) as (keyof typeof counts)[]) {
    const orig = (gpu as unknown as Record<string, (...a: unknown[]) => unknown>)[k]!;
    (gpu as unknown as Record<string, unknown>)[k] = (...a: unknown[]) => {
      counts[k]++;
      return orig.apply(gpu, a);
    };
    restore.push(() => ((gpu as unknown as Record<string, unknown>)[k] = orig));
  }
  return { counts, restore: () => restore.forEach((f) => f()) };
}

describe('compile', () => {
  it('a chain of elementwise ops, a matmul and its gradient: compiled equals eager', async () => {
    const d = dev();
    const xs = f32(randn(6 * 5)), ws = f32(randn(5 * 4)), bs = f32(randn(4));
    const W = d.tensor(Float32Array.from(ws), [5, 4], { requiresGrad: true });
    const B = d.tensor(Float32Array.from(bs), [4], { requiresGrad: true });
    const f = (x: Tensor) => {
      const h = ops.silu(ops.add(ops.matmul(x, W), B));
      const y = ops.mul(ops.exp(ops.scale(h, 0.5)), ops.sigmoid(h));
      const loss = ops.mean(ops.square(ops.sub(y, ops.slice(x, 0, 4, 1))));
      const [gw, gb] = grad(loss, [W, B]);
      return { loss, y, gw: gw!, gb: gb! };
    };
    const X = d.tensor(Float32Array.from(xs), [6, 5]);
    const eager = f(X);
    const want = await Promise.all([eager.loss, eager.y, eager.gw, eager.gb].map((t) => t.read()));
    const step = await d.compile(f, [{ shape: [6, 5] }]);
    expect(step.stats.fusedKernels).toBeGreaterThan(0);
    expect(step.stats.dispatches).toBeLessThan(step.stats.traced);
    for (let r = 0; r < 2; r++) {
      const out = step.run(Float32Array.from(xs));
      const got = await Promise.all([out.loss, out.y, out.gw, out.gb].map((t) => t.read()));
      // Same kernels in the same order; fusion only skips f32 stores of intermediates (no rounding
      // change) but the compiler may contract a·b+c into an FMA: 1e-6 relative covers that.
      got.forEach((g, i) => expectClose(`output ${i}`, g, want[i]!, 1e-6, 1e-5));
    }
  });

  it('replays create no buffers, bind groups or pipelines', async () => {
    const d = dev();
    const W = d.tensor(Float32Array.from(randn(8 * 8)), [8, 8], { requiresGrad: true });
    const step = await d.compile((x: Tensor) => {
      const loss = ops.mean(ops.square(ops.tanh(ops.matmul(x, W))));
      return { loss, g: grad(loss, [W])[0]! };
    }, [{ shape: [4, 8] }]);
    const x = Float32Array.from(randn(32));
    step.run(x);
    await d.sync();
    const c = countCreates(d.gpu);
    try {
      for (let i = 0; i < 20; i++) step.run(x);
      await d.sync();
    } finally {
      c.restore();
    }
    expect(c.counts).toEqual({ createBuffer: 0, createBindGroup: 0, createComputePipeline: 0 });
  });
});
