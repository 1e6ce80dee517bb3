import { Tensor } from '../graph/tensor.js';
import { ParameterSet } from '../nn/params.js';
import { Adam } from '../optim/adam.js';
import { EMA } from '../optim/ema.js';
import { checkJsonText, parseSafetensors, serializeSafetensors, SafeTensor } from './safetensors.js';
import { ShapeError, fmtShape } from '../runtime/errors.js';

/** Everything a training run needs to continue exactly where it stopped. */
export interface TrainingState {
  params: ParameterSet;
  ema?: EMA | null;
  optimizer?: Adam | null;
  /** The run's random key (seed, counter): noise and dropout continue from it. */
  key?: Tensor | null;
  /** Plain JSON stored in the header: model config, data, hyper-parameters, step. */
  config?: Record<string, unknown>;
}

/**
 * A checkpoint as safetensors bytes. Weights keep their own names (so the file reads like a
 * diffusers/CompVis state dict); EMA weights, Adam moments, optimizer state and the random key are
 * stored beside them under `ema.`, `optimizer.` and `rng.` prefixes; the config goes in the header's
 * metadata as JSON.
 */
export async function encodeCheckpoint(s: TrainingState): Promise<Uint8Array> {
  return serializeSafetensors(await checkpointTensors(s), { format: 'webgpu-diffusion', config: JSON.stringify(s.config ?? {}) });
}

/** The tensors encodeCheckpoint stores, by name, on the host (to combine several states in one file). */
export async function checkpointTensors(s: TrainingState): Promise<Map<string, { shape: readonly number[]; data: Float32Array | Int32Array }>> {
  const out = new Map<string, { shape: readonly number[]; data: Float32Array | Int32Array }>();
  const add = async (prefix: string, flat: Parameters<ParameterSet['read']>[0]) => {
    for (const [n, data] of await s.params.read(flat)) out.set(prefix + n, { shape: s.params.tensors[s.params.names.indexOf(n)]!.shape, data });
  };
  await add('', s.params.flat);
  if (s.ema) {
    await add('ema.', s.ema.flat);
    out.set('ema_state.count', { shape: [1], data: (await s.params.rt.read(s.ema.count)) as Float32Array });
  }
  if (s.optimizer) {
    await add('optimizer.m.', s.optimizer.m);
    await add('optimizer.v.', s.optimizer.v);
    out.set('optimizer.state', { shape: s.optimizer.state.shape, data: (await s.params.rt.read(s.optimizer.state)) as Float32Array });
  }
  if (s.key) out.set('rng.key', { shape: [2], data: (await s.key.read()) as Int32Array });
  return out;
}

/** What a checkpoint holds before it is loaded into a model: tensors by name and the config. */
export interface CheckpointData {
  tensors: Map<string, SafeTensor>;
  config: Record<string, unknown>;
}

export function decodeCheckpoint(bytes: Uint8Array, where = 'checkpoint'): CheckpointData {
  const { tensors, metadata } = parseSafetensors(bytes);
  return { tensors, config: parseConfig(metadata, where) };
}

/** The JSON config from a safetensors header's metadata ({} when there is none). */
export function parseConfig(metadata: Record<string, string>, where: string): Record<string, unknown> {
  if (!metadata.config) return {};
  let c: unknown;
  try {
    c = JSON.parse(metadata.config) as unknown;
    if (typeof c !== 'object' || c === null || Array.isArray(c)) throw new Error('not an object');
  } catch (e) {
    throw new Error(`${where}: the config in the header is not a JSON object (${(e as Error).message.slice(0, 200)})`);
  }
  // A repeated field would silently take its last value; nesting past any real config is corruption.
  checkJsonText(metadata.config, `${where}: the config in the header`, (m) => new Error(m));
  return c as Record<string, unknown>;
}

/**
 * Load a decoded checkpoint into a training state. Weights are required; EMA, optimizer and key are
 * loaded when both the state and the file have them. Shape mismatches name the parameter and both shapes.
 * All or nothing: every part is checked before any is written, so a failed load leaves the state as it was.
 */
