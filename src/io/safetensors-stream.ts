/**
 * safetensors read tensor by tensor from a random-access source (a file in Node, a File or Blob in the
 * browser, bytes in memory), so that loading never holds more than a few tensors on the host: files
 * larger than the browser's 2 GB ArrayBuffer limit load, and peak host memory follows the largest
 * tensor, not the file. Browser-safe.
 */
import { SafeHeader, SafeHeaderEntry, SafeTensor, SafetensorsError, decodeSafetensor, parseSafetensorsHeader, safetensorsHeaderLength } from './safetensors.js';

/** Random access to the bytes of one file. */
export interface ByteSource {
  /** For messages: the file's name or path. */
  readonly name: string;
  readonly size: number;
  /**
   * Exactly `length` bytes from `offset` (a short read is an error). They may live in a buffer the
   * next read reuses: copy what must outlive it.
   */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** A hint that reads up to this many bytes are coming (a source with a read buffer sizes it once). */
  reserve?(bytes: number): void;
}

/** Bytes already in memory as a source. */
export function bytesSource(bytes: Uint8Array, name = 'bytes'): ByteSource {
  return {
    name,
    size: bytes.length,
    read: async (offset, length) => {
      if (offset + length > bytes.length) throw new SafetensorsError(`${name}: read of ${length} bytes at ${offset} runs past the end (${bytes.length} bytes)`);
      return bytes.subarray(offset, offset + length);
    },
  };
}

/** A Blob or File (browser, or Node's Blob) read slice by slice: never one buffer for the whole file. */
export function blobSource(blob: Blob, name = (blob as { name?: string }).name ?? 'blob'): ByteSource {
  return {
    name,
    size: blob.size,
    read: async (offset, length) => {
      const b = new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
      if (b.length !== length) throw new SafetensorsError(`${name}: read ${b.length} of ${length} bytes at ${offset}; the file changed or is shorter than it says`);
      return b;
    },
  };
}

/** The header of a safetensors source, checked against its size before anything is sized from it. */
export async function readSafetensorsHeader(src: ByteSource): Promise<SafeHeader> {
  const first = await src.read(0, Math.min(8, src.size));
  let n: number;
  try {
    n = safetensorsHeaderLength(first, src.size);
    return parseSafetensorsHeader(await src.read(0, 8 + n), src.size);
  } catch (e) {
    if (e instanceof SafetensorsError) throw new SafetensorsError(`${src.name}: ${e.message.replace(/^safetensors: /, '')}`);
    throw e;
  }
}

export interface StreamOptions {
  /** Tensors smaller than this are read together, up to this many bytes per read (default 1 MiB). */
  groupBytes?: number;
  /** Skip tensors for which this returns false (their bytes are not read). */
  want?: (e: SafeHeaderEntry) => boolean;
}

/** One tensor of a stream: its header entry, its raw little-endian bytes, and its decoded values. */
export interface StreamedTensor {
  entry: SafeHeaderEntry;
  /** The stored bytes: valid only until the stream moves on. */
  bytes: Uint8Array;
  /** The values as a fresh array (decoded on first use). */
  readonly tensor: SafeTensor;
}

/**
 * The tensors of a source one at a time, in file order. Each read covers one tensor, or several small
 * neighbours up to `groupBytes`, so the bytes on the host at once stay near max(largest tensor,
 * groupBytes), plus the decoded tensor if it is asked for (a consumer that can take the raw bytes,
 * as an upload of F32 data can, need not decode).
 */
export async function* streamSafetensors(src: ByteSource, header: SafeHeader, opts: StreamOptions = {}): AsyncGenerator<StreamedTensor> {
  const limit = opts.groupBytes ?? 1 << 20;
  const entries = header.entries.filter((e) => opts.want?.(e) ?? true);
  src.reserve?.(Math.max(limit, ...entries.map((e) => e.end - e.begin)));
  for (let i = 0; i < entries.length; ) {
    // A run of neighbours (adjacent in the file) that fits in one read.
    let j = i + 1;
    while (j < entries.length && entries[j]!.begin === entries[j - 1]!.end && entries[j]!.end - entries[i]!.begin <= limit) j++;
    const from = entries[i]!.begin;
    const bytes = await src.read(header.dataStart + from, entries[j - 1]!.end - from);
    for (let k = i; k < j; k++) {
      const e = entries[k]!;
      let decoded: SafeTensor | null = null;
      yield {
        entry: e,
        bytes: bytes.subarray(e.begin - from, e.end - from),
        get tensor() {
          return (decoded ??= { dtype: e.dtype, shape: e.shape, data: decodeSafetensor(e, bytes, -from) });
        },
      };
    }
    i = j;
  }
}
