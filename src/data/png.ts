// PNG I/O and two small image helpers (grid tiling, area resampling). Browser and Node: no node:*
// imports. Encoding/decoding is fast-png (pure JS over fflate); this file normalises what it returns
// to 8-bit interleaved pixels so callers never see bit depths, palettes or colour keys.
import { decode, encode, type DecodedPng } from 'fast-png';

export type Channels = 1 | 2 | 3 | 4;
export interface Image8 {
  width: number;
  height: number;
  /** 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA (palette images become 3 or 4). */
  channels: Channels;
  /** Interleaved, row-major, 8 bits per sample. */
  data: Uint8Array;
}

/** Encodes 8-bit interleaved pixels (grey, RGB or RGBA) as a PNG. */
export function encodePng(pixels: Uint8Array, width: number, height: number, channels: 1 | 3 | 4): Uint8Array {
  if (pixels.length !== width * height * channels) {
    throw new Error(`encodePng: got ${pixels.length} bytes, wanted width*height*channels = ${width}*${height}*${channels} = ${width * height * channels}`);
  }
  return encode({ width, height, data: pixels, depth: 8, channels });
}

const PNG_SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

/** Decodes any still PNG to 8 bits per sample: 16-bit is rounded down to 8, 1/2/4-bit samples are
 * unpacked and scaled, palettes become RGB(A), and a tRNS colour key becomes an alpha channel. */
export function decodePng(bytes: Uint8Array): Image8 {
  if (bytes.length < 33 || PNG_SIGNATURE.some((b, i) => bytes[i] !== b)) throw new Error('decodePng: not a PNG (bad signature)');
  checkHeader(bytes);
  let png: DecodedPng;
  try {
    // CRCs checked: a damaged file is named as such rather than decoded into other pixels.
    png = decode(bytes, { checkCrc: true });
  } catch (e) {
    // fast-png reports a read past the end as a RangeError from DataView, and some checks as RangeError too.
    const m = (e as Error).message;
    throw new Error(`decodePng: corrupt PNG (${/outside the bounds/.test(m) ? 'the file ends inside a chunk' : m.slice(0, 200)})`);
  }
  const { width, height, depth } = png;
  // fast-png unpacks Adam7 passes assuming whole bytes per pixel, which is wrong below 8 bits.
  if (depth < 8 && bytes[28] === 1) {
    throw new Error(`decodePng: interlaced PNG with ${depth}-bit samples is not supported; re-save it non-interlaced or at 8 bits`);
  }
  const samples = unpackSamples(png);
  const n = width * height;

  if (png.palette) {
    const pal = png.palette;
    const c = pal.some((p) => p.length === 4) ? 4 : 3;
    const data = new Uint8Array(n * c);
    for (let i = 0; i < n; i++) {
      const entry = pal[samples[i]!];
      if (!entry) throw new Error(`decodePng: palette index ${samples[i]} out of range (palette has ${pal.length} entries)`);
      for (let k = 0; k < c; k++) data[i * c + k] = entry[k] ?? 255;
    }
    return { width, height, channels: c, data };
  }

  const max = (1 << depth) - 1;
  const to8 = (v: number) => (depth === 8 ? v : Math.round((v * 255) / max));
  const c = png.channels;
  const key = png.transparency; // tRNS on grey/RGB: this exact colour is fully transparent
  const addAlpha = key !== undefined && key.length > 0 && (c === 1 || c === 3);
  const outC = (addAlpha ? c + 1 : c) as Channels;
  const data = new Uint8Array(n * outC);
  for (let i = 0; i < n; i++) {
    let keyed = addAlpha;
    for (let k = 0; k < c; k++) {
      const v = samples[i * c + k]!;
      data[i * outC + k] = to8(v);
      if (addAlpha && v !== key[k]) keyed = false;
    }
    if (addAlpha) data[i * outC + c] = keyed ? 0 : 255;
  }
  return { width, height, channels: outC, data };
}

/**
 * The IHDR checked before anything is sized from it: fast-png allocates width·height·channels as the
 * header claims. Deflate expands at most 1032:1, so a header claiming more pixel bytes than that over
 * the file's size is lying (or the file is cut short), and is refused without the allocation.
 */
