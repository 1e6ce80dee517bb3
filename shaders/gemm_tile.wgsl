// Register-tiled GEMM core for GPUs, prepended to matmul.wgsl and conv2d_tile.wgsl (which bring the
// bindings, the loads of A and B tiles and the epilogue): C (M x N) = A (M x K) · B (K x N).
//
// A workgroup of GT = (BM/TM)·(BN/TN) threads computes a BM x BN tile of C in BK-deep steps. Each
// step's A and B tiles are staged in workgroup memory, As[k][m] and Bs[k][n] (vec4 words, rows padded
// by one vec4 so that the transposing stores of a K-contiguous operand spread over the banks), and
// every thread multiplies them into a TM x TN block of C held in registers: per k, TM/4 + TN/4 vec4
// reads feed TM·TN FMAs (4x4: 2 reads for 16 FMAs; 8x8: 4 for 64). Thread (ty, tx) owns the rows
// 4(ty + i·GY) + {0..3} and columns 4(tx + j·GX) + {0..3}: vec4 groups GY (GX) apart, so the B reads of
// neighbouring threads are neighbouring vec4 words (no bank conflict) and A reads are broadcasts.
//
// The K loop is software-pipelined: the next step's global loads are issued into registers before
// this step's FMAs and written to workgroup memory after them, so memory latency hides behind
// arithmetic. With STAGES = 2 the tiles are double-buffered (one barrier per step); STAGES = 1 (when
// two copies exceed the device's workgroup memory) needs two. Shapes come in uniforms; these override
// constants (tile sizes, operand layouts) are all that make a pipeline.

override BM: u32 = 64u;      // tile rows (M) per workgroup, a multiple of 4·GY
override BN: u32 = 64u;      // tile columns (N)
override BK: u32 = 16u;      // K depth of a step, a multiple of 4
override TM: u32 = 4u;       // rows per thread: 4 or 8
override TN: u32 = 4u;       // columns per thread: 4 or 8
override STAGES: u32 = 2u;   // 1 or 2 copies of the tiles
override GX: u32 = BN / TN;  // threads along N
override GY: u32 = BM / TM;  // threads along M
override GT: u32 = GX * GY;  // threads per workgroup
override RA: u32 = BM / 4u + 1u;  // row length of As in vec4 words (one of padding)
override RB: u32 = BN / 4u + 1u;
// Elements of A (B) each thread loads per step: BM·BK/GT and BK·BN/GT, 4 or 8 (the host checks).
override EA: u32 = BM * BK / GT;
override EB: u32 = BK * BN / GT;

var<workgroup> As: array<vec4<f32>, STAGES * BK * RA>;
var<workgroup> Bs: array<vec4<f32>, STAGES * BK * RB>;

// acc[2i + j]: row i (0..TM-1) of the thread's block, columns 4(tx + j·GX) + {0..3} (j < TN/4).
alias Acc = array<vec4<f32>, 16>;
// A thread's loads of one step: up to 8 elements (2 vec4) of A and of B.
alias Regs = array<vec4<f32>, 2>;

// Workgroup-memory word of element (k, m) of As, and of (k, n) of Bs, in stage s.
fn as_word(s: u32, k: u32, m: u32) -> u32 { return (s * BK + k) * RA + m / 4u; }
fn bs_word(s: u32, k: u32, n: u32) -> u32 { return (s * BK + k) * RB + n / 4u; }

// The thread's row i (0..TM-1) and first column of group j (0..TN/4-1) within the tile.
fn tile_row(ty: u32, i: u32) -> u32 { return (ty + (i / 4u) * GY) * 4u + i % 4u; }
fn tile_col(tx: u32, j: u32) -> u32 { return (tx + j * GX) * 4u; }

// acc += As[stage] · Bs[stage] for the thread's block. Written out for TM, TN in {4, 8}: the
// branches on them fold away when the pipeline is made, and every accumulator index is a constant,
// so the block stays in registers. (Local names avoid the bindings' of the files it is prepended to:
// the host reflects bindings by name.)
fn mma(stage: u32, ty: u32, tx: u32, acc: ptr<function, Acc>) {
  let a0 = stage * BK * RA + ty;
  let b0 = stage * BK * RB + tx;
  for (var kk = 0u; kk < BK; kk++) {
    let a_lo = As[a0 + kk * RA];
    let b_lo = Bs[b0 + kk * RB];
    (*acc)[0] = fma(vec4<f32>(a_lo.x), b_lo, (*acc)[0]);
    (*acc)[2] = fma(vec4<f32>(a_lo.y), b_lo, (*acc)[2]);
    (*acc)[4] = fma(vec4<f32>(a_lo.z), b_lo, (*acc)[4]);
    (*acc)[6] = fma(vec4<f32>(a_lo.w), b_lo, (*acc)[6]);
    if (TN == 8u) {
      let b_hi = Bs[b0 + kk * RB + GX];
      (*acc)[1] = fma(vec4<f32>(a_lo.x), b_hi, (*acc)[1]);
      (*acc)[3] = fma(vec4<f32>(a_lo.y), b_hi, (*acc)[3]);
      (*acc)[5] = fma(vec4<f32>(a_lo.z), b_hi, (*acc)[5]);
      (*acc)[7] = fma(vec4<f32>(a_lo.w), b_hi, (*acc)[7]);
    }
    if (TM == 8u) {
      let a_hi = As[a0 + kk * RA + GY];
      (*acc)[8] = fma(vec4<f32>(a_hi.x), b_lo, (*acc)[8]);
      (*acc)[10] = fma(vec4<f32>(a_hi.y), b_lo, (*acc)[10]);
      (*acc)[12] = fma(vec4<f32>(a_hi.z), b_lo, (*acc)[12]);
      (*acc)[14] = fma(vec4<f32>(a_hi.w), b_lo, (*acc)[14]);
      if (TN == 8u) {
        let b_hi = Bs[b0 + kk * RB + GX];
        (*acc)[9] = fma(vec4<f32>(a_hi.x), b_hi, (*acc)[9]);
        (*acc)[11] = fma(vec4<f32>(a_hi.y), b_hi, (*acc)[11]);
        (*acc)[13] = fma(vec4<f32>(a_hi.z), b_hi, (*acc)[13]);
        (*acc)[15] = fma(vec4<f32>(a_hi.w), b_hi, (*acc)[15]);
      }
    }
  }
}

// Scalar element e (0..7) of a thread's step registers.
fn reg_get(r: ptr<function, Regs>, e: u32) -> f32 { return (*r)[e / 4u][e % 4u]; }
fn reg_set(r: ptr<function, Regs>, e: u32, v: f32) { (*r)[e / 4u][e % 4u] = v; }
