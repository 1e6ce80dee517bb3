// Entry point of the `wgd` command: runs a subcommand and turns errors into one clear line.
import { main } from './main.js';

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: Error) => {
    console.error(`wgd: ${e.message}`);
    if (process.env.WGD_DEBUG) console.error(e.stack);
    process.exit(1);
  },
);
