// Fuzzing every file the engine reads, at its parsing layer (no GPU): safetensors checkpoints, PNG
// images and dataset folders. Each mutated input must give either a result or one clear error (an
// Error of the engine's own, one line of at most a few hundred characters) within a second, never a
// hang, a crash (TypeError, RangeError: the parser lost track), or an allocation far beyond the file.
//
// CI runs a fixed seed. A longer randomised run: FUZZ_ITERS=5000 FUZZ_SEED=$RANDOM npx vitest run test/fuzz.test.ts
// (a failure prints its seed and case, so it can be replayed).
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSafetensors, serializeSafetensors } from '../src/io/safetensors.js';
import { decodeCheckpoint } from '../src/io/checkpoint.js';
import { readCheckpointFile } from '../src/io/checkpoint-file.js';
import { decodePng, encodePng } from '../src/data/png.js';
import { loadImageFolder } from '../src/data/folder.js';
import { mulberry32 } from '../src/data/rng.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20240617);
const ITERS = Number(process.env.FUZZ_ITERS ?? 300);
const r = mulberry32(SEED);
const int = (n: number) => Math.floor(r() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;

const tmp = mkdtempSync(join(tmpdir(), 'wgd-fuzz-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** What the cases saw, for the summary line. */
const tally = { cases: 0, errors: 0, slowestMs: 0 };

/**
 * Runs one case: it must return or throw an engine error, quickly, with a short one-line message,
 * and without host allocations beyond `maxAlloc` bytes (ArrayBuffer memory, measured before any GC
 * could hide it).
 */
async function fuzzCase(what: string, fn: () => unknown, maxAlloc: number, prefix = ''): Promise<void> {
  const label = `seed ${SEED}, ${what}`;
  const before = process.memoryUsage().arrayBuffers;
  const t0 = performance.now();
  let err: unknown = null;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  const ms = performance.now() - t0;
  const grown = process.memoryUsage().arrayBuffers - before;
  tally.cases++;
  tally.slowestMs = Math.max(tally.slowestMs, ms);
  expect(ms, `${label}: took ${ms.toFixed(0)} ms`).toBeLessThan(1000);
  expect(grown, `${label}: ${grown} bytes allocated`).toBeLessThan(maxAlloc);
  if (err === null) return;
  tally.errors++;
  expect(err, label).toBeInstanceOf(Error);
  const e = err as Error;
  // The parser's own errors, not the language's complaints about an index or a value it did not expect.
  expect([TypeError, RangeError, ReferenceError, SyntaxError].some((C) => e.constructor === C), `${label}: raw ${e.name}: ${e.message.slice(0, 200)}`).toBe(false);
  expect(e.message.length, `${label}: message of ${e.message.length} chars`).toBeLessThan(600);
  expect(e.message.includes('\n'), `${label}: multi-line message`).toBe(false);
  expect(e.message.startsWith(prefix), `${label}: ${e.message.slice(0, 200)}`).toBe(true);
}

// ------------------------------------------------------------------ safetensors

/** A checkpoint-like file: float and int tensors of every dtype, metadata with a JSON config. */
function baseSafetensors(): Uint8Array {
  const rnd = (n: number) => Float32Array.from({ length: n }, () => r() * 2 - 1);
  const config = { kind: 'diffusion', model: { sampleSize: 8, blockOutChannels: [8, 16] }, step: 3 };
  const bytes = serializeSafetensors(
    { 'conv_in.weight': { shape: [8, 1, 3, 3], data: rnd(72) }, 'conv_in.bias': { shape: [8], data: rnd(8) }, 'rng.key': { shape: [2], data: Int32Array.of(7, 9) }, 'ema.conv_in.bias': { shape: [8], data: rnd(8) } },
    { format: 'webgpu-diffusion', config: JSON.stringify(config) },
  );
  return bytes;
}

/** The same data under another header (JSON text), the length field fixed up to match. */
function withHeader(bytes: Uint8Array, header: string): Uint8Array {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const json = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + json.length + bytes.length - 8 - n);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(bytes.subarray(8 + n), 8 + json.length);
  return out;
}

function headerOf(bytes: Uint8Array): Record<string, Record<string, unknown>> {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
}

const WILD = [0, 1, -1, 3.5, 2 ** 31, 2 ** 32, 2 ** 40, 2 ** 53, 2 ** 64, 1e308, null, 'x', true, [], {}, [[[[1]]]]];

/** One mutation of a safetensors file: a description and the bytes. */
function mutateSafetensors(base: Uint8Array): [string, Uint8Array] {
  const n = Number(new DataView(base.buffer, base.byteOffset).getBigUint64(0, true));
  const kind = int(9);
  const copy = () => new Uint8Array(base);
  if (kind === 0) {
    const len = int(base.length);
    return [`truncated to ${len} bytes`, base.slice(0, len)];
  }
  if (kind === 1 || kind === 2) {
    // Flip bytes in the header (kind 1) or the data (kind 2).
    const b = copy();
    const [lo, hi] = kind === 1 ? [0, 8 + n] : [8 + n, base.length];
    const at: number[] = [];
    for (let k = 1 + int(4); k > 0; k--) {
      const i = lo + int(hi - lo);
      b[i] = int(256);
      at.push(i);
    }
    return [`bytes changed at ${at.join(',')}`, b];
  }
  if (kind === 3) {
    const b = copy();
    const claims = [0, n - 1, n + 1, base.length, base.length - 7, 2 ** 32, 2 ** 53 - 1, int(2 ** 31)];
    const v = pick(claims);
    new DataView(b.buffer).setBigUint64(0, BigInt(Math.max(0, v)), true);
    if (r() < 0.2) b.fill(0xff, 0, 8);
    return [`header length field claims ${v}`, b];
  }
  const h = headerOf(base);
  const names = Object.keys(h).filter((k) => k !== '__metadata__');
  const name = pick(names);
  const e = h[name]!;
  if (kind === 4) {
    const field = pick(['data_offsets', 'shape', 'dtype']);
    const v =
      field === 'data_offsets' ? pick([[pick(WILD), pick(WILD)], [int(400), int(400)], [0, 2 ** 53], (e.data_offsets as number[]).slice().reverse(), [pick(WILD)]])
      : field === 'shape' ? pick([[2 ** 40, 2 ** 40], [0], [int(100), int(100)], [-1], [1.5], [...(e.shape as number[]), 1e9], pick(WILD)])
      : pick(['F32', 'F16', 'BF16', 'I32', 'I64', 'U8', 'F64', 'F8_E4M3', 'f32', 7, null]);
    e[field] = v;
    return [`${name}.${field} = ${JSON.stringify(v)}`, withHeader(base, JSON.stringify(h))];
  }
  if (kind === 5) {
    // A name (or a field, or __metadata__) written twice: JSON.parse would take the last.
    const text = JSON.stringify(h);
    const dup = pick(['name', 'field', 'metadata']);
    const mutated =
      dup === 'name' ? text.replace('{', `{${JSON.stringify(name)}:${JSON.stringify(e)},`)
      : dup === 'field' ? text.replace('"dtype":', '"dtype":"I32","dtype":')
      : text.replace('{', `{"__metadata__":{"config":"{}"},`);
    return [`duplicate ${dup}`, withHeader(base, mutated)];
  }
  if (kind === 6) {
    // Another tensor over the same bytes, or one removed (a hole), or an extra one past the end.
    const other = pick(['alias', 'remove', 'past']);
    if (other === 'alias') h[`${name}.alias`] = { ...e };
    else if (other === 'remove') delete h[name];
    else h.extra = { dtype: 'F32', shape: [4], data_offsets: [base.length, base.length + 16] };
    return [`${other} ${name}`, withHeader(base, JSON.stringify(h))];
  }
  if (kind === 7) {
    const meta = h.__metadata__ as Record<string, unknown>;
    const config = pick(['{', '[]', 'null', '{"a":1,"a":2}', `{"model":${'['.repeat(5000)}${']'.repeat(5000)}}`, `{"kind":"${'x'.repeat(100_000)}"`, '\ufeff{}']);
    if (r() < 0.3) meta.config = pick(WILD);
    else meta.config = config;
    return [`config = ${JSON.stringify(meta.config).slice(0, 40)}`, withHeader(base, JSON.stringify(h))];
  }
  // Text-level damage to the header JSON: a BOM, deep nesting, a cut, a huge string.
  const text = JSON.stringify(h);
  const damage = pick(['bom', 'deep', 'cut', 'huge', 'nul']);
  const mutated =
    damage === 'bom' ? `\ufeff${text}`
    : damage === 'deep' ? text.replace('{', `{"deep":${'['.repeat(200_000)}${']'.repeat(200_000)},`)
    : damage === 'cut' ? text.slice(0, int(text.length))
    : damage === 'huge' ? text.replace('{', `{${JSON.stringify('n'.repeat(500_000))}:1,`)
    : text.replace('"dtype"', '"dt\u0000ype"');
  return [`header text ${damage}`, withHeader(base, mutated)];
}

describe('fuzz: safetensors checkpoints', () => {
  const base = baseSafetensors();

  it(`${ITERS} mutated files through parseSafetensors and decodeCheckpoint, and some through the file reader`, async () => {
    const t0 = performance.now();
    for (let i = 0; i < ITERS; i++) {
      const [what, bytes] = mutateSafetensors(base);
      // Decoded tensors may be up to 4x the file (U8 widened to Int32), plus the header's strings.
      const limit = 12 * bytes.length + (4 << 20);
      await fuzzCase(`case ${i} (${what}), parse`, () => decodeCheckpoint(bytes, 'fuzz'), limit, '');
      if (i % 10 === 0) {
        const path = join(tmp, `case-${i}.safetensors`);
        writeFileSync(path, bytes);
        await fuzzCase(`case ${i} (${what}), file`, () => readCheckpointFile(path), limit);
        rmSync(path);
      }
    }
    console.log(`fuzz safetensors: ${tally.cases} cases, ${tally.errors} errors, slowest ${tally.slowestMs.toFixed(0)} ms, ${((performance.now() - t0) / 1000).toFixed(1)} s in all (seed ${SEED})`);
  });

  it('every truncation of a small file fails cleanly', async () => {
    const small = baseSafetensors();
    for (let len = 0; len < small.length; len++) await fuzzCase(`truncated to ${len}`, () => parseSafetensors(small.subarray(0, len)), 4 << 20);
  });
});

// ------------------------------------------------------------------ PNG

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Chunk starts (offset of the length field) of a PNG, as far as they can be followed. */
function chunks(png: Uint8Array): number[] {
  const v = new DataView(png.buffer, png.byteOffset, png.length);
  const out: number[] = [];
  for (let at = 8; at + 12 <= png.length; at += 12 + v.getUint32(at)) out.push(at);
  return out;
}

/** Recompute a chunk's CRC so that a mutation reaches the decoder's deeper checks. */
function fixCrc(png: Uint8Array, at: number): void {
  const v = new DataView(png.buffer, png.byteOffset, png.length);
  const len = v.getUint32(at);
  if (at + 12 + len > png.length) return;
  v.setUint32(at + 8 + len, crc32(png.subarray(at + 4, at + 8 + len)));
}

function basePngs(): Uint8Array[] {
  return ([[5, 3, 1], [4, 4, 3], [3, 7, 4], [16, 16, 3]] as const).map(([w, h, c]) => encodePng(Uint8Array.from({ length: w * h * c }, () => int(256)), w, h, c));
}

function mutatePng(base: Uint8Array): [string, Uint8Array] {
  const b = new Uint8Array(base);
  const v = new DataView(b.buffer);
  const cs = chunks(b);
  const kind = int(5);
  if (kind === 0) {
    const len = int(base.length);
    return [`truncated to ${len}`, base.slice(0, len)];
  }
  if (kind === 1) {
    const i = int(b.length);
    b[i] = int(256);
    const fixed = r() < 0.7;
    if (fixed) for (const at of cs) fixCrc(b, at);
    return [`byte ${i} changed${fixed ? ', CRCs fixed' : ''}`, b];
  }
  if (kind === 2) {
    // IHDR (the first chunk): width, height, depth, colour type, interlace.
    const field = pick(['width', 'height', 'depth', 'colour', 'interlace'] as const);
    const value = field === 'width' || field === 'height' ? pick([0, 1, 2 ** 31 - 1, 2 ** 32 - 1, 65536, 100_000]) : pick([0, 1, 2, 3, 4, 6, 8, 16, 255]);
    const off = { width: 16, height: 20, depth: 24, colour: 25, interlace: 28 }[field];
    if (field === 'width' || field === 'height') v.setUint32(off, value >>> 0);
    else b[off] = value;
    fixCrc(b, 8);
    return [`IHDR ${field} = ${value}`, b];
  }
  if (kind === 3) {
    const at = pick(cs);
    const value = pick([0, 1, 2 ** 31, 2 ** 32 - 1, v.getUint32(at) + 1, Math.max(0, v.getUint32(at) - 1)]);
    v.setUint32(at, value >>> 0);
    return [`chunk at ${at} claims length ${value}`, b];
  }
  // An extra chunk (palette, transparency, text, unknown) before IDAT, with a valid CRC.
  const type = pick(['PLTE', 'tRNS', 'tEXt', 'iCCP', 'zzZz', 'IEND']);
  const body = Uint8Array.from({ length: int(40) }, () => int(256));
  const chunk = new Uint8Array(12 + body.length);
  const cv = new DataView(chunk.buffer);
  cv.setUint32(0, body.length);
  chunk.set(new TextEncoder().encode(type), 4);
  chunk.set(body, 8);
  cv.setUint32(8 + body.length, crc32(chunk.subarray(4, 8 + body.length)));
  const at = cs[1] ?? 33;
  const out = new Uint8Array(b.length + chunk.length);
  out.set(b.subarray(0, at));
  out.set(chunk, at);
  out.set(b.subarray(at), at + chunk.length);
  return [`extra ${type} chunk of ${body.length} bytes`, out];
}

/** A PNG's decoded pixels cannot exceed deflate's 1032:1 ratio over the file, plus small tables. */
const pngLimit = (bytes: Uint8Array) => 1100 * bytes.length * 4 + (4 << 20);

describe('fuzz: PNG images', () => {
  const bases = basePngs();
  it(`${ITERS} mutated PNGs through decodePng`, async () => {
    const t0 = performance.now();
    const before = { ...tally };
    for (let i = 0; i < ITERS; i++) {
      const base = bases[i % bases.length]!;
      const [what, bytes] = mutatePng(base);
      await fuzzCase(`png ${i} (${what})`, () => decodePng(bytes), pngLimit(bytes), 'decodePng: ');
    }
    console.log(`fuzz png: ${tally.cases - before.cases} cases, ${tally.errors - before.errors} errors, ${((performance.now() - t0) / 1000).toFixed(1)} s (seed ${SEED})`);
  });
});

// ------------------------------------------------------------------ dataset folders

describe('fuzz: dataset folders', () => {
  it('folders with damaged PNGs, empty files, folders named .png, symlink loops and dangling links load or fail cleanly', async () => {
    const good = basePngs();
    const damages: [string, (dir: string) => void][] = [
      ['damaged png', (d) => writeFileSync(join(d, 'a', 'bad.png'), mutatePng(pick(good))[1])],
      ['empty png', (d) => writeFileSync(join(d, 'b', 'empty.png'), new Uint8Array(0))],
      ['folder named .png', (d) => mkdirSync(join(d, 'a', 'dir.png'))],
      ['symlink loop to the root', (d) => symlinkSync(d, join(d, 'a', 'loop'))],
      ['symlink loop to itself', (d) => symlinkSync(join(d, 'b', 'self'), join(d, 'b', 'self'))],
      ['dangling symlink', (d) => symlinkSync(join(d, 'nowhere.png'), join(d, 'a', 'gone.png'))],
      ['class folder without PNGs', (d) => mkdirSync(join(d, 'c'))],
      ['text file', (d) => writeFileSync(join(d, 'a', 'notes.txt'), 'hello')],
      ['huge claimed PNG', (d) => {
        const b = new Uint8Array(good[0]!);
        new DataView(b.buffer).setUint32(16, 2 ** 31 - 1);
        fixCrc(b, 8);
        writeFileSync(join(d, 'a', 'huge.png'), b);
      }],
    ];
    const rounds = Math.max(damages.length * 2, Math.round(ITERS / 10));
    for (let i = 0; i < rounds; i++) {
      const dir = join(tmp, `folder-${i}`);
      for (const c of ['a', 'b']) mkdirSync(join(dir, c), { recursive: true });
      good.forEach((p, k) => writeFileSync(join(dir, k % 2 ? 'a' : 'b', `img${k}.png`), p));
      // Each folder gets one or two damages, every damage at least twice over the rounds.
      const picked = [damages[i % damages.length]!, ...(r() < 0.5 ? [pick(damages)] : [])];
      for (const [, make] of picked) {
        try {
          make(dir);
        } catch {
          /* the same damage twice in one folder */
        }
      }
      const what = picked.map(([d]) => d).join(' + ');
      for (const labels of [false, true]) await fuzzCase(`folder ${i} (${what}), labels ${labels}`, () => loadImageFolder(dir, { size: 8, channels: 3, labels }), 64 << 20, 'folder: ');
    }
  });
});
