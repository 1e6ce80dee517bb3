import { Kernel } from '../src/runtime/kernel.js';
import { DeviceArray } from '../src/runtime/runtime.js';
import source from '../shaders/optim.wgsl';
import opsSource from '../shaders/elementwise_ops.wgsl';

// The elementwise op functions bring an accurate cosine for the schedule (WGSL's is bounded by 2^-11 only).
const kernel = new Kernel('optim', opsSource + source);

export interface AdamConfig {
  kind: 'adam' | 'adamw';
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Clip the global gradient norm to this; 0 turns clipping off. */
  maxGradNorm: number;
  /** Linear warm-up steps, then the schedule over `totalSteps` down to `minLr`. */
  warmupSteps: number;
  schedule: 'constant' | 'cosine' | 'linear';
  totalSteps: number;
  minLr: number;
}

/** Slots of the optimizer's state array on the device. */
export const STATE = { step: 0, gradNorm: 1, clip: 2, lr: 3, beta1Pow: 4, beta2Pow: 5 } as const;
/** The state before the first update. */
export const INITIAL_STATE = [0, 0, 1, 0, 1, 1];

const PARTIALS = 64;
const SCHEDULES = { constant: 0, cosine: 1, linear: 2 } as const;

function uniforms(c: AdamConfig, n: number, emaDecay = 0) {
  return {
    n, partials: PARTIALS, kind: c.kind === 'adam' ? 0 : 1, schedule: SCHEDULES[c.schedule],
    lr: c.lr, min_lr: c.minLr, warmup: c.warmupSteps, total: c.totalSteps,
    beta1: c.beta1, beta2: c.beta2, eps: c.eps, weight_decay: c.weightDecay, max_norm: c.maxGradNorm,
    ema_decay: emaDecay, ema_warmup: 0, _pad1: 0,
  };
}

/**
 * One optimizer update over flat arrays of equal layout: the global gradient norm (two passes), the
 * clip factor and learning rate, the Adam/AdamW update of every element, then step += 1. Five
 * dispatches whatever the number of parameters.
 */
export function adamUpdate(c: AdamConfig, param: DeviceArray, grad: DeviceArray, m: DeviceArray, v: DeviceArray, state: DeviceArray, partial: DeviceArray): void {
  const rt = param.rt;
  const u = uniforms(c, param.size);
  rt.dispatch(kernel, 'norm_partial', { bindings: { grad, partial }, uniforms: u, workgroups: [PARTIALS] });
  rt.dispatch(kernel, 'norm_final', { bindings: { partial, state }, uniforms: u, workgroups: [1] });
  rt.dispatch(kernel, 'adam', { bindings: { param, grad, m, v, state }, uniforms: u, workgroups: rt.grid1d(param.size, 256) });
  rt.dispatch(kernel, 'finish', { bindings: { state }, workgroups: [1] });
}

export const NORM_PARTIALS = PARTIALS;

/**
 * ema = d·ema + (1 - d)·param over flat arrays, then count += 1. With warm-up, d = min(decay,
 * (1 + t)/(10 + t)) for t = count (updates before this one), else d = decay.
 */
export function emaUpdate(ema: DeviceArray, param: DeviceArray, count: DeviceArray, decay: number, warmup: boolean): void {
  const rt = param.rt;
  rt.dispatch(kernel, 'ema_update', {
    bindings: { params_in: param, ema, ema_count: count },
    uniforms: { ...uniforms(ZERO, param.size, decay), ema_warmup: warmup ? 1 : 0 },
    workgroups: rt.grid1d(param.size, 256),
  });
  rt.dispatch(kernel, 'ema_count_step', { bindings: { ema_count: count }, workgroups: [1] });
}

/** The decay of EMA update number t + 1 (t earlier updates), as the kernel computes it. */
export function emaDecayAt(decay: number, warmup: boolean, t: number): number {
  return warmup ? Math.min(decay, (1 + t) / (10 + t)) : decay;
}

const ZERO: AdamConfig = { kind: 'adam', lr: 0, beta1: 0, beta2: 0, eps: 0, weightDecay: 0, maxGradNorm: 0, warmupSteps: 0, schedule: 'constant', totalSteps: 0, minLr: 0 };
