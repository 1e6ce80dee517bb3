// docs/cli.md is the commands' own option specs rendered (src/cli/reference.ts): it must be current.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cliReference } from '../src/cli/reference.js';
import { COMMANDS } from '../src/cli/options.js';

describe('docs/cli.md', () => {
  it('is what `wgd help --markdown` prints from the option specs (regenerate it with that command)', () => {
    const doc = readFileSync(join(import.meta.dirname, '..', 'docs', 'cli.md'), 'utf8');
    expect(doc).toBe(cliReference());
    // Every command and every option appears, with its default.
    const sections = doc.split(/^## /m);
    for (const [name, c] of Object.entries(COMMANDS)) {
      const section = sections.find((t) => t.startsWith(`wgd ${name}\n`));
      expect(section, `## wgd ${name}`).toBeTruthy();
      for (const [k, o] of Object.entries(c.spec)) {
        const row = section!.split('\n').find((l) => l.startsWith(`| \`--${k}${o.type === 'string' ? ' VALUE' : ''}\` |`));
        expect(row, `--${k} of ${name}`).toBeTruthy();
        if (typeof o.default === 'string') expect(row).toContain(`\`${o.default}\``);
      }
    }
  });
});
