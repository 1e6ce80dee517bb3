// Node only: finds and reads the shipped letters sprite sheet (data/letters/glyphs.{png,json}).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LettersMeta } from './letters.js';

/** Walks up from this module's directory (src/data/, or wherever a bundler put it: .cache/, dist/)
 * to the first ancestor holding data/letters/glyphs.png. */
export function lettersDir(from = dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, 'data', 'letters');
    if (existsSync(join(candidate, 'glyphs.png'))) return candidate;
    if (dirname(dir) === dir) break;
  }
  throw new Error(`letters: data/letters/glyphs.png not found in any folder above ${from}; regenerate it with node scripts/make-letters.mjs`);
}

export function loadLettersGlyphs(dir = lettersDir()): { glyphsPng: Uint8Array; meta: LettersMeta } {
  const glyphsPng = new Uint8Array(readFileSync(join(dir, 'glyphs.png')));
  const meta = JSON.parse(readFileSync(join(dir, 'glyphs.json'), 'utf8')) as LettersMeta;
  return { glyphsPng, meta };
}
