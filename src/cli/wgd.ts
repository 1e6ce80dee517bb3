// Entry point of the `wgd` command: runs a subcommand and turns errors into one clear line (the stack
// with WGD_DEBUG=1). main() has destroyed the device by the time it settles, so exiting is safe. It is
// also the launcher that sets up the software adapter: when Dawn finds no adapter and SwiftShader is
// installed, the command is run again in a child process whose environment points the Vulkan loader
// at SwiftShader (the loader reads that only as a process starts; the library never sets it).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { main, takeAdapterOption, UsageError } from './main.js';
import { NoAdapterError } from '../runtime/device.js';
import { findSwiftShaderIcd, swiftshaderEnv } from './webgpu-env.js';

const argv = process.argv.slice(2);

/** Runs this command again with SwiftShader visible; resolves to its exit code. */
function rerunWithSwiftShader(icd: string): Promise<number> {
  const env = { ...process.env, ...swiftshaderEnv(icd), WGD_SOFTWARE_ADAPTER: icd };
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, ...argv], { stdio: 'inherit', env });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => child.kill(signal));
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal === 'SIGINT' ? 130 : signal === 'SIGTERM' ? 143 : 1))));
}

/** Linux without any GPU device node: Dawn can only refuse what it finds (e.g. Mesa's lavapipe, with a warning). */
const noGpuNodes = () => process.platform === 'linux' && !['/dev/dri', '/dev/nvidiactl', '/dev/kfd', '/dev/dxg'].some((p) => existsSync(p));

async function run(): Promise<number> {
  const mode = takeAdapterOption([...argv]).mode;
  const icd = mode !== 'gpu' && !process.env.VK_ICD_FILENAMES ? findSwiftShaderIcd() : null;
  if (icd && (mode === 'swiftshader' || noGpuNodes())) return rerunWithSwiftShader(icd);
  try {
    return await main(argv);
  } catch (e) {
    if (icd && e instanceof NoAdapterError) return rerunWithSwiftShader(icd);
    throw e;
  }
}

run().then(
  (code) => process.exit(code),
  (e: Error) => {
    const [first, ...more] = String(e?.message ?? e).split('\n');
    console.error(`wgd: ${first}${more.length && !process.env.WGD_DEBUG ? ' (WGD_DEBUG=1 shows the details)' : ''}`);
    if (process.env.WGD_DEBUG) console.error(e?.stack ?? e);
    process.exit(e instanceof UsageError ? 2 : 1);
  },
);
