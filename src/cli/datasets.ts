// Node only: the built-in datasets and folders of PNG images by name, as the CLI and scripts use them.
import { existsSync } from 'node:fs';
import { makeLetters } from '../data/letters.js';
import { loadLettersGlyphs } from '../data/letters-node.js';
import { makeColorsDataset } from '../data/colors.js';
import { loadImageFolder } from '../data/folder.js';
import type { ImageDataset } from '../diffusion/train.js';

export interface DatasetSpec {
  /** 'letters', 'colors', or a folder of PNG images (labelled by sub-folder when `labels`). */
  name: string;
  size: number;
  /** letters: 'train' (default), 'heldout' (fonts kept out of training) or 'all'. */
  split?: 'train' | 'heldout' | 'all';
  /** letters: random variants per (font, letter); colors: number of images. */
  count?: number;
  seed?: number;
  /** folder: channels and whether sub-folders are classes. */
  channels?: 1 | 3;
  labels?: boolean;
}

export const BUILTIN_DATASETS = ['letters', 'colors'] as const;

export function loadDataset(spec: DatasetSpec): ImageDataset & { spec: DatasetSpec } {
  const seed = spec.seed ?? 0;
  if (spec.name === 'letters') {
    if (spec.size !== 16 && spec.size !== 32) throw new Error(`dataset letters: size = ${spec.size}; allowed values: 16, 32`);
    const { glyphsPng, meta } = loadLettersGlyphs();
    const d = makeLetters({ glyphsPng, meta, size: spec.size, perGlyph: spec.count ?? 8, seed, split: spec.split ?? 'train' });
    return { images: d.images, labels: d.labels, shape: d.shape, classes: meta.letters.split(''), spec };
  }
  if (spec.name === 'colors') {
    const d = makeColorsDataset({ n: spec.count ?? 4096, size: spec.size, seed });
    return { images: d.images, labels: d.labels, shape: d.shape, classes: d.classes, spec };
  }
  if (existsSync(spec.name)) {
    const d = loadImageFolder(spec.name, { size: spec.size, channels: spec.channels ?? 3, labels: spec.labels ?? false });
    if (d.shape[0] === 0) throw new Error(`dataset ${spec.name}: no PNG images found`);
    return { images: d.images, labels: d.labels ?? null, shape: d.shape, classes: d.classes, spec };
  }
  throw new Error(`dataset '${spec.name}' is unknown; allowed values: ${BUILTIN_DATASETS.join(', ')}, or the path of a folder of PNG images`);
}
