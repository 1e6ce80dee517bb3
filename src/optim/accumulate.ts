// Gradient accumulation in the compiled-executor style: one traced step holds the loop over the
// micro-batches (forward and backward of one micro-batch, its gradients added to a running sum, the
// next micro-batch), then one optimiser update from the sum. The memory plan frees each micro-batch's
// activations before the next one's forward, so the step's peak is one micro-batch's activations plus
// one running sum of the gradients; the whole optimisation step stays one command buffer, with no
// readback and no GPU object made per step. (bench/accumulate.ts measures this against a compiled
// micro-step adding into persistent accumulators plus a compiled apply step.)
//
// Each micro-batch's mean loss is scaled by 1/N before its gradient is taken, so that the sum of the
// N gradients is the gradient of the mean over all N·B examples: the large batch's.
import { Tensor } from '../graph/tensor.js';
import * as ops from '../graph/ops/index.js';

/** A running sum of gradient lists (in one parameter order), built while a step is traced. */
export class GradientSum {
  private total: Tensor[] | null = null;

  add(grads: readonly Tensor[]): void {
    const t = this.total;
    if (t && t.length !== grads.length) throw new Error(`GradientSum: ${grads.length} gradients added to a sum of ${t.length}`);
    this.total = t ? t.map((s, i) => ops.add(s, grads[i]!)) : [...grads];
  }

  get value(): Tensor[] {
    if (!this.total) throw new Error('GradientSum: no gradients added');
    return this.total;
  }
}

/** A running sum of scalars (losses, figures), built while a step is traced. */
export function addTo(sum: Tensor | null, x: Tensor): Tensor {
  return sum ? ops.add(sum, x) : x;
}

/** Micro-batch j of a batch tensor: its items [j·B, (j + 1)·B) along the first axis. */
export function microBatch(x: Tensor, j: number, size: number): Tensor {
  return ops.slice(x, j * size, size, 0);
}

/**
 * The dropout streams of micro-batch j: withRandom's default first stream for j = 0 (so that one
 * micro-batch draws what an unaccumulated step draws), then blocks of 4096 streams apart (far more
 * than a network's dropout layers), so no two micro-batches share a mask.
 */
export function microStreams(j: number): number {
  return (1 << 20) + j * 4096;
}
