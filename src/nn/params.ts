import { Tensor } from '../graph/tensor.js';
import { DeviceArray, Runtime } from '../runtime/runtime.js';
import { contiguous, stridedMap } from '../../kernels/elementwise.js';
import { ShapeError, fmtShape } from '../runtime/errors.js';

/**
 * Named parameters packed into one flat buffer, each at an offset aligned for binding. Gradients,
 * Adam moments and EMA weights use flat buffers of the same layout, so one dispatch updates them all.
 * Packing moves each parameter's values into the flat buffer and points the parameter tensor there.
 */
export class ParameterSet {
  readonly names: string[];
  readonly tensors: Tensor[];
  /** Element offset of each parameter in the flat layout. */
  readonly offsets: number[];
  /** Elements in the flat layout, padding included. */
  readonly length: number;
  readonly flat: DeviceArray;
  readonly rt: Runtime;

  constructor(named: readonly [string, Tensor][]) {
    if (named.length === 0) throw new Error('ParameterSet: no parameters');
    this.rt = named[0]![1].rt;
    this.names = named.map(([n]) => n);
    this.tensors = named.map(([, t]) => t);
    const seen = new Set<string>();
    for (const n of this.names) {
      if (seen.has(n)) throw new Error(`ParameterSet: parameter name '${n}' appears twice`);
      seen.add(n);
    }
    const align = this.rt.limits.minStorageBufferOffsetAlignment / 4;
    let at = 0;
    this.offsets = this.tensors.map((t) => {
      const o = at;
      at += Math.ceil(Math.max(t.size, 1) / align) * align;
      return o;
    });
    this.length = at;
    this.flat = this.zeros();
    this.tensors.forEach((t, i) => {
      const view = this.view(this.flat, i);
      copy(t.data, view);
      t.rebind(view);
    });
  }

  /**
   * Point every parameter tensor at its slot of `flat` (EMA weights for sampling, say); steps
   * compiled afterwards use those values. `use(set.flat)` goes back to the trained weights.
   */
  use(flat: DeviceArray): void {
    this.tensors.forEach((t, i) => t.rebind(this.view(flat, i)));
  }

  /** Overwrite the parameters with a flat buffer of the same layout (another set of the same model: EMA weights into a sampling copy). */
  copyFrom(flat: DeviceArray): void {
    if (flat.size !== this.length) throw new ShapeError('ParameterSet', `a flat buffer of ${flat.size} elements does not fit this layout of ${this.length}`);
    copy(flat, this.flat);
  }

  /** A copy of a flat buffer of this layout. */
  clone(flat: DeviceArray = this.flat): DeviceArray {
    const a = this.rt.alloc([this.length], 'f32', 'ParameterSet');
    copy(flat, a);
    return a;
  }

  /** A new flat buffer of this layout, zero-filled (padding included). */
  zeros(): DeviceArray {
    const a = this.rt.alloc([this.length], 'f32', 'ParameterSet');
    this.rt.fillValue(a, 0);
    return a;
  }

  /** Parameter i's slice of a flat buffer of this layout. */
  view(flat: DeviceArray, i: number): DeviceArray {
    return flat.view(this.tensors[i]!.shape, this.offsets[i]!);
  }

  /** Copy per-parameter arrays (gradients, in this set's order) into their slots of `flat`. */
  scatter(arrays: readonly DeviceArray[], flat: DeviceArray): void {
    if (arrays.length !== this.tensors.length) throw new Error(`ParameterSet: ${arrays.length} arrays given for ${this.tensors.length} parameters`);
    arrays.forEach((a, i) => {
      const t = this.tensors[i]!;
      if (a.size !== t.size) throw new ShapeError('ParameterSet', `array ${i} has shape ${fmtShape(a.shape)}, parameter '${this.names[i]}' has ${fmtShape(t.shape)}`);
      copy(a, this.view(flat, i));
    });
  }

  /** Each parameter's values from a flat buffer of this layout, by name. */
  async read(flat: DeviceArray = this.flat): Promise<Map<string, Float32Array>> {
    const all = (await this.rt.read(flat)) as Float32Array;
    return new Map(this.names.map((n, i) => [n, all.slice(this.offsets[i]!, this.offsets[i]! + this.tensors[i]!.size)]));
  }

  /**
   * Write values by name into a flat buffer of this layout (the parameters by default). Every
   * parameter must be given, with its exact number of elements; the error names the parameter and
   * both shapes.
   */
  write(values: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>, flat: DeviceArray = this.flat, what = 'checkpoint'): void {
    this.stage(values, flat, what)();
  }

  /**
   * write() in two halves: checks every value now and returns the function that writes them, so a
   * loader can check all the parts of a checkpoint before it changes any of them.
   */
  stage(values: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>, flat: DeviceArray = this.flat, what = 'checkpoint'): () => void {
    const host = new Float32Array(this.length);
    this.names.forEach((n, i) => {
      const v = values.get(n);
      const t = this.tensors[i]!;
      if (!v) throw new ShapeError('load', `${what} has no tensor '${n}' (expected ${fmtShape(t.shape)})`);
      const same = v.shape.length === t.shape.length && v.shape.every((d, k) => d === t.shape[k]);
      if (!same) throw new ShapeError('load', `parameter '${n}' has shape ${fmtShape(t.shape)} in the model but ${fmtShape(v.shape)} in the ${what}`);
      host.set(v.data, this.offsets[i]!);
    });
    return () => {
      const staged = this.rt.upload(host, [this.length], 'load');
      copy(staged, flat);
      this.rt.dispose(staged);
    };
  }
}

function copy(src: DeviceArray, dst: DeviceArray): void {
  stridedMap('identity', src, contiguous(src.shape), dst, contiguous(src.shape));
}
