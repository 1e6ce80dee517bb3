/** Errors that say what and where: the op, the shapes it got, what it wanted, the limit it hit. */

export const fmtShape = (s: readonly number[]): string => `[${s.join(', ')}]`;

/** An op got inputs whose shapes (or attributes) do not fit together. */
export class ShapeError extends Error {
  constructor(op: string, message: string) {
    super(`${op}: ${message}`);
    this.name = 'ShapeError';
  }
}

/** A request exceeds one of the device's limits. */
export class LimitError extends Error {
  constructor(op: string, limit: string, value: number, max: number, hint: string) {
    super(`${op}: ${limit} is ${max} on this device, but ${value} is needed. ${hint}`);
    this.name = 'LimitError';
  }
}

/** WGSL failed to compile or a pipeline failed validation. */
export class KernelCompileError extends Error {
  constructor(kernel: string, detail: string) {
    super(`kernel '${kernel}' failed to compile: ${detail}`);
    this.name = 'KernelCompileError';
  }
}

export function assertShape(op: string, what: string, got: readonly number[], want: readonly number[]): void {
  if (got.length !== want.length || got.some((d, i) => d !== want[i])) {
    throw new ShapeError(op, `${what} has shape ${fmtShape(got)}, expected ${fmtShape(want)}`);
  }
}

export function assertRank(op: string, what: string, got: readonly number[], rank: number, layout: string): void {
  if (got.length !== rank) {
    throw new ShapeError(op, `${what} has shape ${fmtShape(got)}, expected rank ${rank} (${layout})`);
  }
}
