// `wgd export`: a training checkpoint reduced to what sampling needs (the EMA weights as the weights,
// the VQ-GAN's codebook, the config), so shipped models stay small. Optimizer states, the
// discriminator and the random key are dropped.
import { readCheckpointFile } from '../io/checkpoint-file.js';
import { writeFileAtomic } from '../io/file.js';
import { serializeSafetensors, SafeTensorInput } from '../io/safetensors.js';
import { checkExtension, checkOutputs } from './outputs.js';

export async function exportCommand(input: string, output: string, force = false): Promise<{ tensors: number; bytes: number; kind: string }> {
  checkExtension('--out', output, '.safetensors');
  checkOutputs({ files: [output], inputs: [input], force });
  const ck = await readCheckpointFile(input);
  const kind = String((ck.config as { kind?: unknown }).kind ?? '');
  if (kind !== 'diffusion' && kind !== 'vqgan' && kind !== 'classifier') throw new Error(`export: ${input} has kind '${kind}'; allowed kinds: diffusion, vqgan, classifier`);
  const keep = new Map<string, SafeTensorInput>();
  const dropped = /^(ema|ema_state|optimizer|rng|loss)\./;
  for (const [name, t] of ck.tensors) {
    if (dropped.test(name) || name === 'optimizer.state') continue;
    // The weight EMA replaces the trained weights where there is one.
    keep.set(name, ck.tensors.get(`ema.${name}`) ?? t);
  }
  // The quantizer's bookkeeping (ages, cluster sums) is training state too; the codebook stays.
  for (const name of [...keep.keys()]) if (/^quantize\./.test(name) && name !== 'quantize.embedding.weight') keep.delete(name);
  const config = { ...ck.config, exportedFrom: input };
  const bytes = serializeSafetensors(keep, { format: 'webgpu-diffusion', config: JSON.stringify(config) });
  await writeFileAtomic(output, bytes);
  return { tensors: keep.size, bytes: bytes.length, kind };
}
