/**
 * GPU time of compiled steps, from timestamp queries written at the start and end of each step's
 * compute pass: what the device spent executing them, as opposed to the wall time around them (which
 * also holds the host's recording and any idle gaps). Needs the adapter's 'timestamp-query' feature
 * (createDevice asks for it when the adapter has it); `GpuTimer.create` returns null without it.
 * Browsers and Dawn round timestamps down to tens of microseconds, so only passes longer than that
 * (a sampling step is milliseconds) are timed meaningfully; sums over many passes average it out.
 */
export class GpuTimer {
  private used = 0;

  private constructor(
    private readonly device: GPUDevice,
    private readonly querySet: GPUQuerySet,
    /** Passes it can time; later ones run untimed (and `read` says how many were). */
    readonly capacity: number,
  ) {}

  static create(device: GPUDevice, passes: number): GpuTimer | null {
    if (!device.features.has('timestamp-query')) return null;
    const querySet = device.createQuerySet({ type: 'timestamp', count: 2 * passes, label: 'gpu-timer' });
    return new GpuTimer(device, querySet, passes);
  }

  /** The timestampWrites of the next pass, or undefined once every slot is used. */
  nextPass(): GPUComputePassTimestampWrites | undefined {
    if (this.used >= this.capacity) return undefined;
    const i = this.used++;
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /** Milliseconds of GPU time summed over the timed passes (call after they were submitted). */
  async read(): Promise<{ ms: number; passes: number }> {
    const n = this.used;
    if (n === 0) return { ms: 0, passes: 0 };
    const bytes = 16 * n;
    const resolved = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    const staging = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = this.device.createCommandEncoder();
    enc.resolveQuerySet(this.querySet, 0, 2 * n, resolved, 0);
    enc.copyBufferToBuffer(resolved, 0, staging, 0, bytes);
    this.device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(staging.getMappedRange().slice(0));
    staging.unmap();
    resolved.destroy();
    staging.destroy();
    let ns = 0n;
    for (let i = 0; i < n; i++) if (t[2 * i + 1]! > t[2 * i]!) ns += t[2 * i + 1]! - t[2 * i]!;
    return { ms: Number(ns) / 1e6, passes: n };
  }

  destroy(): void {
    this.querySet.destroy();
  }
}
