import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  parseSafetensors,
  parseSafetensorsHeader,
  SafetensorsError,
  serializeSafetensors,
} from '../src/io/safetensors.js';
import { readSafetensorsFile, writeFileAtomic } from '../src/io/file.js';

/** A file from a header given as JSON text (or an object) and raw data bytes; the header is not padded. */
function build(header: string | Uint8Array | object, data = new Uint8Array(0), claimedLength?: number): Uint8Array {
  const json =
    header instanceof Uint8Array
      ? header
      : new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  const view = new DataView(out.buffer);
  const n = claimedLength ?? json.length;
  view.setUint32(0, n % 2 ** 32, true);
  view.setUint32(4, Math.floor(n / 2 ** 32), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** Little-endian bytes of 16-bit words, written out by hand rather than through the code under test. */
function u16le(words: number[]): Uint8Array {
  return new Uint8Array(words.flatMap((w) => [w & 0xff, w >> 8]));
}

function expectError(fn: () => unknown, ...parts: string[]): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a SafetensorsError').toBeInstanceOf(SafetensorsError);
  for (const p of parts) expect((err as Error).message).toContain(p);
}

const randomBits = (n: number): Uint32Array => Uint32Array.from({ length: n }, () => (Math.random() * 2 ** 32) >>> 0);

describe('safetensors round trip', () => {
  it('writes and reads random F32 and I32 tensors and metadata bit for bit', () => {
    // Random bit patterns cover NaN payloads, infinities, -0 and subnormals, not just "nice" floats.
    const f = new Float32Array(randomBits(2 * 3 * 5).buffer);
    const i = new Int32Array(randomBits(7).buffer);
    const scalar = new Float32Array([Math.random() - 0.5]);
    const tensors = {
      'down.0.conv.weight': { shape: [2, 3, 5], data: f },
      '10': { shape: [7], data: i }, // integer-like names must keep their sorted place
      '9': { shape: [], data: scalar },
      'empty': { shape: [4, 0], data: new Float32Array(0) },
      'unicodé ✓': { shape: [1, 7], data: i },
    };
    const metadata = { format: 'pt', step: '1234', note: 'λ = 0.1 "quoted"' };
    const bytes = serializeSafetensors(tensors, metadata);
    const { tensors: back, metadata: meta } = parseSafetensors(bytes);

    expect(meta).toEqual(metadata);
    expect([...back.keys()].sort()).toEqual(Object.keys(tensors).sort());
    for (const [name, t] of Object.entries(tensors)) {
      const got = back.get(name)!;
      expect(got.shape).toEqual(t.shape);
      expect(got.dtype).toBe(t.data instanceof Float32Array ? 'F32' : 'I32');
      expect(got.data.constructor).toBe(t.data.constructor);
      expect(new Uint32Array(got.data.buffer, got.data.byteOffset, got.data.length)).toEqual(
        new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length),
      );
      expect(got.data.buffer).not.toBe(bytes.buffer); // results must not alias the file's bytes
    }
    // A Map serializes the same as the equivalent record.
    expect(serializeSafetensors(new Map(Object.entries(tensors)), metadata)).toEqual(bytes);
  });

  it('reads from a Node Buffer inside a larger pool (as fs.readFile gives) without aliasing the pool', () => {
    const bytes = serializeSafetensors(new Map([['a', { shape: [3], data: Float32Array.from([1, 2, 3]) }], ['b', { shape: [2], data: Int32Array.from([7, 8]) }]]));
    const pool = Buffer.alloc(bytes.length + 64);
    pool.set(bytes, 16);
    const view = pool.subarray(16, 16 + bytes.length);
    const { tensors } = parseSafetensors(view);
    expect(Array.from(tensors.get('a')!.data)).toEqual([1, 2, 3]);
    expect(Array.from(tensors.get('b')!.data)).toEqual([7, 8]);
    expect(tensors.get('a')!.data.buffer.byteLength).toBe(12);
  });

  it('lays out the header as the format says: u64 LE length, JSON, space padding to 8, contiguous data', () => {
    const bytes = serializeSafetensors(
      { b: { shape: [2], data: new Float32Array([1.5, -2]) }, a: { shape: [3], data: new Int32Array([1, -1, 70000]) } },
      { format: 'pt' },
    );
    const json =
      '{"__metadata__":{"format":"pt"},' +
      '"a":{"dtype":"I32","shape":[3],"data_offsets":[0,12]},' +
      '"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}';
    const n = Math.ceil(json.length / 8) * 8;
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    expect(view.getUint32(0, true)).toBe(n);
    expect(view.getUint32(4, true)).toBe(0);
    expect(n % 8).toBe(0);
    expect(new TextDecoder().decode(bytes.subarray(8, 8 + n))).toBe(json + ' '.repeat(n - json.length));
    expect(bytes.length).toBe(8 + n + 20);
    // Data: I32 1, -1, 70000 then F32 1.5 (0x3FC00000), -2 (0xC0000000), all little-endian.
    expect([...bytes.subarray(8 + n)]).toEqual([
      1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x70, 0x11, 0x01, 0x00, 0, 0, 0xc0, 0x3f, 0, 0, 0, 0xc0,
    ]);
  });

  it('reads a header without the data section', () => {
    const bytes = serializeSafetensors({ w: { shape: [4, 4], data: new Float32Array(16).fill(3) } });
    const n = new DataView(bytes.buffer).getUint32(0, true);
    const h = parseSafetensorsHeader(bytes.subarray(0, 8 + n), bytes.length);
    expect(h.dataStart).toBe(8 + n);
    expect(h.metadata).toEqual({});
    expect(h.entries).toEqual([{ name: 'w', dtype: 'F32', shape: [4, 4], begin: 0, end: 64 }]);
    expectError(() => parseSafetensorsHeader(bytes.subarray(0, 8 + n - 1), bytes.length), `${8 + n}`, `${8 + n - 1}`);
  });
});

