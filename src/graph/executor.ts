import { Capture, Command } from '../runtime/capture.js';
import { Runtime, Storage } from '../runtime/runtime.js';
import { fuseElementwise } from './fusion.js';
import { eliminateDeadCode, elideCopies, planMemory } from './memory.js';

export interface ExecutorOptions {
  /** Fuse elementwise chains into generated kernels (default true). */
  fuse?: boolean;
}

export interface StepStats {
  /** Dispatches per replay, and how many the trace recorded before fusion and copy elision. */
  dispatches: number;
  traced: number;
  /** Dispatches dropped because nothing used what they wrote. */
  eliminated: number;
  fusedKernels: number;
  fusedOps: number;
  elidedCopies: number;
  /** Bytes of the planned intermediate buffers, and what one buffer per intermediate would take. */
  plannedBytes: number;
  unplannedBytes: number;
  /** Bytes the step owns besides intermediates: constants and its uniform buffer. */
  fixedBytes: number;
}

/**
 * A traced step made executable: fusion, copy elision, the memory plan, one uniform buffer, and every
 * pipeline and bind group made here, once. `encode` then only records dispatches.
 */
export class Executor {
  readonly commands: Command[];
  readonly stats: StepStats;
  private readonly bindGroups: GPUBindGroup[] = [];
  private readonly owned: GPUBuffer[] = [];

  constructor(
    readonly rt: Runtime,
    capture: Capture,
    pinned: Set<Storage>,
    opts: ExecutorOptions = {},
  ) {
    const virtual = new Set(capture.virtual);
    const traced = capture.commands.length;
    const live = eliminateDeadCode(capture.commands, virtual, pinned);
    const fused = opts.fuse === false ? { commands: live.commands, fusedKernels: 0, fusedOps: 0 } : fuseElementwise(rt, live.commands, pinned, virtual);
    const { commands, elided } = elideCopies(fused.commands, virtual, pinned);
    this.commands = commands;
    const plan = planMemory(commands, virtual, pinned);
    const dev = rt.device;
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const slotBuffers = plan.slots.map((bytes, i) => this.own(dev.createBuffer({ size: Math.max(bytes, 4), usage, label: `step-slot-${i}` })));
    for (const [s, i] of plan.slotOf) {
      s.buffer = slotBuffers[i]!;
      s.offset = 0;
    }

    // Every dispatch's uniforms, packed once into one buffer at aligned offsets.
    const align = rt.limits.minUniformBufferOffsetAlignment;
    const offsets: number[] = [];
    let total = 0;
    for (const c of commands) {
      offsets.push(total);
      if (c.uniform) total += Math.ceil(c.uniform.byteLength / align) * align;
    }
    const uniforms = this.own(dev.createBuffer({ size: Math.max(total, 16), usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: 'step-uniforms' }));
    const staging = new Uint8Array(Math.max(total, 16));
    commands.forEach((c, k) => c.uniform && staging.set(c.uniform, offsets[k]));
    dev.queue.writeBuffer(uniforms, 0, staging);

    commands.forEach((c, k) => {
      const entries: GPUBindGroupEntry[] = c.bindings.map((b) => ({ binding: b.binding, resource: b.array.binding() }));
      if (c.uniform) entries.push({ binding: c.uniformBinding, resource: { buffer: uniforms, offset: offsets[k]!, size: c.uniform.byteLength } });
      this.bindGroups.push(dev.createBindGroup({ layout: c.pipeline.getBindGroupLayout(0), entries, label: `${c.kernel.name}:${c.entry}` }));
    });
    this.stats = {
      dispatches: commands.length,
      traced,
      eliminated: live.eliminated,
      fusedKernels: fused.fusedKernels,
      fusedOps: fused.fusedOps,
      elidedCopies: elided,
      plannedBytes: plan.plannedBytes,
      unplannedBytes: plan.unplannedBytes,
      fixedBytes: capture.constants.reduce((a, s) => a + s.bytes, 0) + total,
    };
    for (const s of capture.constants) this.owned.push(s.buffer!);
  }

  private own(b: GPUBuffer): GPUBuffer {
    this.owned.push(b);
    return b;
  }

  /** Record every dispatch into one compute pass. */
  encode(pass: GPUComputePassEncoder): void {
    this.commands.forEach((c, k) => {
      pass.setPipeline(c.pipeline);
      pass.setBindGroup(0, this.bindGroups[k]!);
      pass.dispatchWorkgroups(...c.workgroups);
    });
  }

  /**
   * Wall time of each dispatch, one submit and wait per dispatch (so only the ranking and the large
   * entries mean anything): for finding where a step's time goes.
   */
  async profile(): Promise<{ kernel: string; ms: number; workgroups: [number, number, number] }[]> {
    const dev = this.rt.device;
    const out: { kernel: string; ms: number; workgroups: [number, number, number] }[] = [];
    for (let k = 0; k < this.commands.length; k++) {
      const c = this.commands[k]!;
      const enc = dev.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(c.pipeline);
      pass.setBindGroup(0, this.bindGroups[k]!);
      pass.dispatchWorkgroups(...c.workgroups);
      pass.end();
      const t0 = performance.now();
      dev.queue.submit([enc.finish()]);
      await dev.queue.onSubmittedWorkDone();
      out.push({ kernel: `${c.kernel.name}:${c.entry}`, ms: performance.now() - t0, workgroups: c.workgroups });
    }
    return out;
  }

  destroy(): void {
    for (const b of this.owned) b.destroy();
    this.owned.length = 0;
  }
}
