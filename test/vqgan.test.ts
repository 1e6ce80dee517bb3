import { describe, expect, it } from 'vitest';
import { checkModule, checkOp, expectClose, f32, numel, randn, rng, SEED, useDevice } from './helpers.js';
import { separatedCodebookInputs } from './codebook-check.js';
import { Device, grad, ops, Tensor } from '../src/index.js';
import { Init } from '../src/nn/module.js';
import { ShapeError } from '../src/runtime/errors.js';
import { codebookGradRef, codebookRef, nearestRef, vectorOffset } from './reference/codebook.js';
import { restartCodesRef } from './reference/vq.js';
import { randomRef } from './reference/random.js';
import { conv2dGeometry } from '../kernels/conv2d.js';
import { conv2dRef } from './reference/conv2d.js';
import { groupNormRef } from './reference/groupnorm.js';
import { VectorQuantizer, vectorQuantize, QuantizerConfig } from '../src/models/quantizer.js';
import { VQGAN, VQGANConfig, resolveVQGANConfig } from '../src/models/vqgan.js';
import { LeakyReLU, PatchConv, PatchDiscriminator, PatchNorm, generatorLoss, hingeDiscriminatorLoss } from '../src/models/discriminator.js';
import { LPIPS, loadLPIPSWeights } from '../src/models/lpips.js';
import { VQGANTrainer, ADAPTIVE_DELTA, ADAPTIVE_MAX } from '../src/models/vqgan-trainer.js';
import { encodeDataset, decodeLatents } from '../src/models/vqgan-latents.js';
import { makeColorsDataset } from '../src/data/colors.js';

const dev = useDevice();
const r = rng(SEED + 23);

// The toy training run: steps, learning rate, and the PSNR (dB) it must start below and reach. Seeds are
// fixed, so a run is deterministic on one adapter (checked twice on an H200), but float rounding differs
// between adapters and matmul tilings, and toy training with code restarts amplifies it: at lr 2e-3
// the same 160-step run ended at 15.2 dB on SwiftShader and 8.7 on an H200. At lr 5e-4 over 300 steps
// three rounding paths (SwiftShader; H200 with its GPU matmul and with 'regs') agreed: 8.4 dB at the
// start, a mean of 20.8–21.2 dB over the 10 steps before the GAN phase (none below 17.8), 14.9–17.6
// dB at its last two steps. The bars leave room below all three.
const TOY_STEPS = 300;
const TOY_LR = 5e-4;
const TOY_GAN_STEPS = 20;
const TOY_START_MAX = 10;
const TOY_PRE_GAN_PSNR = 16;
const TOY_END_PSNR = 12;

const tensor = (d: Device, x: Float64Array, shape: number[], requiresGrad = false) => d.tensor(Float32Array.from(x), shape, { requiresGrad });
const read64 = async (t: Tensor) => Float64Array.from((await t.read()) as Float32Array);

const separated = (shape: number[], k: number) => separatedCodebookInputs(shape, k, r);

/**
 * Float64 reference of the quantizer with its stop-gradients frozen at the base point (z0, e0):
 * output [zq, loss] with zq = z + sg(e − z) (value e0, derivative 1 in z, 0 in the codebook) and
 * loss = mean((sg[z] − e)²) + β·mean((z − sg[e])²). Finite differences of this function are therefore
 * the straight-through, codebook and commitment gradients; with `detach` the codebook term is a
 * constant (EMA mode: no gradient to the codebook).
 */
function quantizerRef(z0: Float64Array, cb0: Float64Array, shape: number[], k: number, beta: number, detach: boolean) {
  const d = shape[1]!;
  const idx0 = nearestRef(z0, shape, cb0, k).indices;
  const e0 = codebookRef(z0, shape, cb0, idx0, 0).zq;
  const ref = ([z, cb]: Float64Array[]): Float64Array => {
    const idx = nearestRef(z!, shape, cb!, k).indices;
    const out = new Float64Array(z!.length + 1);
    let codeTerm = 0;
    let commitTerm = 0;
    for (let m = 0; m < idx.length; m++) {
      for (let c = 0; c < d; c++) {
        const o = vectorOffset(m, c, shape);
        const e = (detach ? cb0 : cb!)[idx[m]! * d + c]!;
        out[o] = z![o]! + (e0[o]! - z0[o]!);
        codeTerm += (z0[o]! - e) ** 2;
        commitTerm += (z![o]! - e0[o]!) ** 2;
      }
    }
    out[z!.length] = (codeTerm + beta * commitTerm) / z!.length;
    return out;
  };
  const refGrad = ([z, cb]: Float64Array[], gy: Float64Array): Float64Array[] => {
    const n = z!.length;
    const { dz, dcb } = codebookGradRef(z!, shape, cb!, k, idx0, beta, Float64Array.from(gy.subarray(0, n)), gy[n]!);
    return [dz, detach ? new Float64Array(dcb.length) : dcb];
  };
  return { ref, refGrad };
}

