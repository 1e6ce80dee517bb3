import { describe, expect, it } from 'vitest';
import { evalColors, formatColorTable, pairedDifference, classMeanImages, solidImages } from '../src/metrics/color.js';
import {
  COLOR_CLASSES,
  COLOR_LAB,
  COLOR_SRGB,
  COLOR_SRGB255,
  RGB_TO_XYZ,
  deltaE76,
  labToSrgb,
  linearToSrgb,
  nearestColorClass,
  srgbToLab,
  srgbToLinear,
  xyzToLab,
} from '../src/data/color-space.js';
import { frechetDistance, gaussianFrechet, meanCov, sqrtmSym, symEig } from '../src/metrics/frechet.js';
import { nearestNeighbours } from '../src/metrics/retrieval.js';
import { gaussian, mulberry32 } from '../src/data/rng.js';

// ---------- small float64 matrix helpers (row-major), independent of the code under test ----------

function mul(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const o = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let k = 0; k < n; k++) s += a[i * n + k]! * b[k * n + j]!;
    o[i * n + j] = s;
  }
  return o;
}
const transpose = (a: Float64Array, n: number) => Float64Array.from({ length: n * n }, (_, i) => a[(i % n) * n + Math.floor(i / n)]!);
const eye = (n: number) => Float64Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0));
const trace = (a: Float64Array, n: number) => Array.from({ length: n }, (_, i) => a[i * n + i]!).reduce((x, y) => x + y, 0);
const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
const diff = (a: ArrayLike<number>, b: ArrayLike<number>) => Float64Array.from(a, (v, i) => v - b[i]!);

/** Gauss–Jordan inverse with partial pivoting. */
function inv(a: Float64Array, n: number): Float64Array {
  const m = Float64Array.from(a);
  const o = eye(n);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r * n + c]!) > Math.abs(m[p * n + c]!)) p = r;
    for (let k = 0; k < n; k++) {
      [m[c * n + k], m[p * n + k]] = [m[p * n + k]!, m[c * n + k]!];
      [o[c * n + k], o[p * n + k]] = [o[p * n + k]!, o[c * n + k]!];
    }
    const d = m[c * n + c]!;
    for (let k = 0; k < n; k++) {
      m[c * n + k]! /= d;
      o[c * n + k]! /= d;
    }
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = m[r * n + c]!;
      for (let k = 0; k < n; k++) {
        m[r * n + k]! -= f * m[c * n + k]!;
        o[r * n + k]! -= f * o[c * n + k]!;
      }
    }
  }
  return o;
}

/** Denman–Beavers iteration for the principal square root; works for non-symmetric A too. */
function sqrtmDB(a: Float64Array, n: number): Float64Array {
  let y = Float64Array.from(a);
  let z = eye(n);
  for (let it = 0; it < 100; it++) {
    const yi = inv(y, n);
    const zi = inv(z, n);
    const y2 = y.map((v, i) => (v + zi[i]!) / 2);
    const z2 = z.map((v, i) => (v + yi[i]!) / 2);
    const change = maxAbs(diff(y2, y));
    y = y2;
    z = z2;
    if (change <= 1e-15 * maxAbs(y)) break;
  }
  return y;
}

function randomSpd(n: number, rand: () => number): Float64Array {
  const b = Float64Array.from({ length: n * n }, () => gaussian(rand));
  const s = mul(b, transpose(b, n), n);
  for (let i = 0; i < n; i++) s[i * n + i]! += 0.1; // keeps it well conditioned
  return s;
}

/** Random orthogonal matrix by Gram–Schmidt on Gaussian columns (rows here). */
function randomOrthogonal(n: number, rand: () => number): Float64Array {
  const q = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const v = Float64Array.from({ length: n }, () => gaussian(rand));
    for (let j = 0; j < i; j++) {
      let d = 0;
      for (let k = 0; k < n; k++) d += v[k]! * q[j * n + k]!;
      for (let k = 0; k < n; k++) v[k]! -= d * q[j * n + k]!;
    }
    const norm = Math.hypot(...v);
    for (let k = 0; k < n; k++) q[i * n + k] = v[k]! / norm;
  }
  return q;
}

