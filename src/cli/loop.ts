// The run loop every training command shares (train, train-vqgan, train-classifier): steps of a
// Trainer with at most two in flight, a progress bar, a log line and a checkpoint every so often, and
// on SIGINT/SIGTERM a last checkpoint and how to resume. What a command logs, plots or samples is its own.
import { existsSync } from 'node:fs';
import type { Device } from '../graph/device.js';
import type { Tensor } from '../graph/tensor.js';
import type { Trainer } from '../optim/trainer.js';
import { writeFileAtomic } from '../io/file.js';
import { Progress, StepWindow } from './progress.js';
import type { StopRequest, StopSignal } from './stop.js';

export interface RunLoop {
  /** The command (for the bar and the resume hint) and its run folder. */
  command: string;
  out: string;
  /** The checkpoint file the loop writes (trainer.state()). */
  checkpoint: string;
  /** Steps the run ends at. */
  total: number;
  logEvery: number;
  checkpointEvery: number;
  stop?: StopRequest;
  /** What the bar shows until the first log line (a resumed run's last logged figures, say). */
  bar?: Record<string, number>;
  /** After each step is submitted, with its loss on the device (to sum it over a log interval, say). */
  onStep?: (loss: Tensor) => void;
  /** At a log step: appends its line and returns the figures for the bar. */
  log: (step: number) => Promise<Record<string, number>>;
  /** After each checkpoint is written (plots, reconstructions). */
  afterCheckpoint?: (step: number) => Promise<void>;
  /** After every step's log and checkpoint (sample grids on their own schedule). */
  afterStep?: (step: number) => Promise<void>;
  /** Figures for the bar's last line. */
  finish?: () => Record<string, number>;
}

/** Runs `trainer` up to `o.total` steps (or until a signal); returns the signal that stopped it, if one did. */
export async function runTraining(dev: Device, trainer: Trainer, o: RunLoop): Promise<{ stopped?: StopSignal }> {
  const bar = new Progress(o.total, o.command, process.stderr, trainer.steps);
  const window = new StepWindow(dev);
  let shown = o.bar ?? {};
  let saved = trainer.steps;
  while (trainer.steps < o.total && !o.stop?.signal) {
    const loss = await trainer.step();
    o.onStep?.(loss);
    const s = trainer.steps;
    bar.update(await window.submitted(s), shown);
    if (s % o.logEvery === 0 || s === o.total) {
      shown = await o.log(s);
      bar.update(s, shown, true);
    }
    if (s % o.checkpointEvery === 0 || s === o.total) {
      await writeFileAtomic(o.checkpoint, await trainer.state());
      saved = s;
      await o.afterCheckpoint?.(s);
    }
    await o.afterStep?.(s);
  }
  bar.finish(trainer.steps, o.finish?.() ?? shown);
  const signal = o.stop?.signal;
  if (!signal) return {};
  // Stopped by a signal: the steps since the last checkpoint are kept in a new one (stopped before the
  // first step, the run's initial state is, so that --resume works all the same).
  if (saved !== trainer.steps || !existsSync(o.checkpoint)) await writeFileAtomic(o.checkpoint, await trainer.state());
  console.error(`wgd: stopped by ${signal} after step ${trainer.steps} of ${o.total}; checkpoint ${o.checkpoint}. Continue with: wgd ${o.command} --out ${o.out} --resume`);
  return { stopped: signal };
}