describe('quantizer', () => {
  for (const mode of ['gradient', 'ema'] as const) {
    it(`${mode}: straight-through for z, ${mode === 'gradient' ? 'codebook-loss gradient for the codebook, ' : 'no codebook gradient, '}commitment for z, vs float64`, async () => {
      const shape = [2, 4, 3, 5];
      const k = 24;
      const beta = 0.25;
      const { z, cb } = separated(shape, k);
      const { ref, refGrad } = quantizerRef(z, cb, shape, k, beta, mode === 'ema');
      // zq is a copy of codes (exact); the loss a mean of 120 f32 squares (~1e-6 relative). dz is the
      // upstream value plus one f32 product; dcodebook sums a few vectors scaled by 2/120: 1e-6
      // absolute and 1e-5 relative cover f32 rounding with margin.
      await checkOp(dev(), {
        name: `vectorQuantize (${mode})`,
        inputs: [{ shape, data: z }, { shape: [k, 4], data: cb, grad: mode === 'gradient' }],
        run: ([zt, ct]) => {
          const q = vectorQuantize(zt!, ct!, { beta, detachCodebook: mode === 'ema' });
          return ops.concat([q.zq.reshape([q.zq.size]), q.loss.reshape([1])], 0);
        },
        ref,
        refGrad,
        atol: 1e-6,
        rtol: 1e-5,
      });
    });
  }

  it('the module quantizes with its codebook (diffusers name quantize.embedding.weight) and EMA mode leaves the codebook without gradient', async () => {
    const d = dev();
    const vq = new VQGAN(new Init(d, SEED), { blockOutChannels: [4, 4], normGroups: 2, numEmbeddings: 16, latentChannels: 3, codebookUpdate: 'ema' });
    const names = vq.namedParameters().map(([n]) => n);
    expect(names).toContain('quantize.embedding.weight');
    expect(names).toContain('encoder.down_blocks.0.downsamplers.0.conv.weight');
    expect(names).toContain('encoder.mid_block.attentions.0.to_q.weight');
    expect(names).toContain('decoder.up_blocks.1.resnets.1.conv2.weight');
    expect(names.filter((n) => n.startsWith('quant_conv') || n.startsWith('post_quant_conv'))).toEqual(['quant_conv.weight', 'quant_conv.bias', 'post_quant_conv.weight', 'post_quant_conv.bias']);
    const z = tensor(d, randn(2 * 3 * 4 * 4, r), [2, 3, 4, 4], true);
    const q = vq.quantize(z);
    const want = vectorQuantize(z, vq.quantizer.codebook, { beta: 0.25 });
    expect(Array.from(await q.indices.read())).toEqual(Array.from(await want.indices.read()));
    const [gc] = grad(ops.add(ops.sum(q.zq), q.loss), [vq.quantizer.codebook]);
    expect(Array.from(await gc!.read()).every((v) => v === 0)).toBe(true);
  });
});

/** Float64 EMA update (VQ-VAE appendix, with Laplace smoothing) in place. */
function emaRef(s: { cluster: Float64Array; sum: Float64Array; codes: Float64Array }, z: Float64Array, shape: number[], idx: ArrayLike<number>, k: number, decay: number, eps: number) {
  const d = shape[1]!;
  const counts = new Float64Array(k);
  const sums = new Float64Array(k * d);
  for (let m = 0; m < idx.length; m++) {
    counts[idx[m]!]!++;
    for (let c = 0; c < d; c++) sums[idx[m]! * d + c]! += z[vectorOffset(m, c, shape)]!;
  }
  for (let j = 0; j < k; j++) s.cluster[j] = decay * s.cluster[j]! + (1 - decay) * counts[j]!;
  for (let j = 0; j < k * d; j++) s.sum[j] = decay * s.sum[j]! + (1 - decay) * sums[j]!;
  const n = s.cluster.reduce((a, b) => a + b, 0);
  for (let j = 0; j < k; j++) {
    const smoothed = ((s.cluster[j]! + eps) / (n + k * eps)) * n;
    for (let c = 0; c < d; c++) s.codes[j * d + c] = s.sum[j * d + c]! / smoothed;
  }
  return counts;
}

const quantizerConfig = (c: Partial<QuantizerConfig>): QuantizerConfig => ({
  numEmbeddings: 12, embedDim: 3, beta: 0.25, codebookUpdate: 'gradient', emaDecay: 0.9, emaEpsilon: 1e-5, restartAfter: 0, ...c,
});