// ---------- colour ----------

describe('colour conversions', () => {
  it('RGB->XYZ matrix matches the 4-digit matrix printed in IEC 61966-2-1', () => {
    const printed = [
      [0.4124, 0.3576, 0.1805],
      [0.2126, 0.7152, 0.0722],
      [0.0193, 0.1192, 0.9505],
    ];
    // gl-matrix is column-major: element (row r, col c) is at c*3 + r.
    // Tolerance 5e-5: the printed values are rounded to 4 decimals.
    for (let r = 0; r < 3; r++) for (let c = 0; c < 3; c++) expect(Math.abs(RGB_TO_XYZ[c * 3 + r]! - printed[r]![c]!)).toBeLessThanOrEqual(5e-5);
  });

  it('sRGB white is LAB (100, 0, 0) and black is (0, 0, 0)', () => {
    // Tolerance 1e-9: white maps onto the white point by construction; only rounding remains.
    const w = srgbToLab(1, 1, 1);
    expect(Math.abs(w[0] - 100)).toBeLessThan(1e-9);
    expect(Math.abs(w[1])).toBeLessThan(1e-9);
    expect(Math.abs(w[2])).toBeLessThan(1e-9);
    expect(srgbToLab(0, 0, 0)).toEqual([0, 0, 0]);
  });

  it('matches published LAB values (D65) of sRGB primaries and CSS orange', () => {
    // Published tables (Lindbloom's calculator, colormine) to 2 decimals. Tolerance 0.01: 0.005
    // for their rounding plus < 0.008 because they use the 7-digit matrix and white
    // (0.95047, 1, 1.08883), where this code derives both from the xy chromaticities.
    const cases: [number[], number[]][] = [
      [[1, 0, 0], [53.24, 80.09, 67.2]],
      [[0, 1, 0], [87.73, -86.18, 83.18]],
      [[0, 0, 1], [32.3, 79.19, -107.86]],
      [[1, 165 / 255, 0], [74.93, 23.93, 78.95]],
    ];
    for (const [rgb, lab] of cases) {
      const got = srgbToLab(rgb[0]!, rgb[1]!, rgb[2]!);
      for (let i = 0; i < 3; i++) expect(Math.abs(got[i]! - lab[i]!), `${rgb} -> ${got}`).toBeLessThanOrEqual(0.01);
    }
  });

  it('luminance of the primaries is the BT.709 luma weights; 18% grey is L* 49.50', () => {
    // Y row of the matrix = (0.2126, 0.7152, 0.0722) as printed to 4 decimals; tolerance 5e-5.
    expect(Math.abs(RGB_TO_XYZ[1]! - 0.2126)).toBeLessThanOrEqual(5e-5);
    expect(Math.abs(RGB_TO_XYZ[4]! - 0.7152)).toBeLessThanOrEqual(5e-5);
    expect(Math.abs(RGB_TO_XYZ[7]! - 0.0722)).toBeLessThanOrEqual(5e-5);
    // L* = 116 * 0.18^(1/3) - 16 = 49.4961; tolerance 1e-4 for the 4-decimal reference.
    expect(Math.abs(xyzToLab([0.18 * 0.3127 / 0.329, 0.18, (0.18 * (1 - 0.3127 - 0.329)) / 0.329])[0] - 49.4961)).toBeLessThan(1e-4);
    // Below the CIE breakpoint L* = (24389/27) Y; Y = 0.001 gives 0.90330.
    expect(Math.abs(xyzToLab([0.001 * 0.3127 / 0.329, 0.001, (0.001 * (1 - 0.3127 - 0.329)) / 0.329])[0] - 0.9033)).toBeLessThan(1e-4);
  });

  it('transfer functions are continuous at the breakpoint and invert each other', () => {
    // The two branches meet within 1e-6 (the standard's own constants are rounded).
    expect(Math.abs(((0.04045 + 0.055) / 1.055) ** 2.4 - 0.04045 / 12.92)).toBeLessThan(1e-6);
    for (const c of [0, 0.01, 0.04045, 0.0405, 0.5, 1]) expect(Math.abs(linearToSrgb(srgbToLinear(c)) - c)).toBeLessThan(1e-12);
  });

  it('sRGB -> LAB -> sRGB round-trips within 1e-9, including out-of-gamut values', () => {
    // Tolerance 1e-9: float64 with a cube root, a power and two 3x3 products loses a few ulps
    // (~1e-15); 1e-9 leaves room while catching any formula or constant mismatch.
    const rand = mulberry32(11);
    let worst = 0;
    for (let i = 0; i < 2000; i++) {
      const rgb = [1.2 * rand() - 0.1, 1.2 * rand() - 0.1, 1.2 * rand() - 0.1];
      const lab = srgbToLab(rgb[0]!, rgb[1]!, rgb[2]!);
      const back = labToSrgb(lab[0], lab[1], lab[2]);
      worst = Math.max(worst, maxAbs(diff(back, rgb)));
    }
    expect(worst).toBeLessThan(1e-9);
    for (const c of COLOR_SRGB) expect(maxAbs(diff(labToSrgb(...srgbToLab(c[0], c[1], c[2])), c))).toBeLessThan(1e-9);
  });

  it('deltaE76 is Euclidean distance in LAB', () => {
    expect(deltaE76([50, 0, 0], [53, 4, 0])).toBe(5);
    expect(deltaE76([10, -3, 7], [10, -3, 7])).toBe(0);
    // A missing component is an error, not a NaN distance.
    expect(() => deltaE76([50, 0], [53, 4, 0])).toThrow(/deltaE76: p needs 3 components, got 2/);
  });
});