function checkHeader(bytes: Uint8Array): void {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const type = String.fromCharCode(...bytes.subarray(12, 16));
  if (v.getUint32(8) !== 13 || type !== 'IHDR') throw new Error(`decodePng: corrupt PNG (the first chunk is '${type.replace(/[^ -~]/g, '?')}' of ${v.getUint32(8)} bytes, expected IHDR of 13)`);
  const width = v.getUint32(16);
  const height = v.getUint32(20);
  const depth = bytes[24]!;
  const colour = bytes[25]!;
  const channels = ({ 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 } as Record<number, number>)[colour];
  if (!channels) throw new Error(`decodePng: corrupt PNG (colour type ${colour}; allowed values: 0, 2, 3, 4, 6)`);
  if (![1, 2, 4, 8, 16].includes(depth)) throw new Error(`decodePng: corrupt PNG (bit depth ${depth}; allowed values: 1, 2, 4, 8, 16)`);
  if (width < 1 || height < 1 || width > 2 ** 24 || height > 2 ** 24) throw new Error(`decodePng: corrupt PNG (size ${width}x${height})`);
  const raw = height * (1 + Math.ceil((width * channels * depth) / 8));
  if (raw > 1032 * bytes.length) {
    throw new Error(`decodePng: ${width}x${height} pixels need ${raw} bytes of image data, more than a ${bytes.length}-byte PNG can hold (the file is cut short or its header is corrupt)`);
  }
}

/** One number per sample, in the PNG's own bit depth (fast-png leaves sub-byte rows packed); at
 * least width·height·channels of them, so the callers' reads below that are in range. */
function unpackSamples(png: DecodedPng): ArrayLike<number> {
  const { width, height, depth, channels } = png;
  const perRow = width * channels;
  const rowBytes = depth >= 8 ? perRow : Math.ceil((perRow * depth) / 8);
  // fast-png sizes its output from the header; checked here rather than trusted, as a short buffer
  // would read as undefined (NaN pixels) rather than fail.
  if (png.data.length < rowBytes * height) {
    throw new Error(`decodePng: corrupt PNG (${png.data.length} ${depth >= 8 ? 'samples' : 'bytes'} of image data decoded, ${width}x${height}x${channels} at ${depth} bits needs ${rowBytes * height})`);
  }
  if (depth >= 8) return png.data;
  const out = new Uint8Array(perRow * height);
  const mask = (1 << depth) - 1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < perRow; x++) {
      const bit = x * depth;
      const byte = png.data[y * rowBytes + (bit >> 3)]!;
      out[y * perRow + x] = (byte >> (8 - depth - (bit & 7))) & mask;
    }
  }
  return out;
}

export interface GridOptions {
  /** Images per row; default ceil(sqrt(N)). */
  cols?: number;
  /** Pixels of black between tiles and around the border; default 2. */
  pad?: number;
  /** Value range mapped to 0..255, clamped; default [-1, 1]. */
  range?: [number, number];
  /** Each image pixel becomes scale x scale output pixels (nearest), so small images can be seen; default 1. */
  scale?: number;
}

/** An upscale that makes tiles of `size` pixels about 64 pixels wide: for grids meant to be looked at. */
export function viewScale(size: number): number {
  return Math.max(1, Math.floor(64 / size));
}

/** Tiles N images [N,C,H,W] (C = 1, 3 or 4) into one interleaved 8-bit image, row-major: image i
 * goes to row floor(i/cols), column i%cols. */
