// The wgd command as a user meets it on a bad day: no file is overwritten unasked, every error exits
// with one line and status 1 (2 for a mistake in the command line), never a crash; --resume continues
// with the run's own settings; Ctrl-C and SIGTERM stop training with a checkpoint; each command has
// its own help. Child processes run the bundled CLI with this process's environment.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { main, UsageError } from '../src/cli/main.js';
import { decodeCheckpoint } from '../src/io/checkpoint.js';
import { encodePng } from '../src/data/png.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** bin/wgd.mjs bundles the sources here (once, in beforeAll); children run the bundle directly. */
const BUNDLE = join(ROOT, '.cache', 'wgd.mjs');
/** A small shipped model: loading it is the cheapest way to reach the errors raised after a load. */
const LETTERS = join(ROOT, 'examples', 'checkpoints', 'letters', 'letters.safetensors');

const dir = mkdtempSync(join(tmpdir(), 'wgd-reliability-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Exit {
  status: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI in a child process; `onStart` gets the child (to send it a signal). */
function wgd(args: string[], opts: { env?: Record<string, string>; onStart?: (child: ReturnType<typeof spawn>) => void } = {}): Promise<Exit> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [BUNDLE, ...args], { cwd: dir, env: { ...process.env, ...opts.env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (status, signal) => done({ status, signal, stdout, stderr }));
    opts.onStart?.(child);
  });
}

/** The lines wgd itself wrote to stderr (not the SwiftShader notice or the progress bar). */
const wgdLines = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('wgd: '));

/** An error's message from main(), which throws (wgd turns it into one line and the exit status). */
async function failure(args: string[]): Promise<Error> {
  try {
    await main(args);
  } catch (e) {
    return e as Error;
  }
  throw new Error(`wgd ${args.join(' ')} did not fail`);
}

/** Four 8x8 grey PNGs: a dataset small enough that a run's steps take well under a second. */
function tinyData(): string {
  const data = join(dir, 'data');
  mkdirSync(data, { recursive: true });
  for (let k = 0; k < 4; k++) writeFileSync(join(data, `i${k}.png`), encodePng(Uint8Array.from({ length: 64 }, (_, i) => (i * 37 + k * 91) % 256), 8, 8, 1));
  return data;
}

beforeAll(() => {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'wgd.mjs'), 'help'], { cwd: ROOT, env: process.env, encoding: 'utf8', timeout: 120_000 });
  expect(r.status, r.stderr).toBe(0);
  expect(existsSync(BUNDLE)).toBe(true);
}, 180_000);

describe('errors exit cleanly', () => {
  it('each error raised after a model is loaded exits 1 with one line, 20 times out of 20, never by a signal', async () => {
    // Before the device was destroyed on error paths these died with SIGSEGV (139) in about half the runs.
    const cases = [
      { args: ['--label', 'ZZ'], message: /^wgd: label 'ZZ' is not a class of this model; allowed values: A, B/ },
      { args: ['--sampler', 'langevin'], message: /^wgd: sampler 'langevin' needs a noise-conditional process/ },
    ];
    const runs = cases.flatMap((c) => Array.from({ length: 20 }, (_, i) => ({ ...c, out: `err-${c.args[1]}-${i}.png` })));
    const results: { status: number | null; signal: string | null }[] = [];
    // Two at a time: the machine's two cores.
    for (let i = 0; i < runs.length; i += 2) {
      await Promise.all(runs.slice(i, i + 2).map(async (r) => {
        const e = await wgd(['sample', '--ckpt', LETTERS, '--out', r.out, ...r.args]);
        results.push({ status: e.status, signal: e.signal });
        expect({ status: e.status, signal: e.signal }, e.stderr.slice(-500)).toEqual({ status: 1, signal: null });
        const lines = wgdLines(e.stderr);
        expect(lines).toHaveLength(1);
        expect(lines[0]).toMatch(r.message);
        expect(e.stderr).not.toMatch(/^\s+at /m); // no stack trace
        expect(existsSync(join(dir, r.out))).toBe(false);
      }));
    }
    console.log(`post-load errors: ${results.length} runs, exit statuses ${JSON.stringify(Object.fromEntries([...new Set(results.map((r) => String(r.status)))].map((s) => [s, results.filter((r) => String(r.status) === s).length])))}`);
  }, 600_000);

  it('a mistake in the command line exits 2; WGD_DEBUG=1 adds the stack', async () => {
    const usage = await wgd(['train', '--steps', '-5']);
    expect(usage.status).toBe(2);
    expect(wgdLines(usage.stderr)).toEqual(["wgd: --steps = '-5': expected an integer >= 1"]);
    const debug = await wgd(['sample', '--ckpt', join(dir, 'missing.safetensors'), '--out', 'x.png'], { env: { WGD_DEBUG: '1' } });
    expect(debug.status).toBe(1);
    expect(debug.stderr).toMatch(/^wgd: .*missing\.safetensors/m);
    expect(debug.stderr).toMatch(/^\s+at /m);
  }, 120_000);
});