describe('colour classes', () => {
  it('are CSS named colours, their LAB values are computed, and each is its own nearest class', () => {
    expect(COLOR_CLASSES).toEqual(['orange', 'green', 'blue', 'purple', 'yellow', 'red', 'black', 'white']);
    expect(COLOR_SRGB255[1]).toEqual([0, 128, 0]); // CSS green
    expect(COLOR_SRGB255[3]).toEqual([128, 0, 128]); // CSS purple
    for (let k = 0; k < 8; k++) {
      const c = COLOR_SRGB[k]!;
      expect(COLOR_LAB[k]).toEqual(srgbToLab(c[0], c[1], c[2]));
      expect(nearestColorClass(COLOR_LAB[k]!)).toBe(k);
    }
    // The classes are far apart in LAB (closest pair, orange-yellow, is ~52), so a shade can move
    // a good way from its class colour before it changes class.
    let minPair = Infinity;
    for (let i = 0; i < 8; i++) for (let j = i + 1; j < 8; j++) minPair = Math.min(minPair, deltaE76(COLOR_LAB[i]!, COLOR_LAB[j]!));
    expect(minPair).toBeGreaterThan(40);
  });
});

describe('paired differences and class-mean colours', () => {
  it('pairedDifference: the mean of b - a and its standard error, against a direct float64 computation', () => {
    const r = mulberry32(11);
    const a = Float64Array.from({ length: 50 }, () => 10 + r());
    const b = a.map((v) => v - 0.3 + 0.1 * (r() - 0.5));
    const d = Array.from(b, (v, i) => v - a[i]!);
    const mean = d.reduce((x, y) => x + y, 0) / d.length;
    const sd = Math.sqrt(d.reduce((x, y) => x + (y - mean) ** 2, 0) / (d.length - 1));
    const p = pairedDifference(a, b);
    expect(p.mean).toBeCloseTo(mean, 12);
    expect(p.se).toBeCloseTo(sd / Math.sqrt(50), 12);
    // A constant shift has no spread: its standard error is 0 (to rounding).
    expect(pairedDifference([1, 2, 3], [2, 3, 4])).toEqual({ mean: 1, se: 0 });
    expect(() => pairedDifference([1, 2], [1])).toThrow(/pairedDifference/);
  });

  it('classMeanImages: one pixel per class, the mean of its images\' pixels channel by channel', () => {
    // Two images of class 1 (values v and v + 0.2 per channel), one of class 0; class 2 has none.
    const shape = [3, 3, 2, 2];
    const img = new Float32Array(3 * 3 * 4);
    const fill = (i: number, vals: number[]) => vals.forEach((v, c) => img.fill(v, (i * 3 + c) * 4, (i * 3 + c + 1) * 4));
    fill(0, [0.1, -0.5, 0.9]);
    fill(1, [0.3, -0.3, 0.5]);
    fill(2, [-1, 1, 0]);
    const m = classMeanImages(img, shape, [1, 1, 0], 3);
    expect(Array.from(m).map((v) => Math.round(v * 1e6) / 1e6)).toEqual([-1, 1, 0, 0.2, -0.4, 0.7, 0, 0, 0]);
  });

  it('solidImages of the label colours: each class its own colour, solid, scored at distance 0 and 100%', () => {
    const [h, w] = [2, 3];
    const img = solidImages(COLOR_SRGB, h, w);
    expect(img.length).toBe(8 * 3 * h * w);
    // Image k, channel c is 2·(its 0..255 value)/255 − 1 at every pixel.
    for (let k = 0; k < 8; k++) for (let c = 0; c < 3; c++) for (let p = 0; p < h * w; p++) expect(img[(k * 3 + c) * h * w + p]).toBeCloseTo((2 * COLOR_SRGB255[k]![c]!) / 255 - 1, 6);
    const r = evalColors(img, [8, 3, h, w], [0, 1, 2, 3, 4, 5, 6, 7]);
    for (const c of r.perClass) expect(c).toMatchObject({ count: 1, accuracy: 1 });
    // The pixels are float32 (rounding ~6e-8 of the signed range), which moves ΔE76 and the sRGB
    // distance by well under 1e-4.
    expect(r.overall.labDistance).toBeLessThan(1e-4);
    expect(r.overall.rgbDistance).toBeLessThan(1e-4);
  });
});

