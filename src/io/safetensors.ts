/**
 * safetensors reading and writing (https://github.com/huggingface/safetensors), in plain TypeScript
 * so it runs in the browser and in Node alike.
 *
 * Layout: u64 little-endian header length N, then N bytes of UTF-8 JSON
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: { k: v } }`, then the data
 * section; offsets are relative to the data section's start. The header is untrusted input: every
 * number in it is checked against the bytes that exist before anything is sized from it.
 */

export type SafeDType = 'F32' | 'F16' | 'BF16' | 'I32' | 'I64' | 'U8' | 'F64';

export interface SafeTensor {
  /** The dtype as stored in the file; `data` is Float32Array for float dtypes, Int32Array otherwise. */
  dtype: SafeDType;
  shape: number[];
  data: Float32Array | Int32Array;
}

export interface SafeHeaderEntry {
  name: string;
  dtype: SafeDType;
  shape: number[];
  /** Byte range [begin, end) relative to the start of the data section. */
  begin: number;
  end: number;
}

export interface SafeHeader {
  /** Sorted by `begin`: the order the bytes lie in the file. */
  entries: SafeHeaderEntry[];
  metadata: Record<string, string>;
  /** Absolute offset of the data section: 8 + header length. */
  dataStart: number;
}

export type SafeTensorInput = { readonly shape: readonly number[]; readonly data: Float32Array | Int32Array };

export class SafetensorsError extends Error {
  constructor(message: string) {
    super(`safetensors: ${message}`);
    this.name = 'SafetensorsError';
  }
}

const DTYPE_BYTES: Record<SafeDType, number> = { F32: 4, F16: 2, BF16: 2, I32: 4, I64: 8, U8: 1, F64: 8 };
const DTYPES = Object.keys(DTYPE_BYTES) as SafeDType[];

/** The reference implementation's cap (MAX_HEADER_SIZE); a larger claim is corruption, not a header. */
export const MAX_HEADER_BYTES = 100_000_000;

const METADATA_KEY = '__metadata__';

const fmt = (s: readonly unknown[]): string => `[${s.join(', ')}]`;

/** Longest piece of an untrusted value quoted in an error: a hostile file must not make a huge message. */
const QUOTE_CHARS = 200;

/**
 * An untrusted JSON value for an error message, cut to `max` characters. JSON.stringify recurses, so a
 * deeply nested value throws RangeError: that is caught and described instead.
 */
export function quote(v: unknown, max = QUOTE_CHARS): string {
  let s: string;
  try {
    s = typeof v === 'string' && v.length > max ? JSON.stringify(v.slice(0, max)) : (JSON.stringify(v) ?? String(v));
  } catch {
    s = Array.isArray(v) ? '[deeply nested array]' : '{deeply nested object}';
  }
  const long = typeof v === 'string' ? v.length > max : s.length > max;
  return long ? `${s.slice(0, max)}… (cut)` : s;
}

/** Text cut to QUOTE_CHARS characters. */
const cut = (s: string): string => (s.length > QUOTE_CHARS ? `${s.slice(0, QUOTE_CHARS)}… (cut)` : s);

/** A tensor or metadata name for a message, in quotes, cut to QUOTE_CHARS / 2 characters. */
const nm = (name: string): string => `'${name.length > QUOTE_CHARS / 2 ? `${name.slice(0, QUOTE_CHARS / 2)}…` : name}'`;

/**
 * Nesting deeper than any safetensors header needs (entries are 3 deep) is refused before it reaches
 * anything recursive; the reference reader (serde_json) stops at 128.
 */
const MAX_JSON_DEPTH = 64;

/**
 * Checks JSON text (already known to parse) for what JSON.parse accepts silently: a key repeated in
 * one object (JSON.parse keeps the last; the reference reader refuses it) and nesting deeper than
 * MAX_JSON_DEPTH. One linear scan; only keys are decoded.
 */
