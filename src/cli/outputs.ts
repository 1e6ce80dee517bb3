// What a command may write, checked before it starts work: it replaces no existing file unless told
// to (--force / --overwrite), never writes onto its own input (compared by real path, so a link or
// another spelling of the same file counts), writes only where it can, and only the kind of file its
// option names. The files themselves are then written atomically (writeFileAtomic).
import { closeSync, existsSync, openSync, readdirSync, realpathSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';

export interface OutputCheck {
  /** The files the command will write. */
  files: readonly string[];
  /** The files and folders it reads (undefined entries are skipped). */
  inputs?: readonly (string | undefined)[];
  /** --force / --overwrite: existing outputs may be replaced. */
  force: boolean;
  /** Existing outputs are the command's own (a resumed run): replaced without --force. */
  own?: boolean;
}

/** The real path of `p`, or of its nearest existing ancestor with the rest appended (for files not yet made). */
function realish(p: string): string {
  const abs = resolve(p);
  if (existsSync(abs)) return realpathSync(abs);
  const parent = dirname(abs);
  return parent === abs ? abs : join(realish(parent), basename(abs));
}

/** The nearest existing ancestor folder of `p` (or `p` itself), which must be a folder. */
function nearestFolder(p: string): string {
  let d = resolve(p);
  while (!existsSync(d)) d = dirname(d);
  return d;
}

/**
 * Can a file be made in `dir` (the nearest existing folder of an output)? Tried, not inferred from
 * permission bits: root ignores those, and a read-only file system refuses even root.
 */
function checkWritable(dir: string, output: string): void {
  const st = statSync(dir);
  if (!st.isDirectory()) throw new Error(`cannot write ${output}: ${dir} is a file, not a folder`);
  const probe = join(dir, `.wgd-write-test-${process.pid}-${Math.random().toString(36).slice(2)}`);
  try {
    closeSync(openSync(probe, 'wx'));
    unlinkSync(probe);
  } catch (e) {
    throw new Error(`cannot write ${output}: ${dir} is not writable (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/** Checks every output before the work: see the file's header. */
export function checkOutputs(c: OutputCheck): void {
  const inputs = (c.inputs ?? []).filter((p): p is string => Boolean(p) && existsSync(p!)).map((p) => ({ p, real: realpathSync(p) }));
  const existing: string[] = [];
  const checkedDirs = new Set<string>();
  for (const f of c.files) {
    const real = realish(f);
    const same = inputs.find((i) => i.real === real);
    if (same) throw new Error(`${f} is this command's own input (${same.p}); it is never overwritten, not even with --force: choose another output`);
    // An output inside an input folder (a dataset) would be read back as data next time.
    const inside = inputs.find((i) => statSync(i.p).isDirectory() && real.startsWith(i.real + '/'));
    if (inside) throw new Error(`${f} is inside the input folder ${inside.p}; choose an output outside it`);
    if (existsSync(f)) {
      if (statSync(f).isDirectory()) throw new Error(`${f} is a folder; the output here is a file`);
      existing.push(f);
    }
    const dir = nearestFolder(dirname(resolve(f)));
    if (!checkedDirs.has(dir)) {
      checkWritable(dir, f);
      checkedDirs.add(dir);
    }
  }
  if (existing.length && !c.force && !c.own) {
    const list = existing.slice(0, 3).join(', ') + (existing.length > 3 ? ` and ${existing.length - 3} more` : '');
    throw new Error(`${list} ${existing.length > 1 ? 'exist' : 'exists'}; pass --force (or --overwrite) to replace ${existing.length > 1 ? 'them' : 'it'}, or choose another output`);
  }
}

/** An output file's extension, checked: `--out` must end with `ext` (e.g. '.png'). */
export function checkExtension(option: string, path: string, ext: string): void {
  if (extname(path).toLowerCase() !== ext) throw new Error(`${option} ${path}: expected a ${ext} file name (ending in ${ext})`);
}

const FILE_EXTENSIONS = ['.png', '.safetensors', '.json', '.jsonl', '.jpg', '.jpeg'];

/** A run or output folder: not an existing file, and not named like one (a mistaken `--out x.png`). */
export function checkFolder(option: string, path: string): void {
  if (existsSync(path) && !statSync(path).isDirectory()) throw new Error(`${option} ${path} is a file; it names a folder (the run's files go inside it)`);
  const ext = extname(path).toLowerCase();
  if (FILE_EXTENSIONS.includes(ext)) throw new Error(`${option} ${path}: names a folder (the run's files go inside it), not a ${ext} file`);
}

/** Files in `dir` whose names match `pattern` (sample grids of an earlier run, say). */
export function filesMatching(dir: string, pattern: RegExp): string[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) return [];
  return readdirSync(dir).filter((n) => pattern.test(n)).map((n) => join(dir, n));
}

/** With --force, a run folder's old files go before the new run starts, so none of them outlives it. */
export function removeFiles(files: readonly string[]): void {
  for (const f of files) rmSync(f, { force: true });
}