describe('evalColors', () => {
  it('solid images of the exact class colours: distance 0, accuracy 1', () => {
    const labels = [0, 1, 2, 3, 4, 5, 6, 7, 3, 6];
    const img = solidImages(labels.map((k) => COLOR_SRGB[k]!), 4, 5);
    const rep = evalColors(img, [labels.length, 3, 4, 5], labels);
    // Tolerance 1e-4: the images are float32, so a colour is off by up to ~6e-8 in 0..1; that is
    // 255*sqrt(3)*6e-8 ≈ 3e-5 in RGB and below 1e-5 in ΔE (steepest near black, dL/dc ≈ 15).
    expect(rep.overall.count).toBe(10);
    expect(rep.overall.accuracy).toBe(1);
    expect(rep.overall.rgbDistance).toBeLessThan(1e-4);
    expect(rep.overall.labDistance).toBeLessThan(1e-4);
    expect(rep.perClass.map((c) => c.count)).toEqual([1, 1, 1, 2, 1, 1, 2, 1]);
    for (const c of rep.perClass) expect(c.accuracy).toBe(1);
    expect(Array.from(rep.predicted)).toEqual(labels);
  });

  it('known distances: white asked as black, and a half black / half white image', () => {
    // White vs black: RGB distance 255*sqrt(3) and ΔE 100 for every pixel.
    const w = solidImages([[1, 1, 1]], 3, 3);
    const rep = evalColors(w, [1, 3, 3, 3], [6]);
    expect(rep.overall.rgbDistance).toBeCloseTo(255 * Math.sqrt(3), 9); // exact up to rounding
    expect(rep.overall.labDistance).toBeCloseTo(100, 9);
    expect(rep.overall.accuracy).toBe(0);
    expect(rep.perClass[6]!.accuracy).toBe(0);
    expect(Number.isNaN(rep.perClass[0]!.accuracy)).toBe(true); // no image asked for orange
    // Left half white, right half black, asked white: half the pixels at distance 0.
    const half = new Float32Array(3 * 2 * 4).fill(-1);
    for (let c = 0; c < 3; c++) for (let y = 0; y < 2; y++) for (let x = 0; x < 2; x++) half[(c * 2 + y) * 4 + x] = 1;
    const r2 = evalColors(half, [1, 3, 2, 4], [7]);
    expect(r2.overall.rgbDistance).toBeCloseTo((255 * Math.sqrt(3)) / 2, 9);
    expect(r2.overall.labDistance).toBeCloseTo(50, 9);
    expect(Number.isNaN(r2.overall.labDistanceSE)).toBe(true); // one image: no spread to measure
    // Two images asked as black, one white (ΔE 100) and one black (0): mean 50, sample std 50·√2,
    // standard error 50·√2/√2 = 50.
    const r3 = evalColors(solidImages([[1, 1, 1], [0, 0, 0]], 2, 2), [2, 3, 2, 2], [6, 6]);
    expect(Array.from(r3.labPerImage).map((v) => Math.round(v * 1e6) / 1e6)).toEqual([100, 0]);
    expect(r3.overall.labDistanceSE).toBeCloseTo(50, 6);
    expect(r3.perClass[6]!.labDistanceSE).toBeCloseTo(50, 6);
  });

  it('the dominant class is taken from the mean in gamma-encoded sRGB, not in linear light', () => {
    // 3 of 10 pixels white, 7 black: the sRGB mean is 0.3 grey (L* 32.5, nearer black), whereas
    // a linear-light mean would be L* 61.7 (nearer white).
    const img = new Float32Array(3 * 10).fill(-1);
    for (let c = 0; c < 3; c++) for (let p = 0; p < 3; p++) img[c * 10 + p] = 1;
    expect(evalColors(img, [1, 3, 1, 10], [6]).predicted[0]).toBe(6);
  });

  it("'unit' range gives the same report as 'signed', and inputs are checked", () => {
    const rand = mulberry32(5);
    const unit = Float32Array.from({ length: 4 * 3 * 6 * 6 }, () => rand());
    const signed = unit.map((v) => 2 * v - 1);
    const labels = [2, 0, 7, 7];
    const a = evalColors(unit, [4, 3, 6, 6], labels, 'unit');
    const b = evalColors(signed, [4, 3, 6, 6], labels);
    // 1e-5: the two differ only by float32 rounding of 2v - 1.
    expect(Math.abs(a.overall.rgbDistance - b.overall.rgbDistance)).toBeLessThan(1e-5);
    expect(Math.abs(a.overall.labDistance - b.overall.labDistance)).toBeLessThan(1e-5);
    expect(() => evalColors(signed, [4, 3, 6, 6], [1, 2, 3])).toThrow(/labels/);
    expect(() => evalColors(signed, [4, 3, 6, 6], [1, 2, 3, 8])).toThrow(/label 8/);
    expect(() => evalColors(signed, [4, 1, 6, 6], labels)).toThrow(/\[N,3,H,W\]/);
  });

  it('formats a table with one row per class and an overall row', () => {
    const labels = [0, 1, 1, 5];
    const rep = evalColors(solidImages(labels.map((k) => COLOR_SRGB[k]!), 2, 2), [4, 3, 2, 2], labels);
    const table = formatColorTable(rep);
    const lines = table.split('\n');
    expect(lines[0]).toMatch(/class\s+n\s+RGB dist\s+ΔE76\s+accuracy/);
    for (const name of COLOR_CLASSES) expect(table).toMatch(new RegExp(`^${name}\\s`, 'm'));
    expect(table).toMatch(/^green\s+2\s+0\.00\s+0\.00\s+100\.0%$/m);
    expect(table).toMatch(/^blue\s+0\s+-\s+-\s+-$/m);
    expect(table).toMatch(/^all\s+4\s+0\.00\s+0\.00\s+100\.0%$/m);
  });
});

