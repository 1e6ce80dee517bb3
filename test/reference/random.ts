// float64 references of kernels/random.ts, for the tests only (not shipped with the package).
import type { Distribution } from '../../kernels/random.js';

const R = [13, 15, 26, 6, 17, 29, 16, 24];
const rotl = (x: number, r: number) => ((x << r) | (x >>> (32 - r))) >>> 0;

/** Threefry-2x32-20 of counter (c0, c1) under key (k0, k1), in plain integer arithmetic. */
export function threefryRef(c0: number, c1: number, k0: number, k1: number): [number, number] {
  const ks = [k0 >>> 0, k1 >>> 0, (0x1bd11bda ^ k0 ^ k1) >>> 0];
  let x0 = (c0 + k0) >>> 0;
  let x1 = (c1 + k1) >>> 0;
  for (let r = 0; r < 20; r++) {
    x0 = (x0 + x1) >>> 0;
    x1 = rotl(x1, R[r % 8]!);
    x1 = (x1 ^ x0) >>> 0;
    if (r % 4 === 3) {
      const s = (r >> 2) + 1;
      x0 = (x0 + ks[s % 3]!) >>> 0;
      x1 = (x1 + ks[(s + 1) % 3]! + s) >>> 0;
    }
  }
  return [x0, x1];
}

/** The same numbers in float64: element j of a call with (seed, counter, stream). */
export function randomRef(seed: number, counter: number, stream: number, n: number, dist: Distribution): Float64Array {
  const out = new Float64Array(n);
  const unit = (x: number) => ((x >>> 8) + 0.5) / 16777216;
  for (let i = 0; 2 * i < n; i++) {
    const [a, b] = threefryRef(i, counter, seed, stream);
    const u0 = unit(a), u1 = unit(b);
    let y0 = u0, y1 = u1;
    if (dist === 'normal') {
      const rad = Math.sqrt(-2 * Math.log(u0));
      y0 = rad * Math.cos(2 * Math.PI * u1 - Math.PI);
      y1 = rad * Math.sin(2 * Math.PI * u1 - Math.PI);
    }
    out[2 * i] = y0;
    if (2 * i + 1 < n) out[2 * i + 1] = y1;
  }
  return out;
}
