// float64 references of kernels/resample.ts, for the tests only (not shipped with the package).

/** Nearest 2x upsampling of NCHW x. */
export function upsample2xRef(x: Float64Array, shape: readonly number[]): Float64Array {
  const [n, c, h, w] = shape as [number, number, number, number];
  const out = new Float64Array(n * c * 4 * h * w);
  for (let p = 0; p < n * c; p++)
    for (let i = 0; i < 2 * h; i++)
      for (let j = 0; j < 2 * w; j++) out[(p * 2 * h + i) * 2 * w + j] = x[(p * h + (i >> 1)) * w + (j >> 1)]!;
  return out;
}

/** VJP of upsample2xRef: the sum over each 2x2 block of gy. */
export function upsample2xGradRef(gy: Float64Array, shape: readonly number[]): Float64Array {
  const [n, c, h, w] = shape as [number, number, number, number];
  const out = new Float64Array(n * c * h * w);
  for (let p = 0; p < n * c; p++)
    for (let i = 0; i < 2 * h; i++)
      for (let j = 0; j < 2 * w; j++) out[(p * h + (i >> 1)) * w + (j >> 1)]! += gy[(p * 2 * h + i) * 2 * w + j]!;
  return out;
}

/** 2x2 average pooling, stride 2, of NCHW x with even H, W. */
export function downsample2xRef(x: Float64Array, shape: readonly number[]): Float64Array {
  const [n, c, h, w] = shape as [number, number, number, number];
  return upsample2xGradRef(x, [n, c, h / 2, w / 2]).map((v) => v / 4);
}

/** VJP of downsample2xRef: gy / 4 spread over each 2x2 block. */
export function downsample2xGradRef(gy: Float64Array, shape: readonly number[]): Float64Array {
  const [n, c, h, w] = shape as [number, number, number, number];
  return upsample2xRef(gy, [n, c, h / 2, w / 2]).map((v) => v / 4);
}
