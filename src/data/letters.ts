// The built-in `letters` dataset, in the spirit of the 32x32 "letters font" set: uppercase A-Z from
// 14 fonts at 3 stroke weights, pre-rendered into a sprite sheet (data/letters/glyphs.png, made by
// scripts/make-letters.mjs), then varied per sample here by scale, shift and weight and
// area-resampled to 16x16 or 32x32. Browser and Node: the caller supplies the sheet's bytes (Node:
// loadLettersGlyphs() in letters-node.ts; browser: fetch the two files).
//
// Convention: white ink on black, like MNIST: ink = +1, background = -1.
import { decodePng, resampleArea } from './png.js';
import { mixSeed, mulberry32 } from './rng.js';

/** glyphs.json: the sheet's layout. Row (in cells) = font * weights.length + weight; column = letter. */
export interface LettersMeta {
  letters: string;
  cell: number;
  weights: number[];
  fonts: { name: string; style?: string }[];
  /** Font names kept out of the 'train' split, for evaluation. */
  heldout: string[];
}

export interface LettersOptions {
  glyphsPng: Uint8Array;
  meta: LettersMeta;
  size: 16 | 32;
  /** Random variants drawn for each (font, letter) pair. */
  perGlyph: number;
  seed: number;
  split: 'train' | 'heldout' | 'all';
  /** Glyph cell size as a fraction of the image side, drawn uniformly; default [0.7, 1.0]. */
  scale?: [number, number];
  /** Largest shift of the centre, as a fraction of the image side, per axis; default 1/16 (2 px at 32). */
  shift?: number;
}

export interface LettersData {
  /** [N, 1, size, size], ink +1, background -1. */
  images: Float32Array;
  /** Letter index 0..25 (A..Z). */
  labels: Int32Array;
  /** Index into meta.fonts. */
  fonts: Int32Array;
  shape: [number, 1, number, number];
}

/** Font indices in a split. */
export function lettersFonts(meta: LettersMeta, split: LettersOptions['split']): number[] {
  const all = meta.fonts.map((_, i) => i);
  if (split === 'all') return all;
  const held = all.filter((i) => meta.heldout.includes(meta.fonts[i]!.name));
  return split === 'heldout' ? held : all.filter((i) => !held.includes(i));
}

/** Cuts the sheet into cells: cells[(font * weights + weight) * letters + letter] = cell*cell ink in [0, 1]. */
export function lettersCells(glyphsPng: Uint8Array, meta: LettersMeta): Float32Array[] {
  const png = decodePng(glyphsPng);
  const { cell } = meta;
  const L = meta.letters.length;
  const R = meta.fonts.length * meta.weights.length;
  if (png.channels !== 1 || png.width !== L * cell || png.height !== R * cell) {
    throw new Error(`letters: sheet is ${png.width}x${png.height}x${png.channels}, meta wants ${L * cell}x${R * cell}x1 (${L} letters, ${meta.fonts.length} fonts x ${meta.weights.length} weights, cell ${cell})`);
  }
  const cells: Float32Array[] = [];
  for (let r = 0; r < R; r++) {
    for (let l = 0; l < L; l++) {
      const c = new Float32Array(cell * cell);
      for (let y = 0; y < cell; y++) {
        for (let x = 0; x < cell; x++) c[y * cell + x] = png.data[(r * cell + y) * png.width + l * cell + x]! / 255;
      }
      cells.push(c);
    }
  }
  return cells;
}

export function makeLetters(opts: LettersOptions): LettersData {
  const { meta, size, perGlyph, seed } = opts;
  const [sLo, sHi] = opts.scale ?? [0.7, 1.0];
  const maxShift = opts.shift ?? 1 / 16;
  if (size !== 16 && size !== 32) throw new Error(`letters: size must be 16 or 32, got ${size}`);
  if (!Number.isInteger(perGlyph) || perGlyph < 1) throw new Error(`letters: perGlyph must be a positive integer, got ${perGlyph}`);
  const fontIds = lettersFonts(meta, opts.split);
  if (fontIds.length === 0) throw new Error(`letters: split '${opts.split}' has no fonts`);
  const cells = lettersCells(opts.glyphsPng, meta);
  const L = meta.letters.length;
  const W = meta.weights.length;
  const cell = meta.cell;
  const N = fontIds.length * L * perGlyph;
  const plane = size * size;
  const images = new Float32Array(N * plane);
  const labels = new Int32Array(N);
  const fonts = new Int32Array(N);

  // Shuffled order, so that any prefix mixes letters and fonts.
  const order = Array.from({ length: N }, (_, i) => i);
  const shuffle = mulberry32(seed);
  for (let i = N - 1; i > 0; i--) {
    const j = Math.floor(shuffle() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }

  const tmp = new Float32Array(plane);
  for (let n = 0; n < N; n++) {
    const k = order[n]!;
    const font = fontIds[Math.floor(k / (L * perGlyph))]!;
    const letter = Math.floor(k / perGlyph) % L;
    // One generator per (font, letter, variant), keyed by the font's sheet index so a sample does not
    // depend on the split or on `size`: 16x16 and 32x32 see the same continuous glyph.
    const rand = mulberry32(mixSeed(seed, (font * L + letter) * perGlyph + (k % perGlyph)));
    const s = sLo + (sHi - sLo) * rand();
    const dx = (2 * rand() - 1) * maxShift;
    const dy = (2 * rand() - 1) * maxShift;
    const weight = Math.floor(rand() * W);
    // The cell maps to a square of side s*size centred at (0.5 + d)*size; invert that for the source
    // rectangle that the whole output covers.
    const x0 = cell / 2 - ((0.5 + dx) * cell) / s;
    const y0 = cell / 2 - ((0.5 + dy) * cell) / s;
    const rect = { x0, y0, x1: x0 + cell / s, y1: y0 + cell / s };
    resampleArea(cells[(font * W + weight) * L + letter]!, 1, cell, cell, rect, size, size, tmp);
    for (let i = 0; i < plane; i++) images[n * plane + i] = 2 * tmp[i]! - 1;
    labels[n] = letter;
    fonts[n] = font;
  }
  return { images, labels, fonts, shape: [N, 1, size, size] };
}
