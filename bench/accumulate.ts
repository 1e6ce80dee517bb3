// Gradient accumulation, two designs side by side on one U-Net training step (ε-MSE, AdamW):
//   loop:  one compiled step with the micro-batch loop inside (forward and backward of micro-batch j,
//          its gradients added to a running sum, the next one; one update) — what the trainers use;
//   split: a compiled micro-step that adds its gradients into persistent accumulators, run N times,
//          then a compiled apply step (the update from the accumulators, which it then zeroes).
// Both must give the large batch's gradient before anything is measured. Then, per N: device memory
// (what each compiled step plans for its intermediates and owns besides, plus persistent
// accumulators), dispatches and submits per optimisation step, compile time, and time per
// optimisation step (on SwiftShader only the ratios mean anything).
// node scripts/run.mjs bench/accumulate.ts [--batch 4] [--n 1,2,4,8] [--size 16] [--steps 3] [--json FILE] [--md FILE]
import { writeFileSync } from 'node:fs';
import { createDevice, Device, grad, ops, Tensor } from '../src/index.js';
import type { CompiledStep } from '../src/graph/compile.js';
import { Init } from '../src/nn/module.js';
import { ParameterSet } from '../src/nn/params.js';
import { AdamW } from '../src/optim/adam.js';
import { GradientSum, addTo } from '../src/optim/accumulate.js';
import { UNet, UNetConfig } from '../src/models/unet.js';
import { adamUpdate, NORM_PARTIALS } from '../kernels/optim.js';
import { flag, randn } from './common.js';

interface DesignFigures {
  /** Bytes of the compiled steps' planned intermediates and their fixed buffers (constants, uniforms). */
  plannedBytes: number;
  fixedBytes: number;
  /** Persistent buffers the design adds (the split design's accumulators). */
  extraBytes: number;
  totalBytes: number;
  dispatches: number;
  submits: number;
  compileMs: number;
  msPerStep: number;
}

export interface AccumulateRow {
  n: number;
  loop: DesignFigures;
  split: DesignFigures;
  /** One step on a batch of N·B without accumulation, for scale (null where N = 1). */
  large: { plannedBytes: number; fixedBytes: number } | null;
  /** Largest |loop − split| of the update's gradient, over the largest |gradient|. */
  maxRelDiff: number;
}

export interface AccumulateResult {
  adapter: string;
  model: string;
  batch: number;
  parameters: number;
  parameterBytes: number;
  rows: AccumulateRow[];
}

const MODEL = (size: number): Partial<UNetConfig> => ({ sampleSize: size, inChannels: 3, outChannels: 3, blockOutChannels: [16, 32], normGroups: 8, attentionHeads: 2, attentionResolutions: [size / 2], conditioning: 'class', numClasses: 4 });

/** Host inputs of one micro-batch: x_t, timesteps, labels, target ε. */
function inputs(B: number, size: number, seed: number): [Float32Array, Float32Array, Int32Array, Float32Array] {
  const n = B * 3 * size * size;
  return [randn(n, seed), Float32Array.from({ length: B }, (_, i) => (i * 97 + seed) % 1000), Int32Array.from({ length: B }, (_, i) => (i + seed) % 4), randn(n, seed + 1)];
}

/** A fresh model, its parameters and AdamW (same initial weights every time). */
function setup(dev: Device, size: number) {
  const net = new UNet(new Init(dev, 1), MODEL(size));
  const params = new ParameterSet(net.namedParameters());
  const opt = new AdamW(params, { lr: 1e-3 });
  return { net, params, opt };
}

const specs = (B: number, size: number) => [{ shape: [B, 3, size, size] }, { shape: [B] }, { shape: [B], dtype: 'i32' as const }, { shape: [B, 3, size, size] }];

async function timeSteps(dev: Device, run: () => void, steps: number): Promise<number> {
  run(); // warm
  await dev.sync();
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) run();
  await dev.sync();
  return (performance.now() - t0) / steps;
}

