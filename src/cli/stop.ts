// Ctrl-C (SIGINT) or SIGTERM during training: the loop finishes its step, writes a checkpoint and says
// how to resume; wgd then exits with 128 + the signal's number. A second signal ends the process at
// once, by that signal, as if no handler were there.

const CODES = { SIGINT: 130, SIGTERM: 143 } as const;
export type StopSignal = keyof typeof CODES;

export class StopRequest {
  /** The signal that asked the loop to stop, once one has. */
  signal: StopSignal | null = null;
  private readonly handlers = new Map<StopSignal, () => void>();

  /** Listens for SIGINT and SIGTERM until dispose(). */
  static listen(): StopRequest {
    const s = new StopRequest();
    for (const sig of Object.keys(CODES) as StopSignal[]) {
      const h = () => {
        if (s.signal) {
          s.dispose();
          process.kill(process.pid, sig);
          return;
        }
        s.signal = sig;
        process.stderr.write(`\n${sig}: stopping after the current step and writing a checkpoint (${sig === 'SIGINT' ? 'Ctrl-C' : 'the signal'} again stops at once, without one)\n`);
      };
      s.handlers.set(sig, h);
      process.on(sig, h);
    }
    return s;
  }

  /** The exit status for the signal received (130 for SIGINT, 143 for SIGTERM). */
  get exitCode(): number {
    return this.signal ? CODES[this.signal] : 0;
  }

  dispose(): void {
    for (const [sig, h] of this.handlers) process.off(sig, h);
    this.handlers.clear();
  }
}
