// `npm run lab`: serves the lab page on 127.0.0.1 and prints its address.
//   --port N                 (default 8080; 0 for any free port)
//   --checkpoint NAME=PATH[,VQGAN]  offer this checkpoint (repeatable), a latent model with its VQ-GAN
//                            (default: where its header says); default: examples/checkpoints/*/*.safetensors
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { startLabServer, shippedCheckpoints, shortPath, ShippedCheckpoint } from './server.js';

const { values } = parseArgs({ options: { port: { type: 'string', default: '8080' }, checkpoint: { type: 'string', multiple: true } }, strict: true });
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port = '${values.port}': expected an integer 0..65535`);
const checkpoints: ShippedCheckpoint[] = values.checkpoint?.length
  ? values.checkpoint.map((s) => {
      const eq = s.indexOf('=');
      const [file, vqgan] = (eq > 0 ? s.slice(eq + 1) : s).split(',') as [string, string | undefined];
      const name = eq > 0 ? s.slice(0, eq) : file.replace(/^.*\//, '').replace(/\.safetensors$/, '');
      return { name, path: resolve(file), ...(vqgan ? { vqgan: resolve(vqgan) } : {}) };
    })
  : shippedCheckpoints();
const lab = await startLabServer({ port, checkpoints }).catch((e: NodeJS.ErrnoException) => {
  if (e.code !== 'EADDRINUSE') throw e;
  console.error(`lab: port ${port} on 127.0.0.1 is in use; pass --port N (0 picks a free one)`);
  process.exit(1);
});
console.log(`webgpu-diffusion lab: ${lab.url}`);
console.log(checkpoints.length ? `checkpoints: ${checkpoints.map((c) => `${c.name} (${shortPath(c.path)}${c.vqgan ? ` with ${shortPath(c.vqgan)}` : ''})`).join(', ')}` : 'no shipped checkpoints (examples/checkpoints/*/*.safetensors); train one in the page or upload one');
console.log('Ctrl-C stops the server.');
