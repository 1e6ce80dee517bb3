/**
 * Colour spaces, the 8 colour classes and the labelling rule, CPU float64, no GPU: shared by the
 * `colors` dataset (which labels images by it) and the colour metrics (src/metrics/color.ts).
 *
 * sRGB (IEC 61966-2-1, gamma-encoded, 0..1) <-> linear RGB <-> CIE XYZ (D65, Y of white = 1)
 * <-> CIE-LAB (CIE 15, D65 white). The 3x3 RGB<->XYZ transforms use gl-matrix (column-major
 * mat3) on Float64Array storage, so nothing is rounded to float32.
 *
 * Image convention: the engine's images are NCHW float32 [N,3,H,W], channels RGB, gamma-encoded
 * sRGB mapped to [-1, 1] ('signed'). Helpers also accept [0, 1] ('unit'). Pixels are clamped
 * to the valid range before measuring, as they would be when saved to an 8-bit image.
 */
import { mat3, vec3 } from 'gl-matrix';

// ---- sRGB transfer function (IEC 61966-2-1) ----

export function srgbToLinear(c: number): number {
  return c <= 0.04045 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
}

/**
 * Inverse of srgbToLinear. The breakpoint is 0.04045 / 12.92 rather than the standard's rounded
 * 0.0031308, so each value takes the same branch both ways and round trips are exact to rounding.
 */
export function linearToSrgb(c: number): number {
  return c <= 0.04045 / 12.92 ? 12.92 * c : 1.055 * Math.pow(c, 1 / 2.4) - 0.055;
}

// ---- linear RGB <-> XYZ ----

/** xy chromaticity -> XYZ with Y = 1. */
function xyToXyz(x: number, y: number): Float64Array {
  return Float64Array.of(x / y, 1, (1 - x - y) / y);
}

/** D65 white as IEC 61966-2-1 specifies it (x = 0.3127, y = 0.3290); Y = 1. */
export const D65_WHITE: Float64Array = xyToXyz(0.3127, 0.329);

/**
 * RGB->XYZ derived from the sRGB primaries and the D65 white (rather than the 4-digit matrix
 * printed in the standard), so that RGB (1,1,1) maps exactly onto D65_WHITE and white is exactly
 * LAB (100, 0, 0). Agrees with the printed matrix to its 4 digits.
 */
export const RGB_TO_XYZ: Float64Array = (() => {
  const r = xyToXyz(0.64, 0.33);
  const g = xyToXyz(0.3, 0.6);
  const b = xyToXyz(0.15, 0.06);
  const p = new Float64Array(9);
  mat3.set(p, r[0]!, r[1]!, r[2]!, g[0]!, g[1]!, g[2]!, b[0]!, b[1]!, b[2]!); // columns = primaries
  const pInv = mat3.invert(new Float64Array(9), p) as Float64Array;
  // Scale each primary so that together they add up to the white point.
  const s = vec3.transformMat3(new Float64Array(3), D65_WHITE, pInv) as Float64Array;
  const diag = new Float64Array(9);
  mat3.set(diag, s[0]!, 0, 0, 0, s[1]!, 0, 0, 0, s[2]!);
  const m = new Float64Array(9);
  mat3.multiply(m, p, diag);
  return m;
})();

export const XYZ_TO_RGB: Float64Array = mat3.invert(new Float64Array(9), RGB_TO_XYZ) as Float64Array;

export function linearToXyz(rgb: ArrayLike<number>): Float64Array {
  return vec3.transformMat3(new Float64Array(3), rgb as vec3, RGB_TO_XYZ) as Float64Array;
}

export function xyzToLinear(xyz: ArrayLike<number>): Float64Array {
  return vec3.transformMat3(new Float64Array(3), xyz as vec3, XYZ_TO_RGB) as Float64Array;
}

// ---- XYZ <-> LAB (CIE 15; exact rational constants, not the older 0.008856 / 903.3) ----

const EPS = 216 / 24389;
const KAPPA = 24389 / 27;

/**
 * Throws unless `v` has the three components (XYZ, LAB, ...) that a caller reads as v[0..2]: a
 * shorter array would otherwise read as undefined and give NaN.
 */
function need3(v: ArrayLike<number>, where: string, what: string): void {
  if (v.length < 3) throw new Error(`${where}: ${what} needs 3 components, got ${v.length}`);
}

const f = (t: number) => (t > EPS ? Math.cbrt(t) : (KAPPA * t + 16) / 116);
const fInv = (t: number) => (t * t * t > EPS ? t * t * t : (116 * t - 16) / KAPPA);

export function xyzToLab(xyz: ArrayLike<number>): [number, number, number] {
  need3(xyz, 'xyzToLab', 'xyz');
  const fx = f(xyz[0]! / D65_WHITE[0]!);
  const fy = f(xyz[1]! / D65_WHITE[1]!);
  const fz = f(xyz[2]! / D65_WHITE[2]!);
  return [116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)];
}

export function labToXyz(lab: ArrayLike<number>): Float64Array {
  need3(lab, 'labToXyz', 'lab');
  const L = lab[0]!;
  const fy = (L + 16) / 116;
  const fx = fy + lab[1]! / 500;
  const fz = fy - lab[2]! / 200;
  const y = L > KAPPA * EPS ? fy * fy * fy : L / KAPPA;
  return Float64Array.of(fInv(fx) * D65_WHITE[0]!, y * D65_WHITE[1]!, fInv(fz) * D65_WHITE[2]!);
}

/** sRGB in 0..1 (gamma-encoded) -> LAB. Not clamped, so out-of-gamut values round-trip. */
export function srgbToLab(r: number, g: number, b: number): [number, number, number] {
  return xyzToLab(linearToXyz([srgbToLinear(r), srgbToLinear(g), srgbToLinear(b)]));
}

