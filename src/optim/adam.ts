import { Tensor } from '../graph/tensor.js';
import { DeviceArray } from '../runtime/runtime.js';
import { ParameterSet } from '../nn/params.js';
import { AdamConfig, STATE, INITIAL_STATE, NORM_PARTIALS, adamUpdate } from '../../kernels/optim.js';

export interface AdamOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  /** Clip the global gradient norm to this (as torch.nn.utils.clip_grad_norm_); 0 or absent: off. */
  maxGradNorm?: number;
  /** Linear warm-up of the learning rate over this many steps. */
  warmupSteps?: number;
  /** After warm-up: constant, or cosine / linear decay to minLr at totalSteps. */
  schedule?: 'constant' | 'cosine' | 'linear';
  totalSteps?: number;
  minLr?: number;
}

/**
 * Adam (Kingma & Ba, 2015) over a ParameterSet: gradients are gathered into one flat buffer, then one
 * fused kernel updates every parameter. Step count, learning-rate schedule and gradient clipping all
 * run on the device, so a compiled training step needs nothing from the host between runs. Weight
 * decay is L2 (added to the gradient); AdamW decouples it.
 */
export class Adam {
  readonly params: ParameterSet;
  readonly config: AdamConfig;
  /** Flat buffers of the parameter layout: gradients of the last step, first and second moments. */
  readonly grads: DeviceArray;
  readonly m: DeviceArray;
  readonly v: DeviceArray;
  /** [step, gradient norm, clip factor, learning rate, beta1^step, beta2^step] after the last update. */
  readonly state: DeviceArray;
  private readonly partial: DeviceArray;

  constructor(params: ParameterSet | readonly [string, Tensor][], opts: AdamOptions = {}, kind: 'adam' | 'adamw' = 'adam') {
    this.params = params instanceof ParameterSet ? params : new ParameterSet(params);
    const [beta1, beta2] = opts.betas ?? [0.9, 0.999];
    this.config = {
      kind, lr: opts.lr ?? 1e-3, beta1, beta2, eps: opts.eps ?? 1e-8,
      weightDecay: opts.weightDecay ?? (kind === 'adamw' ? 1e-2 : 0),
      maxGradNorm: opts.maxGradNorm ?? 0, warmupSteps: opts.warmupSteps ?? 0,
      schedule: opts.schedule ?? 'constant', totalSteps: opts.totalSteps ?? 0, minLr: opts.minLr ?? 0,
    };
    if (this.config.schedule !== 'constant' && !(this.config.totalSteps > this.config.warmupSteps)) {
      throw new Error(`Adam: schedule '${this.config.schedule}' needs totalSteps > warmupSteps (got ${this.config.totalSteps} and ${this.config.warmupSteps})`);
    }
    const rt = this.params.rt;
    this.grads = this.params.zeros();
    this.m = this.params.zeros();
    this.v = this.params.zeros();
    this.state = rt.upload(Float32Array.from(INITIAL_STATE), [INITIAL_STATE.length], 'Adam');
    this.partial = rt.alloc([NORM_PARTIALS], 'f32', 'Adam');
  }

  /** Apply one update from gradients given in the parameter set's order (as grad() returns them). */
  step(grads: readonly Tensor[]): void {
    this.params.scatter(grads.map((g) => g.data), this.grads);
    adamUpdate(this.config, this.params.flat, this.grads, this.m, this.v, this.state, this.partial);
  }

  /** Updates done, the gradient norm before clipping and the learning rate of the last update. */
  async stats(): Promise<{ step: number; gradNorm: number; lr: number }> {
    const s = (await this.params.rt.read(this.state)) as Float32Array;
    return { step: s[STATE.step]!, gradNorm: s[STATE.gradNorm]!, lr: s[STATE.lr]! };
  }
}

/** AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay (default 0.01). */
export class AdamW extends Adam {
  constructor(params: ParameterSet | readonly [string, Tensor][], opts: AdamOptions = {}) {
    super(params, opts, 'adamw');
  }
}