describe('codebook upkeep on the device', () => {
  it('EMA codes over 4 steps match float64 (cluster sizes, sums, codes, ages); unused codes keep their value', async () => {
    const d = dev();
    const cfg = quantizerConfig({ codebookUpdate: 'ema', emaDecay: Math.fround(0.9), emaEpsilon: Math.fround(1e-5) });
    const q = new VectorQuantizer(new Init(d, SEED), cfg);
    const k = cfg.numEmbeddings;
    // Codes spread out so that a few stay unused; the reference starts from the same f32 values.
    const cb0 = f32(randn(k * 3, r).map((v) => 2 * v));
    q.codebook.rebind(tensor(d, cb0, [k, 3]).data);
    q.embedSum!.rebind(tensor(d, cb0, [k, 3]).data);
    const s = { cluster: new Float64Array(k).fill(1), sum: cb0.slice(), codes: cb0.slice() };
    const age = new Float64Array(k);
    const shape = [2, 3, 2, 3];
    for (let step = 0; step < 4; step++) {
      const z = f32(randn(numel(shape), r));
      const zt = tensor(d, z, shape);
      const { indices } = q.forward(zt);
      q.update(zt, indices, null);
      const idx = (await indices.read()) as Int32Array;
      const counts = emaRef(s, z, shape, idx, k, cfg.emaDecay, cfg.emaEpsilon);
      counts.forEach((c, j) => (age[j] = c > 0 ? 0 : age[j]! + 1));
    }
    // Four f32 EMA steps on values of order 1 and one division by the smoothed size (>= ~1e-5·n for
    // never-used codes, where sum and size shrink together): 1e-5 relative, 1e-6 absolute.
    expectClose('cluster sizes', await read64(q.clusterSize!), s.cluster, 1e-6, 1e-5);
    expectClose('sums', await read64(q.embedSum!), s.sum, 1e-6, 1e-5);
    expectClose('codes', await read64(q.codebook), s.codes, 1e-6, 1e-5);
    expectClose('ages', await read64(q.age), age, 0, 0);
    const unused = [...age.keys()].filter((j) => age[j] === 4);
    for (const j of unused) expectClose(`unused code ${j}`, s.codes.subarray(j * 3, j * 3 + 3), cb0.subarray(j * 3, j * 3 + 3), 1e-4, 1e-4);
  });

  for (const mode of ['gradient', 'ema'] as const) {
    it(`${mode}: codes unused for restartAfter steps restart from random encoder outputs of the batch (exactly as the reference)`, async () => {
      const d = dev();
      const k = 10;
      const cfg = quantizerConfig({ numEmbeddings: k, embedDim: 2, codebookUpdate: mode, restartAfter: 2 });
      const q = new VectorQuantizer(new Init(d, SEED), cfg);
      // Codes 0-4 near the data, codes 5-9 far away: those are never chosen.
      const cb = f32(Float64Array.from({ length: k * 2 }, (_, i) => (i < 10 ? 0.5 * randn(1, r)[0]! : 50 + i)));
      q.codebook.rebind(tensor(d, cb, [k, 2]).data);
      if (q.embedSum) q.embedSum.rebind(tensor(d, cb, [k, 2]).data);
      const seed = (SEED % 1000) + 1;
      const key = d.randomKey(seed);
      const shape = [2, 2, 3, 3];
      const st = { codebook: cb.slice(), age: new Float64Array(k), cluster: new Float64Array(k).fill(1), sum: cb.slice() };
      let restarted = 0;
      for (let step = 0; step < 4; step++) {
        const z = f32(randn(numel(shape), r).map((v) => 0.3 * v));
        const zt = tensor(d, z, shape);
        const { indices } = q.forward(zt);
        q.update(zt, indices, key);
        ops.advanceKey(key);
        const idx = (await indices.read()) as Int32Array;
        const counts = new Float64Array(k);
        idx.forEach((j) => counts[j]!++);
        if (mode === 'ema') {
          const e = { cluster: st.cluster, sum: st.sum, codes: st.codebook };
          emaRef(e, z, shape, idx, k, cfg.emaDecay, cfg.emaEpsilon);
        }
        const u = randomRef(seed, step, 0x5eed, k, 'uniform');
        const before = st.codebook.slice();
        restartCodesRef({ codebook: st.codebook, age: st.age, ...(mode === 'ema' ? { cluster: st.cluster, sum: st.sum } : {}) }, counts, u, z, shape, 2);
        restarted += before.filter((v, i) => v !== st.codebook[i]).length;
        // Restarted codes are copies of z (exact); EMA codes as in the test above.
        expectClose(`codebook after step ${step}`, await read64(q.codebook), st.codebook, mode === 'ema' ? 1e-6 : 0, mode === 'ema' ? 1e-5 : 0);
        expectClose(`ages after step ${step}`, await read64(q.age), st.age, 0, 0);
      }
      // The far codes restart at steps 1 and 3 (ages 2 and 4), unless a restarted code got chosen.
      expect(restarted).toBeGreaterThanOrEqual(10);
      const codes = (await q.codebook.read()) as Float32Array;
      for (let j = 5; j < k; j++) expect(Math.abs(codes[j * 2]!)).toBeLessThan(5);
    });
  }

  it('usage: perplexity and the share of codes used from the counts', async () => {
    const d = dev();
    const q = new VectorQuantizer(new Init(d, SEED), quantizerConfig({ numEmbeddings: 8 }));
    const counts = d.tensor(Float32Array.from([4, 0, 2, 2, 0, 0, 0, 0]), [8]);
    const u = q.usage(counts, 8);
    const p = [0.5, 0.25, 0.25];
    const h = -p.reduce((s, v) => s + v * Math.log(v), 0);
    // exp of a sum of 8 f32 terms: 1e-6 relative.
    expectClose('perplexity', [await u.perplexity.item()], [Math.exp(h)], 1e-6, 1e-6);
    expect(await u.used.item()).toBe(3 / 8);
  });
});

const tinyVQ: Partial<VQGANConfig> = { blockOutChannels: [4, 8], normGroups: 2, layersPerBlock: 1, latentChannels: 3, numEmbeddings: 16 };
const randT = (d: Device, shape: number[], s = 1, requiresGrad = false) => d.tensor(Float32Array.from(randn(numel(shape), r)).map((v) => v * s), shape, { requiresGrad });

describe('modules: gradients agree with finite differences', () => {
  // A sample of parameters per module (each costs two forward passes), covering every kind of layer.
  const pick = (...parts: string[]) => (n: string) => parts.some((p) => n.includes(p));
  it('VQ-GAN encoder (f = 2, asymmetric-pad downsampling, mid attention, quant_conv)', async () => {
    const d = dev();
    const vq = new VQGAN(new Init(d, SEED), tinyVQ);
    await checkModule(d, 'encode', vq, [randT(d, [2, 3, 6, 6])], ([x]) => vq.encode(x!), {
      params: pick('encoder.conv_in.weight', 'downsamplers.0.conv.weight', 'encoder.mid_block.attentions.0.to_k.weight', 'encoder.down_blocks.1.resnets.0.conv_shortcut.weight', 'encoder.conv_norm_out.weight', 'quant_conv.bias'),
    });
  });
  it('VQ-GAN decoder (post_quant_conv, mid attention, upsampling)', async () => {
    const d = dev();
    const vq = new VQGAN(new Init(d, SEED), tinyVQ);
    await checkModule(d, 'decode', vq, [randT(d, [2, 3, 3, 3])], ([z]) => vq.decode(z!, { quantize: false }), {
      params: pick('post_quant_conv.weight', 'decoder.conv_in.weight', 'decoder.mid_block.attentions.0.to_out.0.weight', 'upsamplers.0.conv.weight', 'decoder.up_blocks.1.resnets.0.conv_shortcut.weight', 'decoder.conv_out.weight'),
    });
  });
});

/**
 * For modules with kinks (ReLU, LeakyReLU, max pooling), finite differences of the f32 GPU forward with
 * h = 1e-2 cross kinks too often to be a test. Instead: the GPU forward against a float64 reference
 * forward, and the GPU gradient of L = Σ f·r along a random unit direction against central differences
 * of the float64 reference with h = 1e-6 (a kink is crossed with probability ~1e-6 per element; the
 * truncation error is ~h² and the rounding ~1e-16·|L|/h, both far below the tolerance). The tolerance
 * is f32 rounding of the gradient, 1e-4 relative per term: 1e-4·Σ|g_i·d_i| (plus 1e-9 for zeros).
 */
