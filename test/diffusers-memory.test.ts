// Big checkpoints: loading reads tensor by tensor, so the host memory it takes follows the largest
// tensor, not the file; and the reader walks a file past the browser's 2 GB ArrayBuffer limit (and
// past 2^31 byte offsets) without ever holding it whole.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, openSync, closeSync, rmSync, writeSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { useDevice } from './helpers.js';
import { buildDiffusersModel } from '../src/pipelines/diffusers/model.js';
import { loadDiffusers } from '../src/pipelines/diffusers/node.js';
import { readSafetensorsFile } from '../src/io/file.js';
import { ByteSource, readSafetensorsHeader, streamSafetensors } from '../src/io/safetensors-stream.js';

const dev = useDevice();

// A full collection before each baseline, so garbage from earlier tests cannot be freed during a
// measurement and hide an allocation (the measured peak can only be an over-estimate then).
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Host memory in ArrayBuffers (Node Buffers included): what reading a file into memory would take. */
const arrayBuffers = () => process.memoryUsage().arrayBuffers;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'wgd-big-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Writes a safetensors file tensor by tensor (each tensor's values: its index + element / 1e6). */
function writeStreamed(path: string, tensors: [string, number[]][]): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let at = 0;
  for (const [name, shape] of tensors) {
    const bytes = 4 * shape.reduce((a, b) => a * b, 1);
    header[name] = { dtype: 'F32', shape, data_offsets: [at, at + bytes] };
    at += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const fd = openSync(path, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    writeSync(fd, len);
    writeSync(fd, json);
    tensors.forEach(([, shape], i) => {
      const v = new Float32Array(shape.reduce((a, b) => a * b, 1));
      for (let k = 0; k < v.length; k++) v[k] = i + k / 1e6;
      writeSync(fd, new Uint8Array(v.buffer));
    });
  } finally {
    closeSync(fd);
  }
}

describe('big checkpoints', () => {
  it('loading a diffusers folder holds about one tensor on the host, not the file (and reading the file whole does)', async () => {
    const d = dev();
    // A UNet2DModel of 14.3M parameters (57.4 MB); its largest tensor, an up block's conv1 [256, 512, 3, 3], is 4.7 MB.
    const config = {
      _class_name: 'UNet2DModel', sample_size: 8, in_channels: 3, out_channels: 3, block_out_channels: [128, 256], layers_per_block: 2,
      down_block_types: ['DownBlock2D', 'DownBlock2D'], up_block_types: ['UpBlock2D', 'UpBlock2D'], norm_num_groups: 32, attention_head_dim: null, add_attention: false,
    };
    const folder = join(dir, 'unet');
    const { module } = buildDiffusersModel(d, config);
    const shapes = module.namedParameters().map(([n, t]) => [n, [...t.shape]] as [string, number[]]);
    const { mkdirSync } = await import('node:fs');
    mkdirSync(folder);
    writeFileSync(join(folder, 'config.json'), JSON.stringify(config));
    const file = join(folder, 'diffusion_pytorch_model.safetensors');
    writeStreamed(file, shapes);
    const size = statSync(file).size;
    const largest = Math.max(...shapes.map(([, s]) => 4 * s.reduce((a, b) => a * b, 1)));
    expect(size).toBeGreaterThan(55e6);
    expect(largest).toBeLessThan(5e6);

    gc();
    const base = arrayBuffers();
    let peak = base;
    const sample = () => (peak = Math.max(peak, arrayBuffers()));
    const timer = setInterval(sample, 1);
    const m = await loadDiffusers(d, folder, { onProgress: sample });
    clearInterval(timer);
    const took = peak - base;
    // The read buffer, which grows to the largest read (a tensor, or small neighbours grouped up to
    // 1 MiB) and is reused; F32 bytes go to the device as read, without a decoded copy. The bound
    // allows 2 MiB over it for whatever else the runtime keeps; the file is 8x more.
    const bound = largest + 2 * 2 ** 20;
    console.log(`load: file ${(size / 1e6).toFixed(1)} MB, largest tensor ${(largest / 1e6).toFixed(2)} MB, host peak +${(took / 1e6).toFixed(2)} MB (bound ${(bound / 1e6).toFixed(2)} MB)`);
    expect(took).toBeLessThan(bound);
    expect(size).toBeGreaterThan(8 * bound);
    // The weights arrived: the first and last element of the first and last tensors.
    const params = m.module.namedParameters();
    const order = shapes.map(([n]) => n);
    for (const [n, t] of [params[0]!, params[params.length - 1]!]) {
      const v = (await t.read()) as Float32Array;
      const i = order.indexOf(n);
      expect([v[0], v[v.length - 1]]).toEqual([Math.fround(i), Math.fround(i + (v.length - 1) / 1e6)]);
    }
    // The control: the whole-file reader's peak is the file (the measurement sees such a read).
    gc();
    const base2 = arrayBuffers();
    let peak2 = base2;
    const whole = await readSafetensorsFile(file);
    peak2 = Math.max(peak2, arrayBuffers());
    expect(whole.tensors.size).toBe(shapes.length);
    expect(peak2 - base2).toBeGreaterThan(size);
  }, 300_000);

  it('the reader walks a 2.2 GB file (past 2^31 byte offsets) tensor by tensor, never holding it whole', async () => {
    // A file that is never materialised: the source makes each read's bytes on demand. 70 tensors of
    // 32 MiB, tensor i filled with the value i.
    const n = 70, count = 8 * 2 ** 20;
    const header: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) header[`t${String(i).padStart(2, '0')}`] = { dtype: 'F32', shape: [count], data_offsets: [i * 4 * count, (i + 1) * 4 * count] };
    const json = new TextEncoder().encode(JSON.stringify(header));
    const dataStart = 8 + json.length;
    const size = dataStart + n * 4 * count;
    expect(size).toBeGreaterThan(2 ** 31);
    let largestRead = 0;
    const src: ByteSource = {
      name: 'virtual.safetensors',
      size,
      async read(offset, length) {
        largestRead = Math.max(largestRead, length);
        if (offset < dataStart) {
          const out = new Uint8Array(length);
          const head = new Uint8Array(dataStart);
          new DataView(head.buffer).setUint32(0, json.length, true);
          head.set(json, 8);
          out.set(head.subarray(offset, offset + length));
          return out;
        }
        // Reads are whole tensors here (each over the 1 MiB grouping limit).
        const i = (offset - dataStart) / (4 * count);
        expect(Number.isInteger(i) && length === 4 * count).toBe(true);
        return new Uint8Array(new Float32Array(count).fill(i).buffer);
      },
    };
    const h = await readSafetensorsHeader(src);
    gc();
    const base = arrayBuffers();
    let peak = base;
    let seen = 0;
    for await (const { entry, tensor } of streamSafetensors(src, h)) {
      peak = Math.max(peak, arrayBuffers());
      const v = tensor.data as Float32Array;
      expect([entry.name, v[0], v[count - 1]]).toEqual([`t${String(seen).padStart(2, '0')}`, seen, seen]);
      seen++;
      if (seen % 8 === 0) gc();
    }
    expect(seen).toBe(n);
    expect(largestRead).toBe(4 * count);
    // A read and its decoded copy, and up to 8 tensors of garbage between collections: far below the file.
    console.log(`2.2 GB stream: host peak +${((peak - base) / 1e6).toFixed(0)} MB`);
    expect(peak - base).toBeLessThan(10 * 4 * count);
  }, 300_000);
});
