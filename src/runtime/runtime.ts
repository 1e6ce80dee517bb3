import { GpuTimer } from './gpu-timer.js';
import { Kernel } from './kernel.js';
import { KernelCompileError, LimitError, fmtShape } from './errors.js';
import utilSource from '../../shaders/util.wgsl';
import { Capture, FuseInfo } from './capture.js';
import { DeviceArray, Storage, DType } from './array.js';

export { DeviceArray, Storage };
export type { DType };


/** How the adapter was chosen (createDevice's `adapter` option) and why: `wgd info` prints it. */
export interface AdapterChoice {
  mode: 'auto' | 'gpu' | 'swiftshader';
  /** The adapter is a software (CPU-emulated) one. */
  software: boolean;
  reason: string;
}

export interface DispatchArgs {
  /** Storage bindings by WGSL variable name. */
  bindings: Record<string, DeviceArray>;
  /** Uniform struct members by name. */
  uniforms?: Record<string, number | readonly number[]>;
  workgroups: readonly [number, number?, number?];
  /** Pipeline-overridable constants (tile sizes, op selectors): part of the pipeline cache key. */
  constants?: Record<string, number>;
  /** What an elementwise dispatch computes, so that a compiled step can fuse it with its neighbours. */
  fuse?: FuseInfo;
}

export interface RuntimeStats {
  pipelinesCreated: number;
  dispatches: number;
  submits: number;
  buffersCreated: number;
  pooledBytes: number;
  liveBytes: number;
}

const ARENA_BYTES = 1 << 16;
const MAX_BATCH = 256; // dispatches per command buffer in eager mode

const util = new Kernel('util', utilSource);

/**
 * Owns the GPUDevice: buffer pool, pipeline cache, uniform arena and the command encoder that
 * eager ops append to. Work is submitted in batches; reads flush.
 */
export class Runtime {
  readonly limits: GPUSupportedLimits;
  readonly stats: RuntimeStats = { pipelinesCreated: 0, dispatches: 0, submits: 0, buffersCreated: 0, pooledBytes: 0, liveBytes: 0 };
  /** Fill every newly allocated buffer with NaN (f32) / -1 (i32) before use; tests turn this on. */
  poison = false;
  /** When set, compiled steps time their compute pass on the GPU with it (benchmarks set it). */
  timer: GpuTimer | null = null;

  private readonly free = new Map<number, GPUBuffer[]>();
  private readonly readback = new Map<number, GPUBuffer[]>();
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly registry: FinalizationRegistry<{ buffer: GPUBuffer; bytes: number }>;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private batched = 0;
  private readonly arena: GPUBuffer;
  private readonly arenaStaging = new ArrayBuffer(ARENA_BYTES);
  private arenaUsed = 0;
  private readonly uniformAlign: number;
  private pendingError: Error | null = null;
  private lostMessage: string | null = null;
  /** Set while a step is being traced for compilation: dispatches are recorded, not run. */
  capture: Capture | null = null;

  constructor(
    readonly device: GPUDevice,
    readonly adapterInfo: { vendor: string; architecture: string; device: string; description: string },
    /** Whatever must stay reachable for the device to live (Dawn's node GPU object). */
    readonly keepAlive: unknown = null,
    readonly adapterChoice: AdapterChoice = { mode: 'auto', software: false, reason: 'a GPUDevice was passed in' },
  ) {
    this.limits = device.limits;
    this.uniformAlign = device.limits.minUniformBufferOffsetAlignment;
    this.arena = device.createBuffer({ size: ARENA_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: 'uniform-arena' });
    this.registry = new FinalizationRegistry(({ buffer, bytes }) => this.release(buffer, bytes));
    device.addEventListener?.('uncapturederror', (ev: Event) => {
      const e = (ev as GPUUncapturedErrorEvent).error;
      this.pendingError ??= new Error(`WebGPU error: ${e.message}`);
    });
    device.lost.then((info) => {
      this.lostMessage = `WebGPU device lost (${info.reason}): ${info.message}`;
    });
  }

  // ---------------------------------------------------------------- memory

