// A diffusers state dict (one safetensors file, or the shards an .index.json lists) streamed into a
// model's parameters tensor by tensor: each tensor is read, decoded and written to its device buffer
// before the next is read, so host memory stays near the largest tensor whatever the file's size.
import type { Device } from '../../graph/device.js';
import { Tensor } from '../../graph/tensor.js';
import { Init, Module } from '../../nn/module.js';
import { SpatialSelfAttention } from '../../nn/blocks.js';
import { writeArray } from '../../io/checkpoint.js';
import { ByteSource, readSafetensorsHeader, streamSafetensors } from '../../io/safetensors-stream.js';
import type { SafeHeader, SafeTensor } from '../../io/safetensors.js';
import { DiffusersConfigError } from './config.js';

/**
 * Parameters allocated but not drawn: a model about to be loaded from a file does not spend a random
 * draw on every weight. Unwritten values are undefined (NaN in tests, which poison new buffers), and
 * the loader checks that every parameter is written.
 */
export class UnfilledInit extends Init {
  constructor(dev: Device) {
    super(dev, 0);
  }
  private empty(shape: readonly number[]): Tensor {
    return new Tensor(this.dev.rt.alloc(shape, 'f32', 'param'), true);
  }
  override uniform(shape: readonly number[]): Tensor {
    return this.empty(shape);
  }
  override normal(shape: readonly number[]): Tensor {
    return this.empty(shape);
  }
  override constant(shape: readonly number[]): Tensor {
    return this.empty(shape);
  }
}

/** Dotted paths of the self-attention blocks whose old key names (query, key, value, proj_attn) diffusers renames on load. */
export function selfAttentionPaths(m: Module): string[] {
  return m.namedModules().flatMap(([path, mod]) => (mod instanceof SpatialSelfAttention ? [path] : []));
}

const OLD_ATTENTION_NAMES: Record<string, string> = { query: 'to_q', key: 'to_k', value: 'to_v', proj_attn: 'to_out.0' };

/**
 * The name a file's key takes in the model: the deprecated self-attention names of old hub checkpoints
 * (`<block>.query.weight`, `.key.`, `.value.`, `.proj_attn.`) become to_q, to_k, to_v and to_out.0 at
 * the paths of self-attention blocks, as diffusers' _convert_deprecated_attention_blocks does.
 */
export function renameKey(key: string, attnPaths: ReadonlySet<string>): string {
  const m = /^(.*)\.(query|key|value|proj_attn)\.(weight|bias)$/.exec(key);
  if (m && attnPaths.has(m[1]!)) return `${m[1]}.${OLD_ATTENTION_NAMES[m[2]!]}.${m[3]}`;
  return key;
}

export interface LoadProgress {
  /** Bytes of tensor data read so far and in all. */
  done: number;
  total: number;
  /** The tensor just written. */
  name: string;
}

export interface LoadReport {
  tensors: number;
  /** Bytes of tensor data read. */
  bytes: number;
  /** Bytes of the largest tensor (what host memory follows). */
  largest: number;
  /** Keys renamed from the deprecated attention names. */
  renamed: number;
}

/**
 * Write the tensors of `sources` into `module`'s parameters by name. Strict both ways: a key with no
 * parameter, a parameter with no key, a key in two files, and a shape mismatch are errors that name
 * the key, the file and both shapes. `index` (a sharded model's weight_map) is checked against where
 * each key was found.
 */
export async function loadWeights(
  module: Module,
  sources: readonly ByteSource[],
  opts: { index?: Record<string, string>; onProgress?: (p: LoadProgress) => void; extra?: ReadonlyMap<string, SafeTensor> } = {},
): Promise<LoadReport> {
  const params = new Map(module.namedParameters());
  // Tensors given in memory (the label-context table beside a UNet2DConditionModel), written first.
  for (const [name, t] of opts.extra ?? []) {
    const p = params.get(name);
    if (!p || t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) {
      throw new DiffusersConfigError(`weights: '${name}' ${fmt(t.shape)} does not fit the model${p ? ` (${fmt(p.shape)})` : ''}`);
    }
    writeArray(p.rt, p.data, t.data as Float32Array);
  }
  const attn = new Set(selfAttentionPaths(module));
  const headers: [ByteSource, SafeHeader][] = [];
  const seen = new Map<string, string>([...(opts.extra?.keys() ?? [])].map((k) => [k, 'the label-context table']));
  let total = 0;
  let renamed = 0;
  for (const src of sources) {
    const h = await readSafetensorsHeader(src);
    for (const e of h.entries) {
      const name = renameKey(e.name, attn);
      if (name !== e.name) renamed++;
      const where = seen.get(name);
      if (where !== undefined) throw new DiffusersConfigError(`weights: '${name}' is in both ${where} and ${src.name}`);
      seen.set(name, src.name);
      const p = params.get(name);
      if (!p) throw new DiffusersConfigError(`weights: ${src.name} has '${e.name}' ${fmt(e.shape)}, which this model does not have (its config and weights disagree)`);
      if (e.shape.length !== p.shape.length || e.shape.some((d, i) => d !== p.shape[i])) {
        throw new DiffusersConfigError(`weights: '${name}' is ${fmt(e.shape)} in ${src.name} but ${fmt(p.shape)} in the model the config describes`);
      }
      if (e.dtype === 'I32' || e.dtype === 'I64' || e.dtype === 'U8') throw new DiffusersConfigError(`weights: '${e.name}' in ${src.name} is ${e.dtype}; parameters must be F32, F16, BF16 or F64`);
      if (opts.index) {
        const file = opts.index[e.name];
        if (file === undefined) throw new DiffusersConfigError(`weights: '${e.name}' in ${src.name} is not in the index's weight_map`);
        if (!src.name.endsWith(file)) throw new DiffusersConfigError(`weights: the index puts '${e.name}' in ${file}, but it is in ${src.name}`);
      }
      total += e.end - e.begin;
    }
    headers.push([src, h]);
  }
  const missing = [...params.keys()].filter((n) => !seen.has(n));
  if (missing.length) {
    throw new DiffusersConfigError(`weights: ${missing.length} parameter(s) of the model are in no file: ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ', ...' : ''}`);
  }
  let done = 0;
  let largest = 0;
  let count = 0;
  for (const [src, h] of headers) {
    for await (const t of streamSafetensors(src, h)) {
      const entry = t.entry;
      const name = renameKey(entry.name, attn);
      const p = params.get(name)!;
      if (entry.dtype === 'F32' && LITTLE_ENDIAN) {
        // The stored bytes are the device's layout: upload them as read, without a decoded copy.
        p.rt.flush();
        p.rt.device.queue.writeBuffer(p.data.buffer, p.data.storage.offset + p.data.byteOffset, t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
      } else writeArray(p.rt, p.data, t.tensor.data as Float32Array);
      done += entry.end - entry.begin;
      largest = Math.max(largest, entry.end - entry.begin);
      count++;
      opts.onProgress?.({ done, total, name });
    }
  }
  return { tensors: count, bytes: done, largest, renamed };
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function fmt(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}
