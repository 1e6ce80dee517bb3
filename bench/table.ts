// Renders bench/README.md from the JSON of `npm run bench -- --json FILE`, so the published table is
// never typed by hand: `node scripts/run.mjs bench/table.ts FILE... "machine description"`. Several
// files (e.g. `--only models` run after the models were trained) are merged, later parts winning.
import { readFileSync, writeFileSync } from 'node:fs';
import type { BenchResult } from './kernels.js'; // type only: importing kernels.ts would run the bench
import type { TrainingResult } from './train.js';
import type { ModelsResult } from './models.js';
import type { HealthResult } from './health.js';

interface BenchFile {
  adapter: string;
  peakGflops: number;
  /** Shortest timed block of the kernel timings; absent in files from before blocks were timed. */
  minBlockMs?: number;
  results: BenchResult[];
  training: TrainingResult | null;
  models: ModelsResult | null;
  /** bench/health.ts: memory over a long run; absent from the other benchmarks' files. */
  health?: HealthResult | null;
}

const argv = process.argv.slice(2);
const outAt = argv.indexOf('--out');
const out = outAt >= 0 ? argv[outAt + 1]! : 'bench/README.md'; // run from the repository root, as npm scripts are
const args = outAt >= 0 ? argv.filter((_, i) => i !== outAt && i !== outAt + 1) : argv;
// A bench/matmul-variants.ts JSON (it has `rows`) becomes its own section; the rest are merged.
const jsonFiles = args.filter((a) => a.endsWith('.json'));
const variantsFile = jsonFiles.find((f) => 'rows' in JSON.parse(readFileSync(f, 'utf8')));
const files = jsonFiles.filter((f) => f !== variantsFile);
const machine = args.find((a) => !a.endsWith('.json')) ?? 'unstated machine';
if (!files.length) throw new Error('usage: bench/table.ts BENCH_JSON... ["machine description"]');
// A bench/health.ts JSON holds only `health`; the rest of a BenchFile is taken as empty for it.
const parts = files.map((f) => ({ adapter: '', peakGflops: 0, results: [], training: null, models: null, ...JSON.parse(readFileSync(f, 'utf8')) }) as BenchFile);
const b: BenchFile = parts.reduce((acc, p) => ({
  adapter: acc.adapter || p.adapter,
  peakGflops: acc.peakGflops || p.peakGflops,
  minBlockMs: p.results.length ? p.minBlockMs : acc.minBlockMs,
  results: p.results.length ? p.results : acc.results,
  training: p.training ?? acc.training,
  models: p.models ?? acc.models,
  health: p.health ?? acc.health ?? null,
}));
const f = (x: number, d = 2) => x.toFixed(d);
/** A time in ms with the digits that matter: 446.5, 19.04, 0.0123 (a real GPU runs these shapes in µs). */
const ms = (x: number) => x.toFixed(x >= 100 ? 1 : x >= 1 ? 2 : 4);
const rate = (x: number) => x.toFixed(x >= 100 ? 0 : 3);
const swiftshader = /swiftshader/i.test(b.adapter);
const mib = (n: number | null) => (n === null ? '–' : `${f(n / 2 ** 20)} MiB`);

