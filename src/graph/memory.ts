import { Command } from '../runtime/capture.js';
import { Storage } from '../runtime/runtime.js';

/** First and last command that binds each storage. */
export function lifetimes(commands: Command[]): Map<Storage, { first: number; last: number }> {
  const life = new Map<Storage, { first: number; last: number }>();
  commands.forEach((c, k) => {
    for (const b of c.bindings) {
      const l = life.get(b.array.storage);
      if (l) l.last = k;
      else life.set(b.array.storage, { first: k, last: k });
    }
  });
  return life;
}

/**
 * Dead-code elimination: drops every dispatch whose writes all go to intermediates that no later
 * remaining dispatch binds and that are not outputs (e.g. the gradient of an input that a backward
 * rule computes although nobody asked for it). Writes to parameters, optimizer state or other
 * memory made outside the step are effects and always stay.
 */
export function eliminateDeadCode(commands: Command[], virtual: Set<Storage>, pinned: Set<Storage>): { commands: Command[]; eliminated: number } {
  const used = new Set<Storage>();
  const keep: boolean[] = new Array(commands.length).fill(false);
  for (let k = commands.length - 1; k >= 0; k--) {
    const c = commands[k]!;
    const live = c.bindings.some((b) => b.write && (!virtual.has(b.array.storage) || pinned.has(b.array.storage) || used.has(b.array.storage)));
    if (!live) continue;
    keep[k] = true;
    for (const b of c.bindings) used.add(b.array.storage);
  }
  const kept = commands.filter((_, k) => keep[k]);
  return { commands: kept, eliminated: commands.length - kept.length };
}

/**
 * Copy elision: a copy of an intermediate V into an existing array E (a parameter's slot in the flat
 * gradient buffer, say) is dropped, and V is computed in E's memory directly, when the copy is V's
 * last use, E is untouched while V is live, and no dispatch that binds V also binds E's buffer (a
 * dispatch may not read and write one buffer). Returns the commands that remain.
 */
export function elideCopies(commands: Command[], virtual: Set<Storage>, pinned: Set<Storage>): { commands: Command[]; elided: number } {
  const life = lifetimes(commands);
  const drop = new Set<number>();
  commands.forEach((c, k) => {
    const f = c.fuse;
    if (!f || f.kind !== 'unary' || f.op !== 0 || f.alpha !== 1 || f.beta !== 0) return;
    const src = f.inputs[0]!;
    const V = src.array.storage;
    const E = f.out;
    const l = life.get(V);
    if (!l || l.last !== k || !virtual.has(V) || pinned.has(V) || virtual.has(E.storage) || !E.storage.buffer) return;
    if (src.offset !== 0 || src.array.byteOffset !== 0 || src.array.size !== E.size || V.bytes !== Math.max(E.size * 4, 4)) return;
    const eBuf = E.storage.buffer;
    const eStart = E.storage.offset + E.byteOffset;
    const eEnd = eStart + E.size * 4;
    for (let j = l.first; j < k; j++) {
      if (drop.has(j)) continue;
      const bindsV = commands[j]!.bindings.some((b) => b.array.storage === V);
      for (const b of commands[j]!.bindings) {
        const s = b.array.storage;
        if (s === V || s.buffer !== eBuf) continue;
        if (bindsV) return; // same buffer bound twice in one dispatch with a write
        const start = s.offset + b.array.byteOffset;
        if (start < eEnd && start + b.array.size * 4 > eStart) return; // E is in use while V lives
      }
    }
    // The copy must read V contiguously; a strided read (a permute) is not a plain copy.
    const st = contiguousStrides(f.shape);
    if (f.shape.some((d, i) => d !== 1 && src.strides[i] !== st[i])) return;
    V.buffer = eBuf;
    V.offset = eStart;
    virtual.delete(V);
    drop.add(k);
  });
  return { commands: commands.filter((_, k) => !drop.has(k)), elided: drop.size };
}

function contiguousStrides(shape: readonly number[]): number[] {
  const st: number[] = [];
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= shape[i]!;
  }
  return st;
}

export interface MemoryPlan {
  /** Size in bytes of each physical buffer the plan needs. */
  slots: number[];
  /** Which slot each virtual storage lives in. */
  slotOf: Map<Storage, number>;
  /** Bytes the plan needs, and what one buffer per intermediate would need. */
  plannedBytes: number;
  unplannedBytes: number;
}

/**
 * Assigns every virtual storage a physical buffer, reusing a buffer once every storage in it is dead.
 * Walks the commands in order; a storage takes a free buffer when it is first bound (the smallest
 * one that fits, else the largest, grown) and frees it after its last use. Storages pinned as
 * outputs live to the end. A storage freed at command k is reused only after k, so no dispatch reads
 * and writes one buffer.
 */
export function planMemory(commands: Command[], virtual: Set<Storage>, pinned: Set<Storage>): MemoryPlan {
  const life = lifetimes(commands);
  const end = commands.length;
  const startAt = new Map<number, Storage[]>();
  const endAt = new Map<number, Storage[]>();
  const push = (m: Map<number, Storage[]>, k: number, s: Storage) => m.set(k, [...(m.get(k) ?? []), s]);
  let unplannedBytes = 0;
  for (const s of virtual) {
    const l = life.get(s) ?? (pinned.has(s) ? { first: 0, last: end } : null);
    if (!l) continue; // allocated but never used after fusion
    unplannedBytes += s.bytes;
    push(startAt, l.first, s);
    push(endAt, pinned.has(s) ? end : l.last, s);
  }
  const slots: number[] = [];
  const free: number[] = [];
  const slotOf = new Map<Storage, number>();
  for (let k = 0; k <= end; k++) {
    for (const s of (startAt.get(k) ?? []).sort((a, b) => b.bytes - a.bytes)) {
      let best = -1;
      for (const i of free) {
        if (slots[i]! >= s.bytes && (best < 0 || slots[i]! < slots[best]!)) best = i;
      }
      if (best < 0) for (const i of free) if (best < 0 || slots[i]! > slots[best]!) best = i;
      if (best < 0) best = slots.push(0) - 1;
      else free.splice(free.indexOf(best), 1);
      slots[best] = Math.max(slots[best]!, s.bytes);
      slotOf.set(s, best);
    }
    for (const s of endAt.get(k) ?? []) free.push(slotOf.get(s)!);
  }
  return { slots, slotOf, plannedBytes: slots.reduce((a, b) => a + b, 0), unplannedBytes };
}
