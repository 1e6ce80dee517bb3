/** Node-only: a file as a ByteSource (src/io/safetensors-stream.ts), read with positioned reads. */
import { open, type FileHandle } from 'node:fs/promises';
import type { ByteSource } from './safetensors-stream.js';

export interface FileSource extends ByteSource {
  close(): Promise<void>;
}

/**
 * Opens `path` for reading slices; close it when done. Reads land in one buffer that grows to the
 * largest read and is reused, so streaming a file allocates nothing per tensor.
 */
export async function fileSource(path: string): Promise<FileSource> {
  const handle: FileHandle = await open(path, 'r');
  const { size } = await handle.stat();
  let scratch = new Uint8Array(0);
  return {
    name: path,
    size,
    async read(offset, length) {
      if (scratch.length < length) scratch = new Uint8Array(length);
      const out = scratch.subarray(0, length);
      let done = 0;
      while (done < length) {
        // Node caps one read at 2 GiB.
        const { bytesRead } = await handle.read(out, done, Math.min(length - done, 1 << 30), offset + done);
        if (bytesRead === 0) throw new Error(`${path}: file ended after ${offset + done} bytes, expected ${offset + length}`);
        done += bytesRead;
      }
      return out;
    },
    reserve(bytes) {
      if (scratch.length < bytes) scratch = new Uint8Array(bytes);
    },
    close: () => handle.close(),
  };
}