async function checkAgainstReference(
  d: Device, name: string, inputs: { name: string; t: Tensor }[], run: () => Tensor, ref: (xs: Float64Array[]) => Float64Array, fwdTol: [number, number],
) {
  const xs = await Promise.all(inputs.map((i) => read64(i.t)));
  const y = run();
  const want = ref(xs);
  expectClose(`${name} forward`, (await y.read()) as Float32Array, want, ...fwdTol);
  const rr = f32(randn(want.length, r));
  const loss = ops.sum(ops.mul(y, tensor(d, rr, [...y.shape])));
  const gs = await Promise.all(grad(loss, inputs.map((i) => i.t)).map(read64));
  const L = (v: Float64Array[]) => ref(v).reduce((s, yv, i) => s + yv * rr[i]!, 0);
  const h = 1e-6;
  inputs.forEach((inp, k) => {
    const dir = randn(xs[k]!.length, r);
    const norm = Math.hypot(...dir);
    dir.forEach((v, i) => (dir[i] = v / norm));
    const at = (sgn: number) => L(xs.map((x, j) => (j === k ? x.map((v, i) => v + sgn * h * dir[i]!) : x)));
    const fd = (at(1) - at(-1)) / (2 * h);
    const analytic = gs[k]!.reduce((s, g, i) => s + g * dir[i]!, 0);
    const tol = 1e-4 * gs[k]!.reduce((s, g, i) => s + Math.abs(g * dir[i]!), 0) + 1e-9;
    if (!(Math.abs(fd - analytic) <= tol)) throw new Error(`${name}: d/d(${inp.name}) along a random direction: float64 finite differences ${fd}, grad() ${analytic} (tolerance ${tol.toExponential(2)}; TEST_SEED=${SEED})`);
  });
}

/** x [N, C, H, W] → conv (PyTorch semantics) in float64. */
function conv64(x: Float64Array, xs: number[], w: Float64Array, ws: readonly number[], b: Float64Array | null, opts: { stride?: number; padding?: number }) {
  const g = conv2dGeometry(xs, ws, b ? [ws[0]!] : null, opts);
  return { y: conv2dRef(x, w, b, g), shape: [g.batch, g.cout, g.oh, g.ow] };
}