// ---------- Fréchet distance ----------

describe('symmetric eigendecomposition and square root', () => {
  it('reconstructs random symmetric matrices with orthonormal eigenvectors', () => {
    const rand = mulberry32(21);
    for (const n of [1, 2, 5, 12]) {
      const b = Float64Array.from({ length: n * n }, () => gaussian(rand));
      const a = b.map((v, i) => (v + b[(i % n) * n + Math.floor(i / n)]!) / 2);
      const { values, vectors: V } = symEig(a, n);
      const D = new Float64Array(n * n);
      values.forEach((v, i) => (D[i * n + i] = v));
      // Tolerance 1e-12 * scale: Jacobi is backward stable, errors are a few ulps times n.
      const scale = maxAbs(a);
      expect(maxAbs(diff(mul(mul(V, D, n), transpose(V, n), n), a))).toBeLessThan(1e-12 * scale);
      expect(maxAbs(diff(mul(transpose(V, n), V, n), eye(n)))).toBeLessThan(1e-12);
    }
    expect(() => symEig(new Float64Array(3), 2)).toThrow(/symEig: want a \[2,2\] matrix \(4 values\), got 3/);
  });

  it('sqrtmSym agrees with Denman–Beavers on random SPD matrices', () => {
    const rand = mulberry32(22);
    for (const n of [3, 8]) {
      const s = randomSpd(n, rand);
      const r = sqrtmSym(s, n);
      const scale = maxAbs(s);
      // Tolerance 1e-10 * scale: both methods are accurate to ~1e-14 relative; the condition
      // number here (<= ~1e3 with the +0.1 I) costs at most 3 more digits.
      expect(maxAbs(diff(r, sqrtmDB(s, n)))).toBeLessThan(1e-10 * Math.sqrt(scale));
      expect(maxAbs(diff(mul(r, r, n), s))).toBeLessThan(1e-10 * scale);
    }
  });
});

