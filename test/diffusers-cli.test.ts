// The command line over diffusers folders: `wgd sample --ckpt DIR` takes a model folder (its
// scheduler_config.json choosing the sampler) or a pipeline folder; `wgd import DIR` writes an engine
// checkpoint that samples as the folder does; `wgd export --format diffusers` writes a folder that
// imports back to the same model; and `wgd eval-samples` runs a quality-vs-steps table.
import { describe, expect, it } from 'vitest';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useDevice, SEED } from './helpers.js';
import { main } from '../src/cli/main.js';
import { decodeCheckpoint, encodeCheckpoint } from '../src/io/checkpoint.js';
import { parseSafetensors } from '../src/io/safetensors.js';
import { decodePng } from '../src/data/png.js';
import { Init } from '../src/nn/module.js';
import { ParameterSet } from '../src/nn/params.js';
import { UNet } from '../src/models/unet.js';
import { Classifier } from '../src/models/classifier.js';
import { makeProcess } from '../src/diffusion/process.js';

const dev = useDevice();
const FIX = join(import.meta.dirname, 'fixtures', 'diffusers');
const ROOT = join(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'wgd-diffusers-cli-'));

/** Console output of a main() call, for the lines the commands print (and its error, if it fails). */
async function run(args: string[]): Promise<string> {
  const lines: string[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => lines.push(a.join(' '));
  try {
    expect(await main(args)).toBe(0);
  } catch (e) {
    lines.push(`error: ${(e as Error).message}`);
  } finally {
    console.log = log;
  }
  return lines.join('\n');
}

describe('wgd and diffusers folders', () => {
  it('sample --ckpt DIR: the scheduler beside the model picks the sampler and the grid; a pipeline folder works too; guidance is 1 without a null class', async () => {
    dev();
    // A pipeline as diffusers' training scripts save it: model_index.json, unet/, scheduler/.
    const pipe = join(dir, 'pipeline');
    mkdirSync(join(pipe, 'unet'), { recursive: true });
    mkdirSync(join(pipe, 'scheduler'));
    for (const f of ['config.json', 'diffusion_pytorch_model.safetensors']) copyFileSync(join(FIX, 'unet2d-class', f), join(pipe, 'unet', f));
    writeFileSync(join(pipe, 'model_index.json'), JSON.stringify({ _class_name: 'DDPMPipeline', unet: ['diffusers', 'UNet2DModel'], scheduler: ['diffusers', 'DPMSolverMultistepScheduler'] }));
    writeFileSync(join(pipe, 'scheduler', 'scheduler_config.json'), '{"_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": true, "lambda_min_clipped": -Infinity}');
    const out = join(dir, 'pipe.png');
    const said = await run(['sample', '--ckpt', pipe, '--steps', '3', '--label', '0,25', '--count', '2', '--out', out]);
    expect(said).toMatch(/UNet2DModel, process from the DPMSolverMultistepScheduler beside .*unet; sampler dpm\+\+2m/);
    const g = decodePng(new Uint8Array(readFileSync(out)));
    expect([g.width, g.height]).toEqual([2 * 66 + 2, 2 * 66 + 2]);
    // --sampler overrides the scheduler's; guidance ≠ 1 on a model without a null class is refused (before sampling).
    const refused = await run(['sample', '--ckpt', join(pipe, 'unet'), '--sampler', 'euler', '--guidance', '2', '--steps', '2', '--label', '3', '--count', '1', '--out', join(dir, 'g.png')]);
    expect(refused).toMatch(/sampler euler\nerror: this model has no null class .* use guidance 1/);
  }, 600_000);

  it('import DIR writes an engine checkpoint with the scheduler in its header, which samples as the folder does', async () => {
    const out = join(dir, 'imported.safetensors');
    const said = await run(['import', join(dir, 'pipeline', 'unet'), '--out', out]);
    expect(said).toMatch(/UNet2DModel, 145 tensors; process from its DPMSolverMultistepScheduler/);
    const ck = decodeCheckpoint(new Uint8Array(readFileSync(out)));
    expect(ck.config).toMatchObject({ kind: 'diffusion', model: { conditioning: 'class', numClasses: 26, nullClass: false }, sampler: { name: 'dpm++2m', options: { karras: true, timestepSpacing: 'linspace' } }, imported: { className: 'UNet2DModel' } });
    // The same command on the imported file draws the same grid as on the pipeline folder (first test).
    const b = join(dir, 'from-import.png');
    await run(['sample', '--ckpt', out, '--steps', '3', '--label', '0,25', '--count', '2', '--out', b]);
    expect(readFileSync(b).equals(readFileSync(join(dir, 'pipe.png')))).toBe(true);
    await expect(main(['import', join(dir, 'pipeline', 'unet')])).rejects.toThrow(/import: give the diffusers folder \(DIR\) and --out FILE\.safetensors/);
    await expect(main(['import', FIX, '--out', join(dir, 'x.safetensors')])).rejects.toThrow(/has no config\.json/);
  }, 600_000);

  it('export --format diffusers DIR writes what diffusers loads, and import brings the same model back', async () => {
    const letters = join(ROOT, 'examples', 'checkpoints', 'letters', 'letters.safetensors');
    const folder = join(dir, 'letters-diffusers');
    expect(await run(['export', '--format', 'diffusers', '--ckpt', letters, '--sampler', 'heun', folder])).toMatch(/wrote .*letters-diffusers: UNet2DModel \(config\.json, diffusion_pytorch_model\.safetensors, scheduler_config\.json\)/);
    const sched = JSON.parse(readFileSync(join(folder, 'scheduler_config.json'), 'utf8')) as Record<string, unknown>;
    expect(sched).toMatchObject({ _class_name: 'HeunDiscreteScheduler', use_karras_sigmas: true, clip_sample: true });
    const keys = [...parseSafetensors(readFileSync(join(folder, 'diffusion_pytorch_model.safetensors'))).tensors.keys()];
    expect(keys).toContain('class_embedding.weight');
    expect(keys.some((k) => /^(ema|optimizer|rng)\./.test(k))).toBe(false);
    const back = join(dir, 'letters-back.safetensors');
    await run(['import', folder, '--out', back]);
    const a = decodeCheckpoint(new Uint8Array(readFileSync(letters)));
    const b = decodeCheckpoint(new Uint8Array(readFileSync(back)));
    expect(b.config).toMatchObject({ classes: (a.config as { classes: string[] }).classes, model: { nullClass: true, numClasses: 26 }, sampler: { name: 'heun' } });
    // The shipped file holds the EMA weights as its weights (wgd export); they come back unchanged.
    for (const k of ['conv_out.weight', 'class_embedding.weight']) expect(Array.from(b.tensors.get(k)!.data), k).toEqual(Array.from(a.tensors.get(k)!.data));
    // The engine format still writes one file; a folder is refused there.
    await expect(main(['export', '--ckpt', letters, folder])).rejects.toThrow(/a positional DIR is for --format diffusers/);
    await expect(main(['export', '--format', 'diffusers', '--ckpt', letters, folder])).rejects.toThrow(/exists?; pass --force/);
  }, 600_000);

  it('eval-samples over several step counts: a row per (sampler, steps) with network evaluations, recognition and Fréchet distance', async () => {
    const d = dev();
    // A small class-conditional model and classifier of the same three classes, on the letters at 16 px.
    const net = new UNet(new Init(d, SEED), { sampleSize: 16, blockOutChannels: [8, 16], normGroups: 4, attentionHeads: 2, attentionResolutions: [8], conditioning: 'class', numClasses: 3 });
    const ckPath = join(dir, 'tiny.safetensors');
    const config = { kind: 'diffusion', model: net.config, process: makeProcess('ddpm').config, train: {}, step: 0, classes: ['A', 'B', 'C'], data: { name: 'letters', size: 16, count: 1 } };
    writeFileSync(ckPath, await encodeCheckpoint({ params: new ParameterSet(net.namedParameters()), config }));
    const clf = new Classifier(new Init(d, SEED + 1), { inChannels: 1, sampleSize: 16, numClasses: 3, channels: [8, 8, 8] });
    const clfPath = join(dir, 'tiny-classifier.safetensors');
    writeFileSync(clfPath, await encodeCheckpoint({ params: new ParameterSet(clf.namedParameters()), config: { kind: 'classifier', model: clf.config, classes: ['A', 'B', 'C'] } }));
    const out = join(dir, 'eval');
    await run(['eval-samples', '--ckpt', ckPath, '--classifier', clfPath, '--samplers', 'ddim,heun', '--steps', '2,3', '--guidance', '2', '--count', '1', '--out', out]);
    const e = JSON.parse(readFileSync(join(out, 'eval.json'), 'utf8')) as { steps: number[]; reference: string; rows: { sampler: string; steps: number; evaluations: number; accuracy: number; frechet: number }[] };
    expect(e.steps).toEqual([2, 3]);
    expect(e.reference).toMatch(/training images \(letters, \d+\)/);
    expect(e.rows.map((r) => [r.sampler, r.steps, r.evaluations])).toEqual([['ddim', 2, 2], ['heun', 2, 3], ['ddim', 3, 3], ['heun', 3, 5]]);
    for (const r of e.rows) {
      expect(r.frechet).toBeGreaterThan(0);
      expect([0, 1 / 3, 2 / 3, 1]).toContain(r.accuracy);
    }
    for (const f of ['samples-ddim-n2-s2.png', 'samples-heun-n3-s2.png']) expect(existsSync(join(out, f)), f).toBe(true);
  }, 600_000);
});