/** LAB -> sRGB 0..1; may fall outside 0..1 for colours outside the sRGB gamut (not clamped). */
export function labToSrgb(L: number, a: number, b: number): [number, number, number] {
  const lin = xyzToLinear(labToXyz([L, a, b]));
  return [linearToSrgb(lin[0]!), linearToSrgb(lin[1]!), linearToSrgb(lin[2]!)];
}

/** CIE 1976 colour difference: Euclidean distance in LAB. */
export function deltaE76(p: ArrayLike<number>, q: ArrayLike<number>): number {
  need3(p, 'deltaE76', 'p');
  need3(q, 'deltaE76', 'q');
  return Math.hypot(p[0]! - q[0]!, p[1]! - q[1]!, p[2]! - q[2]!);
}

// ---- the 8 colour classes ----

export const COLOR_CLASSES = ['orange', 'green', 'blue', 'purple', 'yellow', 'red', 'black', 'white'] as const;
export type ColorClass = (typeof COLOR_CLASSES)[number];

/**
 * sRGB 0..255 of each class: the CSS named colours (CSS Color 4) of the same name. Note CSS
 * `green` is #008000 and `purple` #800080 (not lime / X11 purple); `orange` is #FFA500.
 */
export const COLOR_SRGB255: readonly (readonly [number, number, number])[] = [
  [255, 165, 0], // orange #FFA500
  [0, 128, 0], // green  #008000
  [0, 0, 255], // blue   #0000FF
  [128, 0, 128], // purple #800080
  [255, 255, 0], // yellow #FFFF00
  [255, 0, 0], // red    #FF0000
  [0, 0, 0], // black  #000000
  [255, 255, 255], // white  #FFFFFF
];

/** The class colours in sRGB 0..1. */
export const COLOR_SRGB: readonly (readonly [number, number, number])[] = COLOR_SRGB255.map(
  (c) => [c[0] / 255, c[1] / 255, c[2] / 255] as const,
);

/** The class colours in LAB, computed (not copied from a table). */
export const COLOR_LAB: readonly (readonly [number, number, number])[] = COLOR_SRGB.map((c) => srgbToLab(c[0], c[1], c[2]));

/** Index of the class whose LAB colour is nearest (ΔE76) to `lab`; ties go to the lower index. */
export function nearestColorClass(lab: ArrayLike<number>): number {
  let best = 0;
  let bestD = Infinity;
  for (let k = 0; k < COLOR_LAB.length; k++) {
    const d = deltaE76(lab, COLOR_LAB[k]!);
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best;
}

// ---- batch helpers over NCHW images ----

export type ImageShape = readonly [number, number, number, number];
/** 'signed': values in [-1, 1] (the engine's convention); 'unit': values in [0, 1]. */
export type PixelRange = 'signed' | 'unit';

export function checkShape(images: ArrayLike<number>, shape: ImageShape, where: string): void {
  const [n, c, h, w] = shape;
  if (shape.length !== 4 || c !== 3 || images.length !== n * c * h * w) {
    throw new Error(`${where}: want RGB images [N,3,H,W] with N*3*H*W values; got shape [${shape}] and ${images.length} values`);
  }
}

/** One stored value -> sRGB 0..1, clamped. */
export function toUnit(v: number, range: PixelRange): number {
  const u = range === 'signed' ? (v + 1) / 2 : v;
  return u < 0 ? 0 : u > 1 ? 1 : u;
}

/** Per-pixel LAB of a batch: Float64Array in the same [N,3,H,W] layout (channels L, a, b). */
export function imagesToLab(images: ArrayLike<number>, shape: ImageShape, range: PixelRange = 'signed'): Float64Array {
  checkShape(images, shape, 'imagesToLab');
  const [n, , h, w] = shape;
  const hw = h * w;
  const out = new Float64Array(images.length);
  for (let i = 0; i < n; i++) {
    const o = i * 3 * hw;
    for (let p = 0; p < hw; p++) {
      const lab = srgbToLab(toUnit(images[o + p]!, range), toUnit(images[o + hw + p]!, range), toUnit(images[o + 2 * hw + p]!, range));
      out[o + p] = lab[0];
      out[o + hw + p] = lab[1];
      out[o + 2 * hw + p] = lab[2];
    }
  }
  return out;
}

/**
 * Mean colour of each image, averaged in gamma-encoded sRGB (0..1), as [N,3]. The mean is taken
 * over the encoded values (what a plain average of the saved image's pixels gives, and closer to
 * perceptual uniformity than linear light, so a small bright blob does not outweigh a large dark
 * area).
 */
export function meanSrgb(images: ArrayLike<number>, shape: ImageShape, range: PixelRange = 'signed'): Float64Array {
  checkShape(images, shape, 'meanSrgb');
  const [n, , h, w] = shape;
  const hw = h * w;
  const out = new Float64Array(n * 3);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) {
      const o = (i * 3 + c) * hw;
      let s = 0;
      for (let p = 0; p < hw; p++) s += toUnit(images[o + p]!, range);
      out[i * 3 + c] = s / hw;
    }
  }
  return out;
}

/**
 * The labelling rule shared by the `colors` dataset and evalColors: the class nearest in LAB
 * (ΔE76) to the image's mean sRGB colour (see meanSrgb).
 */
export function dominantColorClass(images: ArrayLike<number>, shape: ImageShape, range: PixelRange = 'signed'): Int32Array {
  const mean = meanSrgb(images, shape, range);
  const out = new Int32Array(shape[0]);
  for (let i = 0; i < out.length; i++) out[i] = nearestColorClass(srgbToLab(mean[i * 3]!, mean[i * 3 + 1]!, mean[i * 3 + 2]!));
  return out;
}
