import { DeviceArray } from '../runtime/runtime.js';
import { ParameterSet } from '../nn/params.js';
import { emaUpdate } from '../../kernels/optim.js';

/**
 * Exponential moving average of the weights (as in DDPM's training): ema ← d·ema + (1 - d)·θ after
 * each update, one dispatch over the flat parameter buffer. Sample with `params.use(ema.flat)`.
 */
export class EMA {
  readonly flat: DeviceArray;
  constructor(
    readonly params: ParameterSet,
    readonly decay = 0.999,
  ) {
    if (!(decay >= 0 && decay <= 1)) throw new Error(`EMA: decay must be in [0, 1], got ${decay}`);
    this.flat = params.clone();
  }
  update(): void {
    emaUpdate(this.flat, this.params.flat, this.decay);
  }
}
