// The library's import rules, read from its source: (a) no import cycles between modules, (b) each
// layer imports only the layers below it, (c) the browser entry (src/index.ts) reaches no Node
// built-in. Imports are read with TypeScript's parser: `import` and `export ... from` statements, value
// and type-only (`import type`, or every imported name marked `type`), and dynamic import() of a
// literal path. The modules are src/**/*.ts and kernels/*.ts (the kernels layer lives at the top level).
import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

const ROOT = join(import.meta.dirname, '..');

/**
 * The stack, lowest first. A module may import its own layer and the layers below it. optim and io
 * share a rank: both build on nn and neither on the other (a checkpoint stores an optimiser's moments
 * and an EMA through io's own structural types, not through optim's classes).
 */
const STACK: readonly (readonly string[])[] = [['runtime'], ['kernels'], ['graph'], ['nn'], ['optim', 'io'], ['models'], ['diffusion'], ['pipelines'], ['cli']];

/**
 * Side layers, beside the stack. data (datasets, image files, colour spaces, seeded random numbers) is
 * host code: it imports only runtime (its error types) and itself, and the layers from models up may
 * import it (a trainer draws its batches and seeds with data/rng). metrics (colour distance, Fréchet
 * distance, retrieval) may import data and runtime, and only pipelines and cli import it: it judges
 * a model's output, which no model or sampler needs.
 */
const SIDE: Record<string, { imports: readonly string[]; importedBy: readonly string[] }> = {
  data: { imports: ['runtime'], importedBy: ['models', 'diffusion', 'pipelines', 'cli', 'metrics'] },
  metrics: { imports: ['runtime', 'data'], importedBy: ['pipelines', 'cli'] },
};

/**
 * Type-only imports allowed against the rules above, each with its reason ('from -> to', layers or
 * module paths). A type-only import is erased from the JavaScript, so it adds no runtime dependency;
 * it is allowed only where naming the type is the point. Empty: none is needed today.
 */
const TYPE_ONLY_ALLOWED: Record<string, string> = {};

/**
 * Type-only imports allowed to close a cycle ('from -> to', module paths), each with its reason.
 * Erased from the JavaScript, they leave module loading in one order.
 */
const TYPE_CYCLE_ALLOWED: Record<string, string> = {
  // A DeviceArray keeps a reference to the Runtime that made it (arr.rt: its device, limits and
  // queue), and the Runtime makes arrays; array.ts is apart from runtime.ts so that the step capture
  // builds on arrays without importing the runtime, and it names the Runtime only as a type.
  'src/runtime/array.ts -> src/runtime/runtime.ts': 'an array refers to the runtime that made it',
};

/** The package's doors: they export from every layer. Only the rules of (c) apply to them. */
const ENTRIES = ['src/index.ts', 'src/node.ts'];

interface Import {
  /** The module path relative to ROOT (a .ts file or an asset such as a .wgsl shader), or the bare specifier. */
  target: string;
  local: boolean;
  typeOnly: boolean;
  line: number;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out.sort();
}

function resolveLocal(from: string, spec: string): string {
  const abs = resolve(ROOT, dirname(from), spec);
  const candidates = spec.endsWith('.js') ? [abs.slice(0, -3) + '.ts', abs] : [abs, abs + '.ts', join(abs, 'index.ts')];
  const hit = candidates.find((c) => existsSync(c)) ?? candidates[0]!;
  return relative(ROOT, hit).split('\\').join('/');
}