describe('help and numbers', () => {
  it('wgd CMD --help, -h and wgd help CMD print that command\'s options with defaults; wgd help lists commands', async () => {
    const printed: string[] = [];
    const log = vi.spyOn(console, 'log').mockImplementation((s: string) => void printed.push(s));
    try {
      for (const args of [['train', '--help'], ['train', '-h'], ['help', 'train']]) {
        printed.length = 0;
        expect(await main(args)).toBe(0);
        expect(printed[0]).toMatch(/^usage: wgd train \[options\]/);
        expect(printed[0]).toMatch(/--batch VALUE +batch size \(default 32\)/);
        expect(printed[0]).toMatch(/--force +replace output files/);
        expect(printed[0]).not.toMatch(/--ckpt/); // sample's, not train's
      }
      printed.length = 0;
      expect(await main(['help'])).toBe(0);
      expect(printed[0]!.split('\n').length).toBeLessThan(15);
      expect(printed[0]).toMatch(/^wgd sample: /m);
    } finally {
      log.mockRestore();
    }
    expect(await failure(['help', 'nope'])).toBeInstanceOf(UsageError);
  });

  it('negative numbers get the project\'s own message, not parseArgs\' "ambiguous"; unknown options name the command', async () => {
    for (const [args, message] of [
      [['train', '--steps', '-5'], /^--steps = '-5': expected an integer >= 1$/],
      [['sample', '--ckpt', 'x', '--guidance', '-2'], /^--guidance = '-2': expected a number >= 0$/],
      [['train', '--lr', '-1e-3'], /^--lr = '-1e-3': expected a number >= 0$/],
      [['train', '--bogus'], /^train: unknown option '--bogus'; see wgd train --help$/],
      [['sample', '--out'], /^sample: --out needs a value/],
      [['sample', '--out', '--force'], /^sample: --out needs a value/],
    ] as const) {
      const e = await failure([...args]);
      expect(e, args.join(' ')).toBeInstanceOf(UsageError);
      expect(e.message).toMatch(message);
    }
  });
});