describe('discriminator and LPIPS vs float64 references', () => {
  it('patch discriminator (group norm, LeakyReLU, taming layout main.N): logits and gradients', async () => {
    const d = dev();
    const disc = new PatchDiscriminator(new Init(d, SEED), { channels: 4, layers: 2, normGroups: 2 });
    expect(disc.namedParameters().map(([n]) => n)).toEqual([
      'main.0.weight', 'main.0.bias', 'main.2.weight', 'main.3.weight', 'main.3.bias', 'main.5.weight', 'main.6.weight', 'main.6.bias', 'main.8.weight', 'main.8.bias',
    ]);
    const x = randT(d, [2, 3, 12, 12], 1, true);
    const named = disc.namedParameters();
    const layers = disc.main.items;
    const ref = ([xv, ...ps]: Float64Array[]) => {
      const p = new Map(named.map(([n], i) => [n, ps[i]!]));
      let h = xv!;
      let shape = [2, 3, 12, 12];
      layers.forEach((m, i) => {
        if (m instanceof PatchConv) {
          const w = p.get(`main.${i}.weight`)!;
          const o = conv64(h, shape, w, m.weight.shape, m.bias ? p.get(`main.${i}.bias`)! : null, { stride: m.stride, padding: 1 });
          h = o.y;
          shape = o.shape;
        } else if (m instanceof PatchNorm) {
          h = groupNormRef(h, shape, m.groups, p.get(`main.${i}.weight`)!, p.get(`main.${i}.bias`)!, 1e-5, false);
        } else if (m instanceof LeakyReLU) {
          h = h.map((v) => (v > 0 ? v : 0.2 * v));
        } else throw new Error('unknown layer');
      });
      return h;
    };
    expect(disc.forward(x).shape).toEqual([2, 1, disc.outputSize(12), disc.outputSize(12)]);
    // Logits are sums of <= 16·16·4 products after group norm (values of order 0.1): 1e-5 absolute.
    await checkAgainstReference(d, 'discriminator', [{ name: 'x', t: x }, ...named.map(([n, t]) => ({ name: n, t }))], () => disc.forward(x), ref, [1e-5, 1e-4]);
  });

  it('hinge loss of D and -mean(D(fake)) of G: values and gradients vs float64', async () => {
    const d = dev();
    // Logits at least 0.05 away from the hinges at ±1, so finite differences (h = 1e-5) never cross one.
    const away = (n: number) => f32(randn(n, r).map((v) => (Math.abs(Math.abs(v) - 1) < 0.05 ? v + 0.2 : v)));
    const real = away(8);
    const fake = away(8);
    const hinge = (a: Float64Array, b: Float64Array) => 0.5 * (a.reduce((s, v) => s + Math.max(0, 1 - v), 0) / a.length + b.reduce((s, v) => s + Math.max(0, 1 + v), 0) / b.length);
    // Means of 8 values: 1e-6.
    await checkOp(d, {
      name: 'hinge', inputs: [{ shape: [2, 1, 2, 2], data: real }, { shape: [2, 1, 2, 2], data: fake }],
      run: ([a, b]) => hingeDiscriminatorLoss(a!, b!).reshape([1]),
      ref: ([a, b]) => Float64Array.of(hinge(a!, b!)),
      refGrad: ([a, b], gy) => [a!.map((v) => (v < 1 ? (-0.5 * gy[0]!) / 8 : 0)), b!.map((v) => (v > -1 ? (0.5 * gy[0]!) / 8 : 0))],
      atol: 1e-6, rtol: 1e-6,
    });
    await checkOp(d, {
      name: 'generator loss', inputs: [{ shape: [2, 1, 2, 2], data: fake }],
      run: ([a]) => generatorLoss(a!).reshape([1]),
      ref: ([a]) => Float64Array.of(-a!.reduce((s, v) => s + v, 0) / 8),
      refGrad: ([a], gy) => [a!.map(() => -gy[0]! / 8)],
      atol: 1e-6, rtol: 1e-6,
    });
  });

  it('LPIPS (tiny VGG: 3 stages, max pooling, unit-normalised features, linear heads): distances and gradients', async () => {
    const d = dev();
    const cfg = { channels: [4, 6, 6], convsPerStage: [1, 2, 1] };
    const lp = new LPIPS(new Init(d, SEED), cfg);
    const names = lp.namedParameters().map(([n]) => n);
    expect(names).toEqual([
      'net.slice1.0.weight', 'net.slice1.0.bias', 'net.slice2.3.weight', 'net.slice2.3.bias', 'net.slice2.5.weight', 'net.slice2.5.bias',
      'net.slice3.8.weight', 'net.slice3.8.bias', 'lin0.model.1.weight', 'lin1.model.1.weight', 'lin2.model.1.weight',
    ]);
    const x = randT(d, [2, 3, 8, 8], 0.5, true);
    const y = randT(d, [2, 3, 8, 8], 0.5, true);
    const params = lp.namedParameters();
    const shift = [-0.03, -0.088, -0.188];
    const scale = [0.458, 0.448, 0.45];
    const feats = (img: Float64Array, p: Map<string, Float64Array>) => {
      let h = img.map((v, i) => (v - shift[Math.floor(i / 64) % 3]!) * Math.fround(1 / scale[Math.floor(i / 64) % 3]!));
      let shape = [2, 3, 8, 8];
      const out: { f: Float64Array; shape: number[] }[] = [];
      const norm = () => {
        const [n, c, hh, ww] = shape as [number, number, number, number];
        const f = new Float64Array(h.length);
        for (let b = 0; b < n; b++) for (let s = 0; s < hh * ww; s++) {
          let sq = 0;
          for (let k = 0; k < c; k++) sq += h[(b * c + k) * hh * ww + s]! ** 2;
          const den = Math.sqrt(sq + 1e-20) + 1e-10;
          for (let k = 0; k < c; k++) f[(b * c + k) * hh * ww + s] = h[(b * c + k) * hh * ww + s]! / den;
        }
        out.push({ f, shape });
      };
      let stage = 0;
      for (const { conv, stage: st, index } of lp.net.convs) {
        if (st !== stage) {
          norm();
          const [n, c, hh, ww] = shape as [number, number, number, number];
          const pooled = new Float64Array((n * c * hh * ww) / 4);
          for (let q = 0; q < n * c; q++) for (let i = 0; i < hh / 2; i++) for (let j = 0; j < ww / 2; j++) {
            const at = (a: number, b: number) => h[q * hh * ww + (2 * i + a) * ww + 2 * j + b]!;
            pooled[q * (hh / 2) * (ww / 2) + i * (ww / 2) + j] = Math.max(at(0, 0), at(0, 1), at(1, 0), at(1, 1));
          }
          h = pooled;
          shape = [n, c, hh / 2, ww / 2];
          stage = st;
        }
        const o = conv64(h, shape, p.get(`net.slice${st + 1}.${index}.weight`)!, conv.weight.shape, p.get(`net.slice${st + 1}.${index}.bias`)!, { padding: 1 });
        h = o.y.map((v) => Math.max(v, 0));
        shape = o.shape;
      }
      norm();
      return out;
    };
    const ref = ([xv, yv, ...ps]: Float64Array[]) => {
      const p = new Map(params.map(([n], i) => [n, ps[i]!]));
      const fx = feats(xv!, p);
      const fy = feats(yv!, p);
      const dist = new Float64Array(2);
      fx.forEach(({ f, shape }, s) => {
        const [, c, hh, ww] = shape as [number, number, number, number];
        const lin = p.get(`lin${s}.model.1.weight`)!;
        for (let b = 0; b < 2; b++) for (let q = 0; q < hh * ww; q++) {
          for (let k = 0; k < c; k++) {
            const o = (b * c + k) * hh * ww + q;
            dist[b]! += (lin[k]! * (f[o]! - fy[s]!.f[o]!) ** 2) / (hh * ww);
          }
        }
      });
      return dist;
    };
    // Distances are means of unit-normalised squared differences (order 0.1) through f32 convs: 1e-5.
    await checkAgainstReference(d, 'LPIPS', [{ name: 'x', t: x }, { name: 'y', t: y }, ...params.map(([n, t]) => ({ name: n, t }))], () => lp.forward(x, y), ref, [1e-5, 1e-4]);
  });
});