export function checkJsonText(text: string, where: string, makeError: (m: string) => Error = (m) => new SafetensorsError(m)): void {
  const stack: (Set<string> | null)[] = []; // a Set of seen keys per open object, null per open array
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 0x22 /* " */) {
      let j = i + 1;
      while (text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1;
      const top = stack[stack.length - 1];
      if (top && expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string; // decodes escapes: "a" and "\u0061" are one key
        if (top.has(key)) throw makeError(`${where}: key ${quote(key)} appears twice in one object, so which value is meant is ambiguous`);
        top.add(key);
        expectKey = false;
      }
      i = j;
    } else if (ch === 0x7b /* { */ || ch === 0x5b /* [ */) {
      stack.push(ch === 0x7b ? new Set() : null);
      expectKey = ch === 0x7b;
      if (stack.length > MAX_JSON_DEPTH) throw makeError(`${where}: JSON nested more than ${MAX_JSON_DEPTH} levels deep`);
    } else if (ch === 0x7d /* } */ || ch === 0x5d /* ] */) {
      stack.pop();
    } else if (ch === 0x2c /* , */) {
      expectKey = stack[stack.length - 1] instanceof Set;
    }
  }
}

/** Element count; a zero dim wins over overflow, so [huge, huge, 0] is 0 and never NaN. */
function numel(shape: readonly number[]): number {
  return shape.includes(0) ? 0 : shape.reduce((a, b) => a * b, 1);
}

/**
 * Reads and checks the u64 header length from the first 8 bytes, against the cap and the file size,
 * so a caller knows how many bytes to read next without trusting the file.
 */
export function safetensorsHeaderLength(first: Uint8Array, fileSize: number): number {
  if (first.length < 8 || fileSize < 8) {
    throw new SafetensorsError(
      `file is ${Math.min(first.length, fileSize)} bytes, shorter than the 8-byte header length field`,
    );
  }
  const view = new DataView(first.buffer, first.byteOffset, 8);
  // Two u32 halves rather than BigInt: the value is compared before it is used as a size.
  const n = view.getUint32(4, true) * 2 ** 32 + view.getUint32(0, true);
  if (n > MAX_HEADER_BYTES) {
    throw new SafetensorsError(`header length field claims ${n} bytes, more than the ${MAX_HEADER_BYTES}-byte limit (file of ${fileSize} bytes); the file is corrupt or not safetensors`);
  }
  if (8 + n > fileSize) {
    throw new SafetensorsError(`header length field claims ${n} bytes, but the file has only ${fileSize - 8} bytes after the length field`);
  }
  return n;
}