function importsOf(file: string): Import[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const out: Import[] = [];
  const add = (spec: string, typeOnly: boolean, node: ts.Node) => {
    const local = spec.startsWith('.');
    out.push({ target: local ? resolveLocal(file, spec) : spec, local, typeOnly, line: sf.getLineAndCharacterOfPosition(node.getStart()).line + 1 });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      const named = clause?.namedBindings && ts.isNamedImports(clause.namedBindings) ? clause.namedBindings.elements : undefined;
      // `import { type A, type B }` is erased like `import type { A, B }`; a bare `import 'x'` is a value import.
      const typeOnly = Boolean(clause && (clause.isTypeOnly || (!clause.name && named && named.length > 0 && named.every((e) => e.isTypeOnly))));
      add(node.moduleSpecifier.text, typeOnly, node);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      const named = node.exportClause && ts.isNamedExports(node.exportClause) ? node.exportClause.elements : undefined;
      add(node.moduleSpecifier.text, node.isTypeOnly || Boolean(named && named.length > 0 && named.every((e) => e.isTypeOnly)), node);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteralLike(node.arguments[0])) {
      add(node.arguments[0].text, false, node);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      add(node.argument.literal.text, true, node); // `import('x').T` in a type position
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

const FILES = [...sourceFiles('src'), ...sourceFiles('kernels')];
const GRAPH = new Map(FILES.map((f) => [f, importsOf(f)]));

/** A module's layer: kernels/* is 'kernels', src/<dir>/... is <dir>; the entries have none. */
function layerOf(file: string): string | null {
  if (file.startsWith('kernels/')) return 'kernels';
  const m = /^src\/([^/]+)\//.exec(file);
  return m ? m[1]! : null;
}
const rank = (layer: string) => STACK.findIndex((l) => l.includes(layer));

/** Why `from` may not import `to` (layers), or null when it may. */
function breaks(from: string, to: string): string | null {
  if (from === to) return null;
  if (SIDE[from]) return SIDE[from].imports.includes(to) ? null : `${from} (a side layer) imports only ${SIDE[from].imports.join(', ')}`;
  if (SIDE[to]) return SIDE[to].importedBy.includes(from) ? null : `${to} (a side layer) is imported only by ${SIDE[to].importedBy.join(', ')}`;
  const rf = rank(from), rt = rank(to);
  if (rf < 0 || rt < 0) return `layer '${rf < 0 ? from : to}' is in no rule of this test: add it to STACK or SIDE`;
  if (rt < rf) return null;
  return rt === rf ? `${from} and ${to} are siblings: neither imports the other` : `${to} is above ${from}`;
}

/** Strongly connected components with more than one module (Tarjan), over the edges `use` keeps. */
function cycles(use: (from: string, i: Import) => boolean): string[][] {
  const index = new Map<string, number>(), low = new Map<string, number>(), on = new Set<string>(), stack: string[] = [];
  const found: string[][] = [];
  let n = 0;
  const strong = (v: string): void => {
    index.set(v, n);
    low.set(v, n++);
    stack.push(v);
    on.add(v);
    for (const i of GRAPH.get(v) ?? []) {
      if (!i.local || !GRAPH.has(i.target) || !use(v, i)) continue;
      const w = i.target;
      if (!index.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) found.push(scc.sort());
    }
  };
  for (const f of FILES) if (!index.has(f)) strong(f);
  return found;
}

describe('import rules (src/ and kernels/)', () => {
  it('reads the imports: every module parses and every relative import names a file that exists', () => {
    expect(FILES.length).toBeGreaterThan(50);
    expect(FILES).toContain('src/index.ts');
    const missing = [...GRAPH].flatMap(([f, is]) => is.filter((i) => i.local && !existsSync(join(ROOT, i.target))).map((i) => `${f}:${i.line} -> ${i.target}`));
    expect(missing).toEqual([]);
    // The reader sees both kinds: io/checkpoint.ts imports values; runtime/array.ts names Runtime as a type.
    expect(GRAPH.get('src/io/checkpoint.ts')!.some((i) => i.target === 'src/io/safetensors.ts' && !i.typeOnly)).toBe(true);
    expect(GRAPH.get('src/runtime/array.ts')!.some((i) => i.target === 'src/runtime/runtime.ts' && i.typeOnly)).toBe(true);
  });

  it('(a) no import cycles between modules: none through value imports, and type-only ones only where allowed with a reason', () => {
    // A value cycle makes module initialisation order matter; a type-only one still ties two files
    // together so that neither can be read or moved without the other, so each is named above.
    expect(cycles((_, i) => !i.typeOnly)).toEqual([]);
    expect(cycles((from, i) => !(i.typeOnly && TYPE_CYCLE_ALLOWED[`${from} -> ${i.target}`]))).toEqual([]);
    // Each allowance is still needed (else it goes): with type imports counted, its cycle is there.
    const all = cycles(() => true);
    for (const edge of Object.keys(TYPE_CYCLE_ALLOWED)) {
      const [from, to] = edge.split(' -> ') as [string, string];
      expect(all.some((c) => c.includes(from) && c.includes(to)), edge).toBe(true);
    }
  });

  it('(b) each layer imports only its own and those below it: runtime, kernels, graph, nn, optim | io, models, diffusion, pipelines, cli; data and metrics beside', () => {
    const bad: string[] = [];
    for (const [file, imports] of GRAPH) {
      const from = layerOf(file);
      if (!from || ENTRIES.includes(file)) continue;
      for (const i of imports) {
        if (!i.local || !i.target.endsWith('.ts')) continue; // packages, node:* and WGSL assets: (c) and the build's concern
        const to = layerOf(i.target);
        if (!to) {
          bad.push(`${file}:${i.line} imports the entry ${i.target}`);
          continue;
        }
        const why = breaks(from, to);
        if (!why) continue;
        if (i.typeOnly && (TYPE_ONLY_ALLOWED[`${from} -> ${to}`] || TYPE_ONLY_ALLOWED[`${file} -> ${i.target}`])) continue;
        bad.push(`${file}:${i.line} imports ${i.typeOnly ? 'types from ' : ''}${i.target}: ${why}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('(b) the rules themselves: every layer of src/ is placed, and a few known cases read as intended', () => {
    const layers = new Set(FILES.map(layerOf).filter((l): l is string => l !== null));
    expect([...layers].filter((l) => rank(l) < 0 && !SIDE[l])).toEqual([]);
    expect(breaks('io', 'optim')).toMatch(/siblings/);
    expect(breaks('data', 'metrics')).toMatch(/side layer/);
    expect(breaks('metrics', 'data')).toBeNull();
    expect(breaks('models', 'cli')).toMatch(/above/);
    expect(breaks('pipelines', 'diffusion')).toBeNull();
    expect(breaks('diffusion', 'pipelines')).toMatch(/above/);
  });

  it('(c) the browser entry (src/index.ts) reaches no Node built-in and no CLI module through its value imports', () => {
    const node = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
    const seen = new Set<string>();
    const reached: string[] = [];
    const walk = (file: string, path: string[]): void => {
      if (seen.has(file)) return;
      seen.add(file);
      for (const i of GRAPH.get(file) ?? []) {
        if (i.typeOnly) continue; // erased from the JavaScript
        if (i.local) {
          if (GRAPH.has(i.target)) walk(i.target, [...path, i.target]);
        } else if (node.has(i.target) || i.target.startsWith('node:')) reached.push(`${[...path].join(' -> ')} imports ${i.target}`);
      }
    };
    walk('src/index.ts', ['src/index.ts']);
    expect(seen.size).toBeGreaterThan(30);
    expect(reached).toEqual([]);
    // The library's root reaches no CLI code (the presets it exports are the pipelines', in library
    // words), and it does reach the browser-safe latent pipeline, so the walk covers it.
    expect([...seen].filter((f) => f.startsWith('src/cli/'))).toEqual([]);
    expect(seen.has('src/pipelines/latent.ts') && seen.has('src/pipelines/presets.ts')).toBe(true);
    // The Node entry does reach them (checkpoint files, image folders), so the walk would see one.
    seen.clear();
    walk('src/node.ts', ['src/node.ts']);
    expect(reached.length).toBeGreaterThan(0);
  });
});