describe('safetensors dtype conversion', () => {
  it('reads hand-encoded F16 and BF16 against closed-form values', () => {
    // [bits, value] pairs; values written from the bit layouts, not computed by the code under test.
    const f16: [number, number][] = [
      [0x3c00, 1],
      [0xc100, -2.5], // sign, exp 16, frac 0x100: -(1 + 1/4) * 2
      [0x3555, 1365 / 4096], // (1 + 341/1024) * 2^-2
      [0x7bff, 65504], // largest normal
      [0x0400, 2 ** -14], // smallest normal
      [0x0001, 2 ** -24], // smallest subnormal
      [0x03ff, 1023 * 2 ** -24], // largest subnormal
      [0x8001, -(2 ** -24)],
      [0x8000, -0],
      [0x7c00, Infinity],
      [0xfc00, -Infinity],
      [0x7e00, NaN],
      [0x7c01, NaN], // any non-zero fraction with exp 31
    ];
    const bf16: [number, number][] = [
      [0x3f80, 1],
      [0xc020, -2.5],
      [0x3eab, 0.25 * (1 + 43 / 128)],
      [0x0001, 2 ** -133], // bf16 subnormal, also a float32 subnormal
      [0x7f80, Infinity],
      [0xff80, -Infinity],
      [0x7fc0, NaN],
      [0x8000, -0],
    ];
    const a = u16le(f16.map(([b]) => b));
    const b = u16le(bf16.map(([b]) => b));
    const file = build(
      {
        half: { dtype: 'F16', shape: [f16.length], data_offsets: [0, a.length] },
        brain: { dtype: 'BF16', shape: [bf16.length], data_offsets: [a.length, a.length + b.length] },
      },
      new Uint8Array([...a, ...b]),
    );
    const { tensors } = parseSafetensors(file);
    const half = tensors.get('half')!;
    const brain = tensors.get('brain')!;
    expect(half.dtype).toBe('F16');
    expect(brain.dtype).toBe('BF16');
    expect(half.data).toBeInstanceOf(Float32Array);
    // Exact: every F16 and BF16 value is a float32 value. Object.is tells -0 from 0 and matches NaN.
    f16.forEach(([bits, v], i) => expect(Object.is(half.data[i], v), `F16 0x${bits.toString(16)}`).toBe(true));
    bf16.forEach(([bits, v], i) => expect(Object.is(brain.data[i], v), `BF16 0x${bits.toString(16)}`).toBe(true));
  });

  it('reads F64, I64, U8 and an unaligned F32', () => {
    const data = new Uint8Array(16 + 24 + 3 + 8);
    const view = new DataView(data.buffer);
    view.setFloat64(0, 0.1, true);
    view.setFloat64(8, -1e300, true); // beyond float32: becomes -Infinity, as a cast would
    view.setBigInt64(16, -5n, true);
    view.setBigInt64(24, 2n ** 31n - 1n, true);
    view.setBigInt64(32, -(2n ** 31n), true);
    data.set([0, 200, 255], 40);
    view.setFloat32(43, -3.25, true); // offset 43: not 4-aligned in the buffer
    view.setFloat32(47, 7, true);
    const { tensors } = parseSafetensors(
      build(
        {
          d: { dtype: 'F64', shape: [2], data_offsets: [0, 16] },
          l: { dtype: 'I64', shape: [3], data_offsets: [16, 40] },
          u: { dtype: 'U8', shape: [3], data_offsets: [40, 43] },
          f: { dtype: 'F32', shape: [2], data_offsets: [43, 51] },
        },
        data,
      ),
    );
    expect([...tensors.get('d')!.data]).toEqual([Math.fround(0.1), -Infinity]);
    expect(tensors.get('l')!.data).toEqual(new Int32Array([-5, 2 ** 31 - 1, -(2 ** 31)]));
    expect(tensors.get('u')!.data).toEqual(new Int32Array([0, 200, 255]));
    expect(tensors.get('f')!.data).toEqual(new Float32Array([-3.25, 7]));
  });

  it('rejects I64 values outside int32, naming the tensor and the value', () => {
    const data = new Uint8Array(16);
    new DataView(data.buffer).setBigInt64(8, 2n ** 31n, true);
    expectError(
      () => parseSafetensors(build({ ids: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, data)),
      "'ids'",
      '2147483648',
      'int32',
    );
  });
});

describe('safetensors validation', () => {
  const f32 = (shape: number[], begin: number, end: number) => ({ dtype: 'F32', shape, data_offsets: [begin, end] });

  it('rejects a file shorter than 8 bytes', () => {
    expectError(() => parseSafetensors(new Uint8Array(5)), '5 bytes', '8-byte');
  });

  it('rejects a valid file cut short anywhere: in the length field, the header or the data', () => {
    const f = new Float32Array(randomBits(24).buffer);
    const bytes = serializeSafetensors({ a: { shape: [4, 3], data: f.subarray(0, 12) }, b: { shape: [12], data: f.subarray(12) } }, { step: '1' });
    const n = new DataView(bytes.buffer).getUint32(0, true);
    // Cuts inside the length field, inside the header, at its end, inside each tensor, one byte short.
    for (const cut of [3, 8 + (n >> 1), 8 + n, 8 + n + 20, 8 + n + 48 + 4, bytes.length - 1]) {
      let err: unknown;
      try {
        parseSafetensors(bytes.subarray(0, cut));
      } catch (e) {
        err = e;
      }
      expect(err, `cut at ${cut} of ${bytes.length} bytes`).toBeInstanceOf(SafetensorsError);
    }
    expect(parseSafetensors(bytes).tensors.size).toBe(2);
  });

  it('rejects a header length larger than the file', () => {
    expectError(() => parseSafetensors(build('{}', new Uint8Array(90), 1000)), '1000 bytes', 'only 92 bytes');
  });

  it('fails fast on a header of gigabytes claimed on a 100-byte buffer', () => {
    const bytes = new Uint8Array(100);
    new DataView(bytes.buffer).setUint32(4, 1, true); // 2^32 = 4 GiB
    const t0 = performance.now();
    expectError(() => parseSafetensors(bytes), '4294967296', '100000000');
    expectError(() => parseSafetensorsHeader(bytes.subarray(0, 8), 100), '4294967296');
    expect(performance.now() - t0).toBeLessThan(100); // generous: it is a couple of comparisons
    // Claims beyond 2^53 must not lose precision into a small number.
    bytes.fill(0xff, 0, 8);
    expectError(() => parseSafetensors(bytes), 'header length field claims');
  });

  it('rejects a header that is not JSON, not UTF-8, or not an object', () => {
    expectError(() => parseSafetensors(build('{"w": ')), 'not valid UTF-8 JSON');
    expectError(() => parseSafetensors(build(new Uint8Array([0x7b, 0xff, 0x7d]))), 'not valid');
    expectError(() => parseSafetensors(build('[1, 2]')), 'an array', 'expected a JSON object');
    expectError(() => parseSafetensors(build('null')), 'null', 'expected a JSON object');
    expectError(() => parseSafetensors(build('"w"')), 'expected a JSON object');
  });

  it('rejects entries missing dtype, shape or data_offsets', () => {
    expectError(() => parseSafetensors(build({ w: { shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4))), "'w'", 'missing dtype');
    expectError(() => parseSafetensors(build({ w: { dtype: 'F32' } })), "'w'", 'missing shape, data_offsets');
    expectError(() => parseSafetensors(build({ w: 3 })), "'w'", 'expected an object');
  });

  it('rejects entries with fields of the wrong type', () => {
    const one = new Uint8Array(4);
    expectError(() => parseSafetensors(build({ w: { dtype: 5, shape: [1], data_offsets: [0, 4] } }, one)), "'w'", 'dtype 5');
    expectError(() => parseSafetensors(build({ w: { dtype: 'F32', shape: '1', data_offsets: [0, 4] } }, one)), "'w'", 'shape "1"');
    expectError(() => parseSafetensors(build({ w: { dtype: 'F32', shape: [1], data_offsets: [4] } }, one)), "'w'", 'data_offsets [4]', 'pair');
    expectError(() => parseSafetensors(build({ w: { dtype: 'F32', shape: [1], data_offsets: [0, '4'] } }, one)), "'w'", 'data_offsets');
  });

  it('rejects an unknown dtype and names the allowed ones', () => {
    expectError(
      () => parseSafetensors(build({ w: { dtype: 'F8_E4M3', shape: [4], data_offsets: [0, 4] } }, new Uint8Array(4))),
      "'w'",
      'F8_E4M3',
      'F32, F16, BF16, I32, I64, U8, F64',
    );
  });

  it('rejects negative and non-integer dims', () => {
    expectError(() => parseSafetensors(build({ w: f32([-1, 2], 0, 8) }, new Uint8Array(8))), "'w'", '[-1,2]', 'non-negative integers');
    expectError(() => parseSafetensors(build({ w: f32([1.5], 0, 4) }, new Uint8Array(4))), "'w'", '[1.5]');
  });

  it('rejects data_offsets outside the data section and begin > end', () => {
    expectError(() => parseSafetensors(build({ w: f32([100], 0, 400) }, new Uint8Array(16))), "'w'", '[0, 400]', '16 bytes');
    expectError(() => parseSafetensors(build({ w: f32([1], 8, 4) }, new Uint8Array(8))), "'w'", '[8, 4]', 'begin > end');
  });

  it('rejects a byte range that disagrees with shape x dtype size', () => {
    expectError(
      () => parseSafetensors(build({ w: f32([2, 3], 0, 16) }, new Uint8Array(16))),
      "'w'",
      'hold 16 bytes',
      '[2, 3]',
      'needs 24 bytes',
    );
    // Huge dims must not overflow into a false match.
    expectError(() => parseSafetensors(build({ w: f32([2 ** 40, 2 ** 40], 0, 0) })), "'w'", 'needs');
  });

  it('rejects overlapping tensors, naming both', () => {
    const data = new Uint8Array(24);
    expectError(
      () => parseSafetensors(build({ a: f32([4], 0, 16), b: f32([4], 8, 24) }, data)),
      "'b'",
      "'a'",
      'overlap',
      '[8, 24)',
      'ends at 16',
    );
  });

  it('rejects holes and unindexed tails in the data section', () => {
    const data = new Uint8Array(24);
    expectError(() => parseSafetensors(build({ a: f32([2], 0, 8), b: f32([2], 16, 24) }, data)), "'b'", 'hole of 8 bytes', "'a'");
    // Entries listed out of offset order are fine as long as the bytes are covered exactly.
    expect([...parseSafetensors(build({ b: f32([2], 16, 24), a: f32([4], 0, 16) }, data)).tensors.keys()]).toEqual(['a', 'b']);
    expectError(() => parseSafetensors(build({ a: f32([2], 8, 16) }, data.subarray(0, 16))), "'a'", 'hole of 8 bytes', 'start of the data section');
    expectError(() => parseSafetensors(build({ a: f32([2], 0, 8) }, data.subarray(0, 16))), 'cover 8 bytes', '16 bytes', '8 bytes are not indexed');
  });

  it('rejects metadata that is not a string-to-string map', () => {
    expectError(() => parseSafetensors(build({ __metadata__: { epoch: 3 } })), "'epoch'", '3', 'expected a string');
    expectError(() => parseSafetensors(build({ __metadata__: ['x'] })), '__metadata__', 'expected an object');
  });

  it('refuses a key repeated in one object: a tensor named twice, a field repeated, __metadata__ twice', () => {
    const one = new Uint8Array(4);
    // JSON.parse would keep the last of each; the reference reader refuses them, and so must we.
    const twice = '{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}';
    expectError(() => parseSafetensors(build(twice, one)), 'header', 'key "w" appears twice');
    expectError(() => parseSafetensors(build('{"w":{"dtype":"I32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}', one)), 'key "dtype" appears twice');
    expectError(() => parseSafetensors(build('{"__metadata__":{"a":"1"},"__metadata__":{"a":"2"}}')), 'key "__metadata__" appears twice');
    expectError(() => parseSafetensors(build('{"__metadata__":{"a":"1","a":"2"}}')), 'key "a" appears twice');
    // The same key spelt with an escape is the same key.
    expectError(() => parseSafetensors(build('{"__metadata__":{"ab":"1","a\\u0062":"2"}}')), 'key "ab" appears twice');
    // The same name in different objects, and a value equal to a key, are fine.
    const ok = '{"__metadata__":{"w":"w"},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}';
    expect([...parseSafetensors(build(ok, one)).tensors.keys()]).toEqual(['w']);
  });

  it('refuses a UTF-8 byte-order mark before the header, which TextDecoder would silently drop', () => {
    const json = new TextEncoder().encode('{}');
    expectError(() => parseSafetensors(build(new Uint8Array([0xef, 0xbb, 0xbf, ...json]))), 'byte-order mark');
  });

  it('refuses deep nesting with its own error, and quotes at most a few hundred characters of a hostile value', () => {
    // Deep enough that JSON.stringify (used to quote values in errors) throws RangeError.
    const deep = `{"w":${'['.repeat(100_000)}${']'.repeat(100_000)}}`;
    expectError(() => parseSafetensors(build(deep)), 'nested more than 64 levels');
    // 64 levels is still allowed by the scan (and then refused as a bad entry, with a short message).
    const ok = `{"w":${'['.repeat(60)}${']'.repeat(60)}}`;
    expectError(() => parseSafetensors(build(ok)), "'w'", 'expected an object');
    const cases = [
      build({ w: 'x'.repeat(1_000_000) }),
      build({ ['n'.repeat(1_000_000)]: 1 }),
      build({ w: { dtype: 'x'.repeat(1_000_000), shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)),
      build({ w: { dtype: 'F32', shape: new Array(200_000).fill(1), data_offsets: [0, 8] } }, new Uint8Array(8)),
      build({ __metadata__: { ['k'.repeat(1_000_000)]: 5 } }),
      build(`{"w": 1, ${' '.repeat(1_000_000)} x}`),
    ];
    for (const bytes of cases) {
      let msg = '';
      try {
        parseSafetensors(bytes);
      } catch (e) {
        msg = (e as Error).message;
      }
      expect(msg).not.toBe('');
      expect(msg.length, msg.slice(0, 80)).toBeLessThan(600);
    }
  });

  it('rejects bad input to the writer', () => {
    expectError(() => serializeSafetensors({ w: { shape: [2, 2], data: new Float32Array(3) } }), "'w'", '3 elements', '[2, 2]', '4');
    expectError(() => serializeSafetensors({ __metadata__: { shape: [1], data: new Float32Array(1) } }), 'reserved');
    expectError(() => serializeSafetensors({ w: { shape: [-1], data: new Float32Array(0) } }), "'w'", '[-1]');
    expectError(() => serializeSafetensors({}, { n: 3 as unknown as string }), "'n'", 'expected a string');
  });
});

describe('safetensors files', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'safetensors-test-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes atomically and reads back', async () => {
    const path = join(dir, 'model.safetensors');
    const w = new Float32Array(randomBits(64).buffer);
    await writeFileAtomic(path, 'old contents');
    await writeFileAtomic(path, serializeSafetensors({ w: { shape: [8, 8], data: w } }, { step: '7' }));
    const { tensors, metadata } = await readSafetensorsFile(path);
    expect(metadata).toEqual({ step: '7' });
    expect(new Uint32Array(tensors.get('w')!.data.buffer)).toEqual(new Uint32Array(w.buffer));
    expect(await readdir(dir)).toEqual(['model.safetensors']); // no temp file left behind
  });

  it('lets a concurrent reader see only the old file or the new one, never part of either', async () => {
    const path = join(dir, 'swap.bin');
    const oldBytes = Buffer.alloc(1 << 20, 0x61);
    const newBytes = Buffer.alloc(2 << 20, 0x62);
    await writeFile(path, oldBytes);
    let done = false;
    const writing = writeFileAtomic(path, newBytes).finally(() => (done = true));
    let reads = 0;
    while (!done) {
      const got = await readFile(path);
      expect(got.equals(oldBytes) || got.equals(newBytes), `read ${reads}: ${got.length} bytes, neither old nor new`).toBe(true);
      reads++;
    }
    await writing;
    expect((await readFile(path)).equals(newBytes)).toBe(true);
    expect(reads).toBeGreaterThan(0);
    expect((await readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('throws and leaves no temp file when the write fails', async () => {
    await expect(writeFileAtomic(join(dir, 'missing', 'x.bin'), 'data')).rejects.toThrow(/ENOENT/);
    // The rename fails when the target is a non-empty directory: the temp file was written by then.
    const target = join(dir, 'occupied');
    await mkdir(target);
    await writeFile(join(target, 'keep'), 'kept');
    const before = await readdir(dir);
    await expect(writeFileAtomic(target, 'data')).rejects.toThrow();
    expect(await readdir(dir)).toEqual(before);
    expect(await readFile(join(target, 'keep'), 'utf8')).toBe('kept');
  });

  it('rejects a huge claimed header without reading the file', async () => {
    const path = join(dir, 'huge-header.safetensors');
    const bytes = new Uint8Array(100);
    new DataView(bytes.buffer).setUint32(4, 1, true); // claims 4 GiB of header
    await writeFile(path, bytes);
    await expect(readSafetensorsFile(path)).rejects.toThrow(/claims 4294967296 bytes/);
    await expect(readSafetensorsFile(path)).rejects.toBeInstanceOf(SafetensorsError);
  });

  it('validates the header against the file size before reading the data', async () => {
    // A sparse 8 GiB file whose header claims a tensor past its end. Reading it whole would fail
    // with an allocation error (Node caps typed arrays at 4 GiB) or take seconds; a header-first
    // reader gives the SafetensorsError at once.
    const path = join(dir, 'sparse.safetensors');
    const head = build({ w: { dtype: 'F32', shape: [2 ** 32], data_offsets: [0, 2 ** 34] } });
    await writeFile(path, head);
    await truncate(path, 2 ** 33);
    const t0 = performance.now();
    const err = await readSafetensorsFile(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SafetensorsError);
    expect((err as Error).message).toMatch(/'w'.*\[0, 17179869184\].*8589934\d+ bytes/);
    expect(performance.now() - t0).toBeLessThan(1000);
    await rm(path);
  });

  it('rejects a file shorter than 8 bytes', async () => {
    const path = join(dir, 'tiny.safetensors');
    await writeFile(path, new Uint8Array(3));
    await expect(readSafetensorsFile(path)).rejects.toThrow(/3 bytes, shorter than the 8-byte/);
    await rm(path);
  });
});
