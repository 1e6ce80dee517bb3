/** Data augmentation on NCHW float images. */

/**
 * Mirrors images left-right ([N,C,H,W]); returns a new array. With `which`, only images i with
 * which[i] truthy are flipped (e.g. a random half for augmentation), the rest are copied.
 */
export function hflip(
  images: Float32Array,
  shape: readonly [number, number, number, number],
  which?: ArrayLike<boolean | number>,
): Float32Array {
  const [n, c, h, w] = shape;
  if (images.length !== n * c * h * w) throw new Error(`hflip: shape [${shape}] wants ${n * c * h * w} values, got ${images.length}`);
  const out = new Float32Array(images.length);
  const per = c * h * w;
  for (let i = 0; i < n; i++) {
    const o = i * per;
    if (which && !which[i]) {
      out.set(images.subarray(o, o + per), o);
      continue;
    }
    for (let row = 0; row < c * h; row++) {
      const r = o + row * w;
      for (let x = 0; x < w; x++) out[r + x] = images[r + w - 1 - x]!;
    }
  }
  return out;
}
