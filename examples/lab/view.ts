// Drawing for the lab page: image grids on canvases (1 canvas pixel per image pixel, scaled up
// without smoothing), the loss plot, and downloads.
import { imagesToGrid } from '../../src/index.js';

export interface Grid {
  pixels: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3 | 4;
}

/** Columns of the sample grid: one row per label with `perLabel` images, or (one image per label,
 * or unconditional) rows of up to 8. The headless tests lay out Node's images with the same rule. */
export function gridColumns(n: number, perLabel: number, conditional: boolean): number {
  if (conditional && perLabel > 1) return perLabel;
  return Math.max(1, Math.min(n, 8));
}

/** Tiles [N, C, H, W] images in [-1, 1] into an 8-bit grid (the same pixels as the PNG download). */
export function toGrid(images: Float32Array, shape: [number, number, number, number], cols: number): Grid {
  return imagesToGrid(images, shape, { cols });
}

/** Puts a grid on a canvas at one canvas pixel per image pixel and sets a whole-number display scale
 * that fits in maxW x maxH CSS pixels. */
export function drawGrid(canvas: HTMLCanvasElement, g: Grid, maxW = 480, maxH = 360): void {
  canvas.width = g.width;
  canvas.height = g.height;
  const rgba = new Uint8ClampedArray(g.width * g.height * 4);
  for (let i = 0; i < g.width * g.height; i++) {
    const p = g.pixels.subarray(i * g.channels, (i + 1) * g.channels);
    if (g.channels === 1) rgba.set([p[0]!, p[0]!, p[0]!, 255], i * 4);
    else rgba.set([p[0]!, p[1]!, p[2]!, g.channels === 4 ? p[3]! : 255], i * 4);
  }
  canvas.getContext('2d')!.putImageData(new ImageData(rgba, g.width, g.height), 0, 0);
  const scale = Math.max(1, Math.floor(Math.min(maxW / g.width, maxH / g.height)));
  canvas.style.width = `${g.width * scale}px`;
  canvas.style.height = `${g.height * scale}px`;
  canvas.closest('figure')?.removeAttribute('hidden');
}

/** A line plot of the loss against the step: raw values light, a moving average dark, log scale. */
export function drawLossPlot(canvas: HTMLCanvasElement, steps: readonly number[], losses: readonly number[]): void {
  const ctx = canvas.getContext('2d')!;
  const W = canvas.width, H = canvas.height;
  const left = 48, right = W - 10, top = 10, bottom = H - 26;
  ctx.clearRect(0, 0, W, H);
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = '#666';
  const ok = losses.map((v, i) => [steps[i]!, v] as const).filter(([, v]) => Number.isFinite(v) && v > 0);
  if (ok.length === 0) {
    ctx.fillText('the loss appears here once training runs', left, H / 2);
    return;
  }
  const ly = ok.map(([, v]) => Math.log10(v));
  let lo = Math.min(...ly), hi = Math.max(...ly);
  if (hi - lo < 0.05) (lo -= 0.05), (hi += 0.05);
  const x0 = ok[0]![0], x1 = Math.max(ok[ok.length - 1]![0], x0 + 1);
  const X = (s: number) => left + ((s - x0) / (x1 - x0)) * (right - left);
  const Y = (l: number) => bottom - ((l - lo) / (hi - lo)) * (bottom - top);
  // axes and ticks
  ctx.strokeStyle = '#bbb';
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(left, top);
  ctx.lineTo(left, bottom);
  ctx.lineTo(right, bottom);
  ctx.stroke();
  ctx.textAlign = 'right';
  for (const l of [lo, (lo + hi) / 2, hi]) ctx.fillText(fmt(10 ** l), left - 4, Y(l) + 4);
  ctx.textAlign = 'center';
  for (const s of [x0, Math.round((x0 + x1) / 2), x1]) ctx.fillText(String(s), X(s), bottom + 14);
  ctx.textAlign = 'left';
  ctx.fillText('loss (log) vs step', left + 6, top + 10);
  const line = (pts: (readonly [number, number])[], colour: string, width: number) => {
    ctx.strokeStyle = colour;
    ctx.lineWidth = width;
    ctx.beginPath();
    pts.forEach(([s, l], i) => (i ? ctx.lineTo(X(s), Y(l)) : ctx.moveTo(X(s), Y(l))));
    ctx.stroke();
  };
  line(ok.map(([s], i) => [s, ly[i]!] as const), '#b8c4dc', 1);
  const k = Math.max(1, Math.round(ok.length / 20));
  const smooth = ly.map((_, i) => {
    const a = Math.max(0, i - k + 1);
    return ly.slice(a, i + 1).reduce((p, q) => p + q, 0) / (i + 1 - a);
  });
  line(ok.map(([s], i) => [s, smooth[i]!] as const), '#2457c5', 2);
}

function fmt(v: number): string {
  return v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(2) : v.toPrecision(2);
}

/** Saves bytes as a file through a temporary link. */
export function download(bytes: Uint8Array, name: string, type: string): void {
  const url = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Lets the browser paint and handle input before the next chunk of work. */
export function yieldToUi(): Promise<void> {
  return new Promise((r) => setTimeout(r, 0));
}
