// PNG I/O, the grid and area-resampling helpers, the built-in letters dataset and the image-folder
// dataset. Inputs are drawn fresh from a seed that changes every run and is printed on failure.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import { encode } from 'fast-png';
import { afterAll, describe, expect, it } from 'vitest';
import { loadImageFolder } from '../src/data/folder.js';
import { lettersCells, lettersFonts, makeLetters } from '../src/data/letters.js';
import { lettersDir, loadLettersGlyphs } from '../src/data/letters-node.js';
import { decodePng, encodePng, gridPng, imagesToGrid, resampleArea } from '../src/data/png.js';
import { movingAverage } from '../src/data/plot.js';
import { mulberry32 } from '../src/data/rng.js';

const SEED = (Date.now() ^ (Math.random() * 2 ** 32)) >>> 0;
const rand = mulberry32(SEED);
const randBytes = (n: number, max = 256) => Uint8Array.from({ length: n }, () => Math.floor(rand() * max));
const why = `seed ${SEED}`;

/** A PNG built by hand from unfiltered scanlines, each row filtered with filters[y % 5], so the
 * decoder's five unfilter paths run (fast-png's own encoder writes filter 0 only). */
function handPng(width: number, height: number, depth: number, colorType: number, rows: Uint8Array[], extra: [string, Uint8Array][] = []): Uint8Array {
  const chunk = (type: string, data: Uint8Array) => {
    const td = new Uint8Array(4 + data.length);
    td.set(Buffer.from(type, 'latin1'));
    td.set(data, 4);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.set(td, 4);
    out.writeUInt32BE(crc32(td), 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([depth, colorType, 0, 0, 0], 8);
  const samplesPerPx = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colorType]!;
  const bpp = Math.max(1, (samplesPerPx * depth) / 8);
  const raw: number[] = [];
  rows.forEach((row, y) => {
    const f = y % 5;
    const up = y > 0 ? rows[y - 1]! : new Uint8Array(row.length);
    raw.push(f);
    for (let i = 0; i < row.length; i++) {
      const a = i >= bpp ? row[i - bpp]! : 0;
      const b = up[i]!;
      const c = i >= bpp ? up[i - bpp]! : 0;
      const p = a + b - c;
      const paeth = Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c) ? a : Math.abs(p - b) <= Math.abs(p - c) ? b : c;
      const pred = [0, a, b, (a + b) >> 1, paeth][f]!;
      raw.push((row[i]! - pred) & 255);
    }
  });
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk('IHDR', ihdr),
    ...extra.map(([t, d]) => chunk(t, d)),
    chunk('IDAT', deflateSync(Uint8Array.from(raw))),
    chunk('IEND', new Uint8Array(0)),
  ]);
}

