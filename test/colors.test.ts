import { describe, expect, it } from 'vitest';
import { makeColorsDataset } from '../src/data/colors.js';
import { hflip } from '../src/data/augment.js';
import { mixSeed, mulberry32 } from '../src/data/rng.js';
import { COLOR_CLASSES, COLOR_LAB, deltaE76, dominantColorClass, srgbToLab } from '../src/data/color-space.js';
import { evalColors } from '../src/metrics/color.js';

/** The labelling rule written out independently: mean of (x+1)/2 per channel, nearest class in LAB. */
function labelByRule(images: Float32Array, n: number, size: number): { label: number[]; margin: number[] } {
  const hw = size * size;
  const label: number[] = [];
  const margin: number[] = [];
  for (let i = 0; i < n; i++) {
    const mean = [0, 1, 2].map((c) => {
      let s = 0;
      for (let p = 0; p < hw; p++) s += (images[(i * 3 + c) * hw + p]! + 1) / 2;
      return s / hw;
    });
    const lab = srgbToLab(mean[0]!, mean[1]!, mean[2]!);
    const d = COLOR_LAB.map((c, k) => ({ k, d: deltaE76(lab, c) })).sort((a, b) => a.d - b.d);
    label.push(d[0]!.k);
    margin.push(d[1]!.d - d[0]!.d);
  }
  return { label, margin };
}

/** Bit-for-bit equality (toEqual on large typed arrays is slow). */
function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

