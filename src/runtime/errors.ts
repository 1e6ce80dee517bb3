/** Errors that say what and where: the op, the shapes it got, what it wanted, the limit it hit. */

/** A shape for a message; one read from a file can have any number of dims, so long ones are cut. */
export const fmtShape = (s: readonly number[]): string => (s.length > 16 ? `[${s.slice(0, 16).join(', ')}, … (${s.length} dims)]` : `[${s.join(', ')}]`);

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

/**
 * A config object read from a file may only hold the keys the code knows: a misspelt key would
 * otherwise be ignored and its field silently take the default.
 */
export function assertKnownKeys(what: string, config: object, known: readonly string[]): void {
  const unknown = Object.keys(config).filter((k) => !known.includes(k));
  if (!unknown.length) return;
  const names = unknown.slice(0, 5).map((k) => `'${k.length > 60 ? `${k.slice(0, 60)}…` : k}'`).join(', ');
  throw new ShapeError(what, `config has unknown key${unknown.length > 1 ? 's' : ''} ${names}${unknown.length > 5 ? ` and ${unknown.length - 5} more` : ''}; known keys: ${known.join(', ')}`);
}