describe('adaptive weight and the trainer', () => {
  const small: Partial<VQGANConfig> = { blockOutChannels: [4, 8], normGroups: 2, latentChannels: 3, numEmbeddings: 16 };
  const disc = { channels: 4, layers: 1, normGroups: 2 };

  it('λ equals the float64 ratio ‖∇_W L_rec‖ / (‖∇_W L_GAN‖ + δ) at the last layer, and the step\'s gradients are those of L_rec + λ·L_GAN + L_q', async () => {
    const d = dev();
    const vq = new VQGAN(new Init(d, SEED), small);
    const B = 2;
    const tr = await VQGANTrainer.create(d, vq, { batchSize: B, height: 8, width: 8, discStart: 0, discWeight: 0.8, discriminator: disc });
    const x = f32(randn(B * 3 * 64, r).map((v) => Math.tanh(v)));
    const X = tensor(d, x, [B, 3, 8, 8]);
    // Eagerly, at the same weights: the two gradients at the decoder's last conv weight.
    const out = vq.forward(X);
    const nll = ops.mean(ops.abs(ops.sub(X, out.xrec)));
    const gLoss = generatorLoss(tr.discriminator.forward(out.xrec));
    const [gRec] = grad(nll, [vq.lastLayer], { retainGraph: true });
    const [gGan] = grad(gLoss, [vq.lastLayer], { retainGraph: true });
    const norm = (g: Float64Array) => Math.sqrt(g.reduce((s, v) => s + v * v, 0));
    const lambda = Math.min(Math.max(norm(await read64(gRec!)) / (norm(await read64(gGan!)) + ADAPTIVE_DELTA), 0), ADAPTIVE_MAX) * 0.8;
    const total = ops.add(ops.add(nll, ops.scale(gLoss, lambda)), out.loss);
    const want = await Promise.all(grad(total, tr.params.tensors, { retainGraph: true }).map(read64));
    const logitsReal = tr.discriminator.forward(X);
    const wantD = await Promise.all(grad(hingeDiscriminatorLoss(logitsReal, tr.discriminator.forward(out.xrec.detach())), tr.discParams.tensors).map(read64));
    tr.stepOn(Float32Array.from(x));
    const s = await tr.progress();
    // Norms of ~200 f32 gradient entries, the compiled path in another order of the same sums: 1e-5
    // relative on the ratio.
    expectClose('lambda', [s.lambda!], [lambda], 0, 1e-5);
    // The step's gradients (left in each Adam's flat buffer) vs the eager gradients of the weighted
    // sum: same kernels, λ rounded to f32 either way; sums over up to 128 positions: 1e-5 relative of
    // each tensor's largest entry, 1e-6 absolute.
    const got = await tr.params.read(tr.optimizer.grads);
    tr.params.names.forEach((n, i) => {
      const w = want[i]!;
      const big = Math.max(...w.map(Math.abs));
      expectClose(`gradient of ${n}`, got.get(n)!, w, 1e-6 + 1e-5 * big, 1e-5);
    });
    const gotD = await tr.discParams.read(tr.discOptimizer.grads);
    tr.discParams.names.forEach((n, i) => expectClose(`gradient of D ${n}`, gotD.get(n)!, wantD[i]!, 1e-6, 1e-5));
  });

  it('a tiny VQ-GAN (f = 4) trained on a handful of 16x16 colors images raises PSNR (L1 + quantizer, then the GAN)', async () => {
    const d = dev();
    // EMA codes (decay 0.9) with restarts after 5 idle steps: codes take the encoder's scale at once,
    // where gradient-trained codes start at ±1/K and need ~lr per step to grow (the same run with
    // gradient codes took ~200 steps to pass 13 dB).
    const vq = new VQGAN(new Init(d, 1), { blockOutChannels: [8, 16, 16], normGroups: 4, latentChannels: 4, numEmbeddings: 64, codebookUpdate: 'ema', emaDecay: 0.9, restartAfter: 5 });
    expect(vq.factor).toBe(4);
    const B = 4;
    const steps = TOY_STEPS;
    const data = makeColorsDataset({ n: 2 * B, size: 16, seed: 3 });
    const tr = await VQGANTrainer.create(d, vq, { batchSize: B, height: 16, width: 16, lr: TOY_LR, discLr: 2e-3, betas: [0.9, 0.999], discStart: steps - TOY_GAN_STEPS, discriminator: { channels: 8, layers: 2, normGroups: 4 } });
    const start: number[] = [], preGan: number[] = [], end: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) {
      tr.stepOn(data.images.subarray((i % 2) * B * 768, ((i % 2) + 1) * B * 768));
      const at = i < 2 ? start : i >= steps - TOY_GAN_STEPS - 10 && i < steps - TOY_GAN_STEPS ? preGan : i >= steps - 2 ? end : null;
      at?.push((await tr.progress()).psnr);
    }
    const s = await tr.progress();
    const ms = (performance.now() - t0) / steps;
    const preMean = preGan.reduce((a, x) => a + x, 0) / preGan.length;
    console.log(`toy VQ-GAN: PSNR ${start.map((p) => p.toFixed(2)).join(' ')} dB at the start, mean ${preMean.toFixed(2)} over the 10 steps before the GAN, ${end.map((p) => p.toFixed(2)).join(' ')} at the end; perplexity ${s.perplexity.toFixed(1)}, codes used ${s.codesUsed}, λ ${s.lambda}, ~${ms.toFixed(0)} ms/step`);
    expect(Math.max(...start)).toBeLessThan(TOY_START_MAX);
    expect(preMean).toBeGreaterThan(TOY_PRE_GAN_PSNR);
    expect(Math.min(...end)).toBeGreaterThan(TOY_END_PSNR);
    expect(s.lambda).toBeGreaterThan(0);
  }, 900_000);

  it("train: 'decoder' trains post_quant_conv and the decoder only (L1's gradients), leaves encoder and codebook bit for bit, and resumes exactly", async () => {
    const d = dev();
    // EMA codes with restarts after 1 idle step: in 'all' mode the codebook would move every step.
    const cfg: Partial<VQGANConfig> = { ...small, codebookUpdate: 'ema', restartAfter: 1 };
    const vq = new VQGAN(new Init(d, SEED), cfg);
    const before = new Map(await Promise.all(vq.namedParameters().map(async ([n, t]) => [n, Array.from(await t.read())] as const)));
    const opts = { batchSize: 2, height: 8, width: 8, discStart: 1, emaDecay: 0.9, seed: 5, train: 'decoder' as const, discriminator: disc };
    const tr = await VQGANTrainer.create(d, vq, opts);
    const trainedName = /^(post_quant_conv|decoder)\./;
    expect(tr.params.names.length).toBeGreaterThan(0);
    expect(tr.params.names.every((n) => trainedName.test(n))).toBe(true);
    expect(tr.frozen.map(([n]) => n).sort()).toEqual([...before.keys()].filter((n) => !trainedName.test(n)).sort());
    const batches = [0, 1, 2, 3].map(() => Float32Array.from(randn(2 * 3 * 64, r).map((v) => Math.tanh(v))));
    // Step 0 (before the GAN): the gradients are L1's with respect to the decoder side, eagerly at the
    // same weights (same kernels; sums over up to 128 positions: 1e-5 relative of each tensor's largest
    // entry, 1e-6 absolute, as the full trainer's test).
    const X = tensor(d, Float64Array.from(batches[0]!), [2, 3, 8, 8]);
    const want = await Promise.all(grad(ops.mean(ops.abs(ops.sub(X, vq.forward(X).xrec))), tr.params.tensors).map(read64));
    const losses: number[] = [];
    let saved: Uint8Array | null = null;
    for (let i = 0; i < 4; i++) {
      if (i === 2) saved = await tr.state();
      tr.stepOn(batches[i]!);
      const st = await tr.progress();
      losses.push(st.loss);
      if (i === 0) {
        expect(st.loss).toBe(st.l1);
        const got = await tr.params.read(tr.optimizer.grads);
        tr.params.names.forEach((n, k) => expectClose(`gradient of ${n}`, got.get(n)!, want[k]!, 1e-6 + 1e-5 * Math.max(...want[k]!.map(Math.abs)), 1e-5));
      }
      if (i === 3) expect(st.lambda).toBeGreaterThan(0);
    }
    for (const [n, t] of vq.namedParameters()) {
      const now = Array.from(await t.read());
      if (trainedName.test(n)) expect(now, n).not.toEqual(before.get(n));
      else expect(now, n).toEqual(before.get(n));
    }
    // The checkpoint holds the frozen weights too: a trainer rebuilt from it (fresh random init
    // underneath) continues bit for bit and still has the original encoder and codebook.
    const b = await VQGANTrainer.fromCheckpoint(d, saved!);
    expect(b.options.train).toBe('decoder');
    for (let i = 2; i < 4; i++) {
      b.stepOn(batches[i]!);
      expect((await b.progress()).loss).toBe(losses[i]);
    }
    for (const [n, t] of b.vqgan.namedParameters()) {
      const now = Array.from(await t.read());
      if (!trainedName.test(n)) expect(now, n).toEqual(before.get(n));
    }
    const [pa, pb] = await Promise.all([tr.params.read(), b.params.read()]);
    for (const n of tr.params.names) expect(Array.from(pb.get(n)!), n).toEqual(Array.from(pa.get(n)!));
    await expect(VQGANTrainer.create(d, vq, { ...opts, train: 'encoder' as 'all' })).rejects.toThrow(/options\.train = "encoder": allowed values: 'all', 'decoder'/);
  });
});

