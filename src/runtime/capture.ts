import type { Kernel } from './kernel.js';
import { DeviceArray, Storage } from './array.js';

/** One operand of an elementwise dispatch: how element i of the iteration space reads it. */
export interface FuseLeaf {
  array: DeviceArray;
  /** Element offset and per-axis element strides over the iteration shape (0 where broadcast). */
  offset: number;
  strides: readonly number[];
}

/** An elementwise dispatch's meaning, so that a compiled step can fuse chains of them. */
export interface FuseInfo {
  /** unary: alpha · f(a) + beta; unaryGrad: b · f'(a); binary: g(a, b). op indexes the kernel's op table. */
  kind: 'unary' | 'unaryGrad' | 'binary';
  op: number;
  alpha: number;
  beta: number;
  /** Iteration shape; the output is written contiguously over it. */
  shape: readonly number[];
  inputs: FuseLeaf[];
  out: DeviceArray;
}

/** A dispatch recorded while tracing a step. */
export interface Command {
  kernel: Kernel;
  entry: string;
  pipeline: GPUComputePipeline;
  bindings: { binding: number; array: DeviceArray; write: boolean }[];
  /** The packed uniform struct (fixed at trace time; per-call values travel in storage buffers). */
  uniform: Uint8Array | null;
  uniformBinding: number;
  workgroups: [number, number, number];
  fuse?: FuseInfo;
}

/**
 * What a traced function did on the device: its dispatches in order, the virtual storage its
 * intermediates asked for, and the constants it uploaded. The compiler turns this into a plan.
 */
export class Capture {
  readonly commands: Command[] = [];
  readonly virtual = new Set<Storage>();
  readonly constants: Storage[] = [];

  virtualStorage(bytes: number): Storage {
    const s = new Storage(null, Math.ceil(bytes / 4) * 4);
    this.virtual.add(s);
    return s;
  }

  record(c: Command): void {
    this.commands.push(c);
  }
}
