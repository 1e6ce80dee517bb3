// Node only (exported from 'webgpu-diffusion/node'): the autotuner's choices in a JSON file, so the CLI
// measures once per adapter rather than once per run.
import { mkdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from './file.js';
import { parseTuneCache, type TuneCache, type TuneStore } from '../runtime/autotune.js';

/** $WGD_AUTOTUNE_CACHE, else $XDG_CACHE_HOME/webgpu-diffusion/autotune.json, else ~/.cache/webgpu-diffusion/autotune.json. */
export function defaultAutotunePath(env: Record<string, string | undefined> = process.env): string {
  if (env.WGD_AUTOTUNE_CACHE) return env.WGD_AUTOTUNE_CACHE;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'webgpu-diffusion', 'autotune.json');
}

/**
 * A store in a JSON file (created with its folder on first save, written atomically, so concurrent
 * processes see an old or a new file, never half of one). A missing or unreadable file reads as empty.
 */
export function autotuneFileStore(path = defaultAutotunePath()): TuneStore & { path: string } {
  return {
    path,
    async load(): Promise<TuneCache | null> {
      const text = await readFile(path, 'utf8').catch(() => null);
      return text === null ? null : parseTuneCache(text);
    },
    async save(cache: TuneCache): Promise<void> {
      await mkdir(dirname(path), { recursive: true });
      await writeFileAtomic(path, JSON.stringify(cache, null, 1) + '\n');
    },
  };
}
