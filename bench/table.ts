// Renders bench/README.md from the JSON of `npm run bench -- --json FILE`, so the published table is
// never typed by hand: `node scripts/run.mjs bench/table.ts FILE... "machine description"`. Several
// files (e.g. `--only models` run after the models were trained) are merged, later parts winning.
import { readFileSync, writeFileSync } from 'node:fs';
import type { BenchResult } from './kernels.js'; // type only: importing kernels.ts would run the bench
import type { TrainingResult } from './train.js';
import type { ModelsResult } from './models.js';

interface BenchFile {
  adapter: string;
  peakGflops: number;
  results: BenchResult[];
  training: TrainingResult | null;
  models: ModelsResult | null;
}

const args = process.argv.slice(2);
const files = args.filter((a) => a.endsWith('.json'));
const machine = args.find((a) => !a.endsWith('.json')) ?? 'unstated machine';
if (!files.length) throw new Error('usage: bench/table.ts BENCH_JSON... ["machine description"]');
const parts = files.map((f) => JSON.parse(readFileSync(f, 'utf8')) as BenchFile);
const b: BenchFile = parts.reduce((acc, p) => ({
  adapter: acc.adapter || p.adapter,
  peakGflops: acc.peakGflops || p.peakGflops,
  results: p.results.length ? p.results : acc.results,
  training: p.training ?? acc.training,
  models: p.models ?? acc.models,
}));
const f = (x: number, d = 2) => x.toFixed(d);
const mib = (n: number | null) => (n === null ? '–' : `${f(n / 2 ** 20)} MiB`);

const lines: string[] = [
  '# Benchmarks',
  '',
  `Written by \`bench/table.ts\` from ${files.map((f) => `\`${f}\``).join(' and ')} (\`npm run bench -- --json FILE\`; committed beside this file).`,
  'Ratios are measured side by side in one run on the same adapter; on SwiftShader the absolute times only',
  'say how slow a CPU-emulated adapter is.',
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
  lines.push(`| ${r.kernel} | ${r.shape} | ${f(r.ours.ms, 1)} | ${f(r.ours.gflops, 3)} | ${f((100 * r.ours.gflops) / b.peakGflops, 1)}% | ${r.tfjs ? f(r.tfjs.ms, 1) : '–'} | ${r.tfjs ? f(r.tfjs.gflops, 3) : '–'} | ${r.tfjs ? `**${f(r.tfjs.ms / r.ours.ms)}×**` : '–'} |`);
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
    `| webgpu-diffusion | ${f(t.ours.msPerStep, 1)} | ${f(t.ours.stepsPerSecond, 3)} | ${mib(t.ours.peakBytes)} |`,
  );
  if (t.tfjs) lines.push(`| tfjs-backend-webgpu | ${f(t.tfjs.msPerStep, 1)} | ${f(t.tfjs.stepsPerSecond, 3)} | ${mib(t.tfjs.peakBytes)} |`);
  if (t.speedup) lines.push('', `Steps per second, ours vs tfjs: **${f(t.speedup)}×**.`);
}
const m = b.models;
if (m) {
  lines.push('', '## Shipped models', '');
  if (m.sampling.length) {
    lines.push('| model | sampler | batch | images / s | ms / step | host ms / step | host share of the step | decode s |', '|---|---|---:|---:|---:|---:|---:|---:|');
    for (const s of m.sampling) lines.push(`| ${s.model} | ${s.sampler.toUpperCase()}-${s.steps}, guidance ${s.guidance} | ${s.batch} | ${f(s.imagesPerSecond, 3)} | ${f(s.msPerStep, 0)} | ${f(s.hostMsPerStep)} | ${f(100 * s.hostShare)}% | ${s.decodeSeconds !== undefined ? f(s.decodeSeconds) : '–'} |`);
    lines.push('', 'Host time is what the CPU spends recording and submitting each step (no readback between steps); the rest of the wall time the adapter is busy.');
  }
  if (m.vqgan) lines.push('', `VQ-GAN \`${m.vqgan.model}\`, images ${m.vqgan.imageShape.join('×')}, batch ${m.vqgan.batch}: encode **${f(m.vqgan.encodeImagesPerSecond, 1)}** images/s, decode **${f(m.vqgan.decodeImagesPerSecond, 1)}** images/s.`);
  for (const s of m.skipped) lines.push('', `Not measured: \`${s}\` was not there.`);
}
const out = 'bench/README.md'; // run from the repository root, as npm scripts are
writeFileSync(out, lines.join('\n') + '\n');
console.log(`wrote ${out}`);
