/**
 * Colour metrics of generated images, CPU float64: distance to the asked colour (sRGB and CIE-LAB
 * ΔE76), colour accuracy, paired differences; the colour science is in src/data/color-space.ts.
 */
import { srgbToLab, deltaE76, COLOR_CLASSES, COLOR_SRGB, COLOR_LAB, dominantColorClass, checkShape, toUnit } from '../data/color-space.js';
import type { ImageShape, PixelRange } from '../data/color-space.js';

// ---- colour metrics ----

export interface ColorStats {
  /** Images in this group. */
  count: number;
  /** Mean per-pixel Euclidean distance to the asked colour in sRGB on the 0..255 scale. */
  rgbDistance: number;
  /** Mean per-pixel ΔE76 to the asked colour in CIE-LAB. */
  labDistance: number;
  /** Standard error of that mean over the images (their sample std / √count; NaN below 2 images). */
  labDistanceSE: number;
  /** Share of images whose dominant class (dominantColorClass) equals the asked label. */
  accuracy: number;
}

export interface ColorReport {
  /** One entry per colour class, in COLOR_CLASSES order; NaN where count is 0. */
  perClass: (ColorStats & { name: string })[];
  /** Over all images (each image weighs the same). */
  overall: ColorStats;
  /** The dominant class found for each image. */
  predicted: Int32Array;
  /** Each image's mean per-pixel ΔE76 to its asked colour. */
  labPerImage: Float64Array;
}

/**
 * Colour metrics of generated images against the labels they were asked for, as in the
 * colour-to-image setting: per-pixel distance to the label colour (RGB 0..255 and ΔE76) and
 * colour accuracy of the mean-colour class, per label and overall.
 */
export function evalColors(
  images: ArrayLike<number>,
  shape: ImageShape,
  labels: Int32Array | readonly number[],
  range: PixelRange = 'signed',
): ColorReport {
  checkShape(images, shape, 'evalColors');
  const [n, , h, w] = shape;
  if (labels.length !== n) throw new Error(`evalColors: got ${labels.length} labels for ${n} images`);
  const hw = h * w;
  const K = COLOR_CLASSES.length;
  const sums = Array.from({ length: K }, () => ({ count: 0, rgb: 0, lab: 0, lab2: 0, hits: 0 }));
  const predicted = dominantColorClass(images, shape, range);
  const labPerImage = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const k = labels[i]!;
    if (!(Number.isInteger(k) && k >= 0 && k < K)) throw new Error(`evalColors: label ${k} of image ${i} is not in 0..${K - 1}`);
    const ref = COLOR_SRGB[k]!;
    const refLab = COLOR_LAB[k]!;
    const o = i * 3 * hw;
    let rgb = 0;
    let lab = 0;
    for (let p = 0; p < hw; p++) {
      const r = toUnit(images[o + p]!, range);
      const g = toUnit(images[o + hw + p]!, range);
      const b = toUnit(images[o + 2 * hw + p]!, range);
      rgb += 255 * Math.hypot(r - ref[0], g - ref[1], b - ref[2]);
      lab += deltaE76(srgbToLab(r, g, b), refLab);
    }
    const s = sums[k]!;
    s.count++;
    s.rgb += rgb / hw;
    s.lab += lab / hw;
    s.lab2 += (lab / hw) ** 2;
    labPerImage[i] = lab / hw;
    if (predicted[i] === k) s.hits++;
  }
  const stats = (count: number, rgb: number, lab: number, lab2: number, hits: number): ColorStats => ({
    count,
    rgbDistance: rgb / count,
    labDistance: lab / count,
    labDistanceSE: count > 1 ? Math.sqrt(Math.max(lab2 - (lab * lab) / count, 0) / (count - 1) / count) : NaN,
    accuracy: hits / count,
  });
  const perClass = sums.map((s, k) => ({ name: COLOR_CLASSES[k]!, ...stats(s.count, s.rgb, s.lab, s.lab2, s.hits) }));
  const total = sums.reduce((a, s) => ({ count: a.count + s.count, rgb: a.rgb + s.rgb, lab: a.lab + s.lab, lab2: a.lab2 + s.lab2, hits: a.hits + s.hits }));
  return { perClass, overall: stats(total.count, total.rgb, total.lab, total.lab2, total.hits), predicted, labPerImage };
}

/** Plain-text table of a ColorReport: one row per class ('-' where no image asked for it),
 * then the overall row. */
export function formatColorTable(report: Pick<ColorReport, 'perClass' | 'overall'>): string {
  const row = (name: string, s: ColorStats) =>
    [
      name.padEnd(8),
      String(s.count).padStart(6),
      (s.count ? s.rgbDistance.toFixed(2) : '-').padStart(12),
      (s.count ? s.labDistance.toFixed(2) : '-').padStart(10),
      (s.count ? (100 * s.accuracy).toFixed(1) + '%' : '-').padStart(9),
    ].join(' ');
  const head = ['class'.padEnd(8), 'n'.padStart(6), 'RGB dist'.padStart(12), 'ΔE76'.padStart(10), 'accuracy'.padStart(9)].join(' ');
  const lines = [head, '-'.repeat(head.length)];
  for (const c of report.perClass) lines.push(row(c.name, c));
  lines.push('-'.repeat(head.length), row('all', report.overall));
  lines.push('RGB dist: mean per-pixel Euclidean distance to the asked colour, sRGB 0..255; ΔE76 in CIE-LAB (D65).');
  return lines.join('\n');
}

/** Mean of b[i] - a[i] and its standard error (sample std of the differences / √n). */
export function pairedDifference(a: ArrayLike<number>, b: ArrayLike<number>): { mean: number; se: number } {
  const n = a.length;
  if (b.length !== n || n < 2) throw new Error(`pairedDifference: needs two equal-length sets of 2 or more, got ${n} and ${b.length}`);
  let m = 0;
  for (let i = 0; i < n; i++) m += (b[i]! - a[i]!) / n;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (b[i]! - a[i]! - m) ** 2;
  return { mean: m, se: Math.sqrt(ss / (n - 1) / n) };
}

/**
 * One solid h×w image per colour (sRGB 0..1), in the signed range [N, 3, h, w]. With COLOR_SRGB: what
 * a sample would be if guidance drew each label colour exactly; through a first stage, how close its
 * decoder can draw each pure colour at all.
 */
export function solidImages(colours: readonly (readonly number[])[], h: number, w: number): Float32Array {
  const hw = h * w;
  const out = new Float32Array(colours.length * 3 * hw);
  colours.forEach((c, i) => {
    for (let ch = 0; ch < 3; ch++) out.fill(2 * c[ch]! - 1, (i * 3 + ch) * hw, (i * 3 + ch + 1) * hw);
  });
  return out;
}

/** One solid 1×1 image per class in the mean sRGB colour (signed range) of that class's images. */
export function classMeanImages(images: Float32Array, shape: readonly number[], labels: readonly number[], k: number): Float32Array {
  const [n, c, h, w] = shape as [number, number, number, number];
  const hw = h * w;
  const sum = new Float64Array(k * c);
  const count = new Float64Array(k);
  for (let i = 0; i < n; i++) {
    const l = labels[i]!;
    count[l]! += hw;
    for (let ch = 0; ch < c; ch++) for (let p = 0; p < hw; p++) sum[l * c + ch]! += images[(i * c + ch) * hw + p]!;
  }
  return Float32Array.from(sum, (v, j) => v / Math.max(count[Math.floor(j / c)]!, 1));
}
