import { Capture } from '../runtime/capture.js';
import { DType, Runtime, Storage } from '../runtime/runtime.js';
import { ShapeError, fmtShape } from '../runtime/errors.js';
import { Tensor } from './tensor.js';
import { unary } from '../../kernels/elementwise.js';
import { Executor, ExecutorOptions, StepStats } from './executor.js';

/** An input of a compiled step: its shape and dtype (an example tensor also does). */
export interface InputSpec {
  shape: readonly number[];
  dtype?: DType;
  /** Trace with gradients on for this input (to take grad() with respect to it). */
  requiresGrad?: boolean;
}

export type StepOutputs = Tensor | Tensor[] | Record<string, Tensor> | void;

/** What a compiled step's outputs look like to the caller: the same structure, on the step's buffers. */
export type Outputs<T> = T extends Tensor ? Tensor : T extends Tensor[] ? Tensor[] : T extends Record<string, Tensor> ? { [K in keyof T]: Tensor } : void;

export type InputValue = Float32Array | Int32Array | Tensor;

/**
 * A function of tensors, traced once and compiled: replaying it writes the inputs, records every
 * dispatch into one command buffer and submits it; it creates no buffer, bind group or pipeline.
 * Outputs live in the step's own buffers and are overwritten by the next run.
 */
export class CompiledStep<T extends StepOutputs = StepOutputs> {
  /** How many times the step has run. */
  runs = 0;

  constructor(
    readonly rt: Runtime,
    readonly inputs: Tensor[],
    readonly outputs: Outputs<T>,
    private readonly executor: Executor,
  ) {}

  get stats(): StepStats {
    return this.executor.stats;
  }

  /** Run once with new inputs (host arrays or device tensors of the traced shapes). Does not wait. */
  run(...values: InputValue[]): Outputs<T> {
    if (values.length !== this.inputs.length) {
      throw new ShapeError('compiled step', `takes ${this.inputs.length} inputs (${this.inputs.map((t) => fmtShape(t.shape)).join(', ')}), got ${values.length}`);
    }
    const rt = this.rt;
    rt.flush(); // earlier eager work goes first, and host writes below must not overtake it
    const encoder = rt.getEncoder();
    values.forEach((v, i) => {
      const dst = this.inputs[i]!;
      if (!(v instanceof Tensor) && v.length !== dst.size) {
        throw new ShapeError('compiled step', `input ${i} has ${v.length} elements, expected ${fmtShape(dst.shape)} (${dst.size})`);
      }
      if (v instanceof Tensor) {
        if (v.size !== dst.size || v.dtype !== dst.dtype) throw new ShapeError('compiled step', `input ${i} is ${v.dtype} ${fmtShape(v.shape)}, expected ${dst.dtype} ${fmtShape(dst.shape)}`);
        const s = v.data.binding();
        const d = dst.data.binding();
        encoder.copyBufferToBuffer(s.buffer, s.offset ?? 0, d.buffer, d.offset ?? 0, dst.size * 4);
      } else {
        if ((v instanceof Int32Array) !== (dst.dtype === 'i32')) throw new ShapeError('compiled step', `input ${i} must be ${dst.dtype === 'i32' ? 'an Int32Array' : 'a Float32Array'}`);
        rt.device.queue.writeBuffer(dst.data.buffer, dst.data.byteOffset, v.buffer, v.byteOffset, v.length * 4);
      }
    });
    const timestampWrites = rt.timer?.nextPass();
    const pass = encoder.beginComputePass(timestampWrites ? { timestampWrites } : undefined);
    this.executor.encode(pass);
    pass.end();
    rt.flush();
    this.runs++;
    return this.outputs;
  }

  /** Per-dispatch wall times of one run on the current inputs (see Executor.profile). */
  profile() {
    this.rt.flush();
    return this.executor.profile();
  }

  /** Free the step's buffers. Its outputs must not be used afterwards. */
  destroy(): void {
    this.executor.destroy();
  }
}

/**
 * Trace `fn` once on inputs of the given shapes and compile it. Inside `fn`, ops are recorded rather
 * than run, `grad()` builds the backward from each op's backward rule, and optimizer updates are
 * recorded too; nothing may be read back. Parameters and other tensors made outside `fn` are used
 * in place (an optimizer's update writes them on every run).
 */
export async function compileStep<T extends StepOutputs>(rt: Runtime, fn: (...inputs: Tensor[]) => T, specs: readonly (InputSpec | Tensor)[], opts: ExecutorOptions = {}): Promise<CompiledStep<T>> {
  if (rt.capture) throw new Error('compile: already tracing a step (compile cannot be nested)');
  rt.flush();
  const inputs = specs.map((s) => new Tensor(rt.alloc(s.shape, s.dtype ?? 'f32', 'compile'), s instanceof Tensor ? false : (s.requiresGrad ?? false)));
  const capture = new Capture();
  rt.capture = capture;
  let result: T;
  try {
    result = fn(...inputs);
    // An output that is an input (a state passed through) gets its own buffer: run() writes inputs
    // one after another, so an output aliasing input i would be clobbered when fed back as input j.
    const inputStorage = new Set(inputs.map((t) => t.data.storage));
    const own = (t: unknown) => (t instanceof Tensor && inputStorage.has(t.data.storage) ? new Tensor(unary('identity', t.data), false) : t);
    if (result instanceof Tensor) result = own(result) as T;
    else if (Array.isArray(result)) result = result.map(own) as T;
    else if (result) result = Object.fromEntries(Object.entries(result as Record<string, Tensor>).map(([k, t]) => [k, own(t)])) as T;
  } finally {
    rt.capture = null;
  }
  const detach = (t: Tensor) => new Tensor(t.data, false);
  let outputs: unknown;
  const pinned = new Set<Storage>();
  const pin = (t: Tensor) => {
    if (!(t instanceof Tensor)) throw new Error(`compile: the function must return tensors, an array of tensors, a record of tensors or nothing; got ${String(t)}`);
    pinned.add(t.data.storage);
    return detach(t);
  };
  if (result === undefined) outputs = undefined;
  else if (result instanceof Tensor) outputs = pin(result);
  else if (Array.isArray(result)) outputs = result.map(pin);
  else outputs = Object.fromEntries(Object.entries(result as Record<string, Tensor>).map(([k, t]) => [k, pin(t)]));
  const executor = new Executor(rt, capture, pinned, opts);
  // Pipelines compile asynchronously; surface a WGSL or validation error now, naming the kernel.
  await rt.device.queue.onSubmittedWorkDone();
  await new Promise((r) => setTimeout(r, 0));
  rt.throwPending();
  return new CompiledStep<T>(rt, inputs.map((t) => new Tensor(t.data, false)), outputs as Outputs<T>, executor);
}
