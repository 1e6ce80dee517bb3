/** Node-only file helpers: atomic writes, and safetensors reads that check the header before the data. */
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { parseSafetensors, parseSafetensorsHeader, safetensorsHeaderLength, type SafeTensor } from './safetensors.js';

/**
 * Writes to a temporary file beside the target, fsyncs it, then renames it over the target: rename
 * within one directory is atomic, so readers (and a crash) see the old file or the new one, never half.
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array | string): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  let handle: FileHandle | undefined;
  try {
    handle = await open(tmp, 'wx');
    await handle.writeFile(bytes);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(tmp, path);
  } catch (e) {
    await handle?.close().catch(() => {});
    await rm(tmp, { force: true }).catch(() => {});
    throw e;
  }
  // Persist the rename itself; best effort, since directories cannot be opened for fsync everywhere.
  try {
    const dir = await open(dirname(path), 'r');
    await dir.sync().finally(() => dir.close());
  } catch {
    /* the data is written; only durability across power loss is weaker */
  }
}

/** Reads exactly `length` bytes at `position`; a short read means the file changed under us. */
async function readExact(handle: FileHandle, length: number, position: number, path: string): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    // Node caps one read at 2 GiB, so large files go in chunks.
    const { bytesRead } = await handle.read(out, done, Math.min(length - done, 1 << 30), position + done);
    if (bytesRead === 0) throw new Error(`${path}: file ended after ${position + done} bytes, expected ${position + length}`);
    done += bytesRead;
  }
  return out;
}

/**
 * Reads a safetensors file. The header length and the header itself are validated against the file
 * size before the data is read, so a corrupt or hostile header fails fast without a huge allocation.
 */
export async function readSafetensorsFile(
  path: string,
): Promise<{ tensors: Map<string, SafeTensor>; metadata: Record<string, string> }> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    const first = await readExact(handle, Math.min(8, size), 0, path);
    const n = safetensorsHeaderLength(first, size);
    parseSafetensorsHeader(await readExact(handle, 8 + n, 0, path), size);
    return parseSafetensors(await readExact(handle, size, 0, path));
  } finally {
    await handle.close();
  }
}
