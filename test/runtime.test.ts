// The runtime: a caller's own GPUDevice, errors that name the kernel or the limit, the buffer pool and
// the pipeline cache (keyed by kernel and variant, never by sizes).
import { describe, expect, it } from 'vitest';
import { useDevice, randn } from './helpers.js';
import { createDevice, ops, KernelCompileError, LimitError, ShapeError } from '../src/index.js';
import { Kernel } from '../src/runtime/kernel.js';

const dev = useDevice();

describe('runtime', () => {
  it("runs on a GPUDevice the caller made, and gives the same numbers as the engine's own", async () => {
    const d = dev();
    const mine = await createDevice({ device: d.gpu });
    const x = Float32Array.from(randn(12));
    const a = (await ops.exp(mine.tensor(x, [3, 4])).read()) as Float32Array;
    const b = (await ops.exp(d.tensor(x, [3, 4])).read()) as Float32Array;
    expect(Array.from(a)).toEqual(Array.from(b));
    for (let i = 0; i < 12; i++) expect(Math.abs(a[i]! - Math.exp(x[i]!))).toBeLessThan(1e-6 * Math.exp(x[i]!) + 1e-7); // f32 exp: a few ulp
  });

  it('WGSL that does not compile throws a KernelCompileError naming the kernel and the line', async () => {
    const d = dev();
    const bad = new Kernel('broken_kernel', `
      @group(0) @binding(0) var<storage, read_write> out: array<f32>;
      @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
        out[g.x] = undefined_function(1.0);
      }`);
    await expect(d.rt.compile(bad, 'main')).rejects.toThrow(KernelCompileError);
    const bad2 = new Kernel('broken_kernel_2', bad.source);
    await expect(d.rt.compile(bad2, 'main')).rejects.toThrow(/kernel 'broken_kernel_2:main' failed to compile[\s\S]*undefined_function/);
  });

  it('an array past maxStorageBufferBindingSize names the limit, the size asked for and the shape', () => {
    const d = dev();
    const max = d.limits.maxStorageBufferBindingSize;
    const n = Math.floor(max / 4) + 1;
    expect(() => d.zeros([n])).toThrow(LimitError);
    expect(() => d.zeros([n])).toThrow(new RegExp(`maxStorageBufferBindingSize is ${max} on this device, but ${n * 4} is needed.*\\[${n}\\]`));
  });

  it('mismatched shapes name the op, the shapes given and what was expected', () => {
    const d = dev();
    const x = d.zeros([2, 3, 8, 8]);
    expect(() => ops.conv2d(x, d.zeros([4, 2, 3, 3]))).toThrow(ShapeError);
    expect(() => ops.conv2d(x, d.zeros([4, 2, 3, 3]))).toThrow(/conv2d.*\[4, 2, 3, 3\].*\[2, 3, 8, 8\]|conv2d.*\[2, 3, 8, 8\].*\[4, 2, 3, 3\]/);
    expect(() => ops.matmul(d.zeros([2, 3]), d.zeros([4, 5]))).toThrow(/matmul.*\[2, 3\].*\[4, 5\]/);
    expect(() => ops.add(d.zeros([2, 3]), d.zeros([4]))).toThrow(/add: shapes \[2, 3\] and \[4\] do not broadcast/);
  });

  it('new sizes reuse the cached pipelines, and freed buffers come back from the pool', async () => {
    const d = dev();
    const run = (n: number) => ops.add(ops.exp(d.tensor(Float32Array.from(randn(n)), [n])), d.tensor(Float32Array.from(randn(n)), [n]));
    await run(100).read();
    const pipelines = d.rt.stats.pipelinesCreated;
    await run(1000).read();
    await run(37).read();
    expect(d.rt.stats.pipelinesCreated).toBe(pipelines);
    const t = d.zeros([5000]);
    await d.sync();
    t.dispose();
    const created = d.rt.stats.buffersCreated;
    const u = d.zeros([100, 50]); // the same bytes in another shape: the freed buffer is reused
    await d.sync();
    expect(d.rt.stats.buffersCreated).toBe(created);
    u.dispose();
  });
});