function parseEntry(name: string, raw: unknown, dataSize: number): SafeHeaderEntry {
  const where = `tensor ${nm(name)}`;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new SafetensorsError(`${where}: header entry is ${quote(raw)}, expected an object with dtype, shape, data_offsets`);
  }
  const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
  if (dtype === undefined || shape === undefined || offsets === undefined) {
    const missing = (['dtype', 'shape', 'data_offsets'] as const).filter((k) => (raw as Record<string, unknown>)[k] === undefined);
    throw new SafetensorsError(`${where}: header entry is missing ${missing.join(', ')}`);
  }
  if (typeof dtype !== 'string' || !(DTYPES as string[]).includes(dtype)) {
    throw new SafetensorsError(`${where}: dtype ${quote(dtype)} is not supported; expected one of ${DTYPES.join(', ')}`);
  }
  const isCount = (d: unknown): d is number => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0;
  if (!Array.isArray(shape) || !shape.every(isCount)) {
    throw new SafetensorsError(`${where}: shape ${quote(shape)} is not a list of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
    throw new SafetensorsError(`${where}: data_offsets ${quote(offsets)} is not a pair [begin, end] of non-negative integers`);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) throw new SafetensorsError(`${where}: data_offsets [${begin}, ${end}] has begin > end`);
  if (end > dataSize) {
    throw new SafetensorsError(`${where}: data_offsets [${begin}, ${end}] run past the data section of ${dataSize} bytes`);
  }
  const want = numel(shape) * DTYPE_BYTES[dtype as SafeDType];
  if (end - begin !== want) {
    throw new SafetensorsError(`${where}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes, but shape ${cut(fmt(shape))} of ${dtype} needs ${want} bytes`);
  }
  return { name, dtype: dtype as SafeDType, shape: [...shape], begin, end };
}

/**
 * Parses the header from the first bytes of a file of `fileSize` bytes. `first` must hold at least
 * 8 + N bytes (see safetensorsHeaderLength); the data section itself is not needed.
 */
export function parseSafetensorsHeader(first: Uint8Array, fileSize: number): SafeHeader {
  const n = safetensorsHeaderLength(first, fileSize);
  if (first.length < 8 + n) {
    throw new SafetensorsError(`need the first ${8 + n} bytes to read the header, got ${first.length}`);
  }
  // The reference reader refuses a byte-order mark, and TextDecoder would silently drop it.
  if (first[8] === 0xef && first[9] === 0xbb && first[10] === 0xbf) {
    throw new SafetensorsError('header starts with a UTF-8 byte-order mark; a safetensors header is plain UTF-8 JSON without one');
  }
  let json: unknown;
  let text: string;
  try {
    // fatal: invalid UTF-8 is corruption, not something to paper over with U+FFFD.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(first.subarray(8, 8 + n));
    json = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(`header (${n} bytes) is not valid UTF-8 JSON: ${(e as Error).message.slice(0, QUOTE_CHARS)}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new SafetensorsError(`header is ${Array.isArray(json) ? 'an array' : quote(json)}, expected a JSON object`);
  }
  checkJsonText(text, 'header');
  const dataSize = fileSize - 8 - n;
  const metadata: Record<string, string> = {};
  const entries: SafeHeaderEntry[] = [];
  for (const [name, raw] of Object.entries(json)) {
    if (name !== METADATA_KEY) {
      entries.push(parseEntry(name, raw, dataSize));
      continue;
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw new SafetensorsError(`${METADATA_KEY} is ${quote(raw)}, expected an object of strings`);
    }
    for (const [k, v] of Object.entries(raw)) {
      if (typeof v !== 'string') {
        throw new SafetensorsError(`${METADATA_KEY}[${nm(k)}] is ${quote(v)}, expected a string`);
      }
      // defineProperty: a key named "__proto__" stays a plain key.
      Object.defineProperty(metadata, k, { value: v, enumerable: true, writable: true, configurable: true });
    }
  }
  // The format requires the data section to be covered exactly: no overlaps, no holes, no tail.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  let prev = '';
  for (const e of entries) {
    if (e.begin < at) {
      throw new SafetensorsError(`tensor ${nm(e.name)} bytes [${e.begin}, ${e.end}) overlap tensor ${nm(prev)} which ends at ${at}`);
    }
    if (e.begin > at) {
      throw new SafetensorsError(`tensor ${nm(e.name)} starts at byte ${e.begin}, leaving a hole of ${e.begin - at} bytes after ${prev ? `tensor ${nm(prev)}` : 'the start of the data section'} (ends at ${at}); the data section must be fully indexed`);
    }
    at = e.end;
    prev = e.name;
  }
  if (at !== dataSize) {
    throw new SafetensorsError(`tensors cover ${at} bytes of the data section, but it holds ${dataSize} bytes; ${dataSize - at} bytes are not indexed`);
  }
  return { entries, metadata, dataStart: 8 + n };
}

/** float16 bits -> number: subnormals (exp 0) have no implicit 1, exp 31 is inf/NaN. */
export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

const littleEndianHost = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * One tensor's values from bytes that hold its data at `start + e.begin` (the whole file with start =
 * dataStart, or just the tensor's own bytes with start = -e.begin): a fresh array, never a view.
 */
export function decodeSafetensor(e: SafeHeaderEntry, bytes: Uint8Array, start: number): Float32Array | Int32Array {
  return decode(e, bytes, start);
}