describe('png', () => {
  // PNG is lossless: every round trip below must be bit-exact (tolerance 0).
  it.each([1, 3, 4] as const)('round trip %i-channel 8-bit is exact', (c) => {
    const w = 13, h = 7; // odd sizes so no row is a whole number of words
    const px = randBytes(w * h * c);
    const back = decodePng(encodePng(px, w, h, c));
    expect(back).toMatchObject({ width: w, height: h, channels: c });
    expect(Array.from(back.data), why).toEqual(Array.from(px));
  });

  it('decodes Adam7-interlaced 8-bit exactly', () => {
    const w = 11, h = 9;
    const px = randBytes(w * h * 3);
    const back = decodePng(encode({ width: w, height: h, data: px, channels: 3, depth: 8 }, { interlace: 'Adam7' }));
    expect(Array.from(back.data), why).toEqual(Array.from(px));
  });

  it('decodes palette PNGs (8-bit, and 2-bit packed with tRNS) to RGB / RGBA', () => {
    const w = 7, h = 5;
    const pal8 = Array.from({ length: 200 }, () => Array.from(randBytes(3)));
    const idx8 = randBytes(w * h, 200);
    const a = decodePng(encode({ width: w, height: h, data: idx8, channels: 1, depth: 8, palette: pal8 }));
    expect(a.channels).toBe(3);
    expect(Array.from(a.data), why).toEqual(Array.from(idx8).flatMap((i) => pal8[i]));

    // alpha < 255: fast-png's encoder drops opaque entries from tRNS, misaligning the rest (the
    // spec-correct case with opaque entries is the hand-built palette in the folder test)
    const pal2 = Array.from({ length: 4 }, () => [...randBytes(3), Math.floor(rand() * 255)]);
    const idx2 = randBytes(w * h, 4);
    const rowBytes = Math.ceil((w * 2) / 8);
    const packed = new Uint8Array(rowBytes * h);
    idx2.forEach((v, i) => {
      const y = Math.floor(i / w), x = i % w;
      packed[y * rowBytes + (x >> 2)]! |= v << (6 - 2 * (x & 3));
    });
    const b = decodePng(encode({ width: w, height: h, data: packed, channels: 1, depth: 2, palette: pal2 }));
    expect(b.channels).toBe(4);
    expect(Array.from(b.data), why).toEqual(Array.from(idx2).flatMap((i) => pal2[i]));
  });

  it('decodes 16-bit RGB to 8 bits as round(v * 255 / 65535)', () => {
    const w = 6, h = 4;
    const px = Uint16Array.from({ length: w * h * 3 }, () => Math.floor(rand() * 65536));
    const back = decodePng(encode({ width: w, height: h, data: px, channels: 3, depth: 16 }));
    expect(back.channels).toBe(3);
    expect(Array.from(back.data), why).toEqual(Array.from(px, (v) => Math.round((v * 255) / 65535)));
  });

  it('decodes a hand-built PNG: all five row filters, 16-bit grey+alpha', () => {
    const w = 5, h = 10; // 10 rows: each filter twice
    const rows = Array.from({ length: h }, () => randBytes(w * 4));
    const back = decodePng(handPng(w, h, 16, 4, rows));
    expect(back.channels).toBe(2);
    const want: number[] = [];
    for (const r of rows) for (let i = 0; i < r.length; i += 2) want.push(Math.round(((r[i]! * 256 + r[i + 1]!) * 255) / 65535));
    expect(Array.from(back.data), why).toEqual(want);
  });

  it('decodes 4-bit grey with a tRNS colour key to grey+alpha', () => {
    const w = 5, h = 5;
    const vals = randBytes(w * h, 16);
    vals[3] = 9; // the key occurs at least once
    const rows = Array.from({ length: h }, (_, y) => {
      const r = new Uint8Array(Math.ceil(w / 2));
      for (let x = 0; x < w; x++) r[x >> 1]! |= vals[y * w + x]! << (x & 1 ? 0 : 4);
      return r;
    });
    const back = decodePng(handPng(w, h, 4, 0, rows, [['tRNS', Uint8Array.from([0, 9])]]));
    expect(back.channels).toBe(2);
    expect(Array.from(back.data), why).toEqual(Array.from(vals).flatMap((v) => [v * 17, v === 9 ? 0 : 255]));
  });

  it('says what is wrong with bad input', () => {
    expect(() => decodePng(new Uint8Array(40))).toThrow(/not a PNG/);
    expect(() => encodePng(new Uint8Array(5), 2, 2, 1)).toThrow(/got 5 bytes, wanted .* = 4/);
  });

  it('imagesToGrid places image i at row i/cols, column i%cols, with black padding', () => {
    const [N, C, H, W] = [5, 3, 2, 3];
    const cols = 2, pad = 1;
    const imgs = Float32Array.from({ length: N * C * H * W }, () => rand() * 2.4 - 1.2); // some outside [-1, 1]
    const g = imagesToGrid(imgs, [N, C, H, W], { cols, pad });
    expect(g).toMatchObject({ width: cols * (W + pad) + pad, height: 3 * (H + pad) + pad, channels: 3 });
    const expected = new Uint8Array(g.width * g.height * C); // all padding (and the empty 6th slot) is 0
    for (let i = 0; i < N; i++) {
      for (let c = 0; c < C; c++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
        const v = imgs[((i * C + c) * H + y) * W + x]!;
        const gx = pad + (i % cols) * (W + pad) + x, gy = pad + Math.floor(i / cols) * (H + pad) + y;
        expected[(gy * g.width + gx) * C + c] = Math.round(Math.min(1, Math.max(0, (v + 1) / 2)) * 255);
      }
    }
    expect(Array.from(g.pixels), why).toEqual(Array.from(expected));
    expect(Array.from(decodePng(gridPng(imgs, [N, C, H, W], { cols, pad })).data)).toEqual(Array.from(expected));
    // range: [0, 1] maps 0.5 to 128
    expect(imagesToGrid(new Float32Array(4).fill(0.5), [1, 1, 2, 2], { pad: 0, range: [0, 1] }).pixels[0]).toBe(128);
    // scale 3: every pixel of the unscaled grid's tiles becomes a 3x3 block; padding stays `pad` wide.
    const s3 = imagesToGrid(imgs, [N, C, H, W], { cols, pad, scale: 3 });
    expect([s3.width, s3.height]).toEqual([cols * (3 * W + pad) + pad, 3 * (3 * H + pad) + pad]);
    for (let i = 0; i < N; i++) for (let y = 0; y < 3 * H; y++) for (let x = 0; x < 3 * W; x++) for (let c = 0; c < C; c++) {
      const gx = pad + (i % cols) * (3 * W + pad) + x, gy = pad + Math.floor(i / cols) * (3 * H + pad) + y;
      const ux = pad + (i % cols) * (W + pad) + Math.floor(x / 3), uy = pad + Math.floor(i / cols) * (H + pad) + Math.floor(y / 3);
      expect(s3.pixels[(gy * s3.width + gx) * C + c]).toBe(expected[(uy * g.width + ux) * C + c]);
    }
  });

  it('resampleArea halving equals the 2x2 block mean; a constant stays constant', () => {
    const [C, H, W] = [2, 8, 6];
    const src = Float32Array.from({ length: C * H * W }, () => rand());
    const out = resampleArea(src, C, H, W, { x0: 0, y0: 0, x1: W, y1: H }, H / 2, W / 2);
    for (let c = 0; c < C; c++) for (let y = 0; y < H / 2; y++) for (let x = 0; x < W / 2; x++) {
      const at = (yy: number, xx: number) => src[(c * H + yy) * W + xx]!;
      const mean = (at(2 * y, 2 * x) + at(2 * y, 2 * x + 1) + at(2 * y + 1, 2 * x) + at(2 * y + 1, 2 * x + 1)) / 4;
      // 1e-6: float32 rounding of four products in [0, 1]
      expect(Math.abs(out[(c * H / 2 + y) * W / 2 + x]! - mean), why).toBeLessThan(1e-6);
    }
    // arbitrary fractional footprint inside the image: a constant must come back exactly (1e-6, rounding)
    const k = resampleArea(new Float32Array(64).fill(0.7), 1, 8, 8, { x0: 0.3, y0: 1.1, x1: 7.2, y1: 6.9 }, 3, 5);
    for (const v of k) expect(Math.abs(v - 0.7)).toBeLessThan(1e-6);
    // a source shorter than [C, srcH, srcW] is an error, not NaN pixels
    expect(() => resampleArea(new Float32Array(63), 1, 8, 8, { x0: 0, y0: 0, x1: 8, y1: 8 }, 4, 4)).toThrow(/resampleArea: source has 63 values/);
  });
});

