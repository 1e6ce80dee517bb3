// float64 references of kernels/conv2d.ts, for the tests only (not shipped with the package).
import type { Conv2dGeometry } from '../../kernels/conv2d.js';

/** Calls f(xIndex, wIndex, yIndex) for every (output, tap) pair whose input pixel lies inside x. */
function forEachTap(g: Conv2dGeometry, f: (xi: number, wi: number, yi: number) => void): void {
  const cinG = g.cin / g.groups;
  const coutG = g.cout / g.groups;
  for (let b = 0; b < g.batch; b++)
    for (let co = 0; co < g.cout; co++) {
      const grp = Math.floor(co / coutG);
      for (let oy = 0; oy < g.oh; oy++)
        for (let ox = 0; ox < g.ow; ox++) {
          const yi = ((b * g.cout + co) * g.oh + oy) * g.ow + ox;
          for (let ci = 0; ci < cinG; ci++)
            for (let ky = 0; ky < g.kh; ky++) {
              const iy = oy * g.stride[0] - g.padding[0] + ky * g.dilation[0];
              if (iy < 0 || iy >= g.h) continue;
              for (let kx = 0; kx < g.kw; kx++) {
                const ix = ox * g.stride[1] - g.padding[1] + kx * g.dilation[1];
                if (ix < 0 || ix >= g.w) continue;
                const xi = ((b * g.cin + grp * cinG + ci) * g.h + iy) * g.w + ix;
                const wi = ((co * cinG + ci) * g.kh + ky) * g.kw + kx;
                f(xi, wi, yi);
              }
            }
        }
    }
}

/** Direct float64 convolution. */
export function conv2dRef(x: Float64Array, w: Float64Array, b: Float64Array | null, g: Conv2dGeometry): Float64Array {
  const y = new Float64Array(g.batch * g.cout * g.oh * g.ow);
  if (b) for (let i = 0; i < y.length; i++) y[i] = b[Math.floor(i / (g.oh * g.ow)) % g.cout]!;
  forEachTap(g, (xi, wi, yi) => (y[yi]! += x[xi]! * w[wi]!));
  return y;
}

/** Analytic float64 VJP: gradients of sum(conv2d(x, w, b) * gy) with respect to x, w and b. */
export function conv2dGradRef(x: Float64Array, w: Float64Array, gy: Float64Array, g: Conv2dGeometry): { dx: Float64Array; dw: Float64Array; db: Float64Array } {
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(w.length);
  const db = new Float64Array(g.cout);
  forEachTap(g, (xi, wi, yi) => {
    dx[xi]! += w[wi]! * gy[yi]!;
    dw[wi]! += x[xi]! * gy[yi]!;
  });
  for (let i = 0; i < gy.length; i++) db[Math.floor(i / (g.oh * g.ow)) % g.cout]! += gy[i]!;
  return { dx, dw, db };
}