describe('colors dataset', () => {
  const n = 800;
  const size = 16;
  const ds = makeColorsDataset({ n, size, seed: 1234 });

  it('has the promised shape, classes and value range', () => {
    expect(ds.shape).toEqual([n, 3, size, size]);
    expect(ds.images.length).toBe(n * 3 * size * size);
    expect(ds.labels.length).toBe(n);
    expect(ds.classes).toEqual([...COLOR_CLASSES]);
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of ds.images) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    expect(lo).toBeGreaterThanOrEqual(-1);
    expect(hi).toBeLessThanOrEqual(1);
    expect(hi - lo).toBeGreaterThan(1.5); // uses the range, not a constant
  });

  it('is deterministic for a seed, differs across seeds, and image i does not depend on n', () => {
    const again = makeColorsDataset({ n, size, seed: 1234 });
    expect(sameBits(again.images, ds.images)).toBe(true);
    expect(again.labels).toEqual(ds.labels);
    const other = makeColorsDataset({ n: 8, size, seed: 1235 });
    expect(sameBits(other.images, ds.images.subarray(0, other.images.length))).toBe(false);
    const prefix = makeColorsDataset({ n: 20, size, seed: 1234 });
    expect(sameBits(prefix.images, ds.images.subarray(0, prefix.images.length))).toBe(true);
    // The PRNG matches bryc's reference mulberry32 (transcribed verbatim), so the stream is the
    // published one, not merely self-consistent.
    const reference = (a: number) => () => {
      let t = (a += 0x6d2b79f5);
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    for (const seed of [0, 1, 0x7fffffff, mixSeed(1234, 5)]) {
      const a = mulberry32(seed);
      const b = reference(seed | 0);
      for (let i = 0; i < 1000; i++) expect(a()).toBe(b());
    }
  });

  it('labels every image by the nearest class in LAB to its mean sRGB colour', () => {
    const { label, margin } = labelByRule(ds.images, n, size);
    expect(Array.from(ds.labels)).toEqual(label);
    expect(Array.from(dominantColorClass(ds.images, ds.shape))).toEqual(label);
    // No image sits on a decision boundary: a margin this small would make its label hinge on rounding.
    expect(Math.min(...margin)).toBeGreaterThan(1e-6);
    // evalColors uses the same rule, so the dataset scores full accuracy against its own labels.
    expect(evalColors(ds.images, ds.shape, ds.labels).overall.accuracy).toBe(1);
  });

  it('has all 8 classes in reasonable proportions; few labels differ from the intended class', () => {
    const counts = new Array(8).fill(0);
    let changed = 0;
    for (let i = 0; i < n; i++) {
      counts[ds.labels[i]!]++;
      if (ds.labels[i] !== ds.intended[i]) changed++;
    }
    console.log(`colors: ${changed}/${n} (${((100 * changed) / n).toFixed(2)}%) labels differ from the intended class; counts ${counts}`);
    // Intended classes are exactly balanced (n/8 each) and only a few images change class, so
    // every class keeps between half and one and a half times its share.
    for (const c of counts) {
      expect(c).toBeGreaterThan(n / 16);
      expect(c).toBeLessThan((3 * n) / 16);
    }
    // The dominant colour is meant to be clearly dominant: at most 5% change class (about 1% do).
    expect(changed / n).toBeLessThan(0.05);
  });

  it('is not trivial: shades vary within a class and images carry other colours', () => {
    const hw = size * size;
    let mixed = 0;
    const meanL: number[][] = Array.from({ length: 8 }, () => []);
    for (let i = 0; i < n; i++) {
      let off = 0;
      let sumL = 0;
      for (let p = 0; p < hw; p++) {
        const px = [0, 1, 2].map((c) => (ds.images[(i * 3 + c) * hw + p]! + 1) / 2);
        const lab = srgbToLab(px[0]!, px[1]!, px[2]!);
        sumL += lab[0];
        const near = COLOR_LAB.map((c) => deltaE76(lab, c));
        if (near.indexOf(Math.min(...near)) !== ds.labels[i]) off++;
      }
      if (off >= 0.03 * hw) mixed++;
      meanL[ds.labels[i]!]!.push(sumL / hw);
    }
    // Most images have at least 3% of pixels nearer another class (distractor blobs and strokes).
    expect(mixed / n).toBeGreaterThan(0.5);
    // Lightness of the mean colour varies within every class (std above 2 L* units).
    for (const ls of meanL) {
      const m = ls.reduce((a, b) => a + b, 0) / ls.length;
      const sd = Math.sqrt(ls.reduce((a, b) => a + (b - m) ** 2, 0) / (ls.length - 1));
      expect(sd).toBeGreaterThan(2);
    }
  });

  it('works at size 32 and checks its arguments', () => {
    const d = makeColorsDataset({ n: 16, size: 32, seed: 3 });
    expect(d.shape).toEqual([16, 3, 32, 32]);
    expect(Array.from(d.labels)).toEqual(labelByRule(d.images, 16, 32).label);
    expect(() => makeColorsDataset({ n: 2.5 })).toThrow(/whole numbers/);
  });
});

describe('hflip', () => {
  it('mirrors each row, is its own inverse, keeps labels, and respects the mask', () => {
    const shape = [3, 2, 2, 3] as const;
    const img = Float32Array.from({ length: 3 * 2 * 2 * 3 }, (_, i) => i + 1);
    const f = hflip(img, shape);
    // First row of image 0 channel 0 is [1, 2, 3] -> [3, 2, 1].
    expect(Array.from(f.subarray(0, 3))).toEqual([3, 2, 1]);
    expect(Array.from(f.subarray(3, 6))).toEqual([6, 5, 4]);
    expect(hflip(f, shape)).toEqual(img);
    const masked = hflip(img, shape, [0, 1, 0]);
    expect(masked.subarray(0, 12)).toEqual(img.subarray(0, 12));
    expect(masked.subarray(12, 24)).toEqual(f.subarray(12, 24));
    expect(masked.subarray(24)).toEqual(img.subarray(24));
    // The mean colour is unchanged by a flip, so are the labels.
    const d = makeColorsDataset({ n: 24, size: 8, seed: 9 });
    expect(dominantColorClass(hflip(d.images, d.shape), d.shape)).toEqual(d.labels);
    expect(() => hflip(img, [3, 2, 2, 2])).toThrow(/hflip/);
  });
});