describe('nothing is overwritten unasked', () => {
  it('sample refuses its own input (by real path, even with --force), a wrong extension, a folder, an existing file, and an unwritable place, before loading anything', async () => {
    const ck = join(dir, 'copy.safetensors');
    writeFileSync(ck, readFileSync(LETTERS));
    const before = readFileSync(ck);
    const missing = join(dir, 'no-such-model.safetensors'); // output errors must come first, before the load
    expect((await failure(['sample', '--ckpt', ck, '--out', ck])).message).toMatch(/--out .*copy\.safetensors: expected a \.png file name/);
    symlinkSync(ck, join(dir, 'link.png'));
    expect((await failure(['sample', '--ckpt', ck, '--out', join(dir, 'link.png'), '--force'])).message).toMatch(/link\.png is this command's own input .*never overwritten, not even with --force/);
    expect(readFileSync(ck)).toEqual(before);
    mkdirSync(join(dir, 'folder.png'));
    expect((await failure(['sample', '--ckpt', missing, '--out', join(dir, 'folder.png')])).message).toMatch(/folder\.png is a folder/);
    writeFileSync(join(dir, 'taken.png'), 'old');
    expect((await failure(['sample', '--ckpt', missing, '--out', join(dir, 'taken.png')])).message).toMatch(/taken\.png exists; pass --force \(or --overwrite\) to replace it/);
    writeFileSync(join(dir, 'a-file'), '');
    expect((await failure(['sample', '--ckpt', missing, '--out', join(dir, 'a-file', 'x.png')])).message).toMatch(/cannot write .*a-file is a file, not a folder/);
    // A place no one can write, not even root (permission bits would not stop root).
    expect((await failure(['sample', '--ckpt', missing, '--out', '/proc/wgd-sample.png'])).message).toMatch(/cannot write \/proc\/wgd-sample\.png: \/proc is not writable/);
    // With --overwrite (= --force) an existing file is replaced, atomically, by a real PNG.
    expect(await main(['sample', '--ckpt', ck, '--steps', '1', '--label', 'A', '--count', '1', '--out', join(dir, 'taken.png'), '--overwrite'])).toBe(0);
    expect([...readFileSync(join(dir, 'taken.png')).subarray(1, 4)].map((c) => String.fromCharCode(c)).join('')).toBe('PNG');
  }, 300_000);

  it('export and train check theirs the same way; a train that fails leaves no folder behind', async () => {
    const ck = join(dir, 'copy.safetensors');
    expect((await failure(['export', '--ckpt', ck, '--out', ck, '--force'])).message).toMatch(/own input/);
    expect((await failure(['export', '--ckpt', ck, '--out', join(dir, 'model.png')])).message).toMatch(/expected a \.safetensors file name/);
    writeFileSync(join(dir, 'model.safetensors'), 'old');
    expect((await failure(['export', '--ckpt', ck, '--out', join(dir, 'model.safetensors')])).message).toMatch(/model\.safetensors exists; pass --force/);
    expect(await main(['export', '--ckpt', ck, '--out', join(dir, 'model.safetensors'), '--force'])).toBe(0);
    expect(decodeCheckpoint(new Uint8Array(readFileSync(join(dir, 'model.safetensors')))).tensors.size).toBeGreaterThan(0);
    expect((await failure(['train', '--out', join(dir, 'a-file')])).message).toMatch(/--out .*a-file is a file; it names a folder/);
    expect((await failure(['train', '--out', join(dir, 'run.png')])).message).toMatch(/names a folder .*not a \.png file/);
    // An output inside the dataset folder would be read back as data.
    const data = tinyData();
    expect((await failure(['train', '--data', data, '--size', '8', '--out', join(data, 'run')])).message).toMatch(/is inside the input folder/);
    const failed = join(dir, 'failed-run');
    expect((await failure(['train', '--data', join(dir, 'no-such-data'), '--out', failed])).message).toMatch(/dataset .* is unknown/);
    expect(existsSync(failed)).toBe(false);
  }, 300_000);
});

describe('resume means the run\'s own settings; signals stop with a checkpoint', () => {
  const data = tinyData();
  const args = (out: string) => ['train', '--data', data, '--size', '8', '--channels', '1', '--model', 'tiny', '--level-channels', '8,16', '--batch', '2', '--steps', '8', '--warmup', '0', '--checkpoint-every', '3', '--sample-every', '100', '--sample-steps', '1', '--out', out];

  it('a run stopped by SIGINT (exit 130, a checkpoint, how to resume) and resumed with only --out RUN --resume ends bit for bit as the run that was never stopped', async () => {
    const whole = join(dir, 'whole');
    const stopped = join(dir, 'stopped');
    expect(await main(args(whole))).toBe(0);
    // Stopped once the log shows step 3: the run is then between steps 3 and 8.
    const e = await wgd(args(stopped), {
      onStart: (child) => {
        const poll = setInterval(() => {
          const log = join(stopped, 'log.jsonl');
          if (existsSync(log) && readFileSync(log, 'utf8').includes('"step":3')) {
            clearInterval(poll);
            child.kill('SIGINT');
          }
        }, 20);
        child.on('close', () => clearInterval(poll));
      },
    });
    expect({ status: e.status, signal: e.signal }, e.stderr.slice(-800)).toEqual({ status: 130, signal: null });
    const m = /wgd: stopped by SIGINT after step (\d) of 8; checkpoint .*checkpoint\.safetensors\. Continue with: wgd train --out .*stopped --resume/.exec(e.stderr);
    expect(m, e.stderr.slice(-800)).not.toBeNull();
    const at = Number(m![1]);
    expect(at).toBeGreaterThanOrEqual(3);
    expect(at).toBeLessThan(8); // else the test proved nothing
    expect((decodeCheckpoint(new Uint8Array(readFileSync(join(stopped, 'checkpoint.safetensors')))).config as { step: number }).step).toBe(at);

    // Differing settings are refused by name, before anything is loaded; --resume without a checkpoint is an error.
    const refused = await failure(['train', '--out', stopped, '--resume', '--batch', '4', '--lr', '0.001']); // the run's lr is '1e-3': the same value
    expect(refused).toBeInstanceOf(UsageError);
    expect(refused.message).toMatch(/--resume continues .*stopped with its own settings .*config\.json\); these differ: --batch 4 \(the run's: 2\)\. Drop them; only --steps, --checkpoint-every, --sample-every, --sample-steps may change/);
    expect((await failure(['train', '--out', join(dir, 'empty-run'), '--resume'])).message).toMatch(/has no checkpoint\.safetensors to continue from/);

    expect(await main(['train', '--out', stopped, '--resume'])).toBe(0);
    const a = decodeCheckpoint(new Uint8Array(readFileSync(join(whole, 'checkpoint.safetensors'))));
    const b = decodeCheckpoint(new Uint8Array(readFileSync(join(stopped, 'checkpoint.safetensors'))));
    expect([...b.tensors.keys()].sort()).toEqual([...a.tensors.keys()].sort());
    // Weights, EMA, Adam moments and state, the random key: every bit.
    for (const [n, t] of a.tensors) expect(Buffer.from(b.tensors.get(n)!.data.buffer).equals(Buffer.from(t.data.buffer)), n).toBe(true);
    expect(b.config).toEqual(a.config);
    // The run's command stays as first given; the resume is an entry of its own.
    const cfg = JSON.parse(readFileSync(join(stopped, 'config.json'), 'utf8'));
    expect(cfg.command).toMatch(/^train --data .* --batch 2 /);
    expect(cfg.options.batch).toBe('2');
    expect(cfg.resumes).toHaveLength(1);
    expect(cfg.resumes[0]).toMatchObject({ from: at, changed: {} });
    // The log has each step once.
    const steps = readFileSync(join(stopped, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).step);
    expect(steps).toEqual([...new Set(steps)].sort((x, y) => x - y));
  }, 600_000);

  it('SIGTERM stops training with exit 143 and a checkpoint', async () => {
    const run = join(dir, 'terminated');
    const e = await wgd(args(run), {
      onStart: (child) => {
        const poll = setInterval(() => {
          if (existsSync(join(run, 'log.jsonl'))) {
            clearInterval(poll);
            child.kill('SIGTERM');
          }
        }, 20);
        child.on('close', () => clearInterval(poll));
      },
    });
    expect({ status: e.status, signal: e.signal }, e.stderr.slice(-800)).toEqual({ status: 143, signal: null });
    expect(e.stderr).toMatch(/wgd: stopped by SIGTERM after step \d of 8; checkpoint/);
    expect(existsSync(join(run, 'checkpoint.safetensors'))).toBe(true);
  }, 600_000);

  it('train-vqgan --resume takes its run\'s settings too: a differing option is refused by name', async () => {
    const run = join(dir, 'vq-run');
    mkdirSync(run);
    writeFileSync(join(run, 'vqgan.safetensors'), '');
    writeFileSync(join(run, 'config.json'), JSON.stringify({ kind: 'vqgan', options: { data: 'colors', batch: '8', steps: '10', codebook: '1024x4' } }));
    const e = await failure(['train-vqgan', '--out', run, '--resume', '--batch', '16', '--steps', '20']);
    expect(e).toBeInstanceOf(UsageError);
    expect(e.message).toMatch(/these differ: --batch 16 \(the run's: 8\)\. Drop them; only --steps, --checkpoint-every may change/);
    expect((await failure(['train-vqgan', '--out', join(dir, 'no-vq-run'), '--resume'])).message).toMatch(/has no vqgan\.safetensors to continue from/);
  });
});