describe('Fréchet distance', () => {
  it('diagonal covariances: ||mu1-mu2||² + Σ(√s1 − √s2)²', () => {
    const rand = mulberry32(31);
    const n = 6;
    const mu1 = Array.from({ length: n }, () => gaussian(rand));
    const mu2 = Array.from({ length: n }, () => gaussian(rand));
    const d1 = Array.from({ length: n }, () => 0.1 + 3 * rand());
    const d2 = Array.from({ length: n }, () => 0.1 + 3 * rand());
    const diag = (d: number[]) => Float64Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? d[i / (n + 1)]! : 0));
    let want = 0;
    for (let i = 0; i < n; i++) want += (mu1[i]! - mu2[i]!) ** 2 + (Math.sqrt(d1[i]!) - Math.sqrt(d2[i]!)) ** 2;
    // Tolerance 1e-12 relative: float64 rounding in sums of a few dozen terms.
    expect(Math.abs(gaussianFrechet(mu1, diag(d1), mu2, diag(d2)) - want)).toBeLessThan(1e-12 * want);
    // Commuting but not diagonal: rotate both by the same orthogonal Q; the distance is unchanged.
    const q = randomOrthogonal(n, rand);
    const rot = (d: number[]) => mul(mul(transpose(q, n), diag(d), n), q, n);
    const qmu = (m: number[]) => Array.from({ length: n }, (_, i) => m.reduce((s, v, k) => s + q[k * n + i]! * v, 0));
    // 1e-10 relative: the rotated matrices carry ~1e-15 rounding that the square roots amplify.
    expect(Math.abs(gaussianFrechet(qmu(mu1), rot(d1), qmu(mu2), rot(d2)) - want)).toBeLessThan(1e-10 * want);
  });

  it('non-commuting SPD covariances: matches the trace of the Denman–Beavers root of S1 S2', () => {
    const rand = mulberry32(32);
    for (const n of [2, 5, 9]) {
      const s1 = randomSpd(n, rand);
      const s2 = randomSpd(n, rand);
      expect(maxAbs(diff(mul(s1, s2, n), mul(s2, s1, n)))).toBeGreaterThan(0.1); // they do not commute
      const mu1 = Array.from({ length: n }, () => gaussian(rand));
      const mu2 = Array.from({ length: n }, () => gaussian(rand));
      // Tr((S1 S2)^{1/2}) = Tr((S1^{1/2} S2 S1^{1/2})^{1/2}) (same eigenvalues); DB computes the
      // left form directly, from a non-symmetric matrix, with no eigendecomposition.
      let want = trace(s1, n) + trace(s2, n) - 2 * trace(sqrtmDB(mul(s1, s2, n), n), n);
      for (let i = 0; i < n; i++) want += (mu1[i]! - mu2[i]!) ** 2;
      const got = gaussianFrechet(mu1, s1, mu2, s2);
      // Tolerance 1e-9 * (Tr S1 + Tr S2): the trace terms cancel to leave d², so the error is
      // relative to their size; DB on a non-normal matrix loses a few digits.
      expect(Math.abs(got - want)).toBeLessThan(1e-9 * (trace(s1, n) + trace(s2, n)));
      // Symmetric in its arguments, although the formula is written asymmetrically.
      expect(Math.abs(gaussianFrechet(mu2, s2, mu1, s1) - got)).toBeLessThan(1e-9 * (trace(s1, n) + trace(s2, n)));
    }
  });

  it('FD(a, a) = 0 and meanCov is the unbiased estimate', () => {
    const rand = mulberry32(33);
    const dim = 8;
    const a = Float32Array.from({ length: 300 * dim }, () => gaussian(rand) * 2 + 1);
    const { mean, cov } = meanCov(a, dim);
    // Tolerance 1e-10 * Tr S: cancellation of 2 Tr S - 2 Tr((S²)^{1/2}) leaves rounding only.
    expect(frechetDistance(a, a, dim)).toBeLessThan(1e-10 * trace(cov, dim));
    // meanCov against a direct one-pass-per-entry computation.
    const n = 300;
    for (const [j, k] of [[0, 0], [2, 5], [7, 7]] as const) {
      let s = 0;
      for (let i = 0; i < n; i++) s += (a[i * dim + j]! - mean[j]!) * (a[i * dim + k]! - mean[k]!);
      expect(Math.abs(cov[j * dim + k]! - s / (n - 1))).toBeLessThan(1e-12);
    }
    expect(meanCov(Float64Array.of(0, 2), 1).cov[0]).toBe(2); // variance of {0, 2} is 2 with n - 1
    expect(() => frechetDistance(a, a, 7)).toThrow(/dim 7/);
  });

  it('samples from two known Gaussians converge to the closed form', () => {
    const rand = mulberry32(34);
    const dim = 4;
    const mu1 = [0, 1, -1, 0.5];
    const mu2 = [0.5, 1, -0.5, 0];
    const s1 = randomSpd(dim, rand);
    const s2 = randomSpd(dim, rand);
    const truth = gaussianFrechet(mu1, s1, mu2, s2);
    // Lower-triangular Cholesky factor, to draw x = mu + L z.
    const chol = (s: Float64Array) => {
      const l = new Float64Array(dim * dim);
      for (let i = 0; i < dim; i++) for (let j = 0; j <= i; j++) {
        let v = s[i * dim + j]!;
        for (let k = 0; k < j; k++) v -= l[i * dim + k]! * l[j * dim + k]!;
        l[i * dim + j] = i === j ? Math.sqrt(v) : v / l[j * dim + j]!;
      }
      return l;
    };
    const draw = (mu: number[], l: Float64Array, n: number) => {
      const x = new Float64Array(n * dim);
      const z = new Float64Array(dim);
      for (let i = 0; i < n; i++) {
        for (let k = 0; k < dim; k++) z[k] = gaussian(rand);
        for (let j = 0; j < dim; j++) {
          let v = mu[j]!;
          for (let k = 0; k <= j; k++) v += l[j * dim + k]! * z[k]!;
          x[i * dim + j] = v;
        }
      }
      return x;
    };
    const l1 = chol(s1);
    const l2 = chol(s2);
    const R = 16;
    const n = 4000;
    const est = Array.from({ length: R }, () => frechetDistance(draw(mu1, l1, n), draw(mu2, l2, n), dim));
    const m = est.reduce((a, b) => a + b, 0) / R;
    const sd = Math.sqrt(est.reduce((a, b) => a + (b - m) ** 2, 0) / (R - 1));
    // The estimator is biased upwards by O(dim/n): the mean term alone by exactly
    // (Tr S1 + Tr S2)/n; allow twice that for the covariance term's bias of the same order.
    // Plus 4 standard errors of the mean of R replicates (a ~1e-4 false-alarm rate if normal).
    const bias = (2 * (trace(s1, dim) + trace(s2, dim))) / n;
    const tol = bias + (4 * sd) / Math.sqrt(R);
    expect(Math.abs(m - truth)).toBeLessThan(tol);
    expect(tol).toBeLessThan(0.05 * truth); // and the check is tight: within 5% of the true value
  });
});