  private static bucket(bytes: number): number {
    const b = Math.max(bytes, 16);
    if (b <= 1 << 16) return Math.ceil(b / 256) * 256;
    const step = 2 ** (Math.floor(Math.log2(b)) - 3); // eight size classes per power of two
    return Math.ceil(b / step) * step;
  }

  /** A new (or recycled) array of the given shape. Contents are undefined unless `poison` is on. */
  alloc(shape: readonly number[], dtype: DType = 'f32', op = 'alloc'): DeviceArray {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new Error(`${op}: invalid shape ${fmtShape(shape)}`);
    }
    const size = shape.reduce((a, b) => a * b, 1);
    const need = size * 4;
    const maxBinding = this.limits.maxStorageBufferBindingSize;
    if (need > maxBinding) {
      throw new LimitError(op, 'maxStorageBufferBindingSize', need, maxBinding,
        `An array of shape ${fmtShape(shape)} takes ${need} bytes; use a smaller batch or resolution, or request a larger limit with createDevice({ requiredLimits }).`);
    }
    if (this.capture) return new DeviceArray(this, this.capture.virtualStorage(Math.max(need, 4)), shape, dtype);
    const bytes = Runtime.bucket(need);
    let buffer = this.free.get(bytes)?.pop();
    if (buffer) this.stats.pooledBytes -= bytes;
    else {
      buffer = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
      this.stats.buffersCreated++;
    }
    this.stats.liveBytes += bytes;
    const storage = new Storage(buffer, bytes);
    this.registry.register(storage, { buffer, bytes }, storage);
    const arr = new DeviceArray(this, storage, shape, dtype);
    if (this.poison && size > 0) this.fill(arr, dtype === 'f32' ? 0x7fc00000 : 0xffffffff);
    return arr;
  }

  /** Return an array's memory to the pool now rather than when it is garbage-collected. */
  dispose(arr: DeviceArray): void {
    if (this.capture) return; // a compiled step's memory is planned from liveness, not freed by hand
    if (this.registry.unregister(arr.storage)) this.release(arr.storage.buffer!, arr.storage.bytes);
  }

  private release(buffer: GPUBuffer, bytes: number): void {
    this.stats.liveBytes -= bytes;
    this.stats.pooledBytes += bytes;
    let list = this.free.get(bytes);
    if (!list) this.free.set(bytes, (list = []));
    list.push(buffer);
  }

  /** Upload host data. The copy is recorded in stream order, so a recycled buffer is safe to reuse. */
  upload(data: Float32Array | Int32Array, shape: readonly number[], op = 'tensor'): DeviceArray {
    const dtype: DType = data instanceof Int32Array ? 'i32' : 'f32';
    const n = shape.reduce((a, b) => a * b, 1);
    if (data.length !== n) throw new Error(`${op}: data has ${data.length} elements but shape ${fmtShape(shape)} needs ${n}`);
    if (this.capture) return this.constant(data, shape, op);
    const arr = this.alloc(shape, dtype, op);
    if (n === 0) return arr;
    const bytes = Math.ceil((n * 4) / 4) * 4;
    const staging = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.COPY_SRC, mappedAtCreation: true });
    new Uint8Array(staging.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, n * 4));
    staging.unmap();
    this.endPass();
    this.getEncoder().copyBufferToBuffer(staging, 0, arr.buffer, arr.byteOffset, bytes);
    this.afterSubmit.push(() => staging.destroy());
    return arr;
  }

  /** Host data made inside a traced step: a buffer of its own, written once now, kept by the step. */
  private constant(data: Float32Array | Int32Array, shape: readonly number[], op: string): DeviceArray {
    const bytes = Math.max(data.length * 4, 4);
    const buffer = this.device.createBuffer({ size: Math.ceil(bytes / 4) * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST, label: `${op}-constant` });
    if (data.length) this.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.length * 4);
    this.stats.buffersCreated++;
    const storage = new Storage(buffer, bytes);
    this.capture!.constants.push(storage);
    return new DeviceArray(this, storage, shape, data instanceof Int32Array ? 'i32' : 'f32');
  }

  /** Fill with a 32-bit pattern (a float's bits for f32 arrays). */
  fill(arr: DeviceArray, bits: number): void {
    if (arr.size === 0) return;
    this.dispatch(util, 'fill', {
      bindings: { out: arr },
      uniforms: { n: arr.size, bits: bits >>> 0 },
      workgroups: this.grid1d(arr.size, 256),
    });
  }

  fillValue(arr: DeviceArray, value: number): void {
    const f = new Float32Array([value]);
    this.fill(arr, arr.dtype === 'f32' ? new Uint32Array(f.buffer)[0]! : value | 0);
  }

  /** Read an array back to the host. Flushes pending work. */
  async read(arr: DeviceArray): Promise<Float32Array | Int32Array> {
    this.notCapturing('read');
    const bytes = arr.size * 4;
    const out = arr.dtype === 'i32' ? new Int32Array(arr.size) : new Float32Array(arr.size);
    if (bytes === 0) return out;
    // Staging buffers are kept by size, so a loop that reads its loss every step creates none.
    const size = Runtime.bucket(bytes);
    let staging = this.readback.get(size)?.pop();
    if (!staging) {
      staging = this.device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      this.stats.buffersCreated++;
    }
    this.endPass();
    const src = arr.binding();
    this.getEncoder().copyBufferToBuffer(src.buffer, src.offset ?? 0, staging, 0, bytes);
    this.flush();
    try {
      await staging.mapAsync(GPUMapMode.READ, 0, bytes);
      new Uint8Array(out.buffer).set(new Uint8Array(staging.getMappedRange(0, bytes)));
      staging.unmap();
    } finally {
      let list = this.readback.get(size);
      if (!list) this.readback.set(size, (list = []));
      list.push(staging);
    }
    this.throwPending();
    return out;
  }

  // ---------------------------------------------------------------- dispatch

  /** Workgroup counts for n threads of `wg` per group, split over x and y past the 65535 limit. */
  grid1d(n: number, wg: number): [number, number] {
    const groups = Math.max(1, Math.ceil(n / wg));
    const maxX = this.limits.maxComputeWorkgroupsPerDimension;
    if (groups <= maxX) return [groups, 1];
    const y = Math.ceil(groups / maxX);
    if (y > maxX) throw new LimitError('dispatch', 'maxComputeWorkgroupsPerDimension²', groups, maxX * maxX, 'Split the work.');
    return [Math.ceil(groups / y), y];
  }

  pipeline(kernel: Kernel, entry: string, constants: Record<string, number> = {}): GPUComputePipeline {
    const key = `${kernel.name}:${entry}:${JSON.stringify(constants)}`;
    let p = this.pipelines.get(key);
    if (p) return p;
    const dev = this.device;
    kernel.entry(entry);
    dev.pushErrorScope('validation');
    const module = dev.createShaderModule({ code: kernel.source, label: kernel.name });
    p = dev.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: entry, constants }, label: key });
    dev.popErrorScope().then(async (err) => {
      if (!err) return;
      const info = await module.getCompilationInfo();
      const msgs = info.messages.map((m) => `${m.type} at ${m.lineNum}:${m.linePos}: ${m.message}`).join('\n');
      this.pendingError ??= new KernelCompileError(`${kernel.name}:${entry}`, `${err.message}${msgs ? '\n' + msgs : ''}`);
    });
    this.pipelines.set(key, p);
    this.stats.pipelinesCreated++;
    return p;
  }

  /** Compile a kernel's entry now and throw KernelCompileError if the WGSL or pipeline is invalid. */
  async compile(kernel: Kernel, entry: string, constants: Record<string, number> = {}): Promise<void> {
    this.pipeline(kernel, entry, constants);
    await this.device.queue.onSubmittedWorkDone();
    await new Promise((r) => setTimeout(r, 0));
    this.throwPending();
  }

  dispatch(kernel: Kernel, entry: string, args: DispatchArgs): void {
    const info = kernel.entry(entry);
    const maxSb = this.limits.maxStorageBuffersPerShaderStage;
    if (info.storage.length > maxSb) {
      throw new LimitError(`${kernel.name}:${entry}`, 'maxStorageBuffersPerShaderStage', info.storage.length, maxSb, 'This kernel needs more storage bindings than the device allows.');
    }
    const maxWg = this.limits.maxComputeWorkgroupsPerDimension;
    const [x, y = 1, z = 1] = args.workgroups;
    for (const d of [x, y, z]) {
      if (d > maxWg) throw new LimitError(`${kernel.name}:${entry}`, 'maxComputeWorkgroupsPerDimension', d, maxWg, 'The input is too large for one dispatch; use a smaller batch.');
    }
    if (x === 0 || y === 0 || z === 0) return;
    const pipeline = this.pipeline(kernel, entry, args.constants);
    for (const s of info.storage) {
      if (!args.bindings[s.name]) throw new Error(`kernel '${kernel.name}:${entry}': storage binding '${s.name}' not given`);
    }
    if (this.capture) {
      let uniform: Uint8Array | null = null;
      if (info.uniform) {
        uniform = new Uint8Array(kernel.uniformSize);
        kernel.packUniforms(args.uniforms ?? {}, new DataView(uniform.buffer));
      }
      this.capture.record({
        kernel, entry, pipeline, uniform, uniformBinding: info.uniform?.binding ?? -1,
        bindings: info.storage.map((s) => ({ binding: s.binding, array: args.bindings[s.name]!, write: !s.readOnly })),
        workgroups: [x, y, z], fuse: args.fuse,
      });
      return;
    }
    const entries: GPUBindGroupEntry[] = [];
    for (const s of info.storage) entries.push({ binding: s.binding, resource: args.bindings[s.name]!.binding() });
    if (info.uniform) {
      const size = kernel.uniformSize;
      if (this.arenaUsed + size > ARENA_BYTES) this.flush();
      const offset = this.arenaUsed;
      kernel.packUniforms(args.uniforms ?? {}, new DataView(this.arenaStaging, offset, size));
      this.arenaUsed = Math.ceil((offset + size) / this.uniformAlign) * this.uniformAlign;
      entries.push({ binding: info.uniform.binding, resource: { buffer: this.arena, offset, size } });
    }
    const bindGroup = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    const pass = this.getPass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(x, y, z);
    this.stats.dispatches++;
    if (++this.batched >= MAX_BATCH) this.flush();
  }

  // ---------------------------------------------------------------- submission

  private afterSubmit: (() => void)[] = [];

  /** The command encoder of eager work; compiled steps encode onto it so that order is kept. */
  getEncoder(): GPUCommandEncoder {
    return (this.encoder ??= this.device.createCommandEncoder());
  }
  private getPass(): GPUComputePassEncoder {
    return (this.pass ??= this.getEncoder().beginComputePass());
  }
  endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  /** Submit everything recorded so far. */
  flush(): void {
    if (!this.encoder) return;
    this.notCapturing('flush');
    if (this.lostMessage) throw new Error(this.lostMessage);
    this.endPass();
    if (this.arenaUsed > 0) this.device.queue.writeBuffer(this.arena, 0, this.arenaStaging, 0, this.arenaUsed);
    this.device.queue.submit([this.encoder.finish()]);
    this.stats.submits++;
    this.encoder = null;
    this.arenaUsed = 0;
    this.batched = 0;
    const done = this.afterSubmit;
    this.afterSubmit = [];
    for (const f of done) f();
  }

  /** Wait until the GPU has finished everything submitted; throws any error the device reported. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.throwPending();
  }

  private notCapturing(what: string): void {
    if (this.capture) throw new Error(`${what}: not allowed inside a function being compiled (dev.compile traces it once; read the compiled step's outputs after running it)`);
  }

  /** Surface an error the device reported asynchronously (compilation, validation), if any. */
  throwPending(): void {
    if (this.lostMessage) throw new Error(this.lostMessage);
    const e = this.pendingError;
    if (e) {
      this.pendingError = null;
      throw e;
    }
  }

  destroy(): void {
    this.flush();
    this.device.destroy();
  }
}
