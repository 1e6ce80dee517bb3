import { describe, expect, it } from 'vitest';
import { useDevice, randn, rng, SEED, checkModule } from './helpers.js';
import { Device } from '../src/index.js';
import { Init } from '../src/nn/module.js';
import { Conv2d, Embedding, GroupNorm, LayerNorm, Linear, Dropout, withRandom } from '../src/nn/layers.js';
import { Attention, ResBlock, SpatialSelfAttention, SpatialTransformer, Downsample, Upsample, Timesteps, TimestepEmbedding } from '../src/nn/blocks.js';

const dev = useDevice();

const rand = (d: Device, shape: number[], s = 1) => d.tensor(Float32Array.from(randn(shape.reduce((a, b) => a * b, 1))).map((v) => v * s), shape);

describe('nn modules: gradients agree with finite differences', () => {
  it('Linear', async () => {
    const d = dev();
    const m = new Linear(new Init(d, SEED), 7, 5);
    await checkModule(d, 'Linear', m, [rand(d, [3, 7])], ([x]) => m.forward(x!));
  });
  it('Conv2d (stride 2, groups 2)', async () => {
    const d = dev();
    const m = new Conv2d(new Init(d, SEED), 4, 6, 3, { stride: 2, padding: 1, groups: 2 });
    await checkModule(d, 'Conv2d', m, [rand(d, [2, 4, 7, 7])], ([x]) => m.forward(x!));
  });
  it('GroupNorm with SiLU', async () => {
    const d = dev();
    const m = new GroupNorm(new Init(d, SEED), 2, 6);
    await checkModule(d, 'GroupNorm', m, [rand(d, [2, 6, 3, 5])], ([x]) => m.forward(x!, { silu: true }));
  });
  it('LayerNorm', async () => {
    const d = dev();
    const m = new LayerNorm(new Init(d, SEED), 12);
    await checkModule(d, 'LayerNorm', m, [rand(d, [2, 5, 12])], ([x]) => m.forward(x!));
  });
  it('Embedding', async () => {
    const d = dev();
    const m = new Embedding(new Init(d, SEED), 9, 6);
    await checkModule(d, 'Embedding', m, [d.tensor(new Int32Array([3, 0, 8, 3, 5]), [5])], ([i]) => m.forward(i!));
  });
  it('Attention, cross (Lq 5, Lk 7, 2 heads)', async () => {
    const d = dev();
    const m = new Attention(new Init(d, SEED), 8, { heads: 2, dimHead: 4, contextDim: 6 });
    await checkModule(d, 'Attention', m, [rand(d, [2, 5, 8]), rand(d, [2, 7, 6])], ([x, c]) => m.forward(x!, c!));
  });
  it('SpatialSelfAttention', async () => {
    const d = dev();
    const m = new SpatialSelfAttention(new Init(d, SEED), 8, { heads: 2, groups: 4 });
    await checkModule(d, 'SpatialSelfAttention', m, [rand(d, [2, 8, 3, 4])], ([x]) => m.forward(x!));
  });
  it('SpatialTransformer (self, cross, GEGLU feed-forward)', async () => {
    const d = dev();
    const m = new SpatialTransformer(new Init(d, SEED), 8, 2, 6, { groups: 4 });
    await checkModule(d, 'SpatialTransformer', m, [rand(d, [2, 8, 3, 3]), rand(d, [2, 4, 6])], ([x, c]) => m.forward(x!, c!));
  });
  it('ResBlock with time embedding and a shortcut conv', async () => {
    const d = dev();
    const m = new ResBlock(new Init(d, SEED), 4, 8, { tembChannels: 6, groups: 2 });
    await checkModule(d, 'ResBlock', m, [rand(d, [2, 4, 5, 5]), rand(d, [2, 6])], ([x, t]) => m.forward(x!, t!));
  });
  it('Downsample and Upsample', async () => {
    const d = dev();
    const down = new Downsample(new Init(d, SEED), 4);
    await checkModule(d, 'Downsample', down, [rand(d, [2, 4, 6, 6])], ([x]) => down.forward(x!));
    const up = new Upsample(new Init(d, SEED + 1), 4);
    await checkModule(d, 'Upsample', up, [rand(d, [2, 4, 3, 3])], ([x]) => up.forward(x!));
  });
  it('timestep embedding and its MLP', async () => {
    const d = dev();
    const init = new Init(d, SEED);
    const proj = new Timesteps(init, 16);
    const mlp = new TimestepEmbedding(init, 16, 12);
    // Fractional timesteps in [0, 2]: the sinusoid stays well resolved by f32 differences of h = 1e-2.
    const t = d.tensor(Float32Array.from([0.3, 1.7, 0.9]), [3]);
    await checkModule(d, 'TimestepEmbedding', mlp, [t], ([tt]) => mlp.forward(proj.forward(tt!)));
  });
});

