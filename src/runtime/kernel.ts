import { WgslReflect } from 'wgsl_reflect/wgsl_reflect.module.js';

/** What a compute entry point binds, found by reflecting the WGSL (never written by hand). */
export interface EntryInfo {
  name: string;
  uniform: { name: string; binding: number } | null;
  storage: { name: string; binding: number; readOnly: boolean }[];
}

interface UniformMember {
  name: string;
  offset: number;
  /** 'u32' | 'i32' | 'f32' for scalars; element type of vec4 arrays. */
  scalar: 'u32' | 'i32' | 'f32';
  /** number of 32-bit slots (1 for scalars, 4*count for array<vec4<T>, count>). */
  slots: number;
  /** byte stride between slots. */
  stride: number;
}

const SCALARS = new Set(['u32', 'i32', 'f32']);

/**
 * A WGSL module with one or more compute entry points. Bindings and the uniform struct's layout
 * are reflected once; uniforms are packed by member name, so a kernel's TypeScript never
 * repeats the WGSL struct by hand.
 */
export class Kernel {
  readonly entries = new Map<string, EntryInfo>();
  readonly uniformSize: number = 0;
  private readonly members: UniformMember[] = [];

  constructor(
    readonly name: string,
    readonly source: string,
  ) {
    const r = new WgslReflect(source);
    const uniform = r.uniforms[0];
    if (r.uniforms.length > 1) throw new Error(`kernel '${name}': at most one uniform struct per module`);
    if (uniform) {
      this.uniformSize = Math.ceil(uniform.size / 16) * 16;
      for (const m of uniform.members ?? []) {
        const t = m.type as unknown as { name: string; format?: { name: string; format?: { name: string } }; count?: number };
        if (SCALARS.has(t.name)) {
          this.members.push({ name: m.name, offset: m.offset, scalar: t.name as UniformMember['scalar'], slots: 1, stride: 4 });
        } else if (t.name === 'array' && t.format?.name === 'vec4' && SCALARS.has(t.format.format?.name ?? '')) {
          const count = t.count ?? 0;
          this.members.push({ name: m.name, offset: m.offset, scalar: t.format.format!.name as UniformMember['scalar'], slots: 4 * count, stride: 4 });
        } else {
          throw new Error(`kernel '${name}': uniform member '${m.name}' has type ${t.name}; use u32/i32/f32 or array<vec4<u32|i32|f32>, N>`);
        }
      }
    }
    for (const e of r.entry.compute) {
      const info: EntryInfo = { name: e.name, uniform: null, storage: [] };
      for (const res of e.resources) {
        if (uniform && res.name === uniform.name) info.uniform = { name: res.name, binding: res.binding };
        else {
          const s = r.storage.find((v) => v.name === res.name);
          if (s) info.storage.push({ name: s.name, binding: s.binding, readOnly: String(s.access) === 'read' });
        }
      }
      this.entries.set(e.name, info);
    }
  }

  entry(name: string): EntryInfo {
    const e = this.entries.get(name);
    if (!e) throw new Error(`kernel '${this.name}' has no entry point '${name}' (has: ${[...this.entries.keys()].join(', ')})`);
    return e;
  }

  /** Writes `values` into `out` (a view of the uniform arena) by member name; every member must be given. */
  packUniforms(values: Record<string, number | readonly number[]>, out: DataView): void {
    for (const m of this.members) {
      const v = values[m.name];
      if (v === undefined) throw new Error(`kernel '${this.name}': uniform '${m.name}' not given`);
      const arr = typeof v === 'number' ? [v] : v;
      if (arr.length > m.slots) throw new Error(`kernel '${this.name}': uniform '${m.name}' takes ${m.slots} values, got ${arr.length}`);
      for (let i = 0; i < m.slots; i++) {
        const x = arr[i] ?? 0;
        const at = m.offset + i * m.stride;
        if (m.scalar === 'f32') out.setFloat32(at, x, true);
        else if (m.scalar === 'i32') out.setInt32(at, x, true);
        else out.setUint32(at, x, true);
      }
    }
  }
}
