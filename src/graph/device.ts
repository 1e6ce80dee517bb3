import { createRuntime, CreateDeviceOptions } from '../runtime/device.js';
import { Runtime, DType } from '../runtime/runtime.js';
import { fmtShape } from '../runtime/errors.js';
import { Tensor } from './tensor.js';
import { CompiledStep, InputSpec, StepOutputs, compileStep } from './compile.js';
import { ExecutorOptions } from './executor.js';
import { tuningOf, type TuneOptions, type TuneRecord } from '../runtime/autotune.js';
import { tuneRuntime, type TuneSetting } from './tune.js';

export interface TensorOptions {
  requiresGrad?: boolean;
}

/** The engine's handle on a GPU: makes tensors; everything else is in `ops`. */
export class Device {
  constructor(readonly rt: Runtime) {}

  /** A tensor from host data (Float32Array, or Int32Array for indices and labels). */
  tensor(data: Float32Array | Int32Array | readonly number[], shape: readonly number[], opts: TensorOptions = {}): Tensor {
    const arr = Array.isArray(data) ? new Float32Array(data) : (data as Float32Array | Int32Array);
    if (opts.requiresGrad && arr instanceof Int32Array) throw new Error(`tensor: an integer tensor ${fmtShape(shape)} cannot require gradients`);
    return new Tensor(this.rt.upload(arr, shape), opts.requiresGrad ?? false);
  }

  /** A random-number key (seed, counter) on the device, for ops.randn / ops.rand; see ops.advanceKey. */
  randomKey(seed: number, counter = 0): Tensor {
    return this.tensor(new Int32Array(new Uint32Array([seed >>> 0, counter >>> 0]).buffer), [2]);
  }

  /** A tensor filled with one value. */
  full(shape: readonly number[], value: number, opts: TensorOptions & { dtype?: DType } = {}): Tensor {
    const arr = this.rt.alloc(shape, opts.dtype ?? 'f32', 'full');
    this.rt.fillValue(arr, value);
    return new Tensor(arr, opts.requiresGrad ?? false);
  }

  zeros(shape: readonly number[], opts: TensorOptions = {}): Tensor {
    return this.full(shape, 0, opts);
  }

  ones(shape: readonly number[], opts: TensorOptions = {}): Tensor {
    return this.full(shape, 1, opts);
  }

  get adapter() {
    return this.rt.adapterInfo;
  }
  get limits(): GPUSupportedLimits {
    return this.rt.limits;
  }
  get gpu(): GPUDevice {
    return this.rt.device;
  }

  /**
   * Trace `fn` once on inputs of these shapes and compile it into a step that replays with new inputs
   * as one command buffer, creating no GPU objects (see CompiledStep).
   */
  compile<T extends StepOutputs>(fn: (...inputs: Tensor[]) => T, inputs: readonly (InputSpec | Tensor)[], opts?: ExecutorOptions): Promise<CompiledStep<T>> {
    return compileStep(this.rt, fn, inputs, opts);
  }

  /** Wait for all submitted GPU work; throws errors the device reported (e.g. a kernel that failed to compile). */
  sync(): Promise<void> {
    return this.rt.sync();
  }

  /**
   * Submit what is recorded and return a promise for everything submitted so far, without waiting:
   * a loop that awaits the promise of the step before last keeps the queue fed with a bounded number
   * of steps in flight.
   */
  submitted(): Promise<void> {
    this.rt.flush();
    return this.rt.device.queue.onSubmittedWorkDone().then(() => undefined);
  }

  /**
   * Measure the kernel variants again (or for the first time, if the device was created with
   * `tune: false`) and use the fastest from now on; steps compiled before keep their kernels.
   */
  tune(opts: TuneOptions = {}): Promise<Record<string, TuneRecord>> {
    return tuneRuntime(this.rt, opts);
  }

  /** Which variant each tuned kernel uses on this device, and how it was decided. */
  get tuning(): Record<string, TuneRecord> {
    return tuningOf(this.rt);
  }

  destroy(): void {
    this.rt.destroy();
  }
}

export interface DeviceOptions extends CreateDeviceOptions {
  /**
   * Kernel variants: measured once per adapter and cached (default), or `false` for the fixed
   * defaults without measuring, or tuning options (a persistent `store`, `pin`ned choices); see
   * src/graph/tune.ts.
   */
  tune?: TuneSetting;
}

/** Create a device: navigator.gpu in a browser, Dawn (the `webgpu` package) in Node, or your own GPUDevice. */
export async function createDevice(opts: DeviceOptions = {}): Promise<Device> {
  const rt = await createRuntime(opts);
  try {
    await tuneRuntime(rt, opts.tune ?? true);
  } catch (e) {
    rt.destroy();
    throw e;
  }
  return new Device(rt);
}