function decode(e: SafeHeaderEntry, bytes: Uint8Array, start: number): Float32Array | Int32Array {
  const count = numel(e.shape);
  const view = new DataView(bytes.buffer, bytes.byteOffset + start + e.begin, e.end - e.begin);
  switch (e.dtype) {
    case 'F32':
    case 'I32': {
      // Copy to a fresh buffer: the source offset need not be 4-aligned, and the result must not alias.
      const Ctor = e.dtype === 'F32' ? Float32Array : Int32Array;
      // (A Node Buffer's slice() is a view of the whole pool, not a copy: copy through the Uint8Array constructor.)
      if (littleEndianHost) return new Ctor(new Uint8Array(bytes.subarray(start + e.begin, start + e.end)).buffer);
      const out = new Ctor(count);
      for (let i = 0; i < count; i++) out[i] = e.dtype === 'F32' ? view.getFloat32(4 * i, true) : view.getInt32(4 * i, true);
      return out;
    }
    case 'F16': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = f16ToF32(view.getUint16(2 * i, true));
      return out;
    }
    case 'BF16': {
      // bfloat16 is the top half of a float32, so widening is exact.
      const out = new Float32Array(count);
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) u[i] = view.getUint16(2 * i, true) << 16;
      return out;
    }
    case 'F64': {
      const out = new Float32Array(count); // rounds to nearest float32, as a cast would
      for (let i = 0; i < count; i++) out[i] = view.getFloat64(8 * i, true);
      return out;
    }
    case 'I64': {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) {
        const v = view.getBigInt64(8 * i, true);
        if (v < -0x80000000n || v > 0x7fffffffn) {
          throw new SafetensorsError(`tensor ${nm(e.name)}: I64 element ${i} is ${v}, outside the int32 range it is read into`);
        }
        out[i] = Number(v);
      }
      return out;
    }
    case 'U8': {
      return Int32Array.from(bytes.subarray(start + e.begin, start + e.end));
    }
  }
}

export function parseSafetensors(bytes: Uint8Array): { tensors: Map<string, SafeTensor>; metadata: Record<string, string> } {
  const header = parseSafetensorsHeader(bytes, bytes.length);
  const tensors = new Map<string, SafeTensor>();
  for (const e of header.entries) {
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: decode(e, bytes, header.dataStart) });
  }
  return { tensors, metadata: header.metadata };
}

/**
 * Writes F32 for Float32Array and I32 for Int32Array, tensors in name order with contiguous offsets,
 * the header padded with spaces to a multiple of 8 bytes as the reference writer does (so the data
 * section starts aligned).
 */
export function serializeSafetensors(
  tensors: Record<string, SafeTensorInput> | Map<string, SafeTensorInput>,
  metadata?: Record<string, string>,
): Uint8Array {
  const list = [...(tensors instanceof Map ? tensors.entries() : Object.entries(tensors))];
  list.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  // The header JSON is built by hand: a JS object would reorder integer-like keys such as "0".
  const parts: string[] = [];
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new SafetensorsError(`metadata['${k}'] is ${JSON.stringify(v)}, expected a string`);
    }
    parts.push(`${JSON.stringify(METADATA_KEY)}:${JSON.stringify(metadata)}`);
  }
  let offset = 0;
  for (const [name, t] of list) {
    if (name === METADATA_KEY) throw new SafetensorsError(`'${METADATA_KEY}' is reserved and cannot name a tensor`);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(`tensor '${name}': shape ${fmt(t.shape)} is not a list of non-negative integers`);
    }
    const isF32 = t.data instanceof Float32Array;
    if (!isF32 && !(t.data instanceof Int32Array)) {
      throw new SafetensorsError(`tensor '${name}': data is ${Object.prototype.toString.call(t.data)}, expected Float32Array or Int32Array`);
    }
    if (t.data.length !== numel(t.shape)) {
      throw new SafetensorsError(`tensor '${name}': data has ${t.data.length} elements, but shape ${fmt(t.shape)} has ${numel(t.shape)}`);
    }
    const end = offset + t.data.byteLength;
    const entry = { dtype: isF32 ? 'F32' : 'I32', shape: [...t.shape], data_offsets: [offset, end] };
    parts.push(`${JSON.stringify(name)}:${JSON.stringify(entry)}`);
    offset = end;
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const n = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + n + offset);
  const view = new DataView(out.buffer);
  view.setUint32(0, n % 2 ** 32, true);
  view.setUint32(4, Math.floor(n / 2 ** 32), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + n);
  let at = 8 + n;
  for (const [, t] of list) {
    if (littleEndianHost) {
      out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    } else {
      for (let i = 0; i < t.data.length; i++) {
        if (t.data instanceof Float32Array) view.setFloat32(at + 4 * i, t.data[i]!, true);
        else view.setInt32(at + 4 * i, t.data[i]!, true);
      }
    }
    at += t.data.byteLength;
  }
  return out;
}
