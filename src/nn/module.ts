import type { Device } from '../graph/device.js';
import { Tensor } from '../graph/tensor.js';
import { rand, randn } from '../graph/ops/random.js';
import { affine } from '../graph/ops/elementwise.js';
import { noGrad } from '../graph/tensor.js';
import { Capture } from '../runtime/capture.js';

/**
 * Where new parameters come from: the device and a seeded key. Every parameter draws from its own
 * stream of the engine's counter-based generator, so a seed gives the same initial model on every
 * device, and adding a layer does not change the others' draws before it.
 */
export class Init {
  private stream = 0;
  private readonly key: Tensor;

  constructor(
    readonly dev: Device,
    readonly seed = 0,
  ) {
    this.key = dev.randomKey(seed);
  }

  /** U(-bound, bound) of `shape`, as a parameter. */
  uniform(shape: readonly number[], bound: number): Tensor {
    const t = noGrad(() => affine(rand(shape, this.key, this.stream++), 2 * bound, -bound));
    return new Tensor(t.data, true);
  }

  /** N(0, std²) of `shape`, as a parameter. */
  normal(shape: readonly number[], std = 1): Tensor {
    const t = noGrad(() => affine(randn(shape, this.key, this.stream++), std, 0));
    return new Tensor(t.data, true);
  }

  /** A constant-filled parameter. */
  constant(shape: readonly number[], value: number): Tensor {
    return this.dev.full(shape, value, { requiresGrad: true });
  }
}

/**
 * A layer or model: named parameters and child modules, named as diffusers/CompVis name them
 * (`down_blocks.0.resnets.1.conv1.weight`), so a checkpoint from those projects maps by name.
 */
export abstract class Module {
  private readonly paramMap = new Map<string, Tensor>();
  private readonly childMap = new Map<string, Module>();
  /** Dropout is active only in training mode. */
  training = true;

  protected param(name: string, t: Tensor): Tensor {
    this.paramMap.set(name, t);
    return t;
  }

  protected child<M extends Module>(name: string, m: M): M {
    this.childMap.set(name, m);
    return m;
  }

  /** Parameters with their dotted names, depth first in registration order. */
  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, t] of this.paramMap) out.push([prefix + n, t]);
    for (const [n, m] of this.childMap) out.push(...m.namedParameters(`${prefix}${n}.`));
    return out;
  }

  /** This module and every descendant with its dotted path ('' for this one), depth first. */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [n, m] of this.childMap) out.push(...m.namedModules(prefix ? `${prefix}.${n}` : n));
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Number of parameter elements. */
  get parameterCount(): number {
    return this.parameters().reduce((s, t) => s + t.size, 0);
  }

  /** Training mode (dropout on) or evaluation mode, for this module and every child. */
  train(on = true): this {
    this.training = on;
    for (const m of this.childMap.values()) m.train(on);
    return this;
  }

  eval(): this {
    return this.train(false);
  }
}

/** A list of modules named 0, 1, 2, ... (as torch.nn.ModuleList). */
export class ModuleList<M extends Module> extends Module {
  readonly items: M[] = [];
  push(m: M): M {
    this.child(String(this.items.length), m);
    this.items.push(m);
    return m;
  }
}

/**
 * The names and shapes of the parameters `build` makes, found without device memory: the module is
 * built while the runtime records instead of running (as when a step is traced), so a loader can check
 * a file against a model before it builds the model for real.
 */
export function parameterShapes(dev: Device, build: (init: Init) => Module): Map<string, readonly number[]> {
  const rt = dev.rt;
  if (rt.capture) throw new Error('parameterShapes: not allowed while a step is being traced');
  const capture = new Capture();
  rt.capture = capture;
  try {
    return new Map(build(new Init(dev, 0)).namedParameters().map(([n, t]) => [n, t.shape]));
  } finally {
    rt.capture = null;
    // Small host constants (the random key, frequency tables) got buffers of their own.
    for (const s of capture.constants) s.buffer?.destroy();
  }
}
