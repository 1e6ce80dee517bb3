// Node-only: diffusers model folders on disk.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { writeFileAtomic } from '../../io/file.js';
import { join } from 'node:path';
import type { Device } from '../../graph/device.js';
import { FileSource, fileSource } from '../../io/file-source.js';
import { DiffusersConfigError } from './config.js';
import { DiffusersModel, loadDiffusersFiles } from './model.js';
import type { LoadProgress } from './weights.js';
import { DiffusersFolder, LABEL_CONTEXT_FILE } from './export.js';
import { parsePythonJson, readSchedulerConfig, SchedulerSetup } from './scheduler.js';

export const WEIGHTS_FILE = 'diffusion_pytorch_model.safetensors';
export const INDEX_FILE = 'diffusion_pytorch_model.safetensors.index.json';

/** The files of a diffusers model folder: config.json, and one safetensors file or the shards its index lists. */
export function diffusersFolderFiles(dir: string): { config: string; weights: string[]; index?: string } {
  const config = join(dir, 'config.json');
  if (!existsSync(config)) {
    const sub = ['unet', 'vqvae', 'vae'].find((s) => existsSync(join(dir, s, 'config.json')));
    throw new DiffusersConfigError(`${dir} has no config.json${sub ? `; it looks like a pipeline folder: give its model folder, e.g. ${join(dir, sub)}` : ''}`);
  }
  const single = join(dir, WEIGHTS_FILE);
  if (existsSync(single)) return { config, weights: [single] };
  const index = join(dir, INDEX_FILE);
  if (existsSync(index)) {
    let map: Record<string, string>;
    try {
      map = (JSON.parse(readFileSync(index, 'utf8')) as { weight_map: Record<string, string> }).weight_map;
      if (typeof map !== 'object' || map === null) throw new Error('no weight_map');
    } catch (e) {
      throw new DiffusersConfigError(`${index}: not a safetensors index (${(e as Error).message})`);
    }
    const shards = [...new Set(Object.values(map))].sort();
    for (const s of shards) if (!existsSync(join(dir, s))) throw new DiffusersConfigError(`${index} lists ${s}, which is not in ${dir}`);
    return { config, weights: shards.map((s) => join(dir, s)), index };
  }
  const bin = existsSync(join(dir, 'diffusion_pytorch_model.bin'));
  throw new DiffusersConfigError(`${dir} has neither ${WEIGHTS_FILE} nor ${INDEX_FILE}${bin ? ' (only a pickled .bin, which this engine does not read: convert it to safetensors with diffusers, save_pretrained(..., safe_serialization=True))' : ''}`);
}

/** Load a diffusers model folder (config.json + diffusion_pytorch_model.safetensors, or its shards and index). */
export async function loadDiffusers(dev: Device, dir: string, opts: { onProgress?: (p: LoadProgress) => void } = {}): Promise<DiffusersModel> {
  const f = diffusersFolderFiles(dir);
  const sources: FileSource[] = [];
  try {
    for (const w of f.weights) sources.push(await fileSource(w));
    const labels = join(dir, LABEL_CONTEXT_FILE);
    return await loadDiffusersFiles(dev, {
      config: readFileSync(f.config, 'utf8'),
      labelContext: existsSync(labels) ? readFileSync(labels) : undefined,
      weights: sources,
      index: f.index ? readFileSync(f.index, 'utf8') : undefined,
      onProgress: opts.onProgress,
      where: dir,
    });
  } finally {
    for (const s of sources) await s.close();
  }
}

/** Write a folder's files (each through a temporary file and a rename). */
export async function writeDiffusersFolder(dir: string, folder: DiffusersFolder): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  for (const [name, bytes] of folder.files) {
    await writeFileAtomic(join(dir, name), bytes);
    written.push(join(dir, name));
  }
  return written;
}

/** The scheduler_config.json beside a model folder (or in its parent pipeline's scheduler/), if any. */
export function readSchedulerBeside(dir: string): SchedulerSetup | null {
  for (const p of [join(dir, 'scheduler_config.json'), join(dir, '..', 'scheduler', 'scheduler_config.json')]) {
    if (existsSync(p)) return readSchedulerConfig(parsePythonJson(readFileSync(p, 'utf8'), p), p);
  }
  return null;
}
