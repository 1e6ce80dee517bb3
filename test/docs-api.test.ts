// Every TypeScript example in docs/api.md and README.md type-checks against the library's public entry
// points. Each ```ts block is written as a module of its own into .cache/docs-examples/ (git-ignored),
// with 'webgpu-diffusion' and 'webgpu-diffusion/node' mapped to src/index.ts and src/node.ts by a
// generated tsconfig (which extends the project's, so the examples get its strictness), and all of them
// are checked in one TypeScript program. A block may import only those two entry points and node:*
// modules, so every name it shows is one the package exports. A block marked ```ts fragment (a few
// lines that lean on names from the text around them) is skipped.
//
// README.md's blocks are checked here too. test/package.test.ts also type-checks the README's ten-line
// example, but against the packed tarball's .d.ts (the shipped types); this test checks every README
// block against src/, without packing, so an example that drifts from the API fails here first.
import { describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';

const ROOT = join(import.meta.dirname, '..');
const DOCS = ['docs/api.md', 'README.md'];
const OUT = join(ROOT, '.cache', 'docs-examples');
const ENTRY_POINTS = new Set(['webgpu-diffusion', 'webgpu-diffusion/node']);

interface Block {
  doc: string;
  /** 1-based line in the document of the block's first line of code. */
  line: number;
  code: string;
  file: string;
}

/** The ```ts blocks of a Markdown text (```typescript too), with the info words after the language. */
function tsBlocks(text: string): { line: number; code: string; info: string[] }[] {
  const out: { line: number; code: string; info: string[] }[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,})\s*(\S*)(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const [, indent, fence, lang, rest] = open;
    const end = lines.findIndex((l, j) => j > i && /^\s*`{3,}\s*$/.test(l) && l.trim().length >= fence!.length);
    if (end < 0) throw new Error(`unclosed code fence at line ${i + 1}`);
    if (lang === 'ts' || lang === 'typescript') {
      out.push({ line: i + 2, code: lines.slice(i + 1, end).map((l) => (l.startsWith(indent!) ? l.slice(indent!.length) : l)).join('\n') + '\n', info: rest!.trim().split(/\s+/).filter(Boolean) });
    }
    i = end;
  }
  return out;
}

function collect(): { blocks: Block[]; skipped: number } {
  const blocks: Block[] = [];
  let skipped = 0;
  for (const doc of DOCS) {
    const stem = doc.replace(/\.md$/, '').replace(/\W+/g, '-');
    tsBlocks(readFileSync(join(ROOT, doc), 'utf8')).forEach((b, k) => {
      if (b.info.includes('fragment')) return void skipped++;
      blocks.push({ doc, line: b.line, code: b.code, file: join(OUT, `${stem}-${String(k + 1).padStart(2, '0')}.ts`) });
    });
  }
  return { blocks, skipped };
}

describe('documentation examples', () => {
  it('every ```ts block of docs/api.md and README.md type-checks against the public API', () => {
    const t0 = performance.now();
    const { blocks, skipped } = collect();
    expect(blocks.filter((b) => b.doc === 'docs/api.md').length, 'docs/api.md should have its examples').toBeGreaterThanOrEqual(10);
    rmSync(OUT, { recursive: true, force: true });
    mkdirSync(OUT, { recursive: true });
    for (const b of blocks) writeFileSync(b.file, b.code);
    const rel = (p: string) => relative(OUT, join(ROOT, p)).split('\\').join('/');
    writeFileSync(join(OUT, 'tsconfig.json'), JSON.stringify({
      extends: rel('tsconfig.json'),
      compilerOptions: {
        // Each block is a module (top-level await, no globals shared between blocks).
        moduleDetection: 'force', module: 'ESNext', target: 'ES2022', noEmit: true,
        paths: { 'webgpu-diffusion': [rel('src/index.ts')], 'webgpu-diffusion/node': [rel('src/node.ts')] },
      },
      // src/wgsl.d.ts declares the .wgsl imports that src/ makes. `include: []`: the project's own
      // `include` would otherwise be inherited and bring the whole tree (tests, benches) in.
      files: [...blocks.map((b) => relative(OUT, b.file)), rel('src/wgsl.d.ts')],
      include: [],
    }, null, 2));

    const parsed = ts.getParsedCommandLineOfConfigFile(join(OUT, 'tsconfig.json'), {}, {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (d) => {
        throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
      },
    });
    expect(parsed!.errors.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'))).toEqual([]);
    const program = ts.createProgram({ rootNames: parsed!.fileNames, options: parsed!.options });

    const problems: string[] = [...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics()].map((d) => `tsconfig: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
    for (const b of blocks) {
      const sf = program.getSourceFile(b.file);
      if (!sf) {
        problems.push(`${b.doc}:${b.line}: the example was not part of the program`);
        continue;
      }
      const at = (pos: number) => `${b.doc}:${b.line + sf.getLineAndCharacterOfPosition(pos).line}`;
      for (const d of [...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf)]) {
        problems.push(`${at(d.start ?? 0)}: TS${d.code} ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
      }
      // Only the package's entry points (and Node's own modules): an example that reaches into src/
      // would show names the package does not export.
      for (const s of sf.statements) {
        const spec = (ts.isImportDeclaration(s) || ts.isExportDeclaration(s)) && s.moduleSpecifier && ts.isStringLiteral(s.moduleSpecifier) ? s.moduleSpecifier.text : null;
        if (spec !== null && !ENTRY_POINTS.has(spec) && !spec.startsWith('node:')) {
          problems.push(`${at(s.getStart(sf))}: imports '${spec}'; examples import only 'webgpu-diffusion', 'webgpu-diffusion/node' and node:* modules`);
        }
      }
    }
    const seconds = ((performance.now() - t0) / 1000).toFixed(1);
    console.log(`type-checked ${blocks.length} examples (${DOCS.join(', ')}; ${skipped} fragments skipped) in ${seconds} s`);
    expect(problems, `examples that do not type-check:\n${problems.join('\n')}\n`).toEqual([]);
  });
});
