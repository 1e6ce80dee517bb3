import { DeviceArray } from '../runtime/runtime.js';
import { ParameterSet } from '../nn/params.js';
import { emaUpdate } from '../../kernels/optim.js';

export interface EMAOptions {
  /**
   * Warm the decay up from the number of updates t: d = min(decay, (1 + t)/(10 + t)), as diffusers'
   * EMAModel does, so that a short run's average is not dominated by the initial weights (with a
   * fixed 0.999 they still weigh 37% after 1000 updates). Default true.
   */
  warmup?: boolean;
}

/**
 * Exponential moving average of the weights (as in DDPM's training): ema ← d·ema + (1 - d)·θ after
 * each update, over the flat parameter buffer; the update count lives on the device (and in
 * checkpoints). Sample with `params.use(ema.flat)`.
 */
export class EMA {
  readonly flat: DeviceArray;
  /** Updates done so far, [1] f32 on the device. */
  readonly count: DeviceArray;
  readonly warmup: boolean;
  constructor(
    readonly params: ParameterSet,
    readonly decay = 0.999,
    opts: EMAOptions = {},
  ) {
    if (!(decay >= 0 && decay <= 1)) throw new Error(`EMA: decay must be in [0, 1], got ${decay}`);
    this.flat = params.clone();
    this.count = params.rt.alloc([1], 'f32', 'EMA');
    params.rt.fillValue(this.count, 0);
    this.warmup = opts.warmup ?? true;
  }
  update(): void {
    emaUpdate(this.flat, this.params.flat, this.count, this.decay, this.warmup);
  }
}