export function imagesToGrid(
  images: Float32Array,
  shape: [number, number, number, number],
  opts: GridOptions = {},
): { pixels: Uint8Array; width: number; height: number; channels: 1 | 3 | 4 } {
  const [N, C, H, W] = shape;
  if (C !== 1 && C !== 3 && C !== 4) throw new Error(`imagesToGrid: channels must be 1, 3 or 4, got shape [${shape}]`);
  if (images.length !== N * C * H * W) throw new Error(`imagesToGrid: ${images.length} values do not match shape [${shape}]`);
  const cols = Math.max(1, Math.min(opts.cols ?? Math.ceil(Math.sqrt(N)), N));
  const rows = Math.ceil(N / cols);
  const pad = opts.pad ?? 2;
  const [lo, hi] = opts.range ?? [-1, 1];
  const k = opts.scale ?? 1;
  if (!(Number.isInteger(k) && k >= 1)) throw new Error(`imagesToGrid: scale must be a positive integer, got ${k}`);
  const width = cols * (W * k + pad) + pad;
  const height = rows * (H * k + pad) + pad;
  const pixels = new Uint8Array(width * height * C);
  for (let i = 0; i < N; i++) {
    const x0 = pad + (i % cols) * (W * k + pad);
    const y0 = pad + Math.floor(i / cols) * (H * k + pad);
    for (let c = 0; c < C; c++) {
      for (let y = 0; y < H * k; y++) {
        for (let x = 0; x < W * k; x++) {
          const v = (images[((i * C + c) * H + Math.floor(y / k)) * W + Math.floor(x / k)]! - lo) / (hi - lo);
          pixels[((y0 + y) * width + x0 + x) * C + c] = Math.round(Math.min(1, Math.max(0, v)) * 255);
        }
      }
    }
  }
  return { pixels, width, height, channels: C };
}

/** imagesToGrid, encoded as PNG bytes. */
export function gridPng(images: Float32Array, shape: [number, number, number, number], opts: GridOptions = {}): Uint8Array {
  const g = imagesToGrid(images, shape, opts);
  return encodePng(g.pixels, g.width, g.height, g.channels);
}

/** For each destination index, the source indices and overlap weights of the interval that the
 * destination pixel covers: dst pixel d covers source [x0 + d*step, x0 + (d+1)*step). Source
 * pixels outside [0, srcLen) contribute nothing (they read as 0). Weights are normalised by step,
 * so a uniform source of value v gives v wherever the interval is fully inside. */
function boxWeights(srcLen: number, dstLen: number, x0: number, step: number): { idx: number[]; w: number[] }[] {
  const out: { idx: number[]; w: number[] }[] = [];
  for (let d = 0; d < dstLen; d++) {
    const a = x0 + d * step;
    const b = a + step;
    const idx: number[] = [];
    const w: number[] = [];
    for (let s = Math.max(0, Math.floor(a)); s < Math.min(srcLen, Math.ceil(b)); s++) {
      const overlap = Math.min(b, s + 1) - Math.max(a, s);
      if (overlap > 0) {
        idx.push(s);
        w.push(overlap / step);
      }
    }
    out.push({ idx, w });
  }
  return out;
}

/** Area-average (box filter) resampling of the source rectangle [x0, x1) x [y0, y1) (in source pixel
 * units, may extend past the edges, which read as 0) of a planar [C, srcH, srcW] image onto a planar
 * [C, dstH, dstW] grid. Each output is the exact mean of the source over its footprint, so
 * downsampling anti-aliases and the total ink is preserved. */
export function resampleArea(
  src: ArrayLike<number>,
  C: number,
  srcH: number,
  srcW: number,
  rect: { x0: number; y0: number; x1: number; y1: number },
  dstH: number,
  dstW: number,
  out: Float32Array = new Float32Array(C * dstH * dstW),
): Float32Array {
  if (src.length < C * srcH * srcW) {
    throw new Error(`resampleArea: source has ${src.length} values, [C, srcH, srcW] = [${C}, ${srcH}, ${srcW}] needs ${C * srcH * srcW}`);
  }
  const wx = boxWeights(srcW, dstW, rect.x0, (rect.x1 - rect.x0) / dstW);
  const wy = boxWeights(srcH, dstH, rect.y0, (rect.y1 - rect.y0) / dstH);
  for (let c = 0; c < C; c++) {
    const plane = c * srcH * srcW;
    for (let y = 0; y < dstH; y++) {
      const ry = wy[y]!;
      for (let x = 0; x < dstW; x++) {
        const rx = wx[x]!;
        let acc = 0;
        for (let i = 0; i < ry.idx.length; i++) {
          const row = plane + ry.idx[i]! * srcW;
          let racc = 0;
          for (let j = 0; j < rx.idx.length; j++) racc += src[row + rx.idx[j]!]! * rx.w[j]!;
          acc += racc * ry.w[i]!;
        }
        out[(c * dstH + y) * dstW + x] = acc;
      }
    }
  }
  return out;
}
