// Line plots as PNG (loss curves), drawn into a greyscale raster with a 3x5 pixel font for the axis
// numbers: no canvas or font library needed, in Node or the browser.
import { encodePng } from './png.js';

// 3x5 glyphs, rows top to bottom, 3 bits each (4 = left pixel).
const GLYPHS: Record<string, number[]> = {
  '0': [7, 5, 5, 5, 7], '1': [2, 6, 2, 2, 7], '2': [7, 1, 7, 4, 7], '3': [7, 1, 7, 1, 7], '4': [5, 5, 7, 1, 1],
  '5': [7, 4, 7, 1, 7], '6': [7, 4, 7, 5, 7], '7': [7, 1, 1, 1, 1], '8': [7, 5, 7, 5, 7], '9': [7, 5, 7, 1, 7],
  '.': [0, 0, 0, 0, 2], '-': [0, 0, 7, 0, 0], e: [0, 7, 7, 4, 7], k: [4, 5, 6, 5, 5],
};

class Raster {
  readonly px: Uint8Array;
  constructor(readonly w: number, readonly h: number, bg = 255) {
    this.px = new Uint8Array(w * h).fill(bg);
  }
  set(x: number, y: number, v: number): void {
    x = Math.round(x);
    y = Math.round(y);
    if (x >= 0 && y >= 0 && x < this.w && y < this.h) this.px[y * this.w + x] = Math.min(this.px[y * this.w + x]!, v);
  }
  line(x0: number, y0: number, x1: number, y1: number, v: number): void {
    const n = Math.max(1, Math.ceil(Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0))));
    for (let i = 0; i <= n; i++) this.set(x0 + ((x1 - x0) * i) / n, y0 + ((y1 - y0) * i) / n, v);
  }
  text(s: string, x: number, y: number, v = 0): void {
    for (const ch of s) {
      const g = GLYPHS[ch];
      if (g) g.forEach((row, r) => [4, 2, 1].forEach((bit, c) => row & bit && this.set(x + c, y + r, v)));
      x += 4;
    }
  }
}

function label(v: number): string {
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (a >= 10000) return `${Math.round(v / 1000)}k`;
  if (a >= 1) return String(Math.round(v * 10) / 10);
  return a >= 0.01 ? v.toFixed(3).replace(/0+$/, '') : v.toExponential(0);
}

export interface PlotOptions {
  width?: number;
  height?: number;
  /** Plot log10 of the values (for losses spanning decades). */
  logY?: boolean;
  /** x value of each point (default 0, 1, 2, ...). */
  x?: readonly number[];
  /** Also draw a centred moving average over this many points, darker. */
  smooth?: number;
}

/** A line plot of `values` as PNG bytes: axes, min/max ticks, the raw series in grey, a smoothed one in black. */
export function linePlotPng(values: readonly number[], opts: PlotOptions = {}): Uint8Array {
  const W = opts.width ?? 480, H = opts.height ?? 240;
  const r = new Raster(W, H);
  const left = 34, right = W - 8, top = 8, bottom = H - 16;
  const xs = opts.x ?? values.map((_, i) => i);
  const f = (v: number) => (opts.logY ? Math.log10(Math.max(v, 1e-12)) : v);
  const ys = values.map(f).filter(Number.isFinite);
  const [yMin, yMax] = ys.length ? [Math.min(...ys), Math.max(...ys)] : [0, 1];
  const [xMin, xMax] = xs.length ? [xs[0]!, xs[xs.length - 1]!] : [0, 1];
  const X = (x: number) => left + ((x - xMin) / (xMax - xMin || 1)) * (right - left);
  const Y = (y: number) => bottom - ((y - yMin) / (yMax - yMin || 1)) * (bottom - top);
  r.line(left, top, left, bottom, 0);
  r.line(left, bottom, right, bottom, 0);
  const unlog = (y: number) => (opts.logY ? 10 ** y : y);
  r.text(label(unlog(yMax)), 2, top, 0);
  r.text(label(unlog(yMin)), 2, bottom - 5, 0);
  r.text(label(xMin), left, bottom + 5, 0);
  const xl = label(xMax);
  r.text(xl, right - 4 * xl.length, bottom + 5, 0);
  const draw = (series: number[], v: number) => {
    for (let i = 1; i < series.length; i++) {
      const a = f(series[i - 1]!), b = f(series[i]!);
      if (Number.isFinite(a) && Number.isFinite(b)) r.line(X(xs[i - 1]!), Y(a), X(xs[i]!), Y(b), v);
    }
  };
  draw([...values], 170);
  const k = opts.smooth ?? 0;
  // On a log axis, smooth the logs (a geometric mean): one early, large loss does not lift its window.
  if (k > 1) draw(movingAverage(values.map(f), k).map(unlog), 0);
  return encodePng(r.px, W, H, 1);
}

/**
 * The mean of each point's window of k points centred on it (narrower at the ends): unlike a trailing
 * window it does not lag a falling loss by k/2 points.
 */
export function movingAverage(values: readonly number[], k: number): number[] {
  const h = Math.floor(k / 2);
  return values.map((_, i) => mean(values.slice(Math.max(0, i - h), Math.min(values.length, i + h + 1))));
}

const mean = (v: readonly number[]) => v.reduce((a, b) => a + b, 0) / v.length;