describe('nn modules: values', () => {
  it('sinusoidal embedding matches diffusers get_timestep_embedding in float64 at t up to 999', async () => {
    const d = dev();
    const dim = 32;
    const proj = new Timesteps(new Init(d, 0), dim);
    const ts = [0, 1, 17, 500.5, 999];
    const got = await proj.forward(d.tensor(Float32Array.from(ts), [ts.length])).read();
    const half = dim / 2;
    ts.forEach((t, b) => {
      for (let i = 0; i < half; i++) {
        const a = t * Math.exp((-Math.log(10000) * i) / half);
        // flip_sin_to_cos: cos first. The argument t·f is rounded to f32 (relative 6e-8, so up to
        // 6e-5 absolute at t = 999) before the reduction: 1e-4 covers it.
        expect(Math.abs(got[b * dim + i]! - Math.cos(a))).toBeLessThan(1e-4);
        expect(Math.abs(got[b * dim + half + i]! - Math.sin(a))).toBeLessThan(1e-4);
      }
    });
  });

  it('PyTorch default init: Linear and Conv2d uniform within ±1/sqrt(fan_in) with the right variance', async () => {
    const d = dev();
    const lin = new Linear(new Init(d, SEED), 64, 256);
    const w = (await lin.weight.read()) as Float32Array;
    const b = 1 / 8;
    expect(Math.max(...w.map(Math.abs))).toBeLessThanOrEqual(b);
    // Variance of U(-b, b) is b²/3; over 16384 draws the relative standard error is ~1.1%: 5% bound.
    const v = w.reduce((s, x) => s + x * x, 0) / w.length;
    expect(Math.abs(v / (b * b / 3) - 1)).toBeLessThan(0.05);
    const conv = new Conv2d(new Init(d, SEED), 8, 16, 3);
    const cw = (await conv.weight.read()) as Float32Array;
    expect(Math.max(...cw.map(Math.abs))).toBeLessThanOrEqual(1 / Math.sqrt(72));
  });

  it('dropout: eval is the identity; training keeps ~1-p of the values scaled by 1/(1-p), same mask for the same key', async () => {
    const d = dev();
    const m = new Dropout(0.25);
    const x = d.full([4096], 2);
    expect(Array.from(await m.eval().forward(x).read())).toEqual(Array.from(await x.read()));
    m.train();
    expect(() => m.forward(x)).toThrow(/withRandom/);
    const key = d.randomKey(SEED >>> 0);
    const a = (await withRandom(key, () => m.forward(x)).read()) as Float32Array;
    const b = (await withRandom(key, () => m.forward(x)).read()) as Float32Array;
    expect(Array.from(a)).toEqual(Array.from(b));
    const kept = a.filter((v) => v !== 0);
    kept.forEach((v) => expect(v).toBeCloseTo(2 / 0.75, 5));
    // Binomial(4096, 0.75): standard deviation 27.7 elements; a 5-sigma band.
    expect(Math.abs(kept.length - 3072)).toBeLessThan(140);
  });

  it('parameter names follow diffusers', () => {
    const d = dev();
    const m = new ResBlock(new Init(d, 0), 4, 8, { tembChannels: 6, groups: 2 });
    expect(m.namedParameters().map(([n]) => n)).toEqual([
      'norm1.weight', 'norm1.bias', 'conv1.weight', 'conv1.bias', 'time_emb_proj.weight', 'time_emb_proj.bias',
      'norm2.weight', 'norm2.bias', 'conv2.weight', 'conv2.bias', 'conv_shortcut.weight', 'conv_shortcut.bias',
    ]);
    const a = new SpatialSelfAttention(new Init(d, 0), 8, { heads: 2, groups: 4 });
    expect(a.namedParameters().map(([n]) => n)).toEqual([
      'group_norm.weight', 'group_norm.bias', 'to_q.weight', 'to_q.bias', 'to_k.weight', 'to_k.bias', 'to_v.weight', 'to_v.bias', 'to_out.0.weight', 'to_out.0.bias',
    ]);
    void rng;
  });
});
