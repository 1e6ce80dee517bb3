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
 * Assigns every virtual storage a physical buffer (a slot), storages whose lifetimes do not touch
 * sharing one. Lifetimes are known for the whole step, so the assignment is offline, greedy by size
 * (as TensorFlow Lite's planner for shared buffers): largest storage first, each into the smallest
 * slot already made whose storages all end before it starts or start after it ends, else into a new
 * slot of its size. Slots never grow, so a slot costs its largest storage, and the total stays near
 * the peak of live bytes. (Walking the commands in order and growing a free slot when none fits, as
 * this planner once did, reached 2.6 times the live peak on a step with two micro-batches.) Storages
 * pinned as outputs live to the end. Touching lifetimes count as overlapping: a storage freed at
 * command k is reused only after k, so no dispatch reads and writes one buffer.
 */
export function planMemory(commands: Command[], virtual: Set<Storage>, pinned: Set<Storage>): MemoryPlan {
  const life = lifetimes(commands);
  const end = commands.length;
  let unplannedBytes = 0;
  const items: { s: Storage; first: number; last: number }[] = [];
  for (const s of virtual) {
    const l = life.get(s) ?? (pinned.has(s) ? { first: 0, last: end } : null);
    if (!l) continue; // allocated but never used after fusion
    unplannedBytes += s.bytes;
    items.push({ s, first: l.first, last: pinned.has(s) ? end : l.last });
  }
  // Largest first; ties by start, so the plan does not depend on the set's order.
  items.sort((a, b) => b.s.bytes - a.s.bytes || a.first - b.first);
  const slots: number[] = [];
  const uses: { first: number; last: number }[][] = [];
  const slotOf = new Map<Storage, number>();
  for (const it of items) {
    let best = -1;
    for (let i = 0; i < slots.length; i++) {
      if (best >= 0 && slots[i]! >= slots[best]!) continue;
      if (uses[i]!.every((u) => u.last < it.first || u.first > it.last)) best = i;
    }
    if (best < 0) {
      best = slots.push(it.s.bytes) - 1;
      uses.push([]);
    }
    uses[best]!.push({ first: it.first, last: it.last });
    slotOf.set(it.s, best);
  }
  return { slots, slotOf, plannedBytes: slots.reduce((a, b) => a + b, 0), unplannedBytes };
}