describe('letters', () => {
  const g = loadLettersGlyphs();
  const cells = lettersCells(g.glyphsPng, g.meta);
  const L = g.meta.letters.length;

  it('ships a small sheet that matches its metadata', () => {
    expect(g.meta.letters).toBe('ABCDEFGHIJKLMNOPQRSTUVWXYZ');
    expect(g.glyphsPng.length).toBeLessThan(600_000);
    expect(cells.length).toBe(g.meta.fonts.length * g.meta.weights.length * L);
    expect(lettersDir()).toMatch(/data[/\\]letters$/);
    expect(() => lettersDir(tmpdir())).toThrow(/glyphs\.png not found/);
  });

  it('every glyph in the sheet is non-blank, inside the cell and centred', () => {
    const n = g.meta.cell;
    const offsets: number[] = [];
    cells.forEach((c, i) => {
      const where = `glyph ${i} (font ${g.meta.fonts[Math.floor(i / L / g.meta.weights.length)]!.name}, ${g.meta.letters[i % L]})`;
      let ink = 0, sx = 0, sy = 0, x0 = n, x1 = -1, y0 = n, y1 = -1;
      for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) {
        const v = c[y * n + x]!;
        if (v === 0) continue;
        ink += v; sx += v * (x + 0.5); sy += v * (y + 0.5);
        x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
      }
      // Non-blank: at least 40 pixels' worth of ink (the least inked glyph has ~92).
      expect(ink, where).toBeGreaterThan(40);
      // Inside: at least 2 px of empty margin (the tightest is 3), so scaling and shifting never clip a glyph.
      expect(Math.min(x0, y0, n - 1 - x1, n - 1 - y1), where).toBeGreaterThanOrEqual(2);
      // Bounding box centred to the pixel: the renderer shifts by a whole pixel, so within 1 px.
      expect(Math.abs((x0 + x1 + 1) / 2 - n / 2), where).toBeLessThanOrEqual(1);
      expect(Math.abs((y0 + y1 + 1) / 2 - n / 2), where).toBeLessThanOrEqual(1);
      // Ink centroid near the middle. The box is centred, not the mass, so lopsided letters (L, F, T,
      // a light-sided italic C) sit up to ~8.3 px off on one axis: allow 10 px per axis (n * 5/32)...
      expect(Math.abs(sx / ink - n / 2), where).toBeLessThan(10);
      expect(Math.abs(sy / ink - n / 2), where).toBeLessThan(10);
      offsets.push(Math.hypot(sx / ink - n / 2, sy / ink - n / 2));
    });
    // ...while the typical glyph is close: median distance under 3 px (it is ~1.7 px).
    offsets.sort((a, b) => a - b);
    expect(offsets[offsets.length >> 1]).toBeLessThan(3);
  });

  it('shapes, range, label and font balance', () => {
    const perGlyph = 3;
    const d = makeLetters({ ...g, size: 32, perGlyph, seed: SEED, split: 'train' });
    const trainFonts = lettersFonts(g.meta, 'train');
    const N = trainFonts.length * L * perGlyph;
    expect(d.shape).toEqual([N, 1, 32, 32]);
    expect(d.images.length).toBe(N * 32 * 32);
    let lo = Infinity, hi = -Infinity;
    for (const v of d.images) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    // Background is exactly -1; float32 rounding may overshoot +1 by a few ulps (1e-5).
    expect(lo).toBe(-1);
    expect(hi).toBeLessThanOrEqual(1 + 1e-5);
    expect(hi).toBeGreaterThan(0.99); // solid ink somewhere
    // Every letter exactly trainFonts*perGlyph times, every font exactly L*perGlyph times.
    const byLabel = new Array(L).fill(0), byFont = new Map<number, number>();
    d.labels.forEach((l) => byLabel[l]++);
    d.fonts.forEach((f) => byFont.set(f, (byFont.get(f) ?? 0) + 1));
    expect(byLabel).toEqual(new Array(L).fill(trainFonts.length * perGlyph));
    expect([...byFont.keys()].sort((a, b) => a - b)).toEqual(trainFonts);
    for (const c of byFont.values()) expect(c).toBe(L * perGlyph);
    // Shuffled: the first 26 samples are not all one letter.
    expect(new Set(d.labels.subarray(0, 26)).size).toBeGreaterThan(5);
  });

  it('is deterministic per seed', () => {
    const a = makeLetters({ ...g, size: 16, perGlyph: 2, seed: SEED, split: 'all' });
    const b = makeLetters({ ...g, size: 16, perGlyph: 2, seed: SEED, split: 'all' });
    const c = makeLetters({ ...g, size: 16, perGlyph: 2, seed: SEED + 1, split: 'all' });
    expect(Buffer.from(a.images.buffer).equals(Buffer.from(b.images.buffer))).toBe(true);
    expect(Array.from(a.labels)).toEqual(Array.from(b.labels));
    expect(Buffer.from(a.images.buffer).equals(Buffer.from(c.images.buffer))).toBe(false);
  });

  it('held-out fonts are disjoint from the training fonts and together make all', () => {
    const train = lettersFonts(g.meta, 'train'), held = lettersFonts(g.meta, 'heldout');
    expect(held.length).toBeGreaterThanOrEqual(2);
    expect(held.map((i) => g.meta.fonts[i]!.name).sort()).toEqual([...g.meta.heldout].sort());
    expect(train.filter((f) => held.includes(f))).toEqual([]);
    expect([...train, ...held].sort((a, b) => a - b)).toEqual(lettersFonts(g.meta, 'all'));
    const h = makeLetters({ ...g, size: 16, perGlyph: 1, seed: SEED, split: 'heldout' });
    expect(new Set(h.fonts)).toEqual(new Set(held));
  });

  it('16x16 keeps the ink of the 32x32 version (area resampling)', () => {
    // Same seed: each sample is the same continuous glyph box-filtered at two resolutions, and the
    // glyph never reaches the image edge (>= 2 px margin in the 64 px cell, shift <= 1/16 of the
    // side), so each image's mean ink fraction must agree up to float32 rounding of the stored
    // pixels (~6e-8 relative each; measured worst ~2e-9): tolerance 1e-6. Point sampling (every
    // other 32x32 pixel) misses by up to ~2.5e-2, so this tolerance would catch an aliasing resampler.
    const opts = { ...g, perGlyph: 2, seed: SEED, split: 'all' as const };
    const a = makeLetters({ ...opts, size: 32 }), b = makeLetters({ ...opts, size: 16 });
    expect(Array.from(a.labels)).toEqual(Array.from(b.labels));
    const meanInk = (x: Float32Array, i: number, P: number) => {
      let s = 0;
      for (let k = 0; k < P; k++) s += (x[i * P + k]! + 1) / 2;
      return s / P;
    };
    let worst = 0;
    for (let i = 0; i < a.labels.length; i++) worst = Math.max(worst, Math.abs(meanInk(a.images, i, 1024) - meanInk(b.images, i, 256)));
    expect(worst, why).toBeLessThan(1e-6);
    // and the 16x16 images are anti-aliased: many grey levels strictly between the extremes
    const greys = b.images.filter((v) => v > -0.95 && v < 0.95).length;
    expect(greys / b.images.length).toBeGreaterThan(0.05);
  });
});

