// `--resume` continues a run with the run's own settings: every training option comes from the
// options its config.json recorded when it started (and the changes of earlier resumes). An option
// given on the command line that differs is refused by name, except those that may change on resume
// (how long to train, how often to checkpoint and sample), which are recorded as a new entry of the
// run's `resumes` list; the original command stays as it was.
import { existsSync, readFileSync } from 'node:fs';
import { writeFileAtomic } from '../io/file.js';
import { join } from 'node:path';
import { UsageError } from './options.js';

export type OptionValues = Record<string, string | boolean | undefined>;

/** Options that say where and how to write, not what to train: never recorded, never compared. */
export const NOT_RECORDED = ['out', 'resume', 'force', 'overwrite'];

/** One resume of a run, as config.json lists it. */
export interface ResumeRecord {
  /** The step the run continued from (set when the checkpoint is read). */
  from?: number;
  time: string;
  command: string;
  /** The options it changed. */
  changed: OptionValues;
}

/** What config.json holds about the run's options. */
interface RecordedRun {
  options?: OptionValues;
  command?: string;
  resumes?: ResumeRecord[];
}

/** Two spellings of one value are the same setting: '1e-3' and '0.001', '16' and '16.0'. */
function same(a: unknown, b: unknown): boolean {
  if (String(a) === String(b)) return true;
  const [x, y] = [Number(a), Number(b)];
  return typeof a === 'string' && typeof b === 'string' && a.trim() !== '' && b.trim() !== '' && Number.isFinite(x) && x === y;
}

/** The options to record for a new run: every option's value (defaults included) but NOT_RECORDED. */
export function recordedOptions(values: OptionValues): OptionValues {
  return Object.fromEntries(Object.entries(values).filter(([k, v]) => !NOT_RECORDED.includes(k) && v !== undefined));
}

/**
 * The options a resumed run continues with, from RUN/config.json: its recorded options, then each
 * earlier resume's changes, then the `mutable` options given now. Throws when the run has no checkpoint
 * (`checkpoint` names the file) or when a given option differs from the run's. A run that recorded no
 * options (started by an older wgd) has its recorded command line parsed with `parse` instead.
 */
export function resumeOptions(
  cmd: string, out: string, checkpoint: string, values: OptionValues, given: ReadonlySet<string>, mutable: readonly string[], parse: (args: string[]) => OptionValues,
): { values: OptionValues; record: ResumeRecord } {
  const ck = join(out, checkpoint);
  if (!existsSync(ck)) throw new Error(`--resume: ${out} has no ${checkpoint} to continue from; drop --resume to start a new run there`);
  const cfgPath = join(out, 'config.json');
  if (!existsSync(cfgPath)) throw new Error(`--resume: ${out} has a checkpoint but no config.json with the run's settings`);
  let run: RecordedRun;
  try {
    run = JSON.parse(readFileSync(cfgPath, 'utf8')) as RecordedRun;
  } catch (e) {
    throw new Error(`--resume: ${cfgPath} is not valid JSON (${(e as Error).message.slice(0, 200)})`);
  }
  let recorded = run.options;
  if ((!recorded || typeof recorded !== 'object') && typeof run.command === 'string') {
    // A run started before options were recorded: its command line says the same (paths with spaces aside).
    const args = run.command.split(/\s+/).filter(Boolean);
    if (args[0] === cmd) args.shift();
    try {
      recorded = recordedOptions(parse(args));
    } catch (e) {
      throw new Error(`--resume: ${cfgPath} records no options, and its command '${run.command.slice(0, 200)}' does not parse (${(e as Error).message.slice(0, 200)})`);
    }
  }
  if (!recorded || typeof recorded !== 'object') throw new Error(`--resume: ${cfgPath} records neither the run's options nor its command; it cannot be continued with its own settings`);
  const settled: OptionValues = { ...recorded };
  for (const r of run.resumes ?? []) Object.assign(settled, r.changed);
  const differs = [...given].filter((k) => !NOT_RECORDED.includes(k) && !mutable.includes(k) && !same(values[k], settled[k]));
  if (differs.length) {
    const list = differs.map((k) => `--${k} ${values[k]} (the run's: ${settled[k] ?? 'not set'})`).join(', ');
    throw new UsageError(`${cmd} --resume continues ${out} with its own settings (${cfgPath}); these differ: ${list}. Drop them; only ${mutable.map((k) => `--${k}`).join(', ')} may change on resume`);
  }
  const changed = Object.fromEntries(mutable.filter((k) => given.has(k) && !same(values[k], settled[k])).map((k) => [k, values[k]]));
  const merged = { ...values, ...settled, ...changed };
  return { values: merged, record: { time: new Date().toISOString(), command: process.argv.slice(2).join(' '), changed } };
}

/**
 * config.json: the run's settings, its command and options as first given; a resume adds an entry to
 * `resumes` (with the step it continued from) and leaves the rest as it was.
 */
export async function writeRunConfig(path: string, fresh: Record<string, unknown>, cmd: { resume: boolean; options?: OptionValues; resumed?: ResumeRecord }, step: number): Promise<void> {
  let config: Record<string, unknown>;
  if (cmd.resume && existsSync(path)) {
    config = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    const resumes = Array.isArray(config.resumes) ? config.resumes : [];
    config.resumes = [...resumes, { from: step, ...(cmd.resumed ?? { time: new Date().toISOString(), command: process.argv.slice(2).join(' '), changed: {} }) }];
  } else {
    config = { ...fresh, command: process.argv.slice(2).join(' '), ...(cmd.options ? { options: cmd.options } : {}) };
  }
  await writeFileAtomic(path, JSON.stringify(config, null, 2));
}

/** The log's lines up to `step` (a line cut short by a crash is dropped). */
export function keepLog(path: string, step: number): string {
  if (!existsSync(path)) return '';
  const kept = readFileSync(path, 'utf8').split('\n').filter((l) => {
    try {
      return (JSON.parse(l) as { step: number }).step <= step;
    } catch {
      return false;
    }
  });
  return kept.map((l) => l + '\n').join('');
}
