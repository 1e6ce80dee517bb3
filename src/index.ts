export { createDevice, Device } from './graph/device.js';
export type { TensorOptions } from './graph/device.js';
export type { CreateDeviceOptions } from './runtime/device.js';
export { Tensor, noGrad } from './graph/tensor.js';
export { Runtime, DeviceArray } from './runtime/runtime.js';
export type { DType } from './runtime/runtime.js';
export { ShapeError, LimitError, KernelCompileError } from './runtime/errors.js';
export * as ops from './graph/ops/index.js';