export function loadCheckpoint(ck: CheckpointData, s: TrainingState): void {
  stageCheckpoint(ck, s)();
}

/** loadCheckpoint's checks, done now; the writes are returned, to run once every other part is checked too. */
export function stageCheckpoint(ck: CheckpointData, s: TrainingState): () => void {
  const sub = (prefix: string) => {
    const m = new Map<string, { shape: readonly number[]; data: Float32Array }>();
    for (const [n, t] of ck.tensors) {
      if (n.startsWith(prefix) && (prefix !== '' || !/^(ema|ema_state|optimizer|rng)\./.test(n))) {
        if (!(t.data instanceof Float32Array)) throw new ShapeError('load', `tensor '${n.slice(0, 100)}' is ${t.dtype}, expected a float type`);
        m.set(n.slice(prefix.length), { shape: t.shape, data: t.data });
      }
    }
    return m;
  };
  const writes: (() => void)[] = [s.params.stage(sub(''), s.params.flat)];
  if (s.ema) {
    const ema = s.ema;
    writes.push(s.params.stage(ck.tensors.has(`ema.${s.params.names[0]}`) ? sub('ema.') : sub(''), ema.flat, 'checkpoint (EMA)'));
    // The update count drives the EMA's warm-up; a checkpoint without one restarts it.
    const c = ck.tensors.get('ema_state.count');
    const count = c && c.data instanceof Float32Array && c.data.length === 1 ? c.data : Float32Array.of(0);
    writes.push(() => writeArray(ema.count.rt, ema.count, count));
  }
  if (s.optimizer && ck.tensors.has('optimizer.state')) {
    const opt = s.optimizer;
    writes.push(s.params.stage(sub('optimizer.m.'), opt.m, 'checkpoint (Adam m)'));
    writes.push(s.params.stage(sub('optimizer.v.'), opt.v, 'checkpoint (Adam v)'));
    const st = ck.tensors.get('optimizer.state')!;
    if (!(st.data instanceof Float32Array) || st.data.length !== opt.state.size) {
      throw new ShapeError('load', `optimizer.state has shape ${fmtShape(st.shape)} (${st.dtype}), expected F32 ${fmtShape(opt.state.shape)}`);
    }
    writes.push(() => writeArray(opt.state.rt, opt.state, st.data));
  }
  if (s.key && ck.tensors.has('rng.key')) {
    const key = s.key;
    const k = ck.tensors.get('rng.key')!;
    if (!(k.data instanceof Int32Array) || k.data.length !== 2) throw new ShapeError('load', `rng.key has shape ${fmtShape(k.shape)} (${k.dtype}), expected I32 [2]`);
    writes.push(() => writeArray(key.rt, key.data, k.data));
  }
  return () => {
    for (const w of writes) w();
  };
}

/**
 * Checks, before a model is built, that a checkpoint holds a float tensor of the right shape for each
 * of the model's parameters (names and shapes from parameterShapes); `pick` chooses the tensor for a
 * name (the EMA copy, say). The error names the first tensor missing or misshapen.
 */
export function checkCheckpointTensors(
  ck: CheckpointData, shapes: ReadonlyMap<string, readonly number[]>, what: string, pick: (name: string) => SafeTensor | undefined = (n) => ck.tensors.get(n),
): void {
  for (const [n, shape] of shapes) {
    const t = pick(n);
    if (!t) throw new ShapeError('load', `${what} has no tensor '${n}' (expected ${fmtShape(shape)})`);
    if (!(t.data instanceof Float32Array)) throw new ShapeError('load', `${what}: tensor '${n}' is ${t.dtype}, expected a float type`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ShapeError('load', `parameter '${n}' has shape ${fmtShape(shape)} in the model but ${fmtShape(t.shape)} in the ${what}`);
    }
  }
}

/** Write host data into a device array now (in stream order after earlier work). */
export function writeArray(rt: ParameterSet['rt'], dst: Tensor['data'], data: Float32Array | Int32Array): void {
  rt.flush();
  rt.device.queue.writeBuffer(dst.buffer, dst.storage.offset + dst.byteOffset, data.buffer, data.byteOffset, data.byteLength);
}