describe('checkpoints, latents, loading and errors', () => {
  it('a trainer resumed from a checkpoint continues bit for bit (EMA codes, restarts, weight EMA, GAN phase, both Adams, key)', async () => {
    const d = dev();
    const cfg: Partial<VQGANConfig> = { blockOutChannels: [4, 8], normGroups: 2, latentChannels: 3, numEmbeddings: 16, codebookUpdate: 'ema', restartAfter: 2 };
    const opts = { batchSize: 2, height: 8, width: 8, discStart: 2, emaDecay: 0.9, seed: 5, discriminator: { channels: 4, layers: 1, normGroups: 2 } };
    const a = await VQGANTrainer.create(d, new VQGAN(new Init(d, SEED), cfg), opts);
    const batches = [0, 1, 2, 3, 4].map(() => Float32Array.from(randn(2 * 3 * 64, r).map((v) => Math.tanh(v))));
    const losses: number[] = [];
    let saved: Uint8Array | null = null;
    for (let i = 0; i < 5; i++) {
      if (i === 2) saved = await a.state();
      a.stepOn(batches[i]!);
      losses.push((await a.progress()).loss);
    }
    const b = await VQGANTrainer.fromCheckpoint(d, saved!);
    expect(b.steps).toBe(2);
    for (let i = 2; i < 5; i++) {
      b.stepOn(batches[i]!);
      expect((await b.progress()).loss).toBe(losses[i]);
    }
    const same = async (x: Tensor, y: Tensor) => expect(Array.from(await y.read())).toEqual(Array.from(await x.read()));
    const [pa, pb] = await Promise.all([a.params.read(), b.params.read()]);
    for (const n of a.params.names) expect(Array.from(pb.get(n)!)).toEqual(Array.from(pa.get(n)!));
    const [ea, eb] = await Promise.all([a.params.read(a.ema!.flat), b.params.read(b.ema!.flat)]);
    for (const n of a.params.names) expect(Array.from(eb.get(n)!)).toEqual(Array.from(ea.get(n)!));
    const [da, db] = await Promise.all([a.discParams.read(), b.discParams.read()]);
    for (const n of a.discParams.names) expect(Array.from(db.get(n)!)).toEqual(Array.from(da.get(n)!));
    const qa = a.vqgan.quantizer, qb = b.vqgan.quantizer;
    await same(qa.codebook, qb.codebook);
    await same(qa.age, qb.age);
    await same(qa.clusterSize!, qb.clusterSize!);
    await same(qa.embedSum!, qb.embedSum!);
    // The file reads as a VQModel state dict plus the training state.
    const names = [...(await import('../src/io/checkpoint.js')).decodeCheckpoint(saved!).tensors.keys()];
    expect(names).toContain('quantize.embedding.weight');
    expect(names).toContain('quantize.embedding.cluster_size');
    expect(names).toContain('loss.discriminator.main.0.weight');
    expect(names).toContain('loss.discriminator.optimizer.state');
    expect(names).toContain('ema.decoder.conv_out.weight');
  });

  it('encodeDataset and decodeLatents: batched and compiled, equal to encoding and decoding one batch eagerly', async () => {
    const d = dev();
    const vq = new VQGAN(new Init(d, SEED), { blockOutChannels: [4, 8, 8], normGroups: 2, latentChannels: 3, numEmbeddings: 16 });
    const n = 5;
    const images = Float32Array.from(randn(n * 3 * 64, r).map((v) => Math.tanh(v)));
    const { latents, shape } = await encodeDataset(vq, images, [n, 3, 8, 8], 2);
    expect(shape).toEqual([n, 3, 2, 2]);
    const eager = (await vq.encode(d.tensor(images, [n, 3, 8, 8])).read()) as Float32Array;
    // Per-image work is the same in a batch of 2 or 5 (convs, group norm and attention never mix
    // images); the compiled step may contract a·b + c into an FMA: 1e-5.
    expectClose('latents', latents, eager, 1e-5, 1e-5);
    const dec = await decodeLatents(vq, latents, shape, 3);
    expect(dec.shape).toEqual([n, 3, 8, 8]);
    const want = (await vq.decode(d.tensor(latents, shape)).read()) as Float32Array;
    expectClose('decoded', dec.images, want, 1e-5, 1e-5);
  });

  it('LPIPS weights load by torchvision, LPIPS or taming names; a wrong or missing tensor is named with both shapes', async () => {
    const d = dev();
    const cfg = { channels: [4, 6], convsPerStage: [2, 1] };
    const src = new LPIPS(new Init(d, SEED), cfg);
    const values = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [n, t] of src.namedParameters()) values.set(n, { shape: [...t.shape], data: (await t.read()) as Float32Array });
    // torchvision names for the trunk (features.N), LPIPS names for the heads.
    const tv = new Map([...values].map(([n, v]) => [n.replace(/^net\.slice\d+\./, 'features.'), v]));
    const dst = new LPIPS(new Init(d, SEED + 1), cfg);
    loadLPIPSWeights(dst, tv);
    const x = randT(d, [1, 3, 4, 4]), y = randT(d, [1, 3, 4, 4]);
    // The same f32 weights through the same kernels: bit-identical distances.
    expect(await dst.forward(x, y).item()).toBe(await src.forward(x, y).item());
    const wrong = new Map(tv);
    wrong.set('features.2.weight', { shape: [4, 4, 1, 1], data: new Float32Array(16) });
    expect(() => loadLPIPSWeights(dst, wrong)).toThrow(/'features\.2\.weight'.*\[4, 4, 1, 1\].*needs \[4, 4, 3, 3\]/);
    const missing = new Map(tv);
    missing.delete('lin1.model.1.weight');
    expect(() => loadLPIPSWeights(dst, missing)).toThrow(/no tensor for LPIPS head lin1 \[1, 6, 1, 1\]; looked for 'lin1\.model\.1\.weight'/);
  });

  it('a trainer with LPIPS adds the perceptual term (compiled, finite)', async () => {
    const d = dev();
    const lp = new LPIPS(new Init(d, SEED), { channels: [4, 4], convsPerStage: [1, 1] });
    const tr = await VQGANTrainer.create(d, new VQGAN(new Init(d, SEED), { blockOutChannels: [4, 8], normGroups: 2, latentChannels: 3, numEmbeddings: 16 }),
      { batchSize: 2, height: 8, width: 8, discStart: 0, perceptualWeight: 0.5, discriminator: { channels: 4, layers: 1, normGroups: 2 } }, { lpips: lp });
    tr.stepOn(Float32Array.from(randn(2 * 3 * 64, r).map((v) => Math.tanh(v))));
    const s = await tr.progress();
    // Random heads may be negative (trained LPIPS heads are not): only finite and present.
    expect(Number.isFinite(s.perceptual!) && s.perceptual !== 0).toBe(true);
    // loss = L1 + 0.5·LPIPS + λ·L_GAN + L_q, each read back: f32 sums, 1e-5.
    expectClose('loss', [s.loss], [s.l1 + 0.5 * s.perceptual! + s.lambda! * s.gLoss! + s.qloss], 1e-5, 1e-5);
  });

  it('bad configurations name the field and what it allows', async () => {
    const d = dev();
    expect(() => resolveVQGANConfig({ blockOutChannels: [8, 16, 16], downsampleFactor: 8 })).toThrow(/config\.downsampleFactor = 8: blockOutChannels has 3 levels, which give f = 4; f = 8 needs 4 levels/);
    expect(() => resolveVQGANConfig({ downsampleFactor: 3 })).toThrow(/downsampleFactor = 3: allowed values: 1, 2, 4, 8, 16/);
    expect(() => resolveVQGANConfig({ blockOutChannels: [8, 12], normGroups: 8 })).toThrow(/config\.normGroups = 8: must divide every level's channels \(8, 12\)/);
    expect(() => resolveVQGANConfig({ codebookUpdate: 'kmeans' as 'ema' })).toThrow(/config\.codebookUpdate = "kmeans": allowed values: 'gradient', 'ema'/);
    expect(() => resolveVQGANConfig({ emaDecay: 1 })).toThrow(/config\.emaDecay = 1: must be in \(0, 1\)/);
    expect(() => resolveVQGANConfig({ numEmbeddings: 1 })).toThrow(/config\.numEmbeddings = 1: must be an integer >= 2/);
    expect(() => resolveVQGANConfig({ blockOutChannels: [] })).toThrow(/blockOutChannels.*3 levels for f = 4, 4 levels for f = 8/);
    expect(resolveVQGANConfig({ blockOutChannels: [8, 8, 16, 16], downsampleFactor: 8 }).downsampleFactor).toBe(8);
    // f = 8 is reachable: 4 levels turn 16x16 images into 2x2 latents.
    const f8 = new VQGAN(new Init(d, SEED), { blockOutChannels: [4, 4, 8, 8], normGroups: 2, downsampleFactor: 8 });
    expect(f8.factor).toBe(8);
    expect(f8.encode(d.zeros([1, 3, 16, 16])).shape).toEqual([1, 4, 2, 2]);
    const vq = new VQGAN(new Init(d, SEED), { blockOutChannels: [4, 8, 8], normGroups: 2 });
    expect(() => vq.encode(d.zeros([1, 3, 10, 10]))).toThrow(ShapeError);
    expect(() => vq.encode(d.zeros([1, 3, 10, 10]))).toThrow(/H and W multiples of f = 4/);
    expect(() => new PatchDiscriminator(new Init(d, 0), { norm: 'batch' as 'group' })).toThrow(/config\.norm = "batch": allowed values: 'group', 'none'/);
    await expect(VQGANTrainer.create(d, vq, { batchSize: 1, height: 8, width: 8, discriminator: { channels: 4, layers: 3, normGroups: 2 } })).rejects.toThrow(/too small for a discriminator with 3 layers/);
    await expect(VQGANTrainer.create(d, vq, { batchSize: 1, height: 8, width: 8, emaDecay: 1 })).rejects.toThrow(/options\.emaDecay = 1/);
  });
});
