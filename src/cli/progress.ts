import type { Device } from '../graph/device.js';

/** A one-line progress bar for long work: done/total, a bar, any fields (loss, speed) and the ETA. */
export class Progress {
  private readonly start = performance.now();
  private lastPrint = 0;
  private done = 0;
  private readonly tty: boolean;

  constructor(
    readonly total: number,
    readonly label: string,
    private readonly out: NodeJS.WriteStream = process.stderr,
    private readonly first = 0,
  ) {
    this.tty = Boolean(out.isTTY);
  }

  /** Seconds since the bar started. */
  get elapsed(): number {
    return (performance.now() - this.start) / 1000;
  }

  update(done: number, fields: Record<string, string | number> = {}, force = false): void {
    const now = performance.now();
    // On a terminal redraw at most 10 times a second; in a log, one line every 15 s.
    // The count never goes back: a loop may report a readback's step, then the steps known done.
    done = this.done = Math.max(done, this.done);
    if (!force && now - this.lastPrint < (this.tty ? 100 : 15_000)) return;
    this.lastPrint = now;
    const frac = this.total > 0 ? Math.min(1, done / this.total) : 1;
    const rate = (done - this.first) / Math.max(this.elapsed, 1e-9);
    const eta = rate > 0 ? (this.total - done) / rate : Infinity;
    const width = 24;
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '-');
    const extra = Object.entries(fields).map(([k, v]) => `${k} ${typeof v === 'number' ? fmt(v) : v}`);
    const line = `${this.label} [${bar}] ${done}/${this.total} ${[...extra, `${fmt(rate)}/s`, `ETA ${duration(eta)}`].join('  ')}`;
    if (this.tty) this.out.write(`\r\x1b[2K${line}`);
    else this.out.write(line + '\n');
  }

  finish(done: number, fields: Record<string, string | number> = {}): void {
    this.update(done, fields, true);
    if (this.tty) this.out.write('\n');
  }
}

function fmt(v: number): string {
  if (Number.isNaN(v)) return '–'; // not measured yet
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(2) : a < 1 ? v.toFixed(4) : v.toFixed(2);
}

export function duration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/**
 * Bounds a training loop's queue: after each step is submitted, wait for the one `depth` steps back.
 * The queue never runs dry, the host never runs far ahead, and a bar can count steps done, not queued.
 */
export class StepWindow {
  private readonly pending: Promise<void>[] = [];
  constructor(
    private readonly dev: Device,
    private readonly depth = 2,
  ) {}

  /** Call once step `count` (steps so far) is recorded; resolves to the number of steps known done. */
  async submitted(count: number): Promise<number> {
    this.pending.push(this.dev.submitted());
    if (this.pending.length > this.depth) await this.pending.shift();
    return count - this.pending.length;
  }
}