async function measure(dev: Device, B: number, N: number, size: number, steps: number): Promise<AccumulateRow> {
  const micro = Array.from({ length: N }, (_, j) => inputs(B, size, 10 + 7 * j)).flat();
  const S = specs(B, size);

  // loop: the micro-batch loop traced inside one step.
  const a = setup(dev, size);
  let t0 = performance.now();
  const loop = await dev.compile((...x: Tensor[]) => {
    const sum = new GradientSum();
    let loss: Tensor | null = null;
    for (let j = 0; j < N; j++) {
      const lj = ops.scale(ops.mse(a.net.forward(x[4 * j]!, x[4 * j + 1]!, x[4 * j + 2]!), x[4 * j + 3]!), 1 / N);
      sum.add(grad(lj, a.params.tensors));
      loss = addTo(loss, lj);
    }
    a.opt.step(sum.value);
    return { loss: loss! };
  }, Array.from({ length: N }, () => S).flat());
  const loopCompile = performance.now() - t0;

  // split: micro-steps adding into persistent accumulators, then an apply step that zeroes them.
  const b = setup(dev, size);
  const acc = b.params.zeros();
  const partial = dev.rt.alloc([NORM_PARTIALS], 'f32', 'bench');
  t0 = performance.now();
  const microStep = await dev.compile((x: Tensor, t: Tensor, y: Tensor, eps: Tensor) => {
    const loss = ops.scale(ops.mse(b.net.forward(x, t, y), eps), 1 / N);
    grad(loss, b.params.tensors).forEach((g, i) => {
      const slot = new Tensor(b.params.view(acc, i));
      ops.assign(slot, ops.add(slot, g));
    });
    return { loss };
  }, S);
  const apply = await dev.compile(() => {
    // The update reads the accumulators as its gradient buffer (no copy), then they are zeroed.
    adamUpdate(b.opt.config, b.params.flat, acc, b.opt.m, b.opt.v, b.opt.state, partial);
    dev.rt.fillValue(acc, 0);
  }, []);
  const splitCompile = performance.now() - t0;
  const runSplit = () => {
    for (let j = 0; j < N; j++) microStep.run(...micro.slice(4 * j, 4 * j + 4));
    apply.run();
  };

  // Validate: the same first update's gradient (loop: Adam's gradient buffer; split: the
  // accumulators before the apply step zeroes them).
  loop.run(...micro);
  for (let j = 0; j < N; j++) microStep.run(...micro.slice(4 * j, 4 * j + 4));
  const [ga, gb] = (await Promise.all([dev.rt.read(a.opt.grads), dev.rt.read(acc)])) as Float32Array[];
  apply.run();
  const top = ga!.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const maxRelDiff = ga!.reduce((m, v, i) => Math.max(m, Math.abs(v - gb![i]!)), 0) / top;
  if (!(maxRelDiff < 1e-4)) throw new Error(`accumulate bench: the two designs' gradients differ by ${maxRelDiff} of the largest; not timing them`);

  const loopMs = await timeSteps(dev, () => loop.run(...micro), steps);
  const splitMs = await timeSteps(dev, runSplit, steps);

  let large: AccumulateRow['large'] = null;
  if (N > 1) {
    const c = setup(dev, size);
    const one: CompiledStep = await dev.compile((x: Tensor, t: Tensor, y: Tensor, eps: Tensor) => {
      const loss = ops.mse(c.net.forward(x, t, y), eps);
      c.opt.step(grad(loss, c.params.tensors));
      return { loss };
    }, specs(N * B, size));
    large = { plannedBytes: one.stats.plannedBytes, fixedBytes: one.stats.fixedBytes };
    one.destroy();
  }
  const accBytes = b.params.length * 4;
  const row: AccumulateRow = {
    n: N,
    loop: {
      plannedBytes: loop.stats.plannedBytes, fixedBytes: loop.stats.fixedBytes, extraBytes: 0, totalBytes: loop.stats.plannedBytes + loop.stats.fixedBytes,
      dispatches: loop.stats.dispatches, submits: 1, compileMs: loopCompile, msPerStep: loopMs,
    },
    split: {
      plannedBytes: microStep.stats.plannedBytes + apply.stats.plannedBytes, fixedBytes: microStep.stats.fixedBytes + apply.stats.fixedBytes, extraBytes: accBytes,
      totalBytes: microStep.stats.plannedBytes + apply.stats.plannedBytes + microStep.stats.fixedBytes + apply.stats.fixedBytes + accBytes,
      dispatches: N * microStep.stats.dispatches + apply.stats.dispatches, submits: N + 1, compileMs: splitCompile, msPerStep: splitMs,
    },
    large,
    maxRelDiff,
  };
  loop.destroy();
  microStep.destroy();
  apply.destroy();
  return row;
}

