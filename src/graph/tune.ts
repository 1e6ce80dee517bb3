// The kernels whose variant is chosen per adapter by measurement (src/runtime/autotune.ts). A kernel
// with a tuning problem adds it here; createDevice decides them all before any op runs.
import type { Runtime } from '../runtime/runtime.js';
import { autotune, useDefaults, type TuneOptions, type TuneProblem, type TuneRecord } from '../runtime/autotune.js';
import { MATMUL_TUNE } from '../../kernels/matmul.js';
import { GROUPNORM_TUNE } from '../../kernels/groupnorm.js';
import { SOFTMAX_TUNE } from '../../kernels/softmax.js';
import { CONV2D_DATA_TUNE, CONV2D_TUNE, CONV2D_WEIGHT_TUNE } from '../../kernels/conv2d.js';
import { ATTENTION_TUNE } from '../../kernels/attention.js';

export const TUNED_PROBLEMS: readonly TuneProblem[] = [MATMUL_TUNE, CONV2D_TUNE, CONV2D_DATA_TUNE, CONV2D_WEIGHT_TUNE, GROUPNORM_TUNE, SOFTMAX_TUNE, ATTENTION_TUNE.forward, ATTENTION_TUNE.backward];

/**
 * How createDevice decides kernel variants: true (default) measures what no cache knows, in memory
 * for this process (pass a `store` to persist: autotuneFileStore() in Node, localStorageStore() in a
 * browser); false takes every problem's fixed default without measuring (fast, for tests); an
 * object tunes with those options (`pin` fixes some choices).
 */
export type TuneSetting = boolean | TuneOptions;

export async function tuneRuntime(rt: Runtime, setting: TuneSetting = true, problems: readonly TuneProblem[] = TUNED_PROBLEMS): Promise<Record<string, TuneRecord>> {
  if (setting === false) {
    useDefaults(rt, problems);
    return {};
  }
  return autotune(rt, problems, setting === true ? {} : setting);
}
