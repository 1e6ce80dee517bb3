/**
 * The built-in `colors` dataset: abstract images (a shaded background, soft blobs and strokes),
 * each dominated by one of the 8 colour classes. Made procedurally from a seed; image i depends
 * only on (seed, i, size), so a larger n extends a smaller one.
 *
 * Each image is drawn with an intended class (i mod 8, so classes are balanced), but its label is
 * computed by the same rule evalColors uses: the class nearest in CIE-LAB to the image's mean
 * sRGB colour (dominantColorClass). Shades vary in lightness and hue around the class colour and
 * smaller shapes in other colours pull the mean away, so a few images end up labelled otherwise.
 */
import { COLOR_CLASSES, COLOR_LAB, dominantColorClass, labToSrgb } from './color-space.js';
import { mixSeed, mulberry32, gaussian } from './rng.js';

export interface ColorsDataset {
  /** [N,3,H,W] float32, sRGB mapped to [-1, 1]. */
  images: Float32Array;
  /** Class of each image by the mean-colour rule (index into classes). */
  labels: Int32Array;
  /** The class each image was drawn to show; differs from labels for a few images. */
  intended: Int32Array;
  shape: [number, number, number, number];
  classes: string[];
}

type Rgb = [number, number, number];

const clamp01 = (v: number) => (v < 0 ? 0 : v > 1 ? 1 : v);

/** A shade of class k: its LAB colour moved by up to ±18 in L and ±15 in a and b, clipped to sRGB. */
function shade(k: number, rand: () => number): Rgb {
  const [L, a, b] = COLOR_LAB[k]!;
  const s = labToSrgb(Math.min(100, Math.max(0, L + 36 * (rand() - 0.5))), a + 30 * (rand() - 0.5), b + 30 * (rand() - 0.5));
  return [clamp01(s[0]), clamp01(s[1]), clamp01(s[2])];
}

/** A shape's coverage of point (x, y) in [0,1]: 1 inside, 0 outside, a ~1.5-pixel soft edge. */
type Shape = { colour: Rgb; alpha: number; cover: (x: number, y: number) => number };

function blob(colour: Rgb, alpha: number, rand: () => number, rMin: number, rMax: number, edge: number): Shape {
  const cx = rand();
  const cy = rand();
  const r = rMin + (rMax - rMin) * rand();
  return { colour, alpha, cover: (x, y) => clamp01((r - Math.hypot(x - cx, y - cy)) / edge + 0.5) };
}

function stroke(colour: Rgb, alpha: number, rand: () => number, edge: number): Shape {
  const x0 = rand();
  const y0 = rand();
  const ang = 2 * Math.PI * rand();
  const len = 0.4 + 0.5 * rand();
  const dx = Math.cos(ang) * len;
  const dy = Math.sin(ang) * len;
  const half = 0.02 + 0.04 * rand(); // half-width as a fraction of the image
  return {
    colour,
    alpha,
    cover: (x, y) => {
      // Distance from (x, y) to the segment (x0, y0) + t (dx, dy), t in [0, 1].
      const t = clamp01(((x - x0) * dx + (y - y0) * dy) / (len * len));
      return clamp01((half - Math.hypot(x - x0 - t * dx, y - y0 - t * dy)) / edge + 0.5);
    },
  };
}

/** Draws one image of intended class k into out (3*size*size values, CHW, sRGB 0..1). */
function drawImage(out: Float32Array, size: number, k: number, rand: () => number): void {
  const K = COLOR_CLASSES.length;
  const edge = 1.5 / size;
  const other = (): Rgb => {
    // Half the time another class's shade, half a random sRGB colour.
    if (rand() < 0.5) return shade((k + 1 + Math.floor(rand() * (K - 1))) % K, rand);
    return [rand(), rand(), rand()];
  };
  // Background: a linear gradient between two shades of the class, in a random direction.
  const c0 = shade(k, rand);
  const c1 = shade(k, rand);
  const ang = 2 * Math.PI * rand();
  const gx = Math.cos(ang);
  const gy = Math.sin(ang);
  const shapes: Shape[] = [];
  const nMain = 1 + Math.floor(rand() * 3);
  for (let s = 0; s < nMain; s++) {
    const col = shade(k, rand);
    shapes.push(rand() < 0.75 ? blob(col, 0.6 + 0.4 * rand(), rand, 0.15, 0.4, edge) : stroke(col, 0.6 + 0.4 * rand(), rand, edge));
  }
  const nOther = 1 + Math.floor(rand() * 3);
  for (let s = 0; s < nOther; s++) {
    const col = other();
    shapes.push(rand() < 0.5 ? blob(col, 0.7 + 0.3 * rand(), rand, 0.08, 0.25, edge) : stroke(col, 0.7 + 0.3 * rand(), rand, edge));
  }
  // Paint in a random order so other colours are sometimes partly covered, sometimes on top.
  for (let s = shapes.length - 1; s > 0; s--) {
    const j = Math.floor(rand() * (s + 1));
    [shapes[s], shapes[j]] = [shapes[j]!, shapes[s]!];
  }
  const hw = size * size;
  for (let py = 0; py < size; py++) {
    for (let px = 0; px < size; px++) {
      const x = (px + 0.5) / size;
      const y = (py + 0.5) / size;
      const t = clamp01(0.5 + (x - 0.5) * gx + (y - 0.5) * gy);
      let r = c0[0] + t * (c1[0] - c0[0]);
      let g = c0[1] + t * (c1[1] - c0[1]);
      let b = c0[2] + t * (c1[2] - c0[2]);
      for (const sh of shapes) {
        const a = sh.alpha * sh.cover(x, y);
        if (a === 0) continue;
        r += a * (sh.colour[0] - r);
        g += a * (sh.colour[1] - g);
        b += a * (sh.colour[2] - b);
      }
      const p = py * size + px;
      // A little pixel noise so no two pixels of a flat area are identical.
      out[p] = clamp01(r + 0.015 * gaussian(rand));
      out[hw + p] = clamp01(g + 0.015 * gaussian(rand));
      out[2 * hw + p] = clamp01(b + 0.015 * gaussian(rand));
    }
  }
}

/** Makes n images of size x size; labels by the mean-colour rule (see the file comment). */
export function makeColorsDataset(opts: { n: number; size?: number; seed?: number }): ColorsDataset {
  const { n, size = 32, seed = 0 } = opts;
  if (!(Number.isInteger(n) && n >= 0 && Number.isInteger(size) && size >= 1)) {
    throw new Error(`makeColorsDataset: n (${n}) and size (${size}) must be whole numbers, size >= 1`);
  }
  const K = COLOR_CLASSES.length;
  const per = 3 * size * size;
  const images = new Float32Array(n * per);
  const intended = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const k = i % K;
    intended[i] = k;
    const img = images.subarray(i * per, (i + 1) * per);
    drawImage(img, size, k, mulberry32(mixSeed(seed, i)));
    for (let j = 0; j < per; j++) img[j] = 2 * img[j]! - 1;
  }
  const shape: [number, number, number, number] = [n, 3, size, size];
  const labels = dominantColorClass(images, shape, 'signed');
  return { images, labels, intended, shape, classes: [...COLOR_CLASSES] };
}
