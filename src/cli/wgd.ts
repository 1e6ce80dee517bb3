// Entry point of the `wgd` command: runs a subcommand and turns errors into one clear line (the stack
// with WGD_DEBUG=1). main() has destroyed the device by the time it settles, so exiting is safe.
import { main, UsageError } from './main.js';

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: Error) => {
    const [first, ...more] = String(e?.message ?? e).split('\n');
    console.error(`wgd: ${first}${more.length && !process.env.WGD_DEBUG ? ' (WGD_DEBUG=1 shows the details)' : ''}`);
    if (process.env.WGD_DEBUG) console.error(e?.stack ?? e);
    process.exit(e instanceof UsageError ? 2 : 1);
  },
);
