// Device memory as the engine sees it: Storage (a buffer, or a slot of a compiled step's memory plan)
// and DeviceArray (a shaped, typed view of one). Apart from runtime.ts so that the runtime and the
// step capture both build on it without importing each other.
import { fmtShape } from './errors.js';
// Only the type: the array keeps a reference to its runtime, which is the module that makes arrays.
import type { Runtime } from './runtime.js';

export type DType = 'f32' | 'i32';

/**
 * A GPU buffer. Eager storage is pooled and returns to the pool when no DeviceArray refers to it any
 * more. Storage allocated while a step is being captured is virtual: it has no buffer until the
 * compiler's memory plan binds one (possibly shared with other virtual storage whose lifetime does not
 * overlap).
 */
export class Storage {
  constructor(
    public buffer: GPUBuffer | null,
    readonly bytes: number,
    /** Byte offset of this storage inside `buffer` (set by the memory plan; 0 for eager storage). */
    public offset = 0,
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
    /**
     * Byte offset inside the storage, a multiple of minStorageBufferOffsetAlignment: parameters live
     * as views into one flat buffer so that one optimizer dispatch updates them all.
     */
    readonly byteOffset = 0,
  ) {
    this.size = shape.reduce((a, b) => a * b, 1);
  }
  get buffer(): GPUBuffer {
    const b = this.storage.buffer;
    if (!b) throw new Error(`array ${fmtShape(this.shape)} belongs to a step being compiled and has no memory yet; it cannot be used outside the compiled function`);
    return b;
  }
  /** The binding this array occupies: buffer, offset and size in bytes. */
  binding(): GPUBufferBinding {
    const offset = this.storage.offset + this.byteOffset;
    // A view binds just its own elements; a whole storage binds all of it (pool buckets are larger).
    const size = this.byteOffset === 0 && this.storage.offset === 0 ? this.storage.bytes : this.size * 4;
    return { buffer: this.buffer, offset, size: Math.max(size, 4) };
  }
  /** Same data, another shape with the same number of elements. */
  reshape(shape: readonly number[]): DeviceArray {
    const n = shape.reduce((a, b) => a * b, 1);
    if (n !== this.size) throw new Error(`reshape: cannot view ${fmtShape(this.shape)} (${this.size} elements) as ${fmtShape(shape)} (${n})`);
    return new DeviceArray(this.rt, this.storage, shape, this.dtype, this.byteOffset);
  }
  /** A view of `shape` starting `elements` elements into this array's storage. */
  view(shape: readonly number[], elements: number): DeviceArray {
    const off = this.byteOffset + elements * 4;
    if (off % this.rt.limits.minStorageBufferOffsetAlignment !== 0) throw new Error(`view: offset ${off} bytes is not a multiple of minStorageBufferOffsetAlignment`);
    return new DeviceArray(this.rt, this.storage, shape, this.dtype, off);
  }
}

