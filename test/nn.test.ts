import { describe, expect, it } from 'vitest';
import { useDevice, randn, rng, SEED, checkModule } from './helpers.js';
import { Device, Tensor } from '../src/index.js';
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
  it('ResBlock with dropout 0.3 in training mode (the mask fixed by the key)', async () => {
    const d = dev();
    const m = new ResBlock(new Init(d, SEED), 4, 4, { tembChannels: 6, groups: 2, dropout: 0.3 });
    // withRandom restarts its streams on every call and the key's counter does not move, so every
    // forward of the check draws the same mask: the function differentiated is piecewise smooth.
    const key = d.randomKey(SEED + 5);
    const x = rand(d, [2, 4, 5, 5]);
    const a = await withRandom(key, () => m.forward(x, rand(d, [2, 6]))).read();
    m.eval();
    const b = await m.forward(x, rand(d, [2, 6])).read();
    m.train();
    expect(Array.from(a)).not.toEqual(Array.from(b)); // dropout is really active
    await checkModule(d, 'ResBlock (dropout)', m, [x, rand(d, [2, 6])], ([xx, t]) => withRandom(key, () => m.forward(xx!, t!)));
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

  it('PyTorch default init for every layer: kaiming_uniform(a=√5) weights, U(±1/√fan_in) biases, N(0,1) embeddings, ones and zeros for norms', async () => {
    const d = dev();
    const init = new Init(d, SEED);
    const read = async (t: Tensor | null) => Float64Array.from((await t!.read()) as Float32Array);
    // torch.nn.init.kaiming_uniform_(w, a=√5): gain √(2/(1+a²)), bound gain·√(3/fan_in); written out
    // here from PyTorch's formula rather than taken from the code under test.
    const kaimingBound = (fanIn: number) => Math.sqrt(2 / (1 + 5)) * Math.sqrt(3 / fanIn);
    // Kolmogorov-Smirnov distance between the sample and a CDF; at the 1e-4 level the critical value is
    // sqrt(ln(2/1e-4)/2)/√n = 2.23/√n (seeds are fresh every run, so the level must be strict).
    const ks = (x: Float64Array, cdf: (v: number) => number) => {
      const s = Float64Array.from(x).sort();
      let dmax = 0;
      s.forEach((v, i) => (dmax = Math.max(dmax, Math.abs(cdf(v) - i / s.length), Math.abs(cdf(v) - (i + 1) / s.length))));
      return dmax;
    };
    const ksCrit = (n: number) => 2.23 / Math.sqrt(n);
    const checkUniform = (what: string, x: Float64Array, b: number) => {
      expect(x.every((v) => Math.abs(v) <= b), `${what}: within ±${b}`).toBe(true);
      expect(ks(x, (v) => Math.min(1, Math.max(0, (v + b) / (2 * b)))), `${what}: KS distance to U(±${b})`).toBeLessThan(ksCrit(x.length));
    };
    // Φ through erf (Abramowitz-Stegun 7.1.26, |error| < 1.5e-7: far below the KS threshold).
    const erf = (z: number) => {
      const t = 1 / (1 + 0.3275911 * Math.abs(z));
      const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-z * z);
      return z >= 0 ? y : -y;
    };
    const phi = (v: number) => 0.5 * (1 + erf(v / Math.SQRT2));

    const lin = new Linear(init, 48, 256);
    checkUniform('Linear.weight', await read(lin.weight), kaimingBound(48));
    checkUniform('Linear.bias', await read(lin.bias), 1 / Math.sqrt(48));
    expect(new Linear(init, 5, 3, { bias: false }).bias).toBeNull();

    // fan_in of a grouped conv is (in / groups)·k·k.
    const conv = new Conv2d(init, 8, 64, 3, { groups: 2 });
    expect(conv.weight.shape).toEqual([64, 4, 3, 3]);
    checkUniform('Conv2d.weight', await read(conv.weight), kaimingBound(4 * 9));
    checkUniform('Conv2d.bias', await read(conv.bias), 1 / Math.sqrt(36));

    // nn.Embedding: N(0, 1). KS against Φ, plus the first two moments (standard errors 1/√n, √(2/n)).
    const emb = await read(new Embedding(init, 100, 64).weight);
    expect(ks(emb, phi)).toBeLessThan(ksCrit(emb.length));
    const mean = emb.reduce((a, v) => a + v, 0) / emb.length;
    const varc = emb.reduce((a, v) => a + (v - mean) ** 2, 0) / emb.length;
    expect(Math.abs(mean)).toBeLessThan(5 / Math.sqrt(emb.length));
    expect(Math.abs(varc - 1)).toBeLessThan(5 * Math.sqrt(2 / emb.length));

    // GroupNorm and LayerNorm: weight exactly 1, bias exactly 0.
    for (const m of [new GroupNorm(init, 4, 12), new LayerNorm(init, 12)]) {
      expect(Array.from(await read(m.weight))).toEqual(new Array(12).fill(1));
      expect(Array.from(await read(m.bias))).toEqual(new Array(12).fill(0));
    }

    // Attention's projections are Linears with their own fan_in: query dim for to_q, the context's
    // for to_k and to_v (cross-attention), the inner width for to_out.0.
    const att = new Attention(init, 32, { heads: 4, dimHead: 16, contextDim: 24 });
    checkUniform('to_q.weight', await read(att.to_q.weight), kaimingBound(32));
    checkUniform('to_k.weight', await read(att.to_k.weight), kaimingBound(24));
    checkUniform('to_v.weight', await read(att.to_v.weight), kaimingBound(24));
    checkUniform('to_out.0.weight', await read(att.to_out.items[0]!.weight), kaimingBound(64));
    expect(att.to_q.bias).toBeNull();

    // Every parameter draws its own numbers: two same-shaped weights are uncorrelated (|ρ| < 5/√n).
    const a = await read(new Linear(init, 64, 64).weight), b = await read(new Linear(init, 64, 64).weight);
    const rho = a.reduce((s, v, i) => s + v * b[i]!, 0) / Math.sqrt(a.reduce((s, v) => s + v * v, 0) * b.reduce((s, v) => s + v * v, 0));
    expect(Math.abs(rho)).toBeLessThan(5 / 64);
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
    const cross = new Attention(new Init(d, 0), 8, { heads: 2, dimHead: 4, contextDim: 6 });
    expect(cross.namedParameters().map(([n]) => n)).toEqual(['to_q.weight', 'to_k.weight', 'to_v.weight', 'to_out.0.weight', 'to_out.0.bias']);
    expect(new Downsample(new Init(d, 0), 4).namedParameters().map(([n]) => n)).toEqual(['conv.weight', 'conv.bias']);
    expect(new Upsample(new Init(d, 0), 4).namedParameters().map(([n]) => n)).toEqual(['conv.weight', 'conv.bias']);
    expect(new TimestepEmbedding(new Init(d, 0), 8, 16).namedParameters().map(([n]) => n)).toEqual(['linear_1.weight', 'linear_1.bias', 'linear_2.weight', 'linear_2.bias']);
    expect(new Embedding(new Init(d, 0), 3, 4).namedParameters().map(([n]) => n)).toEqual(['weight']);
    expect(new GroupNorm(new Init(d, 0), 2, 4).namedParameters().map(([n]) => n)).toEqual(['weight', 'bias']);
    expect(new Timesteps(new Init(d, 0), 8).namedParameters()).toEqual([]); // the frequencies are not parameters
    void rng;
  });
});