const lines: string[] = [
  '# Benchmarks',
  '',
  `Written by \`bench/table.ts\` from ${jsonFiles.map((f) => `\`${f}\``).join(' and ')} (\`npm run bench -- --json FILE\`${variantsFile ? ' and `node scripts/run.mjs bench/matmul-variants.ts --json FILE`' : ''}${b.health ? ' and `node scripts/run.mjs bench/health.ts --json FILE`' : ''}; committed beside this file).`,
  swiftshader
    ? 'Ratios are measured side by side in one run on the same adapter; on SwiftShader the absolute times only say how slow a CPU-emulated adapter is.'
    : 'Ratios are measured side by side in one run on the same adapter.',
  b.minBlockMs !== undefined
    ? `Each kernel time is the median over timed blocks of one kernel launch repeated until the block lasts at least ${b.minBlockMs} ms (\`--min-ms\`), ended by one readback, divided by the launches: on a fast GPU a single launch is shorter than the readback that would otherwise be timed with it.`
    : 'Each kernel time is the median of single launches, each ended by a readback of its output (the bench before it timed blocks of launches).',
  '',
  `- machine: ${machine}`,
  `- adapter: ${b.adapter}`,
  `- measured f32 FMA peak (bench/peak.wgsl): **${f(b.peakGflops)} GFLOP/s**`,
  '',
  '## Kernels',
  '',
  '| kernel | shape | ours ms | ours GFLOP/s | % of peak | tfjs ms | tfjs GFLOP/s | ours vs tfjs |',
  '|---|---|---:|---:|---:|---:|---:|---:|',
];
for (const r of b.results) {
  lines.push(`| ${r.kernel} | ${r.shape} | ${ms(r.ours.ms)} | ${rate(r.ours.gflops)} | ${f((100 * r.ours.gflops) / b.peakGflops, 1)}% | ${r.tfjs ? ms(r.tfjs.ms) : '–'} | ${r.tfjs ? rate(r.tfjs.gflops) : '–'} | ${r.tfjs ? `**${f(r.tfjs.ms / r.ours.ms)}×**` : '–'} |`);
}
lines.push('', 'tfjs runs attention as matmul, softmax, matmul and the codebook lookup as a distance matmul, argmin and gather; each tfjs output is checked against ours (max |difference| < 1e-2) before it is timed.');
const t = b.training;
if (t) {
  lines.push(
    '',
    '## Training step',
    '',
    `${t.architecture}; batch ${t.config.batch}, ${t.config.inChannels}×${t.config.size}×${t.config.size}, ${t.config.channels} channels, ${t.parameters} parameters, Adam. Forward, MSE loss, backward and update in one step (ours: one compiled command buffer; tfjs: \`variableGrads\` and its Adam, group norm composed from tfjs ops).`,
    '',
    '| engine | ms / step | steps / s | peak device memory |',
    '|---|---:|---:|---:|',
    `| webgpu-diffusion | ${ms(t.ours.msPerStep)} | ${f(t.ours.stepsPerSecond, 3)} | ${mib(t.ours.peakBytes)} |`,
  );
  if (t.tfjs) lines.push(`| tfjs-backend-webgpu | ${ms(t.tfjs.msPerStep)} | ${f(t.tfjs.stepsPerSecond, 3)} | ${mib(t.tfjs.peakBytes)} |`);
  if (t.speedup) lines.push('', `Steps per second, ours vs tfjs: **${f(t.speedup)}×**.`);
}
const m = b.models;
if (m) {
  lines.push('', '## Shipped models', '');
  if (m.sampling.length) {
    lines.push('| model | sampler | batch | images / s | ms / step | dispatches / step | host ms / step | host share of the step | GPU ms / step | GPU busy | decode s |', '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const s of m.sampling) lines.push(`| ${s.model} | ${s.sampler.toUpperCase()}-${s.steps}, guidance ${s.guidance} | ${s.batch} | ${rate(s.imagesPerSecond)} | ${ms(s.msPerStep)} | ${s.dispatchesPerStep ?? '–'} | ${ms(s.hostMsPerStep)} | ${f(100 * s.hostShare)}% | ${s.gpuMsPerStep != null ? ms(s.gpuMsPerStep) : '–'} | ${s.gpuBusyShare != null ? `${f(100 * s.gpuBusyShare, 1)}%` : '–'} | ${s.decodeSeconds !== undefined ? f(s.decodeSeconds) : '–'} |`);
    lines.push('', 'Host time is what the CPU spends recording and submitting each step (no readback between steps; two steps in flight, so the device has the next step queued while the host records the one after). GPU time is each step\'s compute pass timed on the device with timestamp queries; GPU busy is its share of the wall time.');
  }
  if (m.vqgan) lines.push('', `VQ-GAN \`${m.vqgan.model}\`, images ${m.vqgan.imageShape.join('×')}, batch ${m.vqgan.batch}: encode **${f(m.vqgan.encodeImagesPerSecond, 1)}** images/s, decode **${f(m.vqgan.decodeImagesPerSecond, 1)}** images/s.`);
  for (const s of m.skipped) lines.push('', `Not measured: \`${s}\` was not there.`);
}
const h = b.health;
if (h) {
  const kib = (n: number) => `${f(n / 1024, 1)} KiB`;
  lines.push(
    '',
    '## Long-run health',
    '',
    `\`bench/health.ts\`: ${h.trainSteps} training steps and ${h.sampleBatches} sampling batches of a tiny model (${h.model}), run as the CLI runs them; memory read after a forced garbage collection at each mark (memory, unlike time, does not depend on what else runs on the machine). test/health.test.ts requires the same figures flat after the first mark.`,
    '',
    '| phase | after | device: live | device: pooled | buffers created | host heap | host ArrayBuffers |',
    '|---|---:|---:|---:|---:|---:|---:|',
  );
  for (const m of h.marks) lines.push(`| ${m.phase === 'train' ? 'training' : 'sampling'} | ${m.at} ${m.phase === 'train' ? 'steps' : 'batches'} | ${kib(m.liveBytes)} | ${kib(m.pooledBytes)} | ${m.buffersCreated} | ${f(m.heapBytes / 2 ** 20, 1)} MiB | ${kib(m.arrayBufferBytes)} |`);
}
if (variantsFile) {
  interface VariantRow { shape: string; candidate: string; ms: number; gflops: number }
  const v = JSON.parse(readFileSync(variantsFile, 'utf8')) as { adapter: string; rows: VariantRow[] };
  lines.push(
    '',
    '## Matmul entry points and tilings',
    '',
    `\`bench/matmul-variants.ts\` on ${v.adapter}: each candidate's output checked against the first's (and that one against float64 dot products) before timing. The default is what \`kernels/matmul.ts\` picks on this adapter; "tiled 64x64" was the default on GPUs before 'tiled4' (8×8 outputs per thread: a 512² product was 64 workgroups of 64 threads).`,
    '',
    'Times under about 0.1 ms are close to the latency of a launch and move between runs; the tilings separate clearly only at the larger shapes.',
    '',
    '| shape | default | default ms | GFLOP/s | best candidate | best ms | default vs best | tiled 64x64 ms |',
    '|---|---|---:|---:|---|---:|---:|---:|',
  );
  for (const shape of [...new Set(v.rows.map((r) => r.shape))]) {
    const rs = v.rows.filter((r) => r.shape === shape);
    const def = rs.find((r) => r.candidate.startsWith('default'))!;
    const best = rs.filter((r) => r !== def).reduce((a, r) => (r.ms < a.ms ? r : a));
    const old = rs.find((r) => r.candidate.startsWith('tiled 64x64'));
    lines.push(`| ${shape} | ${def.candidate.replace(/^default: /, '')} | ${ms(def.ms)} | ${rate(def.gflops)} | ${best.candidate} | ${ms(best.ms)} | ${f(def.ms / best.ms)}× | ${old ? ms(old.ms) : '–'} |`);
  }
}
writeFileSync(out, lines.join('\n') + '\n');
console.log(`wrote ${out}`);
