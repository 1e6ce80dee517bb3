// Node only: a dataset from a folder of the user's own PNG images. Each image is composited over a
// background where it has alpha, centre-cropped to a square, area-averaged to size x size (box
// filter: anti-aliased when shrinking, blocky when enlarging) and mapped to [-1, 1].
import { lstatSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { decodePng, resampleArea } from './png.js';

export interface FolderOptions {
  size: number;
  /** 3 = RGB; 1 = greyscale by Rec. 601 luma (0.299 R + 0.587 G + 0.114 B). */
  channels: 1 | 3;
  /** Label each image by its top-level sub-folder: classes are the sub-folder names, sorted; label = index. */
  labels?: boolean;
  /** Grey level 0..255 shown through transparent pixels; default 0 (black). */
  background?: number;
}

export interface FolderData {
  /** [N, C, size, size] in [-1, 1]. */
  images: Float32Array;
  shape: [number, number, number, number];
  /** Present when opts.labels: index into classes. */
  labels?: Int32Array;
  classes: string[];
  /** Relative paths of the images, in dataset order (sorted). */
  files: string[];
  /** Files that were not PNGs (or, with labels, not inside a class folder), relative paths. */
  skipped: string[];
}

/**
 * All files under dir, recursively, as sorted absolute paths. Links are followed, but a link back to a
 * folder being read (a loop) and a link to nothing are errors that name them, not endless recursion.
 */
function walk(dir: string, open: Set<string> = new Set([realpathSync(dir)])): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    let st;
    try {
      st = statSync(p);
    } catch (e) {
      throw new Error(`folder: cannot read ${p} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}${lstatSync(p, { throwIfNoEntry: false })?.isSymbolicLink() ? ': a link to nothing, or a loop of links' : ''})`);
    }
    if (!st.isDirectory()) {
      out.push(p);
      continue;
    }
    const real = realpathSync(p);
    if (open.has(real)) throw new Error(`folder: ${p} links back to ${real}, a folder already being read (a loop of links)`);
    open.add(real);
    out.push(...walk(p, open));
    open.delete(real);
  }
  return out;
}

const isPng = (p: string) => p.toLowerCase().endsWith('.png');

export function loadImageFolder(dir: string, opts: FolderOptions): FolderData {
  const { size, channels: C } = opts;
  const bg = (opts.background ?? 0) / 255;
  if (!Number.isInteger(size) || size < 1) throw new Error(`folder: size must be a positive integer, got ${size}`);
  if (!statSync(dir, { throwIfNoEntry: false })?.isDirectory()) throw new Error(`folder: ${dir} is not a folder`);

  const skipped: string[] = [];
  const entries: { path: string; label: number }[] = [];
  const classes: string[] = [];
  if (opts.labels) {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      if (!statSync(p).isDirectory()) {
        skipped.push(name);
        continue;
      }
      const files = walk(p);
      const pngs = files.filter(isPng);
      skipped.push(...files.filter((f) => !isPng(f)).map((f) => relative(dir, f)));
      if (pngs.length === 0) throw new Error(`folder: class folder ${p} holds no PNG images`);
      for (const f of pngs) entries.push({ path: f, label: classes.length });
      classes.push(name);
    }
  } else {
    for (const f of walk(dir)) {
      if (isPng(f)) entries.push({ path: f, label: 0 });
      else skipped.push(relative(dir, f));
    }
  }
  if (entries.length === 0) {
    throw new Error(`folder: no PNG images in ${dir}${opts.labels ? ' sub-folders' : ''} (${skipped.length} other files skipped)`);
  }

  const plane = size * size;
  const images = new Float32Array(entries.length * C * plane);
  const labels = new Int32Array(entries.length);
  entries.forEach(({ path, label }, n) => {
    let img;
    try {
      img = decodePng(new Uint8Array(readFileSync(path)));
    } catch (e) {
      throw new Error(`folder: cannot read PNG ${path}: ${(e as Error).message}`);
    }
    const { width: w, height: h, channels: ic, data } = img;
    const hasAlpha = ic === 2 || ic === 4;
    const colour = ic >= 3;
    // planar [C, h, w] in [0, 1], alpha composited over the background
    const src = new Float32Array(C * h * w);
    for (let i = 0; i < w * h; i++) {
      const a = hasAlpha ? data[i * ic + ic - 1]! / 255 : 1;
      const r = data[i * ic]! / 255;
      const g = colour ? data[i * ic + 1]! / 255 : r;
      const b = colour ? data[i * ic + 2]! / 255 : r;
      const rgb = [r, g, b].map((v) => v * a + bg * (1 - a));
      if (C === 3) for (let c = 0; c < 3; c++) src[c * w * h + i] = rgb[c]!;
      else src[i] = 0.299 * rgb[0]! + 0.587 * rgb[1]! + 0.114 * rgb[2]!;
    }
    const side = Math.min(w, h);
    const x0 = (w - side) / 2;
    const y0 = (h - side) / 2;
    const out = resampleArea(src, C, h, w, { x0, y0, x1: x0 + side, y1: y0 + side }, size, size);
    for (let i = 0; i < out.length; i++) images[n * C * plane + i] = 2 * out[i]! - 1;
    labels[n] = label;
  });
  return {
    images,
    shape: [entries.length, C, size, size],
    ...(opts.labels ? { labels } : {}),
    classes,
    files: entries.map((e) => relative(dir, e.path)),
    skipped,
  };
}
