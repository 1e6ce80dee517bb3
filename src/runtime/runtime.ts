import { Kernel } from './kernel.js';
import { KernelCompileError, LimitError, fmtShape } from './errors.js';
import utilSource from '../../shaders/util.wgsl';

export type DType = 'f32' | 'i32';

/** A pooled GPU buffer. It returns to the pool when no DeviceArray refers to it any more. */
export class Storage {
  constructor(
    readonly buffer: GPUBuffer,
    readonly bytes: number,
  ) {}
}

/** A dense, row-major array on the device: a view (shape, dtype) over a Storage. */
export class DeviceArray {
  readonly size: number;
  constructor(
    readonly rt: Runtime,
    readonly storage: Storage,
    readonly shape: readonly number[],
    readonly dtype: DType = 'f32',
  ) {
    this.size = shape.reduce((a, b) => a * b, 1);
  }
  get buffer(): GPUBuffer {
    return this.storage.buffer;
  }
  /** Same data, another shape with the same number of elements. */
  reshape(shape: readonly number[]): DeviceArray {
    const n = shape.reduce((a, b) => a * b, 1);
    if (n !== this.size) throw new Error(`reshape: cannot view ${fmtShape(this.shape)} (${this.size} elements) as ${fmtShape(shape)} (${n})`);
    return new DeviceArray(this.rt, this.storage, shape, this.dtype);
  }
}

export interface DispatchArgs {
  /** Storage bindings by WGSL variable name. */
  bindings: Record<string, DeviceArray>;
  /** Uniform struct members by name. */
  uniforms?: Record<string, number | readonly number[]>;
  workgroups: readonly [number, number?, number?];
  /** Pipeline-overridable constants (tile sizes, op selectors): part of the pipeline cache key. */
  constants?: Record<string, number>;
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

  private readonly free = new Map<number, GPUBuffer[]>();
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

  constructor(
    readonly device: GPUDevice,
    readonly adapterInfo: { vendor: string; architecture: string; device: string; description: string },
    /** Whatever must stay reachable for the device to live (Dawn's node GPU object). */
    readonly keepAlive: unknown = null,
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
    if (this.registry.unregister(arr.storage)) this.release(arr.storage.buffer, arr.storage.bytes);
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
    const arr = this.alloc(shape, dtype, op);
    if (n === 0) return arr;
    const bytes = Math.ceil((n * 4) / 4) * 4;
    const staging = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.COPY_SRC, mappedAtCreation: true });
    new Uint8Array(staging.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, n * 4));
    staging.unmap();
    this.endPass();
    this.getEncoder().copyBufferToBuffer(staging, 0, arr.buffer, 0, bytes);
    this.afterSubmit.push(() => staging.destroy());
    return arr;
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
    const bytes = arr.size * 4;
    const out = arr.dtype === 'i32' ? new Int32Array(arr.size) : new Float32Array(arr.size);
    if (bytes === 0) return out;
    const staging = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.endPass();
    this.getEncoder().copyBufferToBuffer(arr.buffer, 0, staging, 0, bytes);
    this.flush();
    await staging.mapAsync(GPUMapMode.READ);
    new Uint8Array(out.buffer).set(new Uint8Array(staging.getMappedRange(0, bytes)));
    staging.unmap();
    staging.destroy();
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
    const entries: GPUBindGroupEntry[] = [];
    for (const s of info.storage) {
      const arr = args.bindings[s.name];
      if (!arr) throw new Error(`kernel '${kernel.name}:${entry}': storage binding '${s.name}' not given`);
      entries.push({ binding: s.binding, resource: { buffer: arr.buffer, size: Math.max(arr.storage.bytes, 4) } });
    }
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

  private getEncoder(): GPUCommandEncoder {
    return (this.encoder ??= this.device.createCommandEncoder());
  }
  private getPass(): GPUComputePassEncoder {
    return (this.pass ??= this.getEncoder().beginComputePass());
  }
  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  /** Submit everything recorded so far. */
  flush(): void {
    if (!this.encoder) return;
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

  private throwPending(): void {
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