const kib = (b: number) => `${(b / 1024).toFixed(1)} KiB`;

export function accumulateTable(r: AccumulateResult): string {
  const lines = [
    `U-Net ${r.model}, ${r.parameters} parameters (${kib(r.parameterBytes)} per flat copy), micro-batch ${r.batch}, ε-MSE and AdamW; adapter ${r.adapter}.`,
    'Memory: the compiled steps\' planned intermediates plus their fixed buffers (constants, uniforms), plus persistent accumulators (split); weights, Adam moments and inputs are the same for both and not counted.',
    '',
    '| N | design | memory | of which intermediates | dispatches / update | submits / update | compile ms | ms / update | one step on N·B: intermediates |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const row of r.rows) {
    for (const [name, d] of [['loop (one step)', row.loop], ['split (micro + apply)', row.split]] as const) {
      lines.push(`| ${row.n} | ${name} | ${kib(d.totalBytes)} | ${kib(d.plannedBytes)} | ${d.dispatches} | ${d.submits} | ${d.compileMs.toFixed(0)} | ${d.msPerStep.toFixed(1)} | ${row.large ? kib(row.large.plannedBytes) : '–'} |`);
    }
  }
  return lines.join('\n');
}

export async function benchAccumulate(dev: Device, opts: { batch?: number; ns?: number[]; size?: number; steps?: number } = {}): Promise<AccumulateResult> {
  const batch = opts.batch ?? 4;
  const size = opts.size ?? 16;
  const rows: AccumulateRow[] = [];
  for (const n of opts.ns ?? [1, 2, 4, 8]) rows.push(await measure(dev, batch, n, size, opts.steps ?? 3));
  const { params } = setup(dev, size);
  const a = dev.adapter;
  return {
    adapter: [a.vendor, a.architecture, a.description].filter(Boolean).join(' '), model: `${size}×${size}×3, levels 16, 32, attention at ${size / 2}`,
    batch, parameters: params.tensors.reduce((s, t) => s + t.size, 0), parameterBytes: params.length * 4, rows,
  };
}

// Standalone: see the header.
if (process.argv[1]?.endsWith('accumulate.mjs')) {
  const args = process.argv.slice(2);
  const dev = await createDevice();
  try {
    const r = await benchAccumulate(dev, {
      batch: Number(flag(args, '--batch') ?? 4), size: Number(flag(args, '--size') ?? 16), steps: Number(flag(args, '--steps') ?? 3),
      ns: (flag(args, '--n') ?? '1,2,4,8').split(',').map(Number),
    });
    const table = accumulateTable(r);
    console.log(table);
    const json = flag(args, '--json');
    if (json) writeFileSync(json, JSON.stringify(r, null, 2) + '\n');
    const md = flag(args, '--md');
    if (md) writeFileSync(md, `# Gradient accumulation: one step with the loop inside, or micro-steps and an apply step\n\n\`node scripts/run.mjs bench/accumulate.ts --json bench/accumulate.json --md bench/accumulate.md\`\n\n${table}\n`);
  } finally {
    dev.destroy();
  }
}