describe('image folder', () => {
  const dir = mkdtempSync(join(tmpdir(), 'folder-test-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const put = (p: string, bytes: Uint8Array | string) => {
    mkdirSync(join(dir, p, '..'), { recursive: true });
    writeFileSync(join(dir, p), bytes);
  };
  // cats: a 4x4 RGB image and a 6x4 one (centre-cropped to 4x4); dogs: 16-bit grey and palette+alpha
  const rgb4 = randBytes(4 * 4 * 3);
  const rgb6x4 = randBytes(6 * 4 * 3);
  const grey16 = Uint16Array.from({ length: 8 * 8 }, () => Math.floor(rand() * 65536));
  put('set/cats/a.png', encodePng(rgb4, 4, 4, 3));
  put('set/cats/sub/b.PNG', encodePng(rgb6x4, 6, 4, 3));
  put('set/cats/notes.txt', 'not an image');
  put('set/dogs/c.png', encode({ width: 8, height: 8, data: grey16, channels: 1, depth: 16 }));
  const plte = Uint8Array.from([255, 0, 0, 0, 0, 255]); // red, blue
  const trns = Uint8Array.from([255, 0]); // red opaque, blue transparent
  put('set/dogs/d.png', handPng(2, 2, 8, 3, [Uint8Array.from([0, 1]), Uint8Array.from([1, 0])], [['PLTE', plte], ['tRNS', trns]]));
  put('set/README', 'top-level file');

  it('loads, resizes and labels by sorted sub-folder', () => {
    const d = loadImageFolder(join(dir, 'set'), { size: 2, channels: 3, labels: true });
    expect(d.classes).toEqual(['cats', 'dogs']);
    expect(d.files).toEqual(['cats/a.png', 'cats/sub/b.PNG', 'dogs/c.png', 'dogs/d.png']);
    expect(Array.from(d.labels!)).toEqual([0, 0, 1, 1]);
    expect(d.skipped.sort()).toEqual(['README', 'cats/notes.txt']);
    expect(d.shape).toEqual([4, 3, 2, 2]);
    const at = (n: number, c: number, y: number, x: number) => d.images[((n * 3 + c) * 2 + y) * 2 + x]!;
    // Reference: 2x2 block means in [0, 255] mapped to [-1, 1]; 1e-5 covers float32 rounding.
    const block = (px: Uint8Array, w: number, xOff: number, c: number, y: number, x: number) => {
      let s = 0;
      for (let dy = 0; dy < 2; dy++) for (let dx = 0; dx < 2; dx++) s += px[((2 * y + dy) * w + xOff + 2 * x + dx) * 3 + c]!;
      return (s / 4 / 255) * 2 - 1;
    };
    for (let c = 0; c < 3; c++) for (let y = 0; y < 2; y++) for (let x = 0; x < 2; x++) {
      expect(Math.abs(at(0, c, y, x) - block(rgb4, 4, 0, c, y, x)), why).toBeLessThan(1e-5);
      expect(Math.abs(at(1, c, y, x) - block(rgb6x4, 6, 1, c, y, x)), why).toBeLessThan(1e-5); // crop x 1..4
    }
    // 16-bit grey, 4x4 blocks: each 8-bit sample is round(v*255/65535), so the reference uses that.
    for (let y = 0; y < 2; y++) for (let x = 0; x < 2; x++) {
      let s = 0;
      for (let dy = 0; dy < 4; dy++) for (let dx = 0; dx < 4; dx++) s += Math.round((grey16[(4 * y + dy) * 8 + 4 * x + dx]! * 255) / 65535);
      for (let c = 0; c < 3; c++) expect(Math.abs(at(2, c, y, x) - ((s / 16 / 255) * 2 - 1))).toBeLessThan(1e-5);
    }
    // palette with alpha: opaque red where index 0, transparent (black background) where index 1
    expect([0, 1, 2].map((c) => at(3, c, 0, 0))).toEqual([1, -1, -1]);
    expect([0, 1, 2].map((c) => at(3, c, 0, 1))).toEqual([-1, -1, -1]);
  });

  it('greyscale uses Rec. 601 luma; without labels everything is one set', () => {
    const d = loadImageFolder(join(dir, 'set'), { size: 1, channels: 1, background: 255 });
    expect(d.labels).toBeUndefined();
    expect(d.shape).toEqual([4, 1, 1, 1]);
    expect(d.skipped.length).toBe(2);
    const mean = (c: number) => rgb4.reduce((s, v, i) => (i % 3 === c ? s + v : s), 0) / 16 / 255;
    const luma = 0.299 * mean(0) + 0.587 * mean(1) + 0.114 * mean(2);
    expect(Math.abs(d.images[0]! - (2 * luma - 1)), why).toBeLessThan(1e-5);
    // palette image over a white background: 2 red + 2 white pixels
    expect(Math.abs(d.images[3]! - (2 * ((0.299 + 1) / 2) - 1))).toBeLessThan(1e-5);
  });

  it('says what is wrong', () => {
    put('empty/only.txt', 'x');
    expect(() => loadImageFolder(join(dir, 'empty'), { size: 4, channels: 3 })).toThrow(/no PNG images in .*empty \(1 other files skipped\)/);
    put('broken/x.png', 'this is not a png');
    expect(() => loadImageFolder(join(dir, 'broken'), { size: 4, channels: 3 })).toThrow(/cannot read PNG .*broken[/\\]x\.png: .*not a PNG/);
    put('nocls/cats/a.txt', 'x');
    expect(() => loadImageFolder(join(dir, 'nocls'), { size: 4, channels: 3, labels: true })).toThrow(/class folder .*cats holds no PNG/);
    expect(() => loadImageFolder(join(dir, 'missing'), { size: 4, channels: 3 })).toThrow(/is not a folder/);
  });
});

describe('loss plot smoothing', () => {
  it('a centred moving average: no lag on a straight line, narrower windows at the ends', () => {
    const line = Array.from({ length: 20 }, (_, i) => 10 - 0.5 * i);
    const m = movingAverage(line, 10);
    // Interior points have a symmetric window (5 either side, 11 points): the line itself.
    for (let i = 5; i < 15; i++) expect(m[i]).toBeCloseTo(line[i]!, 12);
    // The first point's window is points 0..5.
    expect(m[0]).toBeCloseTo((10 + 9.5 + 9 + 8.5 + 8 + 7.5) / 6, 12);
    expect(movingAverage([3, 1, 2], 1)).toEqual([3, 1, 2]);
  });
});