// ---------- retrieval ----------

/** Brute force: every distance, full sort by (distance, index). */
function bruteKnn(q: ArrayLike<number>, db: ArrayLike<number>, dim: number, k: number) {
  const nq = q.length / dim;
  const nd = db.length / dim;
  const index: number[] = [];
  const distance: number[] = [];
  for (let i = 0; i < nq; i++) {
    const all = Array.from({ length: nd }, (_, j) => ({
      j,
      d: Math.sqrt(Array.from({ length: dim }, (_, c) => (q[i * dim + c]! - db[j * dim + c]!) ** 2).reduce((a, b) => a + b, 0)),
    }));
    all.sort((a, b) => a.d - b.d || a.j - b.j);
    for (const e of all.slice(0, k)) {
      index.push(e.j);
      distance.push(e.d);
    }
  }
  return { index, distance };
}

describe('nearestNeighbours', () => {
  it('matches brute force on random data', () => {
    const rand = mulberry32(41);
    const dim = 7;
    const q = Float32Array.from({ length: 17 * dim }, () => gaussian(rand));
    const db = Float32Array.from({ length: 113 * dim }, () => gaussian(rand));
    for (const k of [1, 5, 113]) {
      const got = nearestNeighbours(q, db, dim, k);
      const want = bruteKnn(q, db, dim, k);
      expect(Array.from(got.index)).toEqual(want.index);
      // Tolerance 1e-6 relative: the result is stored as float32 (~6e-8 relative).
      got.distance.forEach((d, i) => expect(Math.abs(d - want.distance[i]!)).toBeLessThanOrEqual(1e-6 * want.distance[i]!));
    }
    expect(nearestNeighbours(q, db, dim).index.length).toBe(17 * 5); // k = 5 by default
  });

  it('breaks ties by database index, with duplicate rows and equidistant points', () => {
    const rand = mulberry32(42);
    const dim = 2;
    // Small integer grid: many exactly equal distances, and repeated rows.
    const db = Float64Array.from({ length: 60 * dim }, () => Math.floor(rand() * 4));
    const q = Float64Array.from({ length: 10 * dim }, () => Math.floor(rand() * 4));
    const got = nearestNeighbours(q, db, dim, 7);
    const want = bruteKnn(q, db, dim, 7);
    expect(Array.from(got.index)).toEqual(want.index);
    expect(Array.from(got.distance)).toEqual(want.distance.map(Math.fround)); // integer sums: exact
    // A query equal to a database row finds it (the first copy) at distance 0.
    const self = nearestNeighbours(db.subarray(8, 10), db, dim, 1);
    expect(self.distance[0]).toBe(0);
    expect(self.index[0]).toBeLessThanOrEqual(4);
    expect(() => nearestNeighbours(q, db, dim, 61)).toThrow(/k = 61/);
  });
});
